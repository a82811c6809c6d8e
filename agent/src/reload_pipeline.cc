#include "reload_pipeline.h"

#include <filesystem>
#include <thread>

#include "config_lint.h"
#include "haproxy_parsers.h"
#include "lb/common/sha256.h"
#include "lb/proto/codec.h"
#include "runtime_apply.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;
using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

}  // namespace

Result<ReloadRequest> ReloadRequestFromArgs(const json& args) {
  return ReloadRequestFromArgs(json(args));
}

Result<ReloadRequest> ReloadRequestFromArgs(json&& args) {
  ReloadRequest out;
  auto config = args.find("config");
  if (config == args.end() || !config->is_string()) {
    return Status(ErrorCode::kBadRequest,
                  "argument \"config\" (the whole haproxy config, a string) is required");
  }
  out.config = std::move(config->get_ref<std::string&>());
  auto expect = proto::StringArg(args, "expect_sha256", "");
  if (!expect.ok()) return expect.status();
  if (!expect->empty()) out.expect_sha256 = *expect;
  auto force = proto::BoolArg(args, "force", false);
  if (!force.ok()) return force.status();
  out.force = *force;
  auto via = proto::StringArg(args, "apply_via", "auto");
  if (!via.ok()) return via.status();
  if (*via != "auto" && *via != "reload") {
    return Status(ErrorCode::kBadRequest,
                  "argument \"apply_via\" must be \"auto\" (the runtime API when the change allows "
                  "it) or \"reload\"");
  }
  out.reload_only = *via == "reload";
  return out;
}

ReloadPipeline::ReloadPipeline(const common::Settings& settings, ConfigStore& store,
                               ConfigValidator& validator, HaproxyControl& control,
                               bool running_as_root)
    : settings_(settings),
      store_(store),
      validator_(validator),
      control_(control),
      running_as_root_(running_as_root) {}

std::string ReloadPipeline::LiveSha256() const {
  auto live = store_.ReadLive();
  if (!live.ok() || !live->exists) return "";
  return common::Sha256Hex(live->text);
}

json ReloadPipeline::LastReload() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_reload_;
}

ReloadPipeline::Counters ReloadPipeline::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

