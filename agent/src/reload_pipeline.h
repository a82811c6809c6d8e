// ReloadPipeline: the decisions of a reload, in order.
//
//   size limit -> expect_sha256 -> identical to live? answer `unchanged` -> agent checks
//   (ConfigLint) -> candidate file next to the live one -> `haproxy -c` -> save server state ->
//   commit (history, rename, fsync) -> HaproxyControl::Reload -> on failure restore the
//   previous file and reload again (rolled_back) -> answer.
//
// An invalid config never touches the live file or haproxy. Apply() must only be called from
// one thread at a time (the reload worker); Validate() and the readers are thread-safe.
#pragma once

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "config_lint.h"
#include "config_store.h"
#include "haproxy_control.h"
#include "lb/common/settings.h"
#include "lb/proto/status.h"

namespace lb::agent {

// Runs haproxy's own check on a file. An interface so that pipeline tests need no haproxy.
class ConfigValidator {
 public:
  virtual ~ConfigValidator() = default;
  virtual ValidateOutcome Validate(const std::string& path, const std::string& display_name) = 0;
};

class HaproxyValidator : public ConfigValidator {
 public:
  explicit HaproxyValidator(const common::HaproxySettings& settings) : settings_(settings) {}
  ValidateOutcome Validate(const std::string& path, const std::string& display_name) override {
    return ValidateWithHaproxy(settings_, path, display_name);
  }

 private:
  const common::HaproxySettings& settings_;
};

struct ReloadRequest {
  std::string config;
  std::optional<std::string> expect_sha256;
  bool force = false;
};

// Parses the `args` of a reload or validate command.
proto::Result<ReloadRequest> ReloadRequestFromArgs(const nlohmann::json& args);

class ReloadPipeline {
 public:
  ReloadPipeline(const common::Settings& settings, ConfigStore& store, ConfigValidator& validator,
                 HaproxyControl& control, bool running_as_root);

  // The checks of a reload without changing anything: {"valid": true, "sha256", "warnings",
  // "validate_ms"}, or the error a reload would give.
  proto::Result<nlohmann::json> Validate(const ReloadRequest& request);

  // A whole reload: {"outcome": "applied"|"unchanged", "sha256", "previous_sha256",
  // "validate_ms", "reload_ms", "total_ms", "warnings", "rolled_back": false}. A failed reload
  // is reload_failed with details {"rolled_back": bool, "sha256": live sha256 afterwards}.
  proto::Result<nlohmann::json> Apply(const ReloadRequest& request);

  // For start-up, before any reload: when the previous run died between writing the live file
  // and the end of haproxy's reload (ConfigStore::ReloadInterrupted), haproxy may still run the
  // previous config; it is reloaded with the live file. Ok when there was nothing to finish.
  proto::Status FinishInterruptedReload();

  // {"time_unix_ms", "outcome", "sha256", "total_ms", "error"?} of the last Apply, or null.
  nlohmann::json LastReload() const;
  // sha256 of the live file now ("" when there is none).
  std::string LiveSha256() const;

 private:
  struct Checked {
    std::string candidate;  // temp file path, to commit or discard
    std::string sha256;
    std::vector<std::string> warnings;
    int64_t validate_ms = 0;
    std::string state_file;  // the server-state-file the new config loads, or ""
  };
  proto::Status CheckSize(const ReloadRequest& request) const;
  LintResult Lint(const ConfigFacts& facts, bool force) const;
  proto::Result<Checked> Check(const ReloadRequest& request);
  proto::Result<nlohmann::json> ApplyChecked(const ReloadRequest& request, Checked checked,
                                             std::chrono::steady_clock::time_point start);
  void SaveServerState(const std::string& path, std::vector<std::string>* warnings);
  void Record(const std::string& outcome, const std::string& sha256, int64_t total_ms,
              const proto::Status& status);

  const common::Settings& settings_;
  ConfigStore& store_;
  ConfigValidator& validator_;
  HaproxyControl& control_;
  bool running_as_root_;

  mutable std::mutex mu_;
  nlohmann::json last_reload_;
};

}  // namespace lb::agent
