// ReloadPipeline's decisions, with a fake validator and a fake haproxy over a real ConfigStore.
#include "reload_pipeline.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "lb/common/sha256.h"
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

// A small haproxy: Reload answers the queued statuses in order (then OK) and, when OK, runs
// exactly the servers the live file declares (with `on_reload` to make it do otherwise); the
// runtime commands the agent sends change those servers as haproxy would. It records what the
// live file and the server-state file held at the moment of each reload.
class FakeControl : public HaproxyControl {
 public:
  struct Srv {
    std::string ip;
    int port = 0;
    int weight = 1;
    int iweight = 1;
    bool maint = false;
    bool backup = false;
  };
  using Servers = std::map<std::string, std::map<std::string, Srv>>;  // backend -> name -> srv

  FakeControl(std::string live_path, std::string state_path)
      : live_path_(std::move(live_path)), state_path_(std::move(state_path)) {
    Load();
  }

  proto::Result<std::string> WorkerCommand(std::string_view command) override {
    commands.emplace_back(command);
    if (!running) return Status(ErrorCode::kHaproxyUnavailable, "not running");
    if (command == "show servers state") return ShowServersState();
    if (command == "show stat -1 4 -1") return ShowStat("");
    if (command.rfind("show stat ", 0) == 0 && command.size() > 15 &&
        command.substr(command.size() - 5) == " 4 -1") {
      return ShowStat(std::string(command.substr(10, command.size() - 15)));
    }
    if (command.rfind("del server ", 0) == 0) return Run(std::string(command));
    return Status(ErrorCode::kHaproxyUnavailable, "unexpected command");
  }

  proto::Result<std::string> WorkerCommands(const std::vector<std::string>& batch) override {
    if (!running) return Status(ErrorCode::kHaproxyUnavailable, "not running");
    std::string out;
    for (const auto& c : batch) {
      runtime_commands.push_back(c);
      auto answer = Run(c);
      out += *answer + "\n";
    }
    return out;
  }

  Status Reload() override {
    live_at_reload.push_back(ReadFile(live_path_));
    state_at_reload.push_back(
        state_path_.empty() || !std::filesystem::exists(state_path_) ? "" : ReadFile(state_path_));
    Status out;
    if (reload_calls < static_cast<int>(reload_results.size())) out = reload_results[reload_calls];
    ++reload_calls;
    if (out.ok()) {
      Load();
      if (on_reload) on_reload(servers);
    }
    return out;
  }

  json Describe() override { return json::object(); }

  // Runs what the live file declares.
  void Load() {
    servers.clear();
    if (!std::filesystem::exists(live_path_)) return;
    for (const auto& b : ReadDeclaredServers(ReadFile(live_path_)).backends) {
      for (const auto& s : b.servers) {
        servers[b.name][s.name] = Srv{s.ip, s.port, s.weight, s.weight, s.disabled, s.backup};
      }
    }
  }

  std::vector<Status> reload_results;
  std::function<void(Servers&)> on_reload;
  Servers servers;
  bool running = true;
  std::string refuse;    // a runtime command containing this is refused
  std::string ignore;    // a runtime command containing this is accepted and does nothing
  int busy_deletes = 0;  // `del server` answers "still has connections" this many times
  int reload_calls = 0;
  std::vector<std::string> commands;          // WorkerCommand calls
  std::vector<std::string> runtime_commands;  // commands of WorkerCommands batches
  std::vector<std::string> live_at_reload;
  std::vector<std::string> state_at_reload;

