#include "haproxy_control.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "config_lint.h"
#include "haproxy_parsers.h"
#include "process.h"
#include "supervisor.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How often the outcome of a master reload is polled, and when a reload that the master did not
// count is sent again (2.6 can drop a `reload` that arrives while it is still re-executing).
constexpr milliseconds kPollInterval{20};
constexpr milliseconds kResendAfter{3000};

SocketOptions OptionsFrom(const common::HaproxySettings& s) {
  SocketOptions o;
  o.timeout = s.socket_timeout;
  o.read_chunk = s.socket_buffer_size;
  return o;
}

std::string ReplaceAll(std::string text, const std::string& from, const std::string& to) {
  if (from.empty()) return text;
  std::size_t pos = 0;
  while ((pos = text.find(from, pos)) != std::string::npos) {
    text.replace(pos, from.size(), to);
    pos += to.size();
  }
  return text;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty()) out.push_back(line);
    pos = nl + 1;
  }
  return out;
}

std::string Join(const std::vector<std::string>& lines, const std::string& sep) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : sep) + l;
  return out;
}

// "c1; c2" with each command behind `prefix` ("@1 " for the master socket).
std::string JoinCommands(const std::vector<std::string>& commands, const std::string& prefix) {
  std::string out;
  for (const auto& c : commands) out += (out.empty() ? "" : "; ") + prefix + c;
  return out;
}

// The lines of haproxy's log that explain a failure: alerts first, else everything.
std::string Explain(const std::vector<std::string>& log) {
  std::vector<std::string> alerts;
  for (const auto& l : log) {
    if (l.find("[ALERT]") != std::string::npos) alerts.push_back(l);
  }
  return Join(alerts.empty() ? log : alerts, "\n");
}

// True when the live config binds the stats socket named by socket_path, so that reading it
// reaches this haproxy and not another one on the machine.
bool LiveConfigHasStatsSocket(const common::HaproxySettings& s) {
  if (s.socket_path.empty()) return false;
  std::ifstream in(s.config_file_path);
  std::stringstream text;
  text << in.rdbuf();
  const std::filesystem::path dir = std::filesystem::path(s.config_file_path).parent_path();
  for (std::string socket : ReadConfigFacts(text.str()).stats_sockets) {
    if (socket.rfind("unix@", 0) == 0) socket = socket.substr(5);
    // haproxy runs in the config's directory (see Supervisor): relative is relative to it.
    if (!socket.empty() && socket[0] != '/' && socket.find(':') == std::string::npos) {
      socket = (dir / socket).lexically_normal().string();
    }
    if (socket == s.socket_path) return true;
  }
  return false;
}

}  // namespace

MasterControl::MasterControl(const common::HaproxySettings& settings, Supervisor* supervisor)
    : settings_(settings), supervisor_(supervisor), options_(OptionsFrom(settings)) {}

Result<std::string> MasterControl::MasterCommand(std::string_view command) {
  return HaproxyCommand(settings_.master_socket, command, options_);
}

Result<std::string> MasterControl::WorkerCommand(std::string_view command) {
  if (!settings_.stats_via_master) return HaproxyCommand(settings_.socket_path, command, options_);
  auto answer = MasterCommand("@1 " + std::string(command));
  if (answer.ok() && answer->rfind("Can't find the target", 0) == 0) {
    answer = Status(ErrorCode::kHaproxyUnavailable, "haproxy has no running worker");
  }
  // After a failed reload the 2.6 master refuses connections for about two seconds while the
  // old worker keeps serving; a stats socket, when the config has one, still answers.
  if (!answer.ok() && LiveConfigHasStatsSocket(settings_)) {
    auto direct = HaproxyCommand(settings_.socket_path, command, options_);
    if (direct.ok()) return direct;
  }
  return answer;
}

Result<std::string> MasterControl::WorkerCommands(const std::vector<std::string>& commands) {
  if (!settings_.stats_via_master) {
    return HaproxyCommand(settings_.socket_path, JoinCommands(commands, ""), options_);
  }
  auto answer = MasterCommand(JoinCommands(commands, "@1 "));
  if (answer.ok() && answer->rfind("Can't find the target", 0) == 0) {
    return Status(ErrorCode::kHaproxyUnavailable, "haproxy has no running worker");
  }
  return answer;
}