void ReloadPipeline::Record(const std::string& outcome, const std::string& sha256, int64_t total_ms,
                            const Status& status, const std::string& applied_via) {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  json record = {
      {"time_unix_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now).count()},
      {"outcome", outcome},
      {"sha256", sha256},
      {"total_ms", total_ms}};
  if (!applied_via.empty()) record["applied_via"] = applied_via;
  if (!status.ok()) {
    record["error"] = {{"code", std::string(proto::ErrorCodeName(status.code()))},
                       {"message", status.message()}};
  }
  std::lock_guard<std::mutex> lock(mu_);
  last_reload_ = std::move(record);
  if (applied_via == "runtime") ++counters_.runtime;
  if (applied_via == "reload") ++counters_.reload;
}

Status ReloadPipeline::CheckSize(const ReloadRequest& request) const {
  const std::size_t limit = settings_.agent.max_config_bytes;
  if (request.config.size() > limit) {
    return Status(ErrorCode::kTooLarge, "config of " + std::to_string(request.config.size()) +
                                            " bytes exceeds max_config_bytes (" +
                                            std::to_string(limit) + ")");
  }
  if (request.config.find('\0') != std::string::npos) {
    return Status(ErrorCode::kInvalidConfig, "config contains a NUL byte; send it as text");
  }
  return Status::Ok();
}

LintResult ReloadPipeline::Lint(const ConfigFacts& facts, bool force) const {
  LintOptions lint_options;
  lint_options.default_backend = settings_.haproxy.default_backend;
  lint_options.method = settings_.haproxy.reload_method;
  lint_options.stats_via_master = settings_.haproxy.stats_via_master;
  lint_options.socket_path = settings_.haproxy.socket_path;
  lint_options.running_as_root = running_as_root_;
  lint_options.force = force;
  lint_options.allow_programs = settings_.security.allow_programs;
  return LintConfig(facts, lint_options);
}

std::string ReloadPipeline::StateFileOf(const std::string& config) const {
  if (!settings_.haproxy.save_server_state) return "";
  return ResolvedServerStateFile(ReadConfigFacts(config),
                                 std::filesystem::path(store_.live_path()).parent_path().string());
}

Status ReloadPipeline::CheckPolicy(const std::string& config, const ConfigFacts& facts,
                                   std::vector<ConfigPath>* paths) const {
  // Before haproxy -c ever reads the file: parsing a lua-load runs the script, and haproxy's
  // messages quote the files a config points at.
  LintResult code = CheckCodeDirectives(facts, settings_.security.allow_programs);
  if (!code.status.ok()) return code.status;
  const std::string dir = std::filesystem::path(store_.live_path()).parent_path().string();
  *paths = ReadConfigPaths(config, dir);
  std::vector<std::string> allowed = settings_.security.allowed_paths;
  allowed.push_back(dir);
  if (Status s = CheckConfigPaths(*paths, allowed); !s.ok()) return s;
  return CheckPathTargets(*paths);
}

std::string ReloadPipeline::Reduce(const std::string& text,
                                   const std::vector<ConfigPath>& paths) const {
  const std::string display = std::filesystem::path(store_.live_path()).filename().string();
  std::string out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    // haproxy's own log names the live file by its full path; -c by the display name.
    for (std::size_t at; (at = line.find(store_.live_path())) != std::string::npos;) {
      line.replace(at, store_.live_path().size(), display);
    }
    out += (pos == 0 ? "" : "\n") + ReduceMessage(line, display, paths);
    pos = nl + 1;
  }
  return out;
}

Status ReloadPipeline::ReduceStatus(const Status& status,
                                    const std::vector<ConfigPath>& paths) const {
  json details = status.details();
  if (details.is_object()) {
    for (const char* key : {"haproxy_output", "reload_error"}) {
      auto it = details.find(key);
      if (it == details.end()) continue;
      if (it->is_array()) {
        for (auto& line : *it) {
          if (line.is_string()) line = Reduce(line.get<std::string>(), paths);
        }
      } else if (it->is_string()) {
        *it = Reduce(it->get<std::string>(), paths);
      }
    }
  }
  return Status(status.code(), Reduce(status.message(), paths), details);
}

Result<ReloadPipeline::Checked> ReloadPipeline::Check(const ReloadRequest& request) {
  if (Status size = CheckSize(request); !size.ok()) return size;
  ConfigFacts facts = ReadConfigFacts(request.config);
  std::vector<ConfigPath> paths;
  if (Status s = CheckPolicy(request.config, facts, &paths); !s.ok()) return s;

  auto candidate = store_.WriteCandidate(request.config);
  if (!candidate.ok()) return candidate.status();
  std::string display = std::filesystem::path(store_.live_path()).filename().string();
  // haproxy's own verdict first: a config it cannot parse is reported in its words, not as
  // whatever the agent's checks would have missed in it.
  ValidateOutcome v = validator_.Validate(*candidate, display);
  if (!v.status.ok()) {
    store_.Discard(*candidate);
    return ReduceStatus(v.status, paths);
  }
  LintResult lint = Lint(facts, request.force);
  if (!lint.status.ok()) {
    store_.Discard(*candidate);
    return lint.status;
  }
  Checked out;
  out.candidate = *candidate;
  out.sha256 = common::Sha256Hex(request.config);
  out.warnings = std::move(lint.warnings);
  out.validate_ms = v.ms;
  out.paths = std::move(paths);
  const bool writes_state = !StateFileOf(request.config).empty();
  for (auto& w : v.warnings) {
    // The agent writes the state file right before the reload; haproxy -c cannot know that.
    if (writes_state && w.find("server state file") != std::string::npos) continue;
    out.warnings.push_back(Reduce(w, out.paths));
  }
  return out;
}