 private:
  proto::Result<std::string> Run(const std::string& command) {
    if (!refuse.empty() && command.find(refuse) != std::string::npos) {
      return std::string("Already exists a server with the same name in backend.\n");
    }
    if (!ignore.empty() && command.find(ignore) != std::string::npos) return std::string();
    std::istringstream in(command);
    std::vector<std::string> w;
    for (std::string x; in >> x;) w.push_back(x);
    auto target = [&](std::size_t i) -> Srv* {
      std::size_t slash = w[i].find('/');
      auto b = servers.find(w[i].substr(0, slash));
      if (b == servers.end()) return nullptr;
      auto s = b->second.find(w[i].substr(slash + 1));
      return s == b->second.end() ? nullptr : &s->second;
    };
    if (w.size() >= 4 && w[0] == "add" && w[1] == "server") {
      std::size_t slash = w[2].find('/');
      Srv s;
      DeclaredServer parsed;
      auto declared = ReadDeclaredServers("backend x\n server y " + w[3] + "\n");
      s.ip = declared.backends[0].servers[0].ip;
      s.port = declared.backends[0].servers[0].port;
      s.maint = true;  // a runtime server starts in maintenance unless `enabled`
      for (std::size_t i = 4; i < w.size(); ++i) {
        if (w[i] == "weight" && i + 1 < w.size()) s.weight = s.iweight = std::stoi(w[i + 1]);
        if (w[i] == "enabled") s.maint = false;
      }
      servers[w[2].substr(0, slash)][w[2].substr(slash + 1)] = s;
      return std::string("New server registered.\n");
    }
    if (w.size() >= 3 && w[0] == "del" && w[1] == "server") {
      if (busy_deletes > 0) {
        --busy_deletes;
        return std::string("Server still has connections attached to it, cannot remove it.\n");
      }
      std::size_t slash = w[2].find('/');
      servers[w[2].substr(0, slash)].erase(w[2].substr(slash + 1));
      return std::string("Server deleted.\n");
    }
    if (w.size() >= 3 && (w[0] == "enable" || w[0] == "disable")) {
      Srv* s = target(2);
      if (s == nullptr) return std::string("No such server.\n");
      if (w[0] == "enable" && w[1] == "server") s->maint = false;
      return std::string();
    }
    if (w.size() >= 5 && w[0] == "set" && w[1] == "server") {
      Srv* s = target(2);
      if (s == nullptr) return std::string("No such server.\n");
      if (w[3] == "weight") s->weight = std::stoi(w[4]);
      if (w[3] == "state") s->maint = w[4] == "maint";
      if (w[3] == "addr" && w.size() >= 7) {
        s->ip = w[4];
        s->port = std::stoi(w[6]);
        return std::string("IP changed from 'x' to 'y' by 'stats socket command'\n");
      }
      return std::string();
    }
    return std::string("Unknown command.\n");
  }

  std::string ShowServersState() const {
    std::string out =
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
        "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
        "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
        "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
        "srv_agent_port\n";
    int be_id = 2;
    for (const auto& [backend, list] : servers) {
      int id = 1;
      for (const auto& [name, s] : list) {
        out += std::to_string(be_id) + " " + backend + " " + std::to_string(id++) + " " + name +
               " " + (s.ip.empty() ? "-" : s.ip) + " 2 " + (s.maint ? "1" : "0") + " " +
               std::to_string(s.weight) + " " + std::to_string(s.iweight) + " 5 6 3 4 6 0 0 0 - " +
               std::to_string(s.port) + " - 0 0 - - 0\n";
      }
      ++be_id;
    }
    return out + "\n";  // haproxy ends an answer with a blank line
  }

