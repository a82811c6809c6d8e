// Child processes, always through fork/exec with an argv (never a shell), always with a deadline.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "lb/proto/status.h"

namespace lb::agent {

struct ProcessResult {
  int exit_code = -1;   // -1 when the child was killed by a signal
  int term_signal = 0;  // the signal that ended it, or 0
  bool timed_out = false;
  std::string out;  // stdout, capped at kMaxCapture bytes
  std::string err;  // stderr, capped at kMaxCapture bytes
};

inline constexpr std::size_t kMaxCapture = 1024 * 1024;

// Runs argv[0] (looked up in PATH when it has no '/') with stdin from /dev/null, captures
// stdout and stderr, and waits at most `timeout`; past it the child's process group is killed
// with SIGKILL and the result has timed_out set. The child runs in `cwd` when it is not empty.
// Fails only when the child could not be started at all (fork/pipe failure, or exec or chdir
// failure reported as "<argv0>: <strerror>"). `env`, when given, is the child's whole
// environment ("NAME=value" entries); otherwise it inherits the agent's.
proto::Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                        std::chrono::milliseconds timeout,
                                        const std::string& cwd = "",
                                        const std::vector<std::string>* env = nullptr);

// Starts argv (looked up in PATH when it has no '/') in its own process group, in `cwd` when
// it is not empty, with stdin from /dev/null and stdout/stderr on `stdout_fd`/`stderr_fd` (-1:
// inherited), signals unblocked. Returns once exec succeeded; a chdir or exec failure is an
// error "<argv0>: <strerror>" (the child is reaped). The caller reaps the child.
proto::Result<pid_t> StartProcess(const std::vector<std::string>& argv, const std::string& cwd,
                                  int stdout_fd, int stderr_fd,
                                  const std::vector<std::string>* env = nullptr);

// The environment of a child that must see only what the operator chose: PATH, then each entry
// of `entries` — "NAME=VALUE" as it is, "NAME" copied from `parent` (environ) when set there.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& entries,
                                          const char* const* parent);

// "exit code 1", "killed by signal 9", "timed out after 15000 ms".
std::string DescribeExit(const ProcessResult& result, std::chrono::milliseconds timeout);

}  // namespace lb::agent
