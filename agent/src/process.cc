#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;
using Clock = std::chrono::steady_clock;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

std::vector<char*> ToArgv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  out.reserve(argv.size() + 1);
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// In the child after fork: only async-signal-safe calls until exec.
[[noreturn]] void ExecChild(char* const* argv, char* const* envp, const char* cwd, int stdout_fd,
                            int stderr_fd, int errpipe) {
  setpgid(0, 0);
  if (cwd != nullptr && chdir(cwd) != 0) {
    int err = errno;
    ssize_t ignored = write(errpipe, &err, sizeof err);
    (void)ignored;
    _exit(127);
  }
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  if (stdout_fd >= 0) dup2(stdout_fd, 1);
  if (stderr_fd >= 0) dup2(stderr_fd, 2);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (envp != nullptr) {
    execvpe(argv[0], argv, envp);
  } else {
    execvp(argv[0], argv);
  }
  int err = errno;
  ssize_t ignored = write(errpipe, &err, sizeof err);
  (void)ignored;
  _exit(127);
}

// Reads the exec-failure pipe: returns 0 when exec succeeded (pipe closed by exec).
int ReadExecErrno(int fd) {
  int err = 0;
  ssize_t n;
  do {
    n = read(fd, &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(sizeof err) ? err : 0;
}

}  // namespace

Result<pid_t> StartProcess(const std::vector<std::string>& argv, const std::string& cwd,
                           int stdout_fd, int stderr_fd, const std::vector<std::string>* env) {
  if (argv.empty()) return Status(ErrorCode::kInternal, "StartProcess: empty argv");
  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) return Status(ErrorCode::kInternal, Errno("pipe"));
  std::vector<char*> args = ToArgv(argv);
  std::vector<char*> envp;
  if (env != nullptr) envp = ToArgv(*env);
  pid_t pid = fork();
  if (pid < 0) {
    close(exec_pipe[0]);
    close(exec_pipe[1]);
    return Status(ErrorCode::kInternal, Errno("fork"));
  }
  if (pid == 0) {
    ExecChild(args.data(), env != nullptr ? envp.data() : nullptr,
              cwd.empty() ? nullptr : cwd.c_str(), stdout_fd, stderr_fd, exec_pipe[1]);
  }
  setpgid(pid, pid);  // also in the parent, so that a kill of the group never races the child
  close(exec_pipe[1]);
  int exec_errno = ReadExecErrno(exec_pipe[0]);
  close(exec_pipe[0]);
  if (exec_errno != 0) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return Status(ErrorCode::kInternal, argv[0] + ": " + std::strerror(exec_errno));
  }
  return pid;
}

Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout, const std::string& cwd,
                                 const std::vector<std::string>* env) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return Status(ErrorCode::kInternal, Errno("pipe"));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return Status(ErrorCode::kInternal, Errno("pipe"));
  }
  auto started = StartProcess(argv, cwd, out_pipe[1], err_pipe[1], env);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (!started.ok()) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return started.status();
  }
  const pid_t pid = *started;

  ProcessResult result;
  const auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  char buf[8192];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      break;
    }
    int n = poll(fds, 2, static_cast<int>(left.count()) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      std::size_t room = kMaxCapture - std::min(kMaxCapture, sinks[i]->size());
      sinks[i]->append(buf, std::min<std::size_t>(room, static_cast<std::size_t>(got)));
    }
  }
  for (auto& fd : fds) {
    if (fd.fd >= 0) close(fd.fd);
  }
  // The pipes are closed: either the child finished writing or it ran out of time. Reap it,
  // still bounded by the deadline (a child may close its outputs and keep running).
  int wstatus = 0;
  while (true) {
    pid_t r = waitpid(pid, &wstatus, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return Status(ErrorCode::kInternal, Errno("waitpid"));
    if (result.timed_out || Clock::now() >= deadline) {
      result.timed_out = true;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    usleep(2000);
  }
  if (WIFEXITED(wstatus)) {
    result.exit_code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    result.term_signal = WTERMSIG(wstatus);
  }
  return result;
}

std::string DescribeExit(const ProcessResult& result, std::chrono::milliseconds timeout) {
  if (result.timed_out) return "timed out after " + std::to_string(timeout.count()) + " ms";
  if (result.term_signal != 0) return "killed by signal " + std::to_string(result.term_signal);
  return "exit code " + std::to_string(result.exit_code);
}

}  // namespace lb::agent

namespace lb::agent {

std::vector<std::string> ChildEnvironment(const std::vector<std::string>& entries,
                                          const char* const* parent) {
  std::vector<std::string> out = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  for (const std::string& entry : entries) {
    if (entry.find('=') != std::string::npos) {
      out.push_back(entry);
      continue;
    }
    for (const char* const* e = parent; e != nullptr && *e != nullptr; ++e) {
      std::string_view var(*e);
      if (var.size() > entry.size() && var.substr(0, entry.size()) == entry &&
          var[entry.size()] == '=') {
        out.emplace_back(var);
      }
    }
  }
  return out;
}

}  // namespace lb::agent