  // Servers of `only` (all when empty).
  std::string ShowStat(const std::string& only) const {
    std::string out = "# pxname,svname,status,weight,bck,type,\n";
    for (const auto& [backend, list] : servers) {
      if (!only.empty() && backend != only) continue;
      for (const auto& [name, s] : list) {
        out += backend + "," + name + "," + (s.maint ? "MAINT" : "UP") + "," +
               std::to_string(s.weight) + "," + (s.backup ? "1" : "0") + ",2,\n";
      }
    }
    return out + "\n";
  }

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
    // Most tests here are about the reload path; the runtime path's tests turn this on.
    settings_.haproxy.runtime_updates = false;
    settings_.security.allowed_paths.push_back(tmp_.path());  // the state file in tmp/state
    store_ = std::make_unique<ConfigStore>(live_, settings_.agent.history_dir,
                                           settings_.agent.history_keep);
    control_ = std::make_unique<FakeControl>(live_, state_);
    pipeline_ = std::make_unique<ReloadPipeline>(settings_, *store_, validator_, *control_, false);
    previous_ = Config("s0 127.0.0.1:8000");
    WriteFile(live_, previous_);
    control_->Load();
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
  EXPECT_EQ((*result)["sha256"], common::Sha256Hex(next));
  EXPECT_EQ((*result)["previous_sha256"], common::Sha256Hex(previous_));
  EXPECT_EQ((*result)["rolled_back"], false);
  EXPECT_TRUE((*result)["warnings"].is_array());
  EXPECT_EQ(ReadFile(live_), next);
  EXPECT_EQ(control_->reload_calls, 1);
  ASSERT_EQ(control_->live_at_reload.size(), 1u);
  EXPECT_EQ(control_->live_at_reload[0], next);  // the new file is live when haproxy reloads
  EXPECT_EQ(validator_.calls, 1);
  EXPECT_EQ(validator_.text_seen, next);
  EXPECT_EQ(validator_.last_display_name, "haproxy.cfg");
  EXPECT_EQ(pipeline_->LiveSha256(), common::Sha256Hex(next));
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
  EXPECT_EQ((*second)["sha256"], common::Sha256Hex(next));
  EXPECT_EQ(control_->reload_calls, 1);
  EXPECT_EQ(ReadFile(live_), next);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_EQ(ListDir(settings_.agent.history_dir).size(), 2u) << "the first apply and the file it "
                                                                "replaced; nothing for unchanged";
}

TEST_F(ReloadPipelineTest, ExpectSha256MismatchIsConflictAndChangesNothing) {
  ReloadRequest request = Request(Config("s1 127.0.0.1:8081"));
  request.expect_sha256 = common::Sha256Hex("some other config");
  auto result = pipeline_->Apply(request);
  ASSERT_EQ(result.status().code(), ErrorCode::kConflict) << result.status().ToString();
  EXPECT_EQ(result.status().details()["sha256"], common::Sha256Hex(previous_));
  EXPECT_EQ(validator_.calls, 0);
  EXPECT_EQ(control_->reload_calls, 0);
  EXPECT_EQ(ReadFile(live_), previous_);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_TRUE(ListDir(settings_.agent.history_dir).empty());
}

TEST_F(ReloadPipelineTest, ExpectSha256MatchIsApplied) {
  const std::string next = Config("s1 127.0.0.1:8081");
  ReloadRequest request = Request(next);
  request.expect_sha256 = common::Sha256Hex(previous_);
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
  EXPECT_EQ(result.status().details()["sha256"], common::Sha256Hex(previous_));
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
  const std::string global = "    server-state-file " + state_ + "\n";
  previous_ = Config("s0 127.0.0.1:8000\n    server s1 127.0.0.1:8001", global);
  WriteFile(live_, previous_);
  control_->Load();
  // s0 stays as it is, s1 moves to another port, s2 is new.
  const std::string next = Config(
      "s0 127.0.0.1:8000\n    server s1 127.0.0.1:9001\n    server s2 127.0.0.1:8002", global);
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["warnings"], json::array());
  EXPECT_EQ((*result)["verified"], true);
  EXPECT_EQ(control_->commands,
            (std::vector<std::string>{"show servers state",  // carried into the state file
                                      "show servers state", "show stat -1 4 -1"}))  // verified
      << "the state is read before the reload and the running servers after it";
  ASSERT_EQ(control_->state_at_reload.size(), 1u);
  const std::string& state = control_->state_at_reload[0];
  EXPECT_EQ(state.rfind("1\n# be_id be_name", 0), 0u) << state;
  EXPECT_NE(state.find(" app 1 s0 127.0.0.1 "), std::string::npos) << state;
  EXPECT_EQ(state.find(" s1 "), std::string::npos) << "a moved server starts from the config";
  EXPECT_EQ(state.find(" s2 "), std::string::npos) << state;
}

TEST_F(ReloadPipelineTest, ServerStateIsNotSavedWhenDisabled) {
  settings_.haproxy.save_server_state = false;
  const std::string next = Config("s1 127.0.0.1:8081", "    server-state-file " + state_ + "\n");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["verified"], true);
  EXPECT_FALSE(std::filesystem::exists(state_));
}

