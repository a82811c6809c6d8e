#include "reload_pipeline.h"

#include <filesystem>

#include "config_lint.h"
#include "lb/proto/codec.h"
#include "sha256.h"

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
  ReloadRequest out;
  auto config = args.find("config");
  if (config == args.end() || !config->is_string()) {
    return Status(ErrorCode::kBadRequest,
                  "argument \"config\" (the whole haproxy config, a string) is required");
  }
  out.config = config->get<std::string>();
  auto expect = proto::StringArg(args, "expect_sha256", "");
  if (!expect.ok()) return expect.status();
  if (!expect->empty()) out.expect_sha256 = *expect;
  auto force = proto::BoolArg(args, "force", false);
  if (!force.ok()) return force.status();
  out.force = *force;
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
  return Sha256Hex(live->text);
}

json ReloadPipeline::LastReload() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_reload_;
}

void ReloadPipeline::Record(const std::string& outcome, const std::string& sha256, int64_t total_ms,
                            const Status& status) {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  json record = {
      {"time_unix_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now).count()},
      {"outcome", outcome},
      {"sha256", sha256},
      {"total_ms", total_ms}};
  if (!status.ok()) {
    record["error"] = {{"code", std::string(proto::ErrorCodeName(status.code()))},
                       {"message", status.message()}};
  }
  std::lock_guard<std::mutex> lock(mu_);
  last_reload_ = std::move(record);
}

Status ReloadPipeline::CheckSize(const ReloadRequest& request) const {
  const std::size_t limit = settings_.agent.max_config_bytes;
  if (request.config.size() > limit) {
    return Status(ErrorCode::kTooLarge, "config of " + std::to_string(request.config.size()) +
                                            " bytes exceeds max_config_bytes (" +
                                            std::to_string(limit) + ")");
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

Result<ReloadPipeline::Checked> ReloadPipeline::Check(const ReloadRequest& request) {
  if (Status size = CheckSize(request); !size.ok()) return size;
  if (request.config.find('\0') != std::string::npos) {
    return Status(ErrorCode::kInvalidConfig, "config contains a NUL byte; send it as text");
  }
  ConfigFacts facts = ReadConfigFacts(request.config);
  LintResult lint = Lint(facts, request.force);
  if (!lint.status.ok()) return lint.status;

  auto candidate = store_.WriteCandidate(request.config);
  if (!candidate.ok()) return candidate.status();
  std::string display = std::filesystem::path(store_.live_path()).filename().string();
  ValidateOutcome v = validator_.Validate(*candidate, display);
  if (!v.status.ok()) {
    store_.Discard(*candidate);
    return v.status;
  }
  Checked out;
  out.candidate = *candidate;
  out.sha256 = Sha256Hex(request.config);
  out.warnings = std::move(lint.warnings);
  out.validate_ms = v.ms;
  if (settings_.haproxy.save_server_state && !facts.server_state_file.empty()) {
    // Relative to the config's directory, where haproxy runs (see Supervisor).
    std::filesystem::path state = ServerStateFilePath(facts);
    out.state_file = (std::filesystem::path(store_.live_path()).parent_path() / state)
                         .lexically_normal()
                         .string();
  }
  for (auto& w : v.warnings) {
    // The agent writes the state file right before the reload; haproxy -c cannot know that.
    if (!out.state_file.empty() && w.find("server state file") != std::string::npos) continue;
    out.warnings.push_back(std::move(w));
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

void ReloadPipeline::SaveServerState(const std::string& path, std::vector<std::string>* warnings) {
  auto state = control_.WorkerCommand("show servers state");
  if (!state.ok()) {
    // Nothing to save when haproxy is down; the new worker starts from its own defaults.
    if (state.status().code() != ErrorCode::kHaproxyUnavailable) {
      warnings->push_back("server state not saved: " + state.status().message());
    }
    return;
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  Status s = WriteFileAtomically(path, *state);
  if (!s.ok()) warnings->push_back("server state not saved: " + s.message());
}

Result<json> ReloadPipeline::Apply(const ReloadRequest& request) {
  const auto start = Clock::now();
  auto live = store_.ReadLive();
  if (!live.ok()) return live.status();
  const std::string previous_sha = live->exists ? Sha256Hex(live->text) : "";
  if (Status size = CheckSize(request); !size.ok()) {
    Record("too_large", previous_sha, MsSince(start), size);
    return size;
  }
  if (request.expect_sha256 && *request.expect_sha256 != previous_sha) {
    Status s(ErrorCode::kConflict,
             "the live config changed: expected sha256 " + *request.expect_sha256 + ", live is " +
                 (previous_sha.empty() ? "(none)" : previous_sha) + "; nothing was changed",
             json{{"sha256", previous_sha}});
    Record("conflict", previous_sha, MsSince(start), s);
    return s;
  }
  // Identical to the live config: nothing to validate or reload. The live file passed these
  // checks when it was applied, and a fleet push that changes nothing must stay cheap.
  if (live->exists && Sha256Hex(request.config) == previous_sha) {
    json result = {{"outcome", "unchanged"},
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
  auto checked = Check(request);
  if (!checked.ok()) {
    Status s = checked.status();
    Record(std::string(proto::ErrorCodeName(s.code())), previous_sha, MsSince(start), s);
    return s;
  }
  return ApplyChecked(request, std::move(*checked), start);
}

Status ReloadPipeline::FinishInterruptedReload() {
  if (!store_.ReloadInterrupted()) return Status::Ok();
  auto live = store_.ReadLive();
  Status s = live.ok() && live->exists ? control_.Reload() : live.status();
  store_.ReloadFinished();
  return s;
}

Result<json> ReloadPipeline::ApplyChecked(const ReloadRequest& request, Checked checked,
                                          Clock::time_point start) {
  auto live = store_.ReadLive();
  if (!live.ok()) {
    store_.Discard(checked.candidate);
    return live.status();
  }
  const std::string previous_sha = live->exists ? Sha256Hex(live->text) : "";
  if (!checked.state_file.empty()) SaveServerState(checked.state_file, &checked.warnings);
  Status commit = store_.Commit(checked.candidate);
  if (!commit.ok()) {
    Status s(ErrorCode::kInternal, "the config was valid but could not be written: " +
                                       commit.message() + "; the live config is unchanged");
    Record("write_failed", previous_sha, MsSince(start), s);
    return s;
  }
  const auto reload_start = Clock::now();
  Status reload = control_.Reload();
  const int64_t reload_ms = MsSince(reload_start);
  if (reload.ok()) {
    store_.ReloadFinished();
    json result = {{"outcome", "applied"},
                   {"sha256", checked.sha256},
                   {"previous_sha256", previous_sha},
                   {"validate_ms", checked.validate_ms},
                   {"reload_ms", reload_ms},
                   {"total_ms", MsSince(start)},
                   {"warnings", checked.warnings},
                   {"rolled_back", false}};
    Record("applied", checked.sha256, MsSince(start), Status::Ok());
    return result;
  }

  // Roll back: the previous file, and haproxy reloaded on it.
  (void)request;
  Status restore = live->exists ? store_.Replace(live->text) : Status::Ok();
  if (!live->exists) std::filesystem::remove(store_.live_path());
  Status again = restore.ok() && live->exists ? control_.Reload() : restore;
  const bool rolled_back = restore.ok() && (again.ok() || !live->exists);
  store_.ReloadFinished();
  std::string message = "haproxy did not take the new config: " + reload.message();
  if (rolled_back) {
    message += "\nthe previous config was restored" +
               std::string(live->exists ? " and haproxy reloaded with it" : "");
  } else {
    message += "\nrollback failed too: " + again.message();
  }
  Status s(ErrorCode::kReloadFailed, message,
           json{{"rolled_back", rolled_back},
                {"sha256", LiveSha256()},
                {"reload_error", reload.message()},
                {"reload_ms", reload_ms}});
  Record(rolled_back ? "rolled_back" : "failed", LiveSha256(), MsSince(start), s);
  return s;
}

}  // namespace lb::agent
