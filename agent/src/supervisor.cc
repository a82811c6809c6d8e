#include "supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "config_lint.h"
#include "haproxy_parsers.h"
#include "haproxy_socket.h"
#include "lb/common/file.h"
#include "lb/common/log.h"
#include "process.h"

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kLogLines = 200;
constexpr milliseconds kMinBackoff{1000};
constexpr milliseconds kMaxBackoff{30000};

Result<ProcInfo> ShowProc(const common::HaproxySettings& s) {
  SocketOptions o;
  o.timeout = std::min(s.socket_timeout, milliseconds(2000));
  auto text = HaproxyCommand(s.master_socket, "show proc", o);
  if (!text.ok()) return text.status();
  return ParseShowProc(*text);
}

// The pid in `pid_file`, 0 when there is none.
pid_t PidFromFile(const std::string& pid_file) {
  auto text = common::ReadSmallFile(pid_file, 4096);
  if (!text.ok()) return 0;
  const long pid = std::strtol(text->c_str(), nullptr, 10);
  return pid <= 1 || pid > INT32_MAX ? 0 : static_cast<pid_t>(pid);
}

// What /proc says of `pid`'s command line: kOther for a process that is not a haproxy of this
// config (or none at all), kUnknown while it reads empty (a master re-executing itself for a
// reload: for an instant its command line is gone).
enum class Cmdline { kRunsConfig, kUnknown, kOther };
Cmdline CmdlineOf(pid_t pid, const std::string& config) {
  auto text = common::ReadSmallFile("/proc/" + std::to_string(pid) + "/cmdline", 1024 * 1024);
  if (!text.ok()) return Cmdline::kOther;
  std::istringstream args(*text);
  std::string arg;
  bool after_f = false;
  bool any = false;
  while (std::getline(args, arg, '\0')) {
    any = true;
    if (after_f && arg == config) return Cmdline::kRunsConfig;
    after_f = arg == "-f";
  }
  return any ? Cmdline::kOther : Cmdline::kUnknown;
}

// True while `pid` exists and is not a zombie (an adopted master is not our child: nobody here
// reaps it).
bool AliveNotZombie(pid_t pid) {
  auto text = common::ReadSmallFile("/proc/" + std::to_string(pid) + "/stat", 64 * 1024);
  if (!text.ok()) return false;
  const std::string stat = text->substr(0, text->find('\n'));
  const std::size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

// The master that a previous agent left running, asked on its socket. A master that is
// re-executing itself (the previous agent died during a reload) does not answer for a moment:
// while the pid file names a live haproxy of this config, its socket is asked again until
// reload_timeout rather than a second haproxy started next to it (SO_REUSEPORT would let both
// bind the same addresses and serve side by side).
Result<ProcInfo> FindRunningMaster(const common::HaproxySettings& s) {
  auto proc = ShowProc(s);
  if (proc.ok()) return proc;
  // The pid file can read empty while haproxy rewrites it, and the master's command line while
  // it re-executes: either is looked at again for a moment before concluding there is none.
  const auto start = Clock::now();
  const auto settle = start + milliseconds(1000);
  const auto deadline = start + s.reload_timeout;
  bool announced = false;
  while (true) {
    const pid_t pid = PidFromFile(s.pid_file);
    Cmdline cmdline = Cmdline::kOther;
    if (pid == 0) {
      std::error_code ec;
      if (std::filesystem::exists(s.pid_file, ec)) cmdline = Cmdline::kUnknown;
    } else if (AliveNotZombie(pid)) {
      cmdline = CmdlineOf(pid, s.config_file_path);
    }
    if (cmdline == Cmdline::kOther) return proc;
    if (cmdline == Cmdline::kUnknown && Clock::now() >= settle) return proc;
    if (cmdline == Cmdline::kRunsConfig && !announced) {
      common::LogInfo() << "haproxy master " << pid << " (" << s.pid_file
                        << ") runs but does not answer on " << s.master_socket << " yet ("
                        << proc.status().message() << "); waiting for it";
      announced = true;
    }
    if (Clock::now() >= deadline) return proc;
    std::this_thread::sleep_for(milliseconds(50));
    proc = ShowProc(s);
    if (proc.ok()) return proc;
  }
}

}  // namespace

Supervisor::Supervisor(const common::HaproxySettings& settings, const std::vector<std::string>& env)
    : settings_(settings), env_(env) {}

