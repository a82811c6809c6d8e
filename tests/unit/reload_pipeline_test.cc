// ReloadPipeline's decisions, with a fake validator and a fake haproxy over a real ConfigStore.
#include "reload_pipeline.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "sha256.h"
#include "test_util.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;
using test_util::ListDir;
using test_util::ReadFile;
using test_util::TempDir;
using test_util::WriteFile;

// haproxy -c as configured: OK, or invalid_config with haproxy-like alert lines.
class FakeValidator : public ConfigValidator {
 public:
  ValidateOutcome Validate(const std::string& path, const std::string& display_name) override {
    ++calls;
    last_path = path;
    last_display_name = display_name;
    text_seen = ReadFile(path);
    ValidateOutcome out;
    out.status = result;
    out.warnings = warnings;
    out.ms = 3;
    return out;
  }

  Status result;
  std::vector<std::string> warnings;
  int calls = 0;
  std::string last_path;
  std::string last_display_name;
  std::string text_seen;
};

// haproxy as configured: Reload answers the queued statuses in order (then OK); it records what
// the live file and the server-state file held at the moment of each reload.
class FakeControl : public HaproxyControl {
 public:
  FakeControl(std::string live_path, std::string state_path)
      : live_path_(std::move(live_path)), state_path_(std::move(state_path)) {}

  proto::Result<std::string> WorkerCommand(std::string_view command) override {
    commands.emplace_back(command);
    if (command == "show servers state") return server_state;
    return Status(ErrorCode::kHaproxyUnavailable, "unexpected command");
  }

  Status Reload() override {
    live_at_reload.push_back(ReadFile(live_path_));
    state_at_reload.push_back(state_path_.empty() ? "" : ReadFile(state_path_));
    Status out;
    if (reload_calls < static_cast<int>(reload_results.size())) out = reload_results[reload_calls];
    ++reload_calls;
    return out;
  }

  json Describe() override { return json::object(); }

  std::vector<Status> reload_results;
  proto::Result<std::string> server_state = std::string(
      "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state\n3 app 1 s1 127.0.0.1 2\n");
  int reload_calls = 0;
  std::vector<std::string> commands;
  std::vector<std::string> live_at_reload;
  std::vector<std::string> state_at_reload;

 private:
  std::string live_path_;
  std::string state_path_;
};

// A config the agent accepts in managed mode (default_backend "app"); with a server-state-file
// in `global_extra` it draws no warning either.
std::string Config(const std::string& server = "s1 127.0.0.1:8080",
                   const std::string& global_extra = "") {
  return "global\n    hard-stop-after 30s\n" + global_extra +
         "defaults\n    mode http\n    option idle-close-on-response\n"
         "    load-server-state-from-file global\n"
         "backend app\n    server " +
         server + "\n";
}

class ReloadPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    std::filesystem::create_directory(tmp_.File("etc"));
    live_ = tmp_.File("etc/haproxy.cfg");
    state_ = tmp_.File("state/servers.state");
    settings_.path = tmp_.File("lb-agent.cfg");
    settings_.agent.max_config_bytes = 4096;
    settings_.agent.history_dir = tmp_.File("history");
    settings_.agent.history_keep = 5;
    settings_.haproxy.config_file_path = live_;
    settings_.haproxy.default_backend = "app";
    settings_.haproxy.reload_method = common::ReloadMethod::kManaged;
    settings_.haproxy.save_server_state = true;
    store_ = std::make_unique<ConfigStore>(live_, settings_.agent.history_dir,
                                           settings_.agent.history_keep);
    control_ = std::make_unique<FakeControl>(live_, state_);
    pipeline_ = std::make_unique<ReloadPipeline>(settings_, *store_, validator_, *control_, false);
    previous_ = Config("s0 127.0.0.1:8000");
    WriteFile(live_, previous_);
  }

  ReloadRequest Request(std::string config) {
    ReloadRequest r;
    r.config = std::move(config);
    return r;
  }

  int TempFiles() const {
    int n = 0;
    for (const auto& name : ListDir(tmp_.File("etc"))) {
      n += name.rfind(ConfigStore::kTempPrefix, 0) == 0 ? 1 : 0;
    }
    return n;
  }

  TempDir tmp_;
  std::string live_;
  std::string state_;
  std::string previous_;
  common::Settings settings_;
  FakeValidator validator_;
  std::unique_ptr<ConfigStore> store_;
  std::unique_ptr<FakeControl> control_;
  std::unique_ptr<ReloadPipeline> pipeline_;
};