Status MasterControl::Reload() {
  if (supervisor_ != nullptr && !supervisor_->Running()) return supervisor_->EnsureRunning();
  auto before_text = MasterCommand("show proc");
  if (!before_text.ok()) return before_text.status();
  auto before = ParseShowProc(*before_text);
  if (!before.ok()) return before.status();
  std::set<int> old_workers;
  for (const auto& w : before->workers) old_workers.insert(w.pid);
  const uint64_t mark = supervisor_ ? supervisor_->LogMark() : 0;

  const auto deadline = Clock::now() + settings_.reload_timeout;
  auto sent = MasterCommand("reload");
  if (!sent.ok()) return sent.status();
  auto last_send = Clock::now();
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(kPollInterval);
    auto text = MasterCommand("show proc");
    auto proc = text.ok() ? ParseShowProc(*text) : Result<ProcInfo>(text.status());
    if (!proc.ok()) continue;  // the master is re-executing itself
    if (proc->master.reloads <= before->master.reloads) {
      if (Clock::now() - last_send > kResendAfter) {
        MasterCommand("reload");
        last_send = Clock::now();
      }
      continue;
    }
    if (proc->master.failed > 0) {
      std::string why =
          "haproxy could not load the new config (the previous worker keeps "
          "serving)";
      if (supervisor_ != nullptr) {
        // The master logs its alerts around the moment it counts the failure.
        std::vector<std::string> log;
        for (int i = 0; i < 20; ++i) {
          log = supervisor_->LogSince(mark);
          if (Join(log, "\n").find("Loading failure") != std::string::npos) break;
          std::this_thread::sleep_for(kPollInterval);
        }
        std::string explain = Explain(log);
        if (!explain.empty()) why += ":\n" + explain;
      } else {
        why += "; see haproxy's log for the reason";
      }
      return Status(ErrorCode::kReloadFailed, why);
    }
    bool new_worker = !proc->workers.empty() && !old_workers.count(proc->workers.front().pid);
    if (new_worker) return Status::Ok();
  }
  return Status(ErrorCode::kTimeout, "haproxy did not report the outcome of the reload within " +
                                         std::to_string(settings_.reload_timeout.count()) + " ms");
}

json MasterControl::Describe() {
  json out = {{"running", false}, {"method", common::ReloadMethodName(settings_.reload_method)}};
  auto text = MasterCommand("show proc");
  if (!text.ok()) {
    out["error"] = text.status().message();
    return out;
  }
  auto proc = ParseShowProc(*text);
  if (!proc.ok()) {
    out["error"] = proc.status().message();
    return out;
  }
  out["running"] = !proc->workers.empty();
  out["master_pid"] = proc->master.pid;
  out["reloads"] = proc->master.reloads;
  out["failed_reloads"] = proc->master.failed;
  out["version"] = proc->master.version;
  out["master_uptime_s"] = proc->master.uptime_s;
  if (!proc->workers.empty()) {
    out["pid"] = proc->workers.front().pid;
    out["uptime_s"] = proc->workers.front().uptime_s;
    out["old_workers"] = proc->workers.size() - 1;
  }
  if (supervisor_ != nullptr) out["starts"] = supervisor_->starts();
  return out;
}

ServiceControl::ServiceControl(const common::HaproxySettings& settings)
    : settings_(settings), options_(OptionsFrom(settings)) {}

Result<std::string> ServiceControl::WorkerCommand(std::string_view command) {
  return HaproxyCommand(settings_.socket_path, command, options_);
}

Result<std::string> ServiceControl::WorkerCommands(const std::vector<std::string>& commands) {
  return HaproxyCommand(settings_.socket_path, JoinCommands(commands, ""), options_);
}

std::vector<std::string> ServiceControl::ReloadArgv() const {
  if (settings_.reload_method == common::ReloadMethod::kSystemd) {
    return {settings_.systemctl_path, "reload", settings_.systemd_service_name};
  }
  return {settings_.systemv_init_path, "reload"};
}

