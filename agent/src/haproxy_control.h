// HaproxyControl: how the agent talks to the running haproxy, whatever started it.
//
// Three implementations share this interface: MasterControl drives an haproxy in master-worker
// mode through its master socket (reload_method = master, and managed mode through a
// Supervisor that also starts it); ServiceControl runs `systemctl reload` or an init script and
// reads the stats socket. Tests of the reload pipeline use a fake.
//
// Thread-safety: WorkerCommand and Describe may be called from any thread at any time;
// Reload is called by the reload worker only.
#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "haproxy_socket.h"
#include "lb/common/settings.h"
#include "lb/proto/status.h"

namespace lb::agent {

class Supervisor;

class HaproxyControl {
 public:
  virtual ~HaproxyControl() = default;

  // Sends one CLI command to the current worker ("show stat", "show servers state", ...).
  // haproxy_unavailable when haproxy is not running or its socket is unreachable.
  virtual proto::Result<std::string> WorkerCommand(std::string_view command) = 0;

  // Sends several CLI commands to the current worker on one connection ("c1; c2; ..."), for the
  // runtime API, and returns haproxy's answers as one text (2.6 does not frame them reliably:
  // callers read the effect back rather than pair answers with commands). No command may hold a
  // ';' or a backslash (RuntimePlan's never do). haproxy_unavailable as for WorkerCommand.
  virtual proto::Result<std::string> WorkerCommands(const std::vector<std::string>& commands) = 0;

  // Makes haproxy load the live config file and waits (bounded by reload_timeout) until the
  // outcome is known. OK once a new worker runs the new file; reload_failed with haproxy's own
  // complaint when it refused it (the previous worker then keeps serving); timeout when the
  // outcome is still unknown at the deadline.
  virtual proto::Status Reload() = 0;

  // Runtime facts for `info`: {"running", "pid", "master_pid", "version", "uptime_s",
  // "reloads", "failed_reloads"} (fields unknown to a method are left out).
  virtual nlohmann::json Describe() = 0;
};

// An haproxy in master-worker mode, reached through its master socket.
class MasterControl : public HaproxyControl {
 public:
  // `supervisor` may be null (reload_method = master); otherwise it must outlive this object,
  // starts haproxy when it is not running and adds haproxy's own log lines to failures.
  MasterControl(const common::HaproxySettings& settings, Supervisor* supervisor);

  proto::Result<std::string> WorkerCommand(std::string_view command) override;
  proto::Result<std::string> WorkerCommands(const std::vector<std::string>& commands) override;
  proto::Status Reload() override;
  nlohmann::json Describe() override;

 private:
  proto::Result<std::string> MasterCommand(std::string_view command);

  const common::HaproxySettings& settings_;
  Supervisor* supervisor_;
  SocketOptions options_;
};

// An haproxy run by systemd or an init script; status from the stats socket.
class ServiceControl : public HaproxyControl {
 public:
  explicit ServiceControl(const common::HaproxySettings& settings);

  proto::Result<std::string> WorkerCommand(std::string_view command) override;
  proto::Result<std::string> WorkerCommands(const std::vector<std::string>& commands) override;
  proto::Status Reload() override;
  nlohmann::json Describe() override;

 private:
  std::vector<std::string> ReloadArgv() const;

  const common::HaproxySettings& settings_;
  SocketOptions options_;
};

// Runs `haproxy -c -f <path>`: OK, or invalid_config whose message holds haproxy's own
// [ALERT] lines with `path` replaced by `display_name`. Warnings are haproxy's [WARNING] lines.
struct ValidateOutcome {
  proto::Status status;
  std::vector<std::string> warnings;
  int64_t ms = 0;
};
// `env`, when given, is haproxy's whole environment.
ValidateOutcome ValidateWithHaproxy(const common::HaproxySettings& settings,
                                    const std::string& path, const std::string& display_name,
                                    const std::vector<std::string>* env = nullptr);

}  // namespace lb::agent