TEST_F(ReloadPipelineTest, HaproxyDownRemovesAStaleServerStateSilently) {
  // A file from an earlier run: loading it would bring back health that is no longer true.
  std::filesystem::create_directories(std::filesystem::path(state_).parent_path());
  WriteFile(state_, "1\n# be_id be_name srv_id srv_name\n3 app 1 s1 127.0.0.1\n");
  control_->running = false;
  control_->on_reload = [this](FakeControl::Servers&) { control_->running = true; };
  const std::string next = Config("s1 127.0.0.1:8081", "    server-state-file " + state_ + "\n");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["warnings"], json::array());
  EXPECT_EQ(control_->reload_calls, 1);
  ASSERT_EQ(control_->state_at_reload.size(), 1u);
  EXPECT_EQ(control_->state_at_reload[0], "") << "no state file when haproxy reloads";
  EXPECT_FALSE(std::filesystem::exists(state_));
}

TEST_F(ReloadPipelineTest, MissingDefaultBackendIsInvalidUnlessForced) {
  const std::string other =
      "global\n    hard-stop-after 30s\nbackend web\n    server w1 127.0.0.1:9000\n";
  auto refused = pipeline_->Apply(Request(other));
  EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidConfig) << refused.status().ToString();
  EXPECT_EQ(validator_.calls, 1) << "haproxy -c first: a syntax error is reported in its words";
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

// "outcome:text" of every history entry, newest first.
std::vector<std::string> HistoryOf(const ConfigStore& store) {
  std::vector<std::string> out;
  for (const auto& entry : store.History())
    out.push_back(entry.outcome + ":" + *store.ReadEntry(entry));
  return out;
}

TEST_F(ReloadPipelineTest, HistoryKeepsThePreviousVersionAndEachApplyWithItsOutcome) {
  const std::string next = Config("s1 127.0.0.1:8081");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(HistoryOf(*store_),
            (std::vector<std::string>{"applied:" + next, "was_live:" + previous_}));
  // The fake answers its Nth reload with reload_results[N]: the first one succeeded.
  control_->reload_results = {Status::Ok(),
                              Status(ErrorCode::kReloadFailed, "new worker exited with code 1")};
  const std::string refused = Config("s2 127.0.0.1:8082");
  ReloadRequest request = Request(refused);
  request.reload_only = true;
  EXPECT_EQ(pipeline_->Apply(request).status().code(), ErrorCode::kReloadFailed);
  EXPECT_EQ(HistoryOf(*store_),
            (std::vector<std::string>{"rolled_back:" + refused, "applied:" + next,
                                      "was_live:" + previous_}));
}