Supervisor::~Supervisor() { Stop(); }

uint64_t Supervisor::LogMark() {
  std::lock_guard<std::mutex> lock(log_mu_);
  return log_seq_;
}

std::vector<std::string> Supervisor::LogSince(uint64_t mark) {
  std::lock_guard<std::mutex> lock(log_mu_);
  std::vector<std::string> out;
  uint64_t first = log_seq_ - log_.size();
  for (uint64_t i = std::max(mark, first); i < log_seq_; ++i) out.push_back(log_[i - first]);
  return out;
}

void Supervisor::ReadLogs(int fd, std::shared_ptr<std::atomic<bool>> done) {
  std::string pending;
  char buf[4096];
  while (!stopping_) {
    pollfd p{fd, POLLIN, 0};
    int ready = poll(&p, 1, 200);
    if (ready == 0 || (ready < 0 && errno == EINTR)) continue;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      // haproxy's own tag decides the level: [ALERT] error, [WARNING] warning, else info.
      const common::LogLevel level =
          line.find("[ALERT]") != std::string::npos     ? common::LogLevel::kError
          : line.find("[WARNING]") != std::string::npos ? common::LogLevel::kWarning
                                                        : common::LogLevel::kInfo;
      common::LogLine(level) << "haproxy: " << line;
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.push_back(std::move(line));
      ++log_seq_;
      if (log_.size() > kLogLines) log_.pop_front();
    }
  }
  close(fd);
  *done = true;
}

bool Supervisor::AliveLocked() {
  if (pid_ <= 0) return false;
  if (own_child_) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      common::LogInfo() << "haproxy master " << pid_ << " exited ("
                        << (WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status))
                                              : "signal " + std::to_string(WTERMSIG(status)))
                        << ")";
      pid_ = 0;
      return false;
    }
    return true;
  }
  if (kill(pid_, 0) != 0 && errno == ESRCH) {
    pid_ = 0;
    return false;
  }
  return true;
}

bool Supervisor::Running() {
  std::lock_guard<std::mutex> lock(mu_);
  return AliveLocked();
}

pid_t Supervisor::master_pid() {
  std::lock_guard<std::mutex> lock(mu_);
  return AliveLocked() ? pid_ : 0;
}

void Supervisor::RemoveStaleServerState() {
  // haproxy starts afresh: a server-state file holds what ran before, possibly long ago (a
  // server DOWN then would start DOWN now). Nothing running means no state is true any more.
  if (!settings_.save_server_state) return;
  auto text = common::ReadSmallFile(settings_.config_file_path, 64 * 1024 * 1024);
  if (!text.ok()) return;
  const std::string state =
      ResolvedServerStateFile(ReadConfigFacts(*text), common::DirOf(settings_.config_file_path));
  if (!state.empty() && unlink(state.c_str()) == 0) {
    common::LogInfo() << "removed " << state
                      << " before starting haproxy afresh (no server state to carry)";
  }
}

Status Supervisor::SpawnLocked() {
  if (!std::filesystem::exists(settings_.config_file_path)) {
    return Status(ErrorCode::kHaproxyUnavailable, "haproxy is not running: no config at " +
                                                      settings_.config_file_path +
                                                      " yet (send a reload)");
  }
  want_running_ = true;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(settings_.master_socket).parent_path(),
                                      ec);
  std::filesystem::create_directories(std::filesystem::path(settings_.pid_file).parent_path(), ec);
  // A stale socket file from a dead master would make haproxy fail to bind it.
  unlink(settings_.master_socket.c_str());
  RemoveStaleServerState();

  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    return Status(ErrorCode::kInternal, std::string("pipe: ") + strerror(errno));
  }
  // Relative paths in the haproxy config (stats socket, server-state-file, errorfiles) are
  // relative to the config file's directory, for haproxy -c and the running haproxy alike.
  const std::string cwd = std::filesystem::path(settings_.config_file_path).parent_path().string();
  auto started = StartProcess(
      {settings_.haproxy_binary, "-W", "-db", "-S", settings_.master_socket + ",mode,600", "-f",
       settings_.config_file_path, "-p", settings_.pid_file},
      cwd, pipefd[1], pipefd[1], &env_);
  close(pipefd[1]);
  if (!started.ok()) {
    close(pipefd[0]);
    return started.status();
  }
  const pid_t pid = *started;
  for (auto it = log_readers_.begin(); it != log_readers_.end();) {
    if (*it->done) {
      it->thread.join();
      it = log_readers_.erase(it);
    } else {
      ++it;
    }
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  log_readers_.push_back({std::thread(&Supervisor::ReadLogs, this, pipefd[0], done), done});
  pid_ = pid;
  own_child_ = true;
  starts_++;
  common::LogInfo() << "started haproxy master " << pid << " with " << settings_.config_file_path;
  return Status::Ok();
}