Result<json> ReloadPipeline::Validate(const ReloadRequest& request) {
  auto checked = Check(request);
  if (!checked.ok()) return checked.status();
  store_.Discard(checked->candidate);
  return json{{"valid", true},
              {"sha256", checked->sha256},
              {"warnings", checked->warnings},
              {"validate_ms", checked->validate_ms}};
}

std::map<std::string, ServerExpectation> ReloadPipeline::SaveServerState(
    const std::string& state_file, const DeclaredServers& from, const DeclaredServers& to,
    bool keep_operator_state, std::vector<std::string>* warnings) {
  auto text = control_.WorkerCommand("show servers state");
  auto running = text.ok() ? ParseServersState(*text) : Result<ServersState>(text.status());
  if (!running.ok()) {
    // Nothing true to carry: a file from an earlier reload would bring back old health.
    if (!state_file.empty()) std::filesystem::remove(state_file);
    if (running.status().code() != ErrorCode::kHaproxyUnavailable) {
      warnings->push_back("server state not saved: " + running.status().message());
    }
    return CarryServerState(ServersState(), from, to, keep_operator_state).expect;
  }
  StateCarry carry = CarryServerState(*running, from, to, keep_operator_state);
  if (!state_file.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(state_file).parent_path(), ec);
    Status s = WriteFileAtomically(state_file, carry.file_text);
    if (!s.ok()) {
      std::filesystem::remove(state_file, ec);
      warnings->push_back("server state not saved: " + s.message());
    }
  }
  return std::move(carry.expect);
}