TEST_F(ReloadPipelineTest, ValidateChangesNothing) {
  const std::string next = Config("s1 127.0.0.1:8081", "    server-state-file " + state_ + "\n");
  auto result = pipeline_->Validate(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["valid"], true);
  EXPECT_EQ((*result)["sha256"], common::Sha256Hex(next));
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

TEST_F(ReloadPipelineTest, SyntaxErrorIsReportedBeforeTheAgentsOwnChecks) {
  // No backend at all: the agent's check would say "no backend app"; haproxy's word comes first.
  validator_.result = Status(ErrorCode::kInvalidConfig,
                             "haproxy -c rejected the config (exit 1):\n[ALERT] config : parsing "
                             "[haproxy.cfg:2] : unknown keyword 'foo' in 'global' section");
  auto result = pipeline_->Apply(Request("global\n foo bar\n"));
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(result.status().message().find("unknown keyword 'foo'"), std::string::npos)
      << result.status().message();
  EXPECT_EQ(result.status().message().find("no backend"), std::string::npos);
  EXPECT_EQ(ReadFile(live_), previous_);
}

TEST_F(ReloadPipelineTest, ReloadWhoseRunningServersDifferIsRolledBackNamingEachField) {
  // haproxy keeps s1 on its old port (the server-state trap) and with another weight.
  previous_ = Config("s1 127.0.0.1:8081");
  WriteFile(live_, previous_);
  control_->Load();
  control_->on_reload = [](FakeControl::Servers& servers) {
    if (servers["app"]["s1"].port == 9091) {
      servers["app"]["s1"].port = 8081;
      servers["app"]["s1"].weight = 7;
    }
  };
  auto result = pipeline_->Apply(Request(Config("s1 127.0.0.1:9091")));
  ASSERT_EQ(result.status().code(), ErrorCode::kReloadFailed) << result.status().ToString();
  const json& details = result.status().details();
  EXPECT_EQ(details["rolled_back"], true);
  ASSERT_TRUE(details["mismatches"].is_array());
  const std::string all = details["mismatches"].dump();
  EXPECT_NE(all.find("backend app, server s1: port is 8081, the config says 9091"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("backend app, server s1: weight is 7, the config says 1"), std::string::npos)
      << all;
  EXPECT_NE(result.status().message().find("port is 8081"), std::string::npos);
  EXPECT_EQ(ReadFile(live_), previous_);
  EXPECT_EQ(control_->reload_calls, 2);
  EXPECT_EQ(pipeline_->LastReload()["outcome"], "rolled_back");
}

TEST_F(ReloadPipelineTest, RuntimePathChangesAWeightWithNoReload) {
  settings_.haproxy.runtime_updates = true;
  const std::string next = Config("s0 127.0.0.1:8000 weight 5");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["outcome"], "applied");
  EXPECT_EQ((*result)["applied_via"], "runtime");
  EXPECT_EQ((*result)["verified"], true);
  EXPECT_EQ((*result)["runtime_commands"], json::array({"set server app/s0 weight 5"}));
  EXPECT_FALSE(result->contains("reload_reason"));
  EXPECT_EQ(control_->reload_calls, 0);
  EXPECT_EQ(validator_.calls, 0);
  EXPECT_EQ(control_->servers["app"]["s0"].weight, 5);
  EXPECT_EQ(ReadFile(live_), next);
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_FALSE(store_->ReloadInterrupted());
  EXPECT_EQ(HistoryOf(*store_),
            (std::vector<std::string>{"applied:" + next, "was_live:" + previous_}));
  EXPECT_EQ(pipeline_->counters().runtime, 1);
  EXPECT_EQ(pipeline_->counters().reload, 0);
  EXPECT_EQ(pipeline_->LastReload()["applied_via"], "runtime");
}

TEST_F(ReloadPipelineTest, RuntimePathAddsRemovesMovesAndDisables) {
  settings_.haproxy.runtime_updates = true;
  previous_ = Config(
      "s0 127.0.0.1:8000 check\n    server s1 127.0.0.1:8001\n"
      "    server s2 127.0.0.1:8002");
  WriteFile(live_, previous_);
  control_->Load();
  const std::string next = Config(
      "s0 127.0.0.2:9000 check\n    server s1 127.0.0.1:8001 disabled\n"
      "    server s3 127.0.0.1:8003 check weight 3");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["applied_via"], "runtime");
  EXPECT_EQ((*result)["runtime_commands"],
            json::array({"add server app/s3 127.0.0.1:8003 check weight 3", "enable health app/s3",
                         "enable server app/s3", "set server app/s0 addr 127.0.0.2 port 9000",
                         "set server app/s1 state maint", "set server app/s2 state maint",
                         "del server app/s2"}));
  EXPECT_EQ(control_->reload_calls, 0);
  EXPECT_EQ(control_->servers["app"].count("s2"), 0u);
  EXPECT_EQ(control_->servers["app"]["s3"].weight, 3);
  EXPECT_FALSE(control_->servers["app"]["s3"].maint);
  EXPECT_TRUE(control_->servers["app"]["s1"].maint);
  EXPECT_EQ(control_->servers["app"]["s0"].ip, "127.0.0.2");
  EXPECT_EQ(ReadFile(live_), next);
}

TEST_F(ReloadPipelineTest, RuntimeCommandRefusedFallsBackToAReloadWithTheReason) {
  settings_.haproxy.runtime_updates = true;
  control_->refuse = "add server app/s1";
  const std::string next = Config("s0 127.0.0.1:8000\n    server s1 127.0.0.1:8001");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["applied_via"], "reload");
  EXPECT_EQ((*result)["verified"], true);
  const std::string reason = (*result)["reload_reason"];
  EXPECT_NE(reason.find("Already exists a server with the same name"), std::string::npos) << reason;
  EXPECT_EQ(control_->reload_calls, 1);
  EXPECT_EQ(validator_.calls, 1) << "the reload path validates the file with haproxy -c";
  EXPECT_EQ(ReadFile(live_), next);
  EXPECT_FALSE(store_->ReloadInterrupted());
  EXPECT_EQ(pipeline_->counters().reload, 1);
}

