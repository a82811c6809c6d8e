// ReloadPipeline: the decisions of an apply, in order.
//
//   size limit -> expect_sha256 -> identical to live? answer `unchanged` -> code-loading policy
//   -> server lines only and provably equivalent (PlanRuntime)?
//     runtime: agent checks (ConfigLint) -> candidate file -> marker -> runtime commands ->
//              verify the running servers -> commit (history, rename) -> answer `runtime`
//              (a refused command or a mismatch falls through to a reload, with the reason)
//     reload:  candidate file -> `haproxy -c` (its own message first) -> agent checks -> write
//              the carried server state (CarryServerState) -> commit -> HaproxyControl::Reload
//              -> verify the running servers -> answer `reload`
//   -> on a failed reload or a mismatch: restore the previous file, reload again (rolled_back).
//
// "Verified" means `show servers state` and `show stat` of the worker now serving list exactly
// the servers the file declares, with their addresses, ports, weights, backup and maintenance
// (VerifyServers); an answer `applied` says whether it was. An invalid config never touches the
// live file or haproxy. Apply() must only be called from one thread at a time (the reload
// worker); Validate() and the readers are thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "config_lint.h"
#include "config_paths.h"
#include "config_store.h"
#include "haproxy_control.h"
#include "lb/common/settings.h"
#include "lb/proto/status.h"
#include "runtime_plan.h"
#include "server_config.h"
#include "server_state.h"

namespace lb::agent {

// Runs haproxy's own check on a file. An interface so that pipeline tests need no haproxy.
class ConfigValidator {
 public:
  virtual ~ConfigValidator() = default;
  virtual ValidateOutcome Validate(const std::string& path, const std::string& display_name) = 0;
};

class HaproxyValidator : public ConfigValidator {
 public:
  // `env` (haproxy's whole environment) must outlive the validator.
  HaproxyValidator(const common::HaproxySettings& settings, const std::vector<std::string>& env)
      : settings_(settings), env_(env) {}
  ValidateOutcome Validate(const std::string& path, const std::string& display_name) override {
    return ValidateWithHaproxy(settings_, path, display_name, &env_);
  }

 private:
  const common::HaproxySettings& settings_;
  const std::vector<std::string>& env_;
};

struct ReloadRequest {
  std::string config;
  std::optional<std::string> expect_sha256;
  bool force = false;
  // "apply_via": "reload": never the runtime API (benchmarks, or an operator who wants a fresh
  // worker). Default "auto".
  bool reload_only = false;
};

// Parses the `args` of a reload or validate command.
proto::Result<ReloadRequest> ReloadRequestFromArgs(const nlohmann::json& args);
// The same, taking the config out of `args` instead of copying it (a config can be 16 MB).
proto::Result<ReloadRequest> ReloadRequestFromArgs(nlohmann::json&& args);

class ReloadPipeline {
 public:
  ReloadPipeline(const common::Settings& settings, ConfigStore& store, ConfigValidator& validator,
                 HaproxyControl& control, bool running_as_root);

  // The checks of a reload without changing anything: {"valid": true, "sha256", "warnings",
  // "validate_ms"}, or the error a reload would give.
  proto::Result<nlohmann::json> Validate(const ReloadRequest& request);

  // A whole apply: {"outcome": "applied"|"unchanged", "applied_via": "runtime"|"reload"|
  // "unchanged", "verified", "sha256", "previous_sha256", "validate_ms", "reload_ms",
  // "runtime_ms", "total_ms", "warnings", "rolled_back": false, "runtime_commands" (runtime),
  // "reload_reason" (reload: why not the runtime API)}. A failed reload, or one whose running
  // servers do not match the file, is reload_failed with details {"rolled_back": bool, "sha256":
  // live sha256 afterwards, "mismatches": [...] when that was the cause}.
  proto::Result<nlohmann::json> Apply(const ReloadRequest& request);

  // For start-up, before any reload: when the previous run died between writing the live file
  // and the end of haproxy's reload (ConfigStore::ReloadInterrupted), haproxy may still run the
  // previous config; it is reloaded with the live file. Ok when there was nothing to finish.
  proto::Status FinishInterruptedReload();