Status Supervisor::WaitForWorker(pid_t pid) {
  const auto deadline = Clock::now() + settings_.reload_timeout;
  while (Clock::now() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pid_ != pid || !AliveLocked()) {
        return Status(ErrorCode::kReloadFailed, "haproxy exited at start");
      }
    }
    auto proc = ShowProc(settings_);
    if (proc.ok() && !proc->workers.empty()) return Status::Ok();
    std::this_thread::sleep_for(milliseconds(20));
  }
  return Status(ErrorCode::kTimeout, "haproxy started but listed no worker within " +
                                         std::to_string(settings_.reload_timeout.count()) + " ms");
}

Status Supervisor::EnsureRunning() {
  uint64_t mark = LogMark();
  pid_t pid;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (AliveLocked()) return Status::Ok();
    Status s = SpawnLocked();
    if (!s.ok()) return s;
    pid = pid_;
  }
  Status s = WaitForWorker(pid);
  if (!s.ok()) {
    // Give the log reader a moment to pass on haproxy's last words.
    std::this_thread::sleep_for(milliseconds(50));
    std::string why;
    for (const auto& line : LogSince(mark)) {
      if (line.find("[ALERT]") != std::string::npos) why += "\n" + line;
    }
    return Status(s.code(), s.message() + why);
  }
  return s;
}

Status Supervisor::Start() {
  {
    auto proc = FindRunningMaster(settings_);
    std::lock_guard<std::mutex> lock(mu_);
    if (proc.ok() && proc->master.pid > 0 && kill(proc->master.pid, 0) == 0) {
      pid_ = proc->master.pid;
      own_child_ = false;
      want_running_ = true;
      common::LogInfo() << "adopted running haproxy master " << pid_ << " on "
                        << settings_.master_socket;
    }
  }
  Status s = Status::Ok();
  if (!Running()) s = EnsureRunning();
  monitor_ = std::thread(&Supervisor::Monitor, this);
  return s;
}

void Supervisor::Monitor() {
  milliseconds backoff = kMinBackoff;
  auto next_try = Clock::now();
  while (!stopping_) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, milliseconds(200), [this] { return stopping_.load(); });
      if (stopping_) return;
      if (!want_running_ || AliveLocked()) {
        if (AliveLocked()) backoff = kMinBackoff;
        continue;
      }
      if (Clock::now() < next_try) continue;
    }
    common::LogWarning() << "haproxy is not running; starting it (next retry in " << backoff.count()
                         << " ms if this fails)";
    Status s = EnsureRunning();
    if (!s.ok()) {
      common::LogError() << "restarting haproxy failed: " << s.message();
      next_try = Clock::now() + backoff;
      backoff = std::min(backoff * 2, kMaxBackoff);
    } else {
      backoff = kMinBackoff;
    }
  }
}

void Supervisor::Stop() {
  if (stopping_.exchange(true)) return;
  cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  pid_t pid;
  bool own;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pid = AliveLocked() ? pid_ : 0;
    own = own_child_;
  }
  if (pid > 0 && settings_.stop_haproxy_on_exit && !leave_running_) {
    // SIGUSR1 is haproxy's soft stop: finish what is in flight, then exit.
    kill(pid, SIGUSR1);
    const auto deadline = Clock::now() + milliseconds(5000);
    while (Clock::now() < deadline) {
      if (own ? waitpid(pid, nullptr, WNOHANG) == pid : kill(pid, 0) != 0) {
        pid = 0;
        break;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    if (pid > 0) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      if (own) waitpid(pid, nullptr, 0);
    }
    unlink(settings_.master_socket.c_str());
  }
  // Readers notice stopping_ within their poll interval, whether or not haproxy still runs.
  for (auto& reader : log_readers_) {
    if (reader.thread.joinable()) reader.thread.join();
  }
}

}  // namespace lb::agent