Result<std::vector<std::string>> ReloadPipeline::Verify(
    const DeclaredServers& declared, const std::map<std::string, ServerExpectation>& expect,
    const std::vector<std::string>& stat_backends) {
  // A new worker may refuse or cut an answer for a moment while the old one hands over.
  const auto give_up = Clock::now() + std::chrono::milliseconds(2000);
  std::vector<std::string> stat_commands;
  for (const auto& b : stat_backends) stat_commands.push_back("show stat " + b + " 4 -1");
  if (stat_commands.empty()) stat_commands.push_back("show stat -1 4 -1");
  while (true) {
    auto state_text = control_.WorkerCommand("show servers state");
    auto state = state_text.ok() ? ParseServersState(*state_text)
                                 : Result<ServersState>(state_text.status());
    Result<std::vector<StatRow>> stats = std::vector<StatRow>();
    for (const auto& command : stat_commands) {
      if (!state.ok()) break;
      auto text = control_.WorkerCommand(command);
      auto rows =
          text.ok() ? ParseCompleteShowStat(*text) : Result<std::vector<StatRow>>(text.status());
      if (!rows.ok()) {
        stats = rows.status();
        break;
      }
      stats->insert(stats->end(), rows->begin(), rows->end());
    }
    if (state.ok() && stats.ok()) return VerifyServers(declared, expect, *state, *stats);
    const Status last = state.ok() ? stats.status() : state.status();
    if (last.code() != ErrorCode::kHaproxyUnavailable || Clock::now() >= give_up) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Status ReloadPipeline::ReloadToLive(const std::string& text, const DeclaredServers& running_model) {
  const DeclaredServers live_model = ReadDeclaredServers(text);
  std::vector<std::string> ignored;
  auto expect = SaveServerState(StateFileOf(text), running_model, live_model,
                                /*keep_operator_state=*/false, &ignored);
  Status s = control_.Reload();
  if (!s.ok()) return s;
  auto mismatches = Verify(live_model, expect);
  if (!mismatches.ok()) return mismatches.status();
  if (!mismatches->empty()) {
    std::string list;
    for (const auto& m : *mismatches) list += "\n" + m;
    return Status(ErrorCode::kReloadFailed,
                  "haproxy does not run what the live config declares:" + list);
  }
  return Status::Ok();
}

Result<json> ReloadPipeline::Apply(const ReloadRequest& request) {
  const auto start = Clock::now();
  auto live = store_.ReadLive();
  if (!live.ok()) return live.status();
  const std::string previous_sha = live->exists ? common::Sha256Hex(live->text) : "";
  auto fail = [&](const Status& s, const std::string& outcome = "") {
    Record(outcome.empty() ? std::string(proto::ErrorCodeName(s.code())) : outcome, previous_sha,
           MsSince(start), s);
    return Result<json>(s);
  };
  if (Status size = CheckSize(request); !size.ok()) {
    return fail(size, size.code() == ErrorCode::kTooLarge ? "too_large" : "");
  }
  if (request.expect_sha256 && *request.expect_sha256 != previous_sha) {
    return fail(
        Status(ErrorCode::kConflict,
               "the live config changed: expected sha256 " + *request.expect_sha256 + ", live is " +
                   (previous_sha.empty() ? "(none)" : previous_sha) + "; nothing was changed",
               json{{"sha256", previous_sha}}),
        "conflict");
  }
  // Identical to the live config: nothing to validate or reload. The live file passed these
  // checks when it was applied, and a fleet push that changes nothing must stay cheap.
  if (live->exists && common::Sha256Hex(request.config) == previous_sha) {
    json result = {{"outcome", "unchanged"},
                   {"applied_via", "unchanged"},
                   {"sha256", previous_sha},
                   {"previous_sha256", previous_sha},
                   {"validate_ms", 0},
                   {"reload_ms", 0},
                   {"total_ms", MsSince(start)},
                   {"warnings", Lint(ReadConfigFacts(request.config), true).warnings},
                   {"rolled_back", false}};
    Record("unchanged", previous_sha, MsSince(start), Status::Ok());
    return result;
  }
  const ConfigFacts facts = ReadConfigFacts(request.config);
  std::vector<ConfigPath> paths;
  if (Status policy = CheckPolicy(request.config, facts, &paths); !policy.ok()) return fail(policy);

  std::string reload_reason;
  bool touched = false;
  if (!live->exists) {
    reload_reason = "there is no live config to change at runtime";
  } else if (request.reload_only) {
    reload_reason = "apply_via \"reload\" was asked for";
  } else if (!settings_.haproxy.runtime_updates) {
    reload_reason = "runtime_updates = no in lb-agent.cfg";
  } else {
    const DeclaredServers live_model = ReadDeclaredServers(live->text);
    const DeclaredServers next_model = ReadDeclaredServers(request.config);
    RuntimePlan plan = PlanRuntime(live->text, request.config, live_model, next_model);
    if (plan.runtime) {
      auto done = ApplyRuntime(request, facts, plan, *live, live_model, next_model, start,
                               &reload_reason, &touched);
      if (done) return std::move(*done);
    } else {
      reload_reason = plan.reason;
    }
  }
  auto checked = Check(request);
  if (!checked.ok()) {
    Status s = checked.status();
    if (touched) {
      // Runtime commands changed haproxy before falling back: bring it back to the live file.
      Status back = ReloadToLive(live->text, ReadDeclaredServers(request.config));
      s = Status(s.code(),
                 s.message() + "\n(haproxy was reloaded with the live config, which is unchanged" +
                     (back.ok() ? ")" : ", and that failed: " + back.message() + ")"),
                 s.details());
    }
    store_.ReloadFinished();
    return fail(s);
  }
  return ApplyChecked(request, std::move(*checked), *live, reload_reason, start);
}

std::optional<Result<json>> ReloadPipeline::ApplyRuntime(
    const ReloadRequest& request, const ConfigFacts& facts, const RuntimePlan& plan,
    const ConfigStore::Live& live, const DeclaredServers& live_model,
    const DeclaredServers& next_model, Clock::time_point start, std::string* reload_reason,
    bool* touched) {
  const std::string previous_sha = common::Sha256Hex(live.text);
  auto fail = [&](const Status& s) {
    Record(std::string(proto::ErrorCodeName(s.code())), previous_sha, MsSince(start), s);
    return std::optional<Result<json>>(Result<json>(s));
  };
  // The rest of the config is the live one, which haproxy -c accepted; the server lines are
  // parsed by haproxy itself (add server) and read back (Verify). The agent's own checks still
  // apply (an emptied default backend, for one).
  LintResult lint = Lint(facts, request.force);
  if (!lint.status.ok()) return fail(lint.status);
  auto state_text = control_.WorkerCommand("show servers state");
  auto before =
      state_text.ok() ? ParseServersState(*state_text) : Result<ServersState>(state_text.status());
  if (!before.ok()) {
    *reload_reason =
        "haproxy's running servers could not be read (" + before.status().message() + ")";
    return std::nullopt;
  }
  const StateCarry carry = CarryServerState(*before, live_model, next_model, true);
  auto candidate = store_.WriteCandidate(request.config);
  if (!candidate.ok()) return fail(candidate.status());
  if (Status s = store_.BeginApply(); !s.ok()) {
    store_.Discard(*candidate);
    return fail(Status(ErrorCode::kInternal, s.message() + "; the live config is unchanged"));
  }
  const auto runtime_start = Clock::now();
  std::vector<std::string> sent;
  Status run = RunRuntimePlan(control_, plan, settings_.haproxy.runtime_drain_timeout, &sent);
  *touched = !sent.empty();
  std::vector<std::string> mismatches;
  if (run.ok()) {
    // Runtime commands cannot make a server backup or not: `show stat` (which says) is read for
    // the changed backends only; every backend's servers are compared.
    auto verified = Verify(next_model, carry.expect, plan.backends);
    if (verified.ok()) {
      mismatches = std::move(*verified);
    } else {
      run = verified.status();
    }
  }
  const int64_t runtime_ms = MsSince(runtime_start);
  if (!run.ok() || !mismatches.empty()) {
    store_.Discard(*candidate);  // the marker stays until the reload ends
    if (!run.ok()) {
      *reload_reason = "the runtime API did not take the change: " + run.message();
    } else {
      *reload_reason = "after the runtime commands haproxy did not run what the config declares:";
      for (const auto& m : mismatches) *reload_reason += " " + m + ";";
      reload_reason->pop_back();
    }
    return std::nullopt;
  }
  Status commit = store_.Commit(*candidate);
  if (!commit.ok()) {
    // haproxy runs the new servers but the file could not follow: bring haproxy back to it.
    Status back = ReloadToLive(live.text, next_model);
    store_.ReloadFinished();
    return fail(Status(ErrorCode::kInternal,
                       "the config was valid but could not be written: " + commit.message() +
                           "; the live config is unchanged and haproxy was reloaded with it" +
                           (back.ok() ? "" : " (which failed: " + back.message() + ")")));
  }
  store_.ReloadFinished();
  store_.SetOutcome("applied");
  const std::string sha = common::Sha256Hex(request.config);
  json result = {{"outcome", "applied"},
                 {"applied_via", "runtime"},
                 {"verified", true},
                 {"runtime_commands", sent},
                 {"sha256", sha},
                 {"previous_sha256", previous_sha},
                 {"validate_ms", 0},
                 {"reload_ms", 0},
                 {"runtime_ms", runtime_ms},
                 {"total_ms", MsSince(start)},
                 {"warnings", lint.warnings},
                 {"rolled_back", false}};
  Record("applied", sha, MsSince(start), Status::Ok(), "runtime");
  return Result<json>(std::move(result));
}

Status ReloadPipeline::FinishInterruptedReload() {
  if (!store_.ReloadInterrupted()) return Status::Ok();
  auto live = store_.ReadLive();
  Status s = live.status();
  if (live.ok() && live->exists) {
    // What runs may be half of a runtime apply: the config wins over every carried setting.
    const DeclaredServers model = ReadDeclaredServers(live->text);
    s = ReloadToLive(live->text, model);
  }
  store_.ReloadFinished();
  return s;
}

Result<json> ReloadPipeline::ApplyChecked(const ReloadRequest& request, Checked checked,
                                          const ConfigStore::Live& live,
                                          const std::string& reload_reason,
                                          Clock::time_point start) {
  const std::string previous_sha = live.exists ? common::Sha256Hex(live.text) : "";
  const DeclaredServers live_model = ReadDeclaredServers(live.exists ? live.text : "");
  const DeclaredServers next_model = ReadDeclaredServers(request.config);
  const auto expect = SaveServerState(StateFileOf(request.config), live_model, next_model,
                                      /*keep_operator_state=*/true, &checked.warnings);
  Status commit = store_.Commit(checked.candidate);
  if (!commit.ok()) {
    store_.ReloadFinished();
    Status s(ErrorCode::kInternal, "the config was valid but could not be written: " +
                                       commit.message() + "; the live config is unchanged");
    Record("write_failed", previous_sha, MsSince(start), s);
    return s;
  }
  const auto reload_start = Clock::now();
  Status reload = control_.Reload();
  const int64_t reload_ms = MsSince(reload_start);
  json mismatches = json::array();
  bool verified = false;
  if (reload.ok()) {
    auto compared = Verify(next_model, expect);
    if (!compared.ok()) {
      checked.warnings.push_back("the running servers could not be read to verify the reload: " +
                                 compared.status().message());
    } else if (compared->empty()) {
      verified = true;
    } else {
      std::string list;
      for (const auto& m : *compared) {
        mismatches.push_back(m);
        list += "\n" + m;
      }
      reload = Status(ErrorCode::kReloadFailed,
                      "haproxy reloaded but does not run what the config declares:" + list);
    }
  }
  if (reload.ok()) {
    store_.ReloadFinished();
    store_.SetOutcome("applied");
    json result = {{"outcome", "applied"},
                   {"applied_via", "reload"},
                   {"verified", verified},
                   {"sha256", checked.sha256},
                   {"previous_sha256", previous_sha},
                   {"validate_ms", checked.validate_ms},
                   {"reload_ms", reload_ms},
                   {"total_ms", MsSince(start)},
                   {"warnings", checked.warnings},
                   {"rolled_back", false}};
    if (!reload_reason.empty()) result["reload_reason"] = reload_reason;
    Record("applied", checked.sha256, MsSince(start), Status::Ok(), "reload");
    return result;
  }

  // Roll back: the previous file, and haproxy reloaded on it.
  Status restore = live.exists ? store_.Replace(live.text) : Status::Ok();
  if (!live.exists) std::filesystem::remove(store_.live_path());
  Status again = restore;
  if (restore.ok() && live.exists) again = ReloadToLive(live.text, next_model);
  const bool rolled_back = restore.ok() && (again.ok() || !live.exists);
  store_.ReloadFinished();
  // haproxy's log lines about the new config may quote the files it names.
  reload = ReduceStatus(reload, checked.paths);
  store_.SetOutcome(rolled_back ? "rolled_back" : "failed");
  std::string message = "haproxy did not take the new config: " + reload.message();
  if (rolled_back) {
    message += "\nthe previous config was restored" +
               std::string(live.exists ? " and haproxy reloaded with it" : "");
  } else {
    message += "\nrollback failed too: " + again.message();
  }
  json details = {{"rolled_back", rolled_back},
                  {"sha256", LiveSha256()},
                  {"reload_error", reload.message()},
                  {"reload_ms", reload_ms}};
  if (!mismatches.empty()) details["mismatches"] = mismatches;
  Status s(ErrorCode::kReloadFailed, message, details);
  Record(rolled_back ? "rolled_back" : "failed", LiveSha256(), MsSince(start), s, "reload");
  return s;
}

}  // namespace lb::agent