Status ServiceControl::Reload() {
  std::string before_pid;
  if (auto info = WorkerCommand("show info"); info.ok()) before_pid = ParseShowInfo(*info)["Pid"];
  const auto deadline = Clock::now() + settings_.reload_timeout;
  auto argv = ReloadArgv();
  auto run = RunProcess(argv, settings_.reload_timeout);
  if (!run.ok()) return Status(ErrorCode::kReloadFailed, "cannot run " + run.status().message());
  if (run->timed_out) {
    return Status(ErrorCode::kTimeout,
                  Join(argv, " ") + " " + DescribeExit(*run, settings_.reload_timeout));
  }
  if (run->exit_code != 0) {
    std::string err = run->err.empty() ? run->out : run->err;
    return Status(ErrorCode::kReloadFailed, Join(argv, " ") + " failed (" +
                                                DescribeExit(*run, settings_.reload_timeout) + ")" +
                                                (err.empty() ? "" : ":\n" + err));
  }
  // Verified once a worker answers on the stats socket, a new one if the old pid was known.
  std::string last_error;
  while (Clock::now() < deadline) {
    auto info = WorkerCommand("show info");
    if (info.ok()) {
      std::string pid = ParseShowInfo(*info)["Pid"];
      if (!pid.empty() && (before_pid.empty() || pid != before_pid)) return Status::Ok();
      last_error = "haproxy still answers from the old worker (pid " + pid + ")";
    } else {
      last_error = info.status().message();
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  return Status(ErrorCode::kReloadFailed, Join(argv, " ") +
                                              " succeeded but haproxy was not "
                                              "verified within " +
                                              std::to_string(settings_.reload_timeout.count()) +
                                              " ms: " + last_error);
}

json ServiceControl::Describe() {
  json out = {{"running", false}, {"method", common::ReloadMethodName(settings_.reload_method)}};
  auto text = WorkerCommand("show info");
  if (!text.ok()) {
    out["error"] = text.status().message();
    return out;
  }
  auto info = ParseShowInfo(*text);
  out["running"] = true;
  out["pid"] = std::atoll(info["Pid"].c_str());
  out["version"] = info["Version"];
  out["uptime_s"] = std::atoll(info["Uptime_sec"].c_str());
  return out;
}

ValidateOutcome ValidateWithHaproxy(const common::HaproxySettings& settings,
                                    const std::string& path, const std::string& display_name,
                                    const std::vector<std::string>* env) {
  ValidateOutcome out;
  auto start = Clock::now();
  auto run =
      RunProcess({settings.haproxy_binary, "-c", "-f", path}, settings.validate_timeout,
                 std::filesystem::path(settings.config_file_path).parent_path().string(), env);
  out.ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  if (!run.ok()) {
    out.status =
        Status(ErrorCode::kInternal, "cannot run the haproxy binary: " + run.status().message());
    return out;
  }
  if (run->timed_out) {
    out.status =
        Status(ErrorCode::kTimeout, "haproxy -c " + DescribeExit(*run, settings.validate_timeout));
    return out;
  }
  std::string text = ReplaceAll(run->out + run->err, path, display_name);
  std::vector<std::string> alerts, other;
  for (const auto& line : SplitLines(text)) {
    if (line.find("[WARNING]") != std::string::npos) out.warnings.push_back(line);
    if (line.find("[ALERT]") != std::string::npos) alerts.push_back(line);
    if (line.find("[NOTICE]") == std::string::npos && line.find("[WARNING]") == std::string::npos)
      other.push_back(line);
  }
  // Some refusals come without an [ALERT] ("Configuration file has no error but will not start
  // (no listener) => exit(2)."): then haproxy's other lines are the reason.
  if (alerts.empty()) alerts = std::move(other);
  if (run->exit_code != 0) {
    json details = {{"haproxy_output", alerts}};
    std::string message =
        "haproxy -c rejected the config (" + DescribeExit(*run, settings.validate_timeout) + ")";
    if (!alerts.empty()) message += ":\n" + Join(alerts, "\n");
    out.status = Status(ErrorCode::kInvalidConfig, message, details);
  }
  return out;
}

}  // namespace lb::agent