TEST_F(ReloadPipelineTest, AppliesAValidConfig) {
  const std::string next = Config("s1 127.0.0.1:8081");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["outcome"], "applied");
  EXPECT_EQ((*result)["sha256"], Sha256Hex(next));
  EXPECT_EQ((*result)["previous_sha256"], Sha256Hex(previous_));
  EXPECT_EQ((*result)["rolled_back"], false);
  EXPECT_TRUE((*result)["warnings"].is_array());
  EXPECT_EQ(ReadFile(live_), next);
  EXPECT_EQ(control_->reload_calls, 1);
  ASSERT_EQ(control_->live_at_reload.size(), 1u);
  EXPECT_EQ(control_->live_at_reload[0], next);  // the new file is live when haproxy reloads
  EXPECT_EQ(validator_.calls, 1);
  EXPECT_EQ(validator_.text_seen, next);
  EXPECT_EQ(validator_.last_display_name, "haproxy.cfg");
  EXPECT_EQ(pipeline_->LiveSha256(), Sha256Hex(next));
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_EQ(pipeline_->LastReload()["outcome"], "applied");
}

TEST_F(ReloadPipelineTest, TooLargeIsRefusedBeforeValidation) {
  auto result = pipeline_->Apply(Request(Config() + "# " + std::string(5000, 'x') + "\n"));
  EXPECT_EQ(result.status().code(), ErrorCode::kTooLarge) << result.status().ToString();
  EXPECT_EQ(validator_.calls, 0);
  EXPECT_EQ(control_->reload_calls, 0);
  EXPECT_EQ(ReadFile(live_), previous_);
  EXPECT_EQ(TempFiles(), 0);
}

TEST_F(ReloadPipelineTest, SizeLimitIsCheckedBeforeExpectSha256) {
  // reload_pipeline.h: "size limit -> expect_sha256 -> agent checks -> ...".
  ReloadRequest request = Request(Config() + "# " + std::string(5000, 'x') + "\n");
  request.expect_sha256 = std::string(64, '0');
  auto result = pipeline_->Apply(request);
  EXPECT_EQ(result.status().code(), ErrorCode::kTooLarge) << result.status().ToString();
  EXPECT_EQ(validator_.calls, 0);
  EXPECT_EQ(ReadFile(live_), previous_);
}

TEST_F(ReloadPipelineTest, InvalidConfigLeavesLiveFileAndHaproxyAlone) {
  validator_.result =
      Status(ErrorCode::kInvalidConfig,
             "[ALERT] haproxy.cfg:9 : unknown keyword 'sever' in 'backend' section");
  auto result = pipeline_->Apply(Request(Config("s1 127.0.0.1:8081")));
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidConfig) << result.status().ToString();
  EXPECT_NE(result.status().message().find("sever"), std::string::npos);
  EXPECT_EQ(validator_.calls, 1);
  EXPECT_EQ(control_->reload_calls, 0);
  EXPECT_TRUE(control_->commands.empty());
  EXPECT_EQ(ReadFile(live_), previous_);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_TRUE(ListDir(settings_.agent.history_dir).empty());
}

TEST_F(ReloadPipelineTest, NulByteIsInvalidConfig) {
  auto result = pipeline_->Apply(Request(Config() + std::string("\0", 1)));
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidConfig) << result.status().ToString();
  EXPECT_EQ(validator_.calls, 0);
  EXPECT_EQ(ReadFile(live_), previous_);
}

TEST_F(ReloadPipelineTest, SameConfigTwiceIsUnchanged) {
  const std::string next = Config("s1 127.0.0.1:8081");
  auto first = pipeline_->Apply(Request(next));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ((*first)["outcome"], "applied");
  auto second = pipeline_->Apply(Request(next));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ((*second)["outcome"], "unchanged");
  EXPECT_EQ((*second)["sha256"], Sha256Hex(next));
  EXPECT_EQ(control_->reload_calls, 1);
  EXPECT_EQ(ReadFile(live_), next);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_EQ(ListDir(settings_.agent.history_dir).size(), 1u);
}