  // {"time_unix_ms", "outcome", "applied_via"?, "sha256", "total_ms", "error"?} of the last
  // Apply, or null.
  nlohmann::json LastReload() const;
  // Applies that changed haproxy, by kind, since start.
  struct Counters {
    int64_t runtime = 0;
    int64_t reload = 0;
  };
  Counters counters() const;
  // sha256 of the live file now ("" when there is none).
  std::string LiveSha256() const;

 private:
  struct Checked {
    std::string candidate;  // temp file path, to commit or discard
    std::string sha256;
    std::vector<std::string> warnings;
    int64_t validate_ms = 0;
    std::vector<ConfigPath> paths;  // the files and sockets it names
  };
  // The code-loading and path policies (config_lint.h, config_paths.h): what must hold before
  // haproxy -c reads the config. `paths` receives what it names.
  proto::Status CheckPolicy(const std::string& config, const ConfigFacts& facts,
                            std::vector<ConfigPath>* paths) const;
  // haproxy's words about the config, reduced so that they quote no other file (ReduceMessage).
  std::string Reduce(const std::string& text, const std::vector<ConfigPath>& paths) const;
  proto::Status ReduceStatus(const proto::Status& status,
                             const std::vector<ConfigPath>& paths) const;
  proto::Status CheckSize(const ReloadRequest& request) const;
  LintResult Lint(const ConfigFacts& facts, bool force) const;
  proto::Result<Checked> Check(const ReloadRequest& request);
  // The runtime path. nullopt: fall back to a reload, for `*reload_reason`; `*touched` says
  // whether runtime commands reached haproxy before that.
  // `facts`, `live_model` and `next_model` are what the request's config and the live one say.
  std::optional<proto::Result<nlohmann::json>> ApplyRuntime(
      const ReloadRequest& request, const ConfigFacts& facts, const RuntimePlan& plan,
      const ConfigStore::Live& live, const DeclaredServers& live_model,
      const DeclaredServers& next_model, std::chrono::steady_clock::time_point start,
      std::string* reload_reason, bool* touched);
  proto::Result<nlohmann::json> ApplyChecked(const ReloadRequest& request, Checked checked,
                                             const ConfigStore::Live& live,
                                             const std::string& reload_reason,
                                             std::chrono::steady_clock::time_point start);
  // Writes the server-state file for a reload from `from` to `to` (what may be carried, see
  // CarryServerState) and returns what each server must look like afterwards. With nothing to
  // read (haproxy down), removes the file: no state is true any more.
  std::map<std::string, ServerExpectation> SaveServerState(const std::string& state_file,
                                                           const DeclaredServers& from,
                                                           const DeclaredServers& to,
                                                           bool keep_operator_state,
                                                           std::vector<std::string>* warnings);
  // Reads the running servers (retrying while a new worker settles) and compares them with
  // `declared`: the differences, or why they could not be read.
  // `stat_backends`: read `show stat` (for `backup`) of these backends only; empty: all.
  proto::Result<std::vector<std::string>> Verify(
      const DeclaredServers& declared, const std::map<std::string, ServerExpectation>& expect,
      const std::vector<std::string>& stat_backends = {});
  // Reloads haproxy with the live file `text` (state carried from what runs, the config winning
  // everywhere): brings haproxy back to the file after a runtime change that cannot stand.
  proto::Status ReloadToLive(const std::string& text, const DeclaredServers& running_model);
  std::string StateFileOf(const std::string& config) const;
  void Record(const std::string& outcome, const std::string& sha256, int64_t total_ms,
              const proto::Status& status, const std::string& applied_via = "");

  const common::Settings& settings_;
  ConfigStore& store_;
  ConfigValidator& validator_;
  HaproxyControl& control_;
  bool running_as_root_;

  mutable std::mutex mu_;
  nlohmann::json last_reload_;
  Counters counters_;
};

}  // namespace lb::agent