TEST_F(ReloadPipelineTest, RuntimeResultThatDoesNotMatchFallsBackToAReload) {
  settings_.haproxy.runtime_updates = true;
  control_->ignore = "weight";  // haproxy says yes to the weight but does not change it
  const std::string next = Config("s0 127.0.0.1:8000 weight 9");
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["applied_via"], "reload");
  const std::string reason = (*result)["reload_reason"];
  EXPECT_NE(reason.find("backend app, server s0: weight is 1, the config says 9"),
            std::string::npos)
      << reason;
  EXPECT_EQ(control_->reload_calls, 1);
  EXPECT_EQ(control_->servers["app"]["s0"].weight, 9);
  EXPECT_EQ(ReadFile(live_), next);
}

TEST_F(ReloadPipelineTest, RemovalThatDoesNotDrainFallsBackToAReload) {
  settings_.haproxy.runtime_updates = true;
  settings_.haproxy.runtime_drain_timeout = std::chrono::milliseconds(50);
  control_->busy_deletes = 1000;                         // connections that never end
  const std::string next = Config("s1 127.0.0.1:8001");  // s0 goes, s1 comes
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["applied_via"], "reload");
  const std::string reason = (*result)["reload_reason"];
  EXPECT_NE(reason.find("server app/s0 still had connections after 50 ms"), std::string::npos)
      << reason;
  EXPECT_EQ(control_->reload_calls, 1);
  EXPECT_EQ(ReadFile(live_), next);
}

TEST_F(ReloadPipelineTest, ChangesBeyondServerLinesAreReloadedWithTheReason) {
  settings_.haproxy.runtime_updates = true;
  const std::string next = Config("s0 127.0.0.1:8000") + "    timeout server 5s\n";
  auto result = pipeline_->Apply(Request(next));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["applied_via"], "reload");
  EXPECT_NE((*result)["reload_reason"].get<std::string>().find("not limited to server lines"),
            std::string::npos)
      << (*result)["reload_reason"];
  EXPECT_EQ(control_->reload_calls, 1);
}

TEST_F(ReloadPipelineTest, ApplyViaReloadForcesAReload) {
  settings_.haproxy.runtime_updates = true;
  ReloadRequest request = Request(Config("s0 127.0.0.1:8000 weight 4"));
  request.reload_only = true;
  auto result = pipeline_->Apply(request);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ((*result)["applied_via"], "reload");
  EXPECT_EQ((*result)["reload_reason"], "apply_via \"reload\" was asked for");
  EXPECT_EQ(control_->reload_calls, 1);
  EXPECT_TRUE(control_->runtime_commands.empty());
}

TEST_F(ReloadPipelineTest, RuntimePathKeepsTheAgentsOwnChecks) {
  settings_.haproxy.runtime_updates = true;
  // Removing the last server of the default backend is refused like any other apply.
  auto result = pipeline_->Apply(Request(
      Config("s0 127.0.0.1:8000").substr(0, Config("s0 127.0.0.1:8000").find("    server"))));
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidConfig) << result.status().ToString();
  EXPECT_TRUE(control_->runtime_commands.empty());
  EXPECT_EQ(ReadFile(live_), previous_);
  EXPECT_FALSE(store_->ReloadInterrupted());
}

TEST(ReloadRequestFromArgsTest, ApplyViaIsAutoOrReload) {
  auto r = ReloadRequestFromArgs({{"config", "x"}, {"apply_via", "reload"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->reload_only);
  EXPECT_FALSE(ReloadRequestFromArgs({{"config", "x"}})->reload_only);
  auto bad = ReloadRequestFromArgs({{"config", "x"}, {"apply_via", "runtime"}});
  EXPECT_EQ(bad.status().code(), ErrorCode::kBadRequest);
  EXPECT_NE(bad.status().message().find("apply_via"), std::string::npos);
}

}  // namespace
}  // namespace lb::agent