TEST_F(ReloadPipelineTest, ExpectSha256MismatchIsConflictAndChangesNothing) {
  ReloadRequest request = Request(Config("s1 127.0.0.1:8081"));
  request.expect_sha256 = Sha256Hex("some other config");
  auto result = pipeline_->Apply(request);
  ASSERT_EQ(result.status().code(), ErrorCode::kConflict) << result.status().ToString();
  EXPECT_EQ(result.status().details()["sha256"], Sha256Hex(previous_));
  EXPECT_EQ(validator_.calls, 0);
  EXPECT_EQ(control_->reload_calls, 0);
  EXPECT_EQ(ReadFile(live_), previous_);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_TRUE(ListDir(settings_.agent.history_dir).empty());
}

TEST_F(ReloadPipelineTest, ExpectSha256MatchIsApplied) {
  const std::string next = Config("s1 127.0.0.1:8081");
  ReloadRequest request = Request(next);
  request.expect_sha256 = Sha256Hex(previous_);
  auto result = pipeline_->Apply(request);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["outcome"], "applied");
  EXPECT_EQ(ReadFile(live_), next);
  EXPECT_EQ(control_->reload_calls, 1);
}

TEST_F(ReloadPipelineTest, ReloadFailingOnceRollsBack) {
  control_->reload_results = {Status(ErrorCode::kReloadFailed, "new worker exited with code 1")};
  auto result = pipeline_->Apply(Request(Config("s1 127.0.0.1:8081")));
  ASSERT_EQ(result.status().code(), ErrorCode::kReloadFailed) << result.status().ToString();
  EXPECT_EQ(result.status().details()["rolled_back"], true);
  EXPECT_EQ(result.status().details()["sha256"], Sha256Hex(previous_));
  EXPECT_NE(result.status().message().find("new worker exited with code 1"), std::string::npos)
      << result.status().message();
  EXPECT_EQ(ReadFile(live_), previous_);
  EXPECT_EQ(control_->reload_calls, 2);
  ASSERT_EQ(control_->live_at_reload.size(), 2u);
  EXPECT_EQ(control_->live_at_reload[1], previous_);  // the second reload runs the old file
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_EQ(pipeline_->LastReload()["outcome"], "rolled_back");
}

TEST_F(ReloadPipelineTest, ReloadFailingTwiceReportsNoRollback) {
  control_->reload_results = {Status(ErrorCode::kReloadFailed, "first"),
                              Status(ErrorCode::kReloadFailed, "second")};
  auto result = pipeline_->Apply(Request(Config("s1 127.0.0.1:8081")));
  ASSERT_EQ(result.status().code(), ErrorCode::kReloadFailed) << result.status().ToString();
  EXPECT_EQ(result.status().details()["rolled_back"], false);
  EXPECT_EQ(control_->reload_calls, 2);
  EXPECT_EQ(ReadFile(live_), previous_);  // the file is restored even though haproxy refused it
}

TEST_F(ReloadPipelineTest, SavesServerStateBeforeReload) {
  const std::string next = Config("s1 127.0.0.1:8081", "    server-state-file " + state_ + "\n");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["warnings"], json::array());
  EXPECT_EQ(control_->commands, std::vector<std::string>{"show servers state"});
  ASSERT_EQ(control_->state_at_reload.size(), 1u);
  EXPECT_EQ(control_->state_at_reload[0], *control_->server_state);
  EXPECT_EQ(ReadFile(state_), *control_->server_state);
}

TEST_F(ReloadPipelineTest, ServerStateIsNotSavedWhenDisabled) {
  settings_.haproxy.save_server_state = false;
  const std::string next = Config("s1 127.0.0.1:8081", "    server-state-file " + state_ + "\n");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_TRUE(control_->commands.empty());
  EXPECT_FALSE(std::filesystem::exists(state_));
}

TEST_F(ReloadPipelineTest, HaproxyDownSkipsServerStateSilently) {
  control_->server_state = Status(ErrorCode::kHaproxyUnavailable, "not running");
  const std::string next = Config("s1 127.0.0.1:8081", "    server-state-file " + state_ + "\n");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["warnings"], json::array());
  EXPECT_EQ(control_->reload_calls, 1);
}

