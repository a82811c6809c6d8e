// Supervisor: managed mode's owner of the haproxy master process.
//
// DESIGN: the agent starts `haproxy -W -db -S <master_socket> -f <config> -p <pid_file>` as its
// child, in its own process group, with stdout/stderr on a pipe that a thread copies to the
// agent's stderr ("haproxy: ...") and keeps the last lines of for error messages. A monitor
// thread restarts haproxy with exponential backoff (1 s .. 30 s) when it dies. An agent that is
// killed leaves haproxy serving; at its next start it adopts the running master found on the
// master socket instead of starting a second one (a master that is re-executing itself for a
// reload answers a moment later: while the pid file names a live haproxy of the config, the
// agent waits for it up to reload_timeout). Stop() (clean agent exit) stops haproxy only when
// stop_haproxy_on_exit is set (default no: an agent restart never interrupts traffic) and the
// agent did serve (LeaveRunning). All public methods are thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lb/common/settings.h"
#include "lb/proto/status.h"

namespace lb::agent {

class Supervisor {
 public:
  // `env` is haproxy's whole environment; both must outlive the supervisor.
  Supervisor(const common::HaproxySettings& settings, const std::vector<std::string>& env);
  ~Supervisor();

  // Adopts a running master or starts one with the live config (when the file exists), then
  // starts the monitor. A config that fails to start is reported but not fatal: the agent stays
  // up so that a reload can bring a good config.
  proto::Status Start();

  // Starts haproxy now if it is not running (used by a reload when haproxy is down).
  // Waits until the master lists a worker, or fails with haproxy's own log lines.
  proto::Status EnsureRunning();

  bool Running();
  pid_t master_pid();
  // Starts of haproxy by this agent (first start and restarts).
  int64_t starts() const { return starts_.load(); }

  // Log lines haproxy printed since `mark` (from LogMark()).
  uint64_t LogMark();
  std::vector<std::string> LogSince(uint64_t mark);

  // Stops the monitor; stops haproxy too if stop_haproxy_on_exit, unless LeaveRunning() was
  // called.
  void Stop();
  // Stop() will leave haproxy running whatever stop_haproxy_on_exit says: the agent failed to
  // start, and an haproxy that serves must keep serving for the next one.
  void LeaveRunning() { leave_running_ = true; }

 private:
  proto::Status SpawnLocked();
  void RemoveStaleServerState();
  proto::Status WaitForWorker(pid_t pid);
  bool AliveLocked();
  void Monitor();
  void ReadLogs(int fd, std::shared_ptr<std::atomic<bool>> done);

  const common::HaproxySettings& settings_;
  const std::vector<std::string>& env_;
  std::mutex mu_;
  pid_t pid_ = 0;  // the master's pid, ours or adopted
  bool own_child_ = false;
  bool want_running_ = false;
  std::atomic<int64_t> starts_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> leave_running_{false};
  std::condition_variable cv_;
  std::thread monitor_;
  // One reader per haproxy start; finished ones are joined at the next start.
  struct LogReader {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<LogReader> log_readers_;

  std::mutex log_mu_;
  std::deque<std::string> log_;
  uint64_t log_seq_ = 0;  // number of lines ever logged
};

}  // namespace lb::agent