TEST_F(ReloadPipelineTest, MissingDefaultBackendIsInvalidUnlessForced) {
  const std::string other =
      "global\n    hard-stop-after 30s\nbackend web\n    server w1 127.0.0.1:9000\n";
  auto refused = pipeline_->Apply(Request(other));
  EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidConfig) << refused.status().ToString();
  EXPECT_EQ(validator_.calls, 0);
  EXPECT_EQ(control_->reload_calls, 0);
  EXPECT_EQ(ReadFile(live_), previous_);

  ReloadRequest forced = Request(other);
  forced.force = true;
  auto applied = pipeline_->Apply(forced);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ((*applied)["outcome"], "applied");
  EXPECT_EQ(ReadFile(live_), other);
  EXPECT_EQ(control_->reload_calls, 1);
}

TEST_F(ReloadPipelineTest, HistoryGetsThePreviousVersion) {
  auto result = pipeline_->Apply(Request(Config("s1 127.0.0.1:8081")));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  auto names = ListDir(settings_.agent.history_dir);
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(ReadFile(settings_.agent.history_dir + "/" + names[0]), previous_);
}

TEST_F(ReloadPipelineTest, ValidateChangesNothing) {
  const std::string next = Config("s1 127.0.0.1:8081", "    server-state-file " + state_ + "\n");
  auto result = pipeline_->Validate(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["valid"], true);
  EXPECT_EQ((*result)["sha256"], Sha256Hex(next));
  EXPECT_EQ(validator_.calls, 1);
  EXPECT_EQ(validator_.text_seen, next);
  EXPECT_EQ(control_->reload_calls, 0);
  EXPECT_TRUE(control_->commands.empty());
  EXPECT_EQ(ReadFile(live_), previous_);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_TRUE(ListDir(settings_.agent.history_dir).empty());
  EXPECT_FALSE(std::filesystem::exists(state_));
  EXPECT_TRUE(pipeline_->LastReload().is_null());
}

TEST_F(ReloadPipelineTest, ValidateReportsTheErrorAReloadWouldGive) {
  validator_.result = Status(ErrorCode::kInvalidConfig, "[ALERT] bad");
  auto result = pipeline_->Validate(Request(Config()));
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidConfig);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_EQ(ReadFile(live_), previous_);
}

TEST_F(ReloadPipelineTest, CodeDirectiveIsRefusedAndTheLiveFileStaysByteIdentical) {
  // Bytes a text round trip could change (CRLF, no final newline, trailing spaces) make the
  // comparison strict.
  previous_ = Config("s0 127.0.0.1:8000") + "# kept as it is \r\n  \t";
  WriteFile(live_, previous_);
  const std::string next = Config("s1 127.0.0.1:8081", "    lua-load /etc/haproxy/x.lua\n");
  auto result = pipeline_->Apply(Request(next));
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidConfig) << result.status().ToString();
  EXPECT_NE(result.status().message().find("line 3: lua-load"), std::string::npos)
      << result.status().message();
  EXPECT_NE(result.status().message().find("[security] allow_programs = yes"), std::string::npos)
      << result.status().message();
  EXPECT_EQ(validator_.calls, 0) << "refused before haproxy -c runs";
  EXPECT_EQ(control_->reload_calls, 0);
  EXPECT_TRUE(control_->commands.empty());
  EXPECT_EQ(ReadFile(live_), previous_);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_TRUE(ListDir(settings_.agent.history_dir).empty());
  EXPECT_EQ(pipeline_->LastReload()["outcome"], "invalid_config");
  // force does not override the policy.
  ReloadRequest forced = Request(next);
  forced.force = true;
  EXPECT_EQ(pipeline_->Apply(forced).status().code(), ErrorCode::kInvalidConfig);
  EXPECT_EQ(ReadFile(live_), previous_);
}

TEST_F(ReloadPipelineTest, ValidateGivesTheSameCodeDirectiveRefusal) {
  const std::string next =
      Config("s1 127.0.0.1:8081") + "program sidecar\n    command /usr/bin/env sh -c id\n";
  auto validated = pipeline_->Validate(Request(next));
  auto applied = pipeline_->Apply(Request(next));
  EXPECT_EQ(validated.status().code(), ErrorCode::kInvalidConfig);
  EXPECT_EQ(validated.status().message(), applied.status().message());
  EXPECT_NE(validated.status().message().find("line 9: program"), std::string::npos)
      << validated.status().message();
  EXPECT_NE(validated.status().message().find("line 10: command"), std::string::npos)
      << validated.status().message();
  EXPECT_EQ(validator_.calls, 0);
  EXPECT_EQ(ReadFile(live_), previous_);
}

TEST_F(ReloadPipelineTest, AllowProgramsAppliesCodeDirectivesWithAWarning) {
  settings_.security.allow_programs = true;  // the pipeline reads the settings it was given
  const std::string next = Config("s1 127.0.0.1:8081", "    lua-load /etc/haproxy/x.lua\n");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["outcome"], "applied");
  EXPECT_EQ(ReadFile(live_), next);
  EXPECT_EQ(validator_.calls, 1);
  bool warned = false;
  for (const auto& w : (*result)["warnings"]) {
    warned = warned || w.get<std::string>().find("line 3: lua-load") != std::string::npos;
  }
  EXPECT_TRUE(warned) << (*result)["warnings"].dump();
}

TEST(ReloadRequestFromArgsTest, MissingConfigIsBadRequest) {
  auto r = ReloadRequestFromArgs(json::object());
  EXPECT_EQ(r.status().code(), ErrorCode::kBadRequest);
  EXPECT_NE(r.status().message().find("config"), std::string::npos);
}

TEST(ReloadRequestFromArgsTest, WrongTypesAreBadRequest) {
  const json cases[] = {
      {{"config", 5}},
      {{"config", json::array({"global"})}},
      {{"config", "global\n"}, {"force", "yes"}},
      {{"config", "global\n"}, {"expect_sha256", 12}},
  };
  for (const json& args : cases) {
    auto r = ReloadRequestFromArgs(args);
    EXPECT_EQ(r.status().code(), ErrorCode::kBadRequest) << args.dump();
  }
  auto force = ReloadRequestFromArgs({{"config", "x"}, {"force", 1}});
  EXPECT_NE(force.status().message().find("force"), std::string::npos) << force.status().message();
}

TEST(ReloadRequestFromArgsTest, ReadsAllFields) {
  auto r = ReloadRequestFromArgs(
      {{"config", "global\n"}, {"expect_sha256", std::string(64, 'a')}, {"force", true}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->config, "global\n");
  ASSERT_TRUE(r->expect_sha256.has_value());
  EXPECT_EQ(*r->expect_sha256, std::string(64, 'a'));
  EXPECT_TRUE(r->force);
  auto minimal = ReloadRequestFromArgs({{"config", ""}});
  ASSERT_TRUE(minimal.ok());
  EXPECT_FALSE(minimal->expect_sha256.has_value());
  EXPECT_FALSE(minimal->force);
}

TEST_F(ReloadPipelineTest, AppliedAndRolledBackReloadsCloseTheReloadWindow) {
  ASSERT_TRUE(pipeline_->Apply(Request(Config("s1 127.0.0.1:8081"))).ok());
  EXPECT_FALSE(store_->ReloadInterrupted());
  control_->reload_results = {Status(), Status(ErrorCode::kReloadFailed, "cannot bind"), Status()};
  auto failed = pipeline_->Apply(Request(Config("s2 127.0.0.1:8082")));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), ErrorCode::kReloadFailed);
  EXPECT_FALSE(store_->ReloadInterrupted());
}

TEST_F(ReloadPipelineTest, InterruptedReloadIsFinishedWithTheLiveFileAtStart) {
  // A run killed after the rename and before haproxy's reload left the marker behind.
  const std::string next = Config("s1 127.0.0.1:8081");
  auto candidate = store_->WriteCandidate(next);
  ASSERT_TRUE(candidate.ok()) << candidate.status().ToString();
  ASSERT_TRUE(store_->Commit(*candidate).ok());
  ConfigStore store(live_, settings_.agent.history_dir, settings_.agent.history_keep);
  ReloadPipeline restarted(settings_, store, validator_, *control_, false);
  ASSERT_TRUE(store.ReloadInterrupted());
  EXPECT_TRUE(restarted.FinishInterruptedReload().ok());
  EXPECT_EQ(control_->reload_calls, 1);
  ASSERT_EQ(control_->live_at_reload.size(), 1u);
  EXPECT_EQ(control_->live_at_reload[0], next);
  EXPECT_FALSE(store.ReloadInterrupted());
  EXPECT_TRUE(restarted.FinishInterruptedReload().ok());
  EXPECT_EQ(control_->reload_calls, 1) << "nothing left to finish";
}

}  // namespace
}  // namespace lb::agent
