// The fleet controller of `lbctl fleet serve` and the rollout client of `lbctl fleet push`
// (proto/PROTOCOL.md, "Fleet").
//   - ControllerCore without sockets, with the test's clock: desired-state selection, hello
//     answers, acks, the control commands, the version counter;
//   - StateDir: the state file's round trip, its lock, what a broken file or a failed save does;
//   - the pure rollout parts: wave planning, per-agent outcomes, counts and exit codes;
//   - the fleet command line;
//   - the real FleetController on ipc:// sockets in a temp dir, with FakeFleetAgents (a DEALER
//     and a SUB socket each, speaking the agent's side of the protocol) and lb::cli::Run for
//     `fleet push` and `fleet agents`. PUB drops what is published before a subscription reaches
//     it, so every fake agent waits for a beacon before a test pushes anything. With CURVE, the
//     controller runs a real ZapHandler and the fake agents are CURVE clients.
#include "fleet_controller.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "command_line.h"
#include "fleet_controller_core.h"
#include "fleet_protocol.h"
#include "fleet_rollout.h"
#include "fleet_state_file.h"
#include "lb/common/curve_socket.h"
#include "lb/proto/codec.h"
#include "lbctl.h"
#include "test_util.h"

namespace lb::cli {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using test_util::TempDir;

constexpr int64_t kNow = 1795516262123;
constexpr milliseconds kWait{10000};  // a bound for what should happen at once

std::string Frame(const json& message) { return proto::EncodeMsgpack(message); }

json Hello(const std::string& agent, std::vector<std::string> groups, uint64_t applied,
           uint64_t synced = 0) {
  return {{"v", 1},
          {"type", "hello"},
          {"agent", agent},
          {"groups", groups},
          {"sha256", std::string(64, 'a')},
          {"applied_version", applied},
          {"synced_version", synced}};
}

json AckMessage(const std::string& agent, uint64_t version, const std::string& outcome) {
  json ack = {{"v", 1},
              {"type", "ack"},
              {"agent", agent},
              {"version", version},
              {"outcome", outcome},
              {"sha256", std::string(64, 'b')},
              {"total_ms", 42}};
  if (outcome == "refused") {
    ack["error"] = {{"code", "invalid_config"}, {"message", "haproxy -c said no"}};
  }
  return ack;
}

json ReloadArgs(const std::string& config) { return {{"config", config}}; }

struct RunOutput {
  int code = -1;
  std::string out;
  std::string err;
};

RunOutput RunLbctl(const std::vector<std::string>& args, const std::string& stdin_text = "") {
  std::istringstream in(stdin_text);
  std::ostringstream out, err;
  RunOutput result;
  result.code = Run(args, {}, in, out, err, [] { return false; });
  result.out = out.str();
  result.err = err.str();
  return result;
}

// ---- desired state ----

TEST(FleetControllerTest, DesiredStateIsTheNewestMatchingPush) {
  // all v5, then agent a1 v6, then group web v7 (one counter across all pushes).
  PersistentState state;
  state.latest = 7;
  auto add = [&](uint64_t version, FleetTarget target, const std::string& config) {
    StoredPush push{version, target, "reload", std::make_shared<const json>(ReloadArgs(config)),
                    kNow};
    state.pushes[TargetKey(target)] = push;
  };
  add(5, FleetTarget::All(), "all");
  add(6, FleetTarget::Agent("a1"), "a1 only");
  add(7, FleetTarget::Group("web"), "web");
  ControllerCore core("ctl", state, nullptr);

  auto desired = [&](const std::string& agent, std::vector<std::string> groups) -> uint64_t {
    const StoredPush* push = core.DesiredFor(agent, groups);
    return push == nullptr ? 0 : push->version;
  };
  EXPECT_EQ(desired("a1", {"web"}), 7u);
  EXPECT_EQ(desired("a2", {"web", "db"}), 7u);
  EXPECT_EQ(desired("a3", {"db"}), 5u);
  EXPECT_EQ(desired("a1", {"db"}), 6u) << "its own push is newer than the all push";
  EXPECT_EQ(desired("a4", {}), 5u);
  EXPECT_EQ(desired("a1", {"web2"}), 6u) << "group names match exactly, not by prefix";

  ControllerCore empty("ctl", PersistentState(), nullptr);
  EXPECT_EQ(empty.DesiredFor("a1", {"web"}), nullptr);
}

TEST(FleetControllerTest, VersionsAreOneCounterAndAnAllPushDropsWhatItSupersedes) {
  ControllerCore core("ctl", PersistentState(), nullptr);
  auto v1 = core.RecordPush(FleetTarget::Group("web"), "reload", ReloadArgs("one"), kNow);
  auto v2 = core.RecordPush(FleetTarget::Agent("a1"), "reload", ReloadArgs("one"), kNow);
  auto v3 = core.RecordPush(FleetTarget::All(), "status", json::object(), kNow);
  ASSERT_TRUE(v1.ok() && v2.ok() && v3.ok());
  EXPECT_EQ(v1->version, 1u);
  EXPECT_EQ(v2->version, 2u);
  EXPECT_EQ(v3->version, 3u);
  EXPECT_EQ(core.latest(), 3u);
  EXPECT_EQ(v1->args.get(), v2->args.get()) << "equal args are stored once";
  EXPECT_EQ(core.state().pushes.size(), 2u) << "a status push is no desired state";
  EXPECT_EQ(core.DesiredFor("a1", {"web"})->version, 2u);

  auto v4 = core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("two"), kNow);
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->version, 4u);
  ASSERT_EQ(core.state().pushes.size(), 1u);
  EXPECT_EQ(core.state().pushes.begin()->first, "all");
  EXPECT_EQ(core.DesiredFor("a1", {"web"})->version, 4u);
}

// ---- hello and ack ----

TEST(FleetControllerTest, HelloIsAnsweredWithTheDesiredPushOrUptodate) {
  ControllerCore core("ctl-1", PersistentState(), nullptr);
  ControllerCore::AgentAnswer first = core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow);
  ASSERT_TRUE(first.reply.has_value()) << first.log;
  EXPECT_EQ(*first.reply,
            json({{"v", 1}, {"type", "uptodate"}, {"controller", "ctl-1"}, {"latest", 0}}));

  ASSERT_TRUE(core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("base\n"), kNow).ok());
  ASSERT_TRUE(core.RecordPush(FleetTarget::Group("web"), "reload",
                              {{"config", "web\n"}, {"force", true}}, kNow)
                  .ok());

  // Behind: the whole desired push, exactly as it was published.
  ControllerCore::AgentAnswer behind =
      core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 1)), kNow);
  ASSERT_TRUE(behind.reply.has_value());
  EXPECT_EQ(*behind.reply, MakePushMessage("ctl-1", 2, FleetTarget::Group("web"), "reload",
                                           {{"config", "web\n"}, {"force", true}}));
  EXPECT_NE(behind.log.find("hello from a1"), std::string::npos) << behind.log;
  EXPECT_NE(behind.log.find("sent push v2 (group/web)"), std::string::npos) << behind.log;

  // Not in web: the all push.
  auto other = core.OnAgentFrame("a3", Frame(Hello("a3", {"db"}, 0)), kNow);
  ASSERT_TRUE(other.reply.has_value());
  EXPECT_EQ((*other.reply)["version"], 1);
  EXPECT_EQ((*other.reply)["args"]["config"], "base\n");

  // Up to date (or ahead of what it needs): uptodate with the latest version.
  for (uint64_t applied : {2u, 5u}) {
    ControllerCore::AgentAnswer up =
        core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, applied, 2)), kNow);
    ASSERT_TRUE(up.reply.has_value());
    EXPECT_EQ((*up.reply)["type"], "uptodate");
  }
  // An agent at version 5 when the counter is at 2: the state is not the one its versions came
  // from, and the counter jumps so that the next push is not ignored.
  EXPECT_EQ(core.latest(), 5u);
  auto next = core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("x"), kNow);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->version, 6u);

  const AgentRecord& a1 = core.agents().at("a1");
  EXPECT_EQ(a1.groups, std::vector<std::string>{"web"});
  EXPECT_EQ(a1.applied_version, 5u);
  EXPECT_EQ(a1.last_hello_ms, kNow);
}

TEST(FleetControllerTest, MalformedAgentMessagesAreLoggedAndIgnored) {
  ControllerCore core("ctl", PersistentState(), nullptr);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\xc1", "undecodable"},
      {Frame(json::array({1, 2})), "not a map"},
      {Frame({{"v", 2}, {"type", "hello"}, {"agent", "a1"}}), "unsupported protocol version"},
      {Frame({{"v", 1}, {"agent", "a1"}}), "no string \"type\""},
      {Frame({{"v", 1}, {"type", "hello"}}), "\"agent\" must be a string"},
      {Frame({{"v", 1}, {"type", "hello"}, {"agent", "a/1"}}), "without '/'"},
      {Frame({{"v", 1}, {"type", "hello"}, {"agent", "a1"}, {"groups", "web"}}), "\"groups\""},
      {Frame({{"v", 1}, {"type", "hello"}, {"agent", "a1"}, {"applied_version", -1}}),
       "applied_version"},
      {Frame({{"v", 1}, {"type", "ack"}, {"agent", "a1"}, {"outcome", "applied"}}),
       "\"version\" is missing"},
      {Frame({{"v", 1}, {"type", "ack"}, {"agent", "a1"}, {"version", 1}, {"outcome", "great"}}),
       "\"outcome\""},
      {Frame({{"v", 1}, {"type", "gossip"}, {"agent", "a1"}}), "type \"gossip\""},
  };
  for (const auto& [frame, message] : cases) {
    ControllerCore::AgentAnswer answer = core.OnAgentFrame("r\x01", frame, kNow);
    EXPECT_FALSE(answer.reply.has_value()) << message;
    EXPECT_NE(answer.log.find("ignored"), std::string::npos) << answer.log;
    EXPECT_NE(answer.log.find(message), std::string::npos) << answer.log;
    EXPECT_NE(answer.log.find("routing id r\\x01"), std::string::npos) << answer.log;
  }
  EXPECT_TRUE(core.agents().empty());
}

json Control(ControllerCore& core, const std::string& cmd, const json& args,
             proto::ErrorCode expected = proto::ErrorCode::kOk) {
  proto::Request request{1, cmd, args};
  ControllerCore::ControlAnswer answer = core.OnControlRequest(request, kNow);
  EXPECT_EQ(answer.status.code(), expected) << cmd << ": " << answer.status.ToString();
  return answer.status.ok() ? answer.result : json(answer.status.message());
}

TEST(FleetControllerTest, AcksAreRecordedPerVersionAndTheFirstRealAnswerCounts) {
  ControllerCore core("ctl", PersistentState(), nullptr);
  core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow);
  ASSERT_TRUE(core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("x"), kNow).ok());

  auto answer = core.OnAgentFrame("a1", Frame(AckMessage("a1", 1, "applied")), kNow + 5);
  EXPECT_FALSE(answer.reply.has_value());
  EXPECT_NE(answer.log.find("ack from a1: v1 applied"), std::string::npos) << answer.log;
  // The same push again on PUB: the agent says "ignored"; the applied ack stays.
  core.OnAgentFrame("a1", Frame(AckMessage("a1", 1, "ignored")), kNow + 6);
  // An agent this controller has not heard a hello from (it restarted since).
  auto stranger = core.OnAgentFrame("a9", Frame(AckMessage("a9", 1, "refused")), kNow + 7);
  EXPECT_NE(stranger.log.find("(no hello yet)"), std::string::npos) << stranger.log;
  EXPECT_NE(stranger.log.find("invalid_config: haproxy -c said no"), std::string::npos);

  json acks = Control(core, "acks", {{"versions", {1, 2}}});
  ASSERT_EQ(acks["acks"].size(), 2u) << acks.dump();
  EXPECT_EQ(acks["acks"][0]["agent"], "a1");
  EXPECT_EQ(acks["acks"][0]["outcome"], "applied");
  EXPECT_EQ(acks["acks"][0]["total_ms"], 42);
  EXPECT_EQ(acks["acks"][0]["received_ms"], kNow + 5);
  EXPECT_EQ(acks["acks"][1]["agent"], "a9");
  EXPECT_EQ(acks["acks"][1]["error"]["code"], "invalid_config");
  EXPECT_EQ(core.agents().at("a1").applied_version, 1u);
  EXPECT_EQ(core.agents().at("a1").sha256, std::string(64, 'b'));

  Control(core, "acks", json::object(), proto::ErrorCode::kBadRequest);
  Control(core, "acks", {{"versions", {"one"}}}, proto::ErrorCode::kBadRequest);
}

TEST(FleetControllerTest, ControlPushValidatesRecordsAndPublishes) {
  ControllerCore core("ctl", PersistentState(), nullptr);
  core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow);
  core.OnAgentFrame("a2", Frame(Hello("a2", {"db"}, 0)), kNow);

  proto::Request request{7,
                         "push",
                         {{"target", {{"kind", "group"}, {"name", "web"}}},
                          {"cmd", "reload"},
                          {"args", {{"config", "c\n"}, {"force", true}}}}};
  ControllerCore::ControlAnswer answer = core.OnControlRequest(request, kNow);
  ASSERT_TRUE(answer.status.ok()) << answer.status.ToString();
  EXPECT_EQ(answer.result["version"], 1);
  EXPECT_EQ(answer.result["topic"], "fleet/group/web");
  EXPECT_EQ(answer.result["matching"], json({"a1"}));
  ASSERT_TRUE(answer.publish.has_value());
  EXPECT_EQ(answer.publish->topic, "fleet/group/web");
  EXPECT_EQ(answer.publish->body, MakePushMessage("ctl", 1, FleetTarget::Group("web"), "reload",
                                                  {{"config", "c\n"}, {"force", true}}));
  EXPECT_NE(answer.log.find("push v1 to group/web (reload, 2 bytes): 1 known agent match"),
            std::string::npos)
      << answer.log;

  using proto::ErrorCode;
  Control(core, "push", {{"args", ReloadArgs("c")}}, ErrorCode::kBadRequest);
  Control(core, "push", {{"target", {{"kind", "planet"}}}, {"args", ReloadArgs("c")}},
          ErrorCode::kBadRequest);
  Control(core, "push",
          {{"target", {{"kind", "group"}, {"name", "a/b"}}}, {"args", ReloadArgs("c")}},
          ErrorCode::kBadRequest);
  Control(core, "push", {{"target", {{"kind", "all"}}}}, ErrorCode::kBadRequest);
  Control(core, "push", {{"target", {{"kind", "all"}}}, {"args", {{"config", 1}}}},
          ErrorCode::kBadRequest);
  Control(core, "push",
          {{"target", {{"kind", "all"}}}, {"args", {{"config", "c"}, {"expect_sha256", "x"}}}},
          ErrorCode::kBadRequest);
  Control(core, "push", {{"target", {{"kind", "all"}}}, {"cmd", "rm"}, {"args", ReloadArgs("c")}},
          ErrorCode::kBadRequest);
  Control(core, "frobnicate", json::object(), ErrorCode::kUnknownCommand);
  EXPECT_EQ(core.latest(), 1u) << "refused pushes take no version";

  json agents = Control(core, "agents", {{"target", {{"kind", "group"}, {"name", "web"}}}});
  ASSERT_EQ(agents["agents"].size(), 1u);
  EXPECT_EQ(agents["agents"][0]["agent"], "a1");
  EXPECT_EQ(agents["agents"][0]["desired_version"], 1);
  EXPECT_EQ(agents["controller"], "ctl");
  EXPECT_EQ(Control(core, "agents", json::object())["agents"].size(), 2u);
  EXPECT_EQ(Control(core, "ping", json::object())["latest"], 1);
}

// ---- state dir ----

TEST(FleetStateDirTest, RestartKeepsTheCounterAndThePushes) {
  TempDir tmp;
  const std::string dir = tmp.File("state");
  const std::string latin1 = "# caf\xe9\nglobal\n";  // not UTF-8: kept byte for byte
  {
    auto state_dir = StateDir::Open(dir);
    ASSERT_TRUE(state_dir.ok()) << state_dir.status().ToString();
    auto loaded = (*state_dir)->Load();
    ASSERT_TRUE(loaded.ok());
    EXPECT_EQ(loaded->latest, 0u);
    ControllerCore core("ctl-1", *loaded, state_dir->get());
    ASSERT_TRUE(core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("all\n"), kNow).ok());
    ASSERT_TRUE(core.RecordPush(FleetTarget::Agent("a1"), "reload", ReloadArgs(latin1), kNow).ok());
    ASSERT_TRUE(core.RecordPush(FleetTarget::Agent("a2"), "reload", ReloadArgs(latin1), kNow).ok());
    ASSERT_TRUE(core.RecordPush(FleetTarget::All(), "status", json::object(), kNow).ok());
    ASSERT_TRUE(core.RecordPush(FleetTarget::Group("web"), "reload",
                                {{"config", "web\n"}, {"force", true}}, kNow + 1)
                    .ok());
    EXPECT_EQ(test_util::ListDir(dir),
              (std::vector<std::string>{"fleet-controller.json", "fleet-controller.lock"}))
        << "no temp file left behind";
  }
  // The lock went with the first holder; a second holder while it is held is refused.
  auto state_dir = StateDir::Open(dir);
  ASSERT_TRUE(state_dir.ok()) << state_dir.status().ToString();
  auto second = StateDir::Open(dir);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("is in use by another lbctl fleet serve (pid "),
            std::string::npos)
      << second.status().message();

  auto loaded = (*state_dir)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->latest, 5u);
  EXPECT_EQ(loaded->controller_id, "ctl-1");
  ASSERT_EQ(loaded->pushes.size(), 4u);
  const StoredPush& a1 = loaded->pushes.at("agent/a1");
  EXPECT_EQ(a1.version, 2u);
  EXPECT_EQ(a1.args->at("config"), latin1);
  EXPECT_EQ(a1.args.get(), loaded->pushes.at("agent/a2").args.get()) << "stored once";
  const StoredPush& web = loaded->pushes.at("group/web");
  EXPECT_EQ(web.version, 5u);
  EXPECT_EQ(web.target, FleetTarget::Group("web"));
  EXPECT_EQ(web.cmd, "reload");
  EXPECT_EQ(*web.args, json({{"config", "web\n"}, {"force", true}}));
  EXPECT_EQ(web.ts_ms, kNow + 1);

  // A restarted controller answers hellos as the old one would have, and counts on.
  ControllerCore core("ctl-1", *loaded, state_dir->get());
  auto hello = core.OnAgentFrame("a1", Frame(Hello("a1", {"db"}, 1)), kNow);
  ASSERT_TRUE(hello.reply.has_value());
  EXPECT_EQ((*hello.reply)["version"], 2);
  EXPECT_EQ((*hello.reply)["args"]["config"], latin1);
  auto uptodate = core.OnAgentFrame("a7", Frame(Hello("a7", {"web"}, 5)), kNow);
  EXPECT_EQ((*uptodate.reply)["type"], "uptodate");
  auto next = core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("next\n"), kNow);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->version, 6u);
}

TEST(FleetStateDirTest, AFailedSaveChangesNothing) {
  TempDir tmp;
  auto state_dir = StateDir::Open(tmp.path());
  ASSERT_TRUE(state_dir.ok());
  ControllerCore core("ctl", PersistentState(), state_dir->get());
  ASSERT_TRUE(core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("one\n"), kNow).ok());
  // A directory where the state file is: rename over it fails, even for root.
  const std::string file = (*state_dir)->state_file();
  std::filesystem::remove(file);
  std::filesystem::create_directories(file + "/blocker");

  auto failed = core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("two\n"), kNow);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), proto::ErrorCode::kInternal);
  EXPECT_NE(failed.status().message().find("cannot record version 2, nothing was pushed"),
            std::string::npos)
      << failed.status().message();
  EXPECT_NE(failed.status().message().find("rename"), std::string::npos);
  EXPECT_EQ(core.latest(), 1u);
  EXPECT_EQ(core.DesiredFor("a1", {})->args->at("config"), "one\n");

  proto::Request request{1, "push", {{"target", {{"kind", "all"}}}, {"args", ReloadArgs("t")}}};
  ControllerCore::ControlAnswer answer = core.OnControlRequest(request, kNow);
  EXPECT_EQ(answer.status.code(), proto::ErrorCode::kInternal);
  EXPECT_FALSE(answer.publish.has_value()) << "nothing is published that was not saved";
}

TEST(FleetStateDirTest, ABrokenStateFileIsAnErrorNotAnEmptyState) {
  TempDir tmp;
  const std::string file = tmp.File("fleet-controller.json");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "not JSON"},
      {R"({"format": 2})", "format"},
      {R"({"format": 1, "latest": -3, "args": [], "pushes": []})", "\"latest\""},
      {R"({"format": 1, "latest": 1, "args": [], "pushes": [{"version": 1,
          "target": {"kind": "all"}, "cmd": "reload", "args": 0}]})",
       "names no stored args"},
      {R"({"format": 1, "latest": 1, "args": [{"json": {}}], "pushes": [{"version": 2,
          "target": {"kind": "all"}, "cmd": "reload", "args": 0}]})",
       "push version 2 is not in 1..1"},
  };
  for (const auto& [text, message] : cases) {
    test_util::WriteFile(file, text);
    auto state_dir = StateDir::Open(tmp.path());
    ASSERT_TRUE(state_dir.ok());
    auto loaded = (*state_dir)->Load();
    ASSERT_FALSE(loaded.ok()) << text;
    EXPECT_NE(loaded.status().message().find(file + ": "), std::string::npos);
    EXPECT_NE(loaded.status().message().find(message), std::string::npos)
        << loaded.status().message();
  }
}

// ---- rollout planning and counting ----

std::vector<std::string> Names(size_t n) {
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) names.push_back(std::string(1, static_cast<char>('a' + i)));
  return names;
}

TEST(FleetRolloutTest, PlansCanaryAndBatchWaves) {
  using W = Wave;
  EXPECT_EQ(PlanWaves(Names(4), 0, 0), (std::vector<W>{{{"a", "b", "c", "d"}, false}}));
  EXPECT_EQ(PlanWaves(Names(5), 0, 2),
            (std::vector<W>{{{"a", "b"}, false}, {{"c", "d"}, false}, {{"e"}, false}}));
  EXPECT_EQ(PlanWaves(Names(4), 1, 0), (std::vector<W>{{{"a"}, true}, {{"b", "c", "d"}, false}}));
  EXPECT_EQ(PlanWaves(Names(10), 2, 3), (std::vector<W>{{{"a", "b"}, true},
                                                        {{"c", "d", "e"}, false},
                                                        {{"f", "g", "h"}, false},
                                                        {{"i", "j"}, false}}));
  EXPECT_EQ(
      PlanWaves(Names(6), 3, 2),
      (std::vector<W>{{{"a", "b"}, true}, {{"c"}, true}, {{"d", "e"}, false}, {{"f"}, false}}));
  EXPECT_EQ(PlanWaves(Names(2), 5, 0), (std::vector<W>{{{"a", "b"}, true}}))
      << "a canary larger than the fleet is the whole fleet";
  EXPECT_TRUE(PlanWaves({}, 2, 2).empty());
}

json AckFor(const std::string& agent, uint64_t version, const std::string& outcome) {
  json ack = {{"agent", agent}, {"version", version}, {"outcome", outcome}, {"total_ms", 12}};
  if (outcome == "refused") ack["error"] = {{"code", "invalid_config"}, {"message", "bad"}};
  return ack;
}

TEST(FleetRolloutTest, CountsOutcomesAndChoosesTheExitCode) {
  RolloutProgress all_applied;
  for (const auto& a : Names(3)) all_applied.Pushed(a, 7);
  EXPECT_EQ(all_applied.Count().pending, 3u);
  all_applied.Observe(AckFor("a", 7, "applied"), kNow);
  all_applied.Observe(AckFor("b", 7, "unchanged"), kNow);
  all_applied.Observe(AckFor("c", 6, "applied"), kNow);  // another version: not this push
  EXPECT_EQ(FormatProgress(all_applied.Count()),
            "applied 1 / unchanged 1 / failed 0 / pending 1 of 3");
  all_applied.Observe(AckFor("c", 7, "applied"), kNow);
  all_applied.Observe(AckFor("c", 7, "refused"), kNow);  // the first answer is final
  EXPECT_EQ(all_applied.Count(), (Tally{2, 1, 0, 0, 0, 3}));
  EXPECT_EQ(RolloutExitCode(all_applied.Count()), 0);

  RolloutProgress one_refused;
  for (const auto& a : Names(3)) one_refused.Pushed(a, 7);
  one_refused.Observe(AckFor("a", 7, "applied"), kNow);
  one_refused.Observe(AckFor("b", 7, "refused"), kNow);
  one_refused.Observe(AckFor("c", 7, "applied"), kNow);
  EXPECT_EQ(RolloutExitCode(one_refused.Count()), kExitPartialFailure);
  EXPECT_EQ(one_refused.agents()[1].error["code"], "invalid_config");
  EXPECT_TRUE(one_refused.AnyFailed({"b"}));
  EXPECT_FALSE(one_refused.AnyFailed({"a", "c"}));

  RolloutProgress timed_out;
  for (const auto& a : Names(3)) timed_out.Pushed(a, 7);
  timed_out.Observe(AckFor("a", 7, "applied"), kNow);
  EXPECT_EQ(timed_out.Count().pending, 2u);
  EXPECT_EQ(RolloutExitCode(timed_out.Count()), kExitRolloutTimeout);
  EXPECT_FALSE(timed_out.AllAnswered({"a", "b"}));
  EXPECT_TRUE(timed_out.AllAnswered({"a"}));
  timed_out.Observe(AckFor("b", 7, "refused"), kNow);
  EXPECT_EQ(RolloutExitCode(timed_out.Count()), kExitPartialFailure)
      << "a refusal outweighs the agents still pending";

  EXPECT_EQ(RolloutExitCode(Tally{2, 0, 0, 0, 1, 3}), kExitRolloutTimeout) << "skipped";
  EXPECT_EQ(RolloutExitCode(Tally{}), 0) << "nothing to wait for";
}

TEST(FleetRolloutTest, IgnoredIsAFailureOnlyWithoutARealAnswerInTime) {
  RolloutProgress progress;
  progress.Pushed("a", 3);
  progress.Pushed("b", 4);
  progress.Observe(AckFor("a", 3, "ignored"), kNow);
  progress.Observe(AckFor("b", 4, "ignored"), kNow);
  progress.Observe(AckFor("b", 4, "applied"), kNow + 100);  // it was reloading the same push
  progress.Settle(kNow + RolloutProgress::kIgnoredGraceMs - 1);
  EXPECT_EQ(progress.agents()[0].outcome, AgentOutcome::kPending);
  EXPECT_EQ(progress.agents()[1].outcome, AgentOutcome::kApplied);
  progress.Settle(kNow + RolloutProgress::kIgnoredGraceMs);
  EXPECT_EQ(progress.agents()[0].outcome, AgentOutcome::kIgnored);
  EXPECT_EQ(RolloutExitCode(progress.Count()), kExitPartialFailure);
}

TEST(FleetRolloutTest, ExpectCountsWhoeverAnswersAnOpenVersion) {
  RolloutProgress progress(3);
  progress.OpenVersion(9);
  EXPECT_EQ(progress.Count(), (Tally{0, 0, 0, 3, 0, 3}));
  EXPECT_EQ(progress.WantedVersions(), std::vector<uint64_t>{9});
  progress.Observe(AckFor("x", 9, "applied"), kNow);
  progress.Observe(AckFor("y", 8, "applied"), kNow);  // not this push
  progress.Observe(AckFor("z", 9, "unchanged"), kNow);
  EXPECT_EQ(progress.Count(), (Tally{1, 1, 0, 1, 0, 3}));
  progress.Observe(AckFor("w", 9, "applied"), kNow);
  EXPECT_EQ(progress.Count(), (Tally{2, 1, 0, 0, 0, 3}));
  EXPECT_EQ(RolloutExitCode(progress.Count()), 0);

  // Known agents are listed, so that those that never answer are named; once N answered, the
  // others were not waited for.
  RolloutProgress known(2);
  known.OpenVersion(4);
  for (const auto& a : Names(3)) known.Pushed(a, 4);
  EXPECT_EQ(known.Count(), (Tally{0, 0, 0, 3, 0, 3}));
  known.Observe(AckFor("b", 4, "applied"), kNow);
  EXPECT_EQ(known.Answered(), 1u);
  EXPECT_EQ(known.Count(), (Tally{1, 0, 0, 2, 0, 3})) << "a and c are named as pending";
  known.Observe(AckFor("c", 4, "applied"), kNow);
  EXPECT_EQ(known.Answered(), 2u);
  known.DropPending();
  EXPECT_EQ(known.Count(), (Tally{2, 0, 0, 0, 0, 2}));
  ASSERT_EQ(known.agents().size(), 2u);
  EXPECT_EQ(known.agents()[0].agent, "b");
  EXPECT_TRUE(known.AllAnswered({"b", "c"}));
}

TEST(FleetRolloutTest, UnpushedAgentsAreSkippedWhenTheRolloutStops) {
  RolloutProgress progress;
  for (const auto& a : Names(4)) progress.AddAgent(a);
  progress.Pushed("a", 1);
  progress.Pushed("b", 2);
  progress.Observe(AckFor("a", 1, "refused"), kNow);
  progress.SkipUnpushed();
  EXPECT_EQ(progress.Count(), (Tally{0, 0, 1, 1, 2, 4}));
  EXPECT_EQ(FormatProgress(progress.Count()),
            "applied 0 / unchanged 0 / failed 1 / pending 1 / skipped 2 of 4");
  EXPECT_EQ(progress.WantedVersions(), std::vector<uint64_t>{2});

  RolloutReport report;
  report.target = FleetTarget::Group("web");
  report.staged = true;
  report.stopped = "canary_failed";
  report.agents = progress.agents();
  report.tally = progress.Count();
  report.exit_code = RolloutExitCode(report.tally);
  const std::string text = FormatRolloutReport(report);
  EXPECT_NE(text.find("AGENT  OUTCOME  VERSION  MS  ERROR\n"), std::string::npos) << text;
  EXPECT_NE(text.find("a      refused  1        12  invalid_config: bad\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("c      skipped  -        -   -\n"), std::string::npos) << text;
  EXPECT_NE(text.find("the other agents of group/web keep their previous config"),
            std::string::npos);
  json as_json = RolloutReportToJson(report);
  EXPECT_EQ(as_json["counts"]["skipped"], 2);
  EXPECT_EQ(as_json["agents"][2]["version"], nullptr);
  EXPECT_EQ(as_json["stopped"], "canary_failed");
  EXPECT_EQ(as_json["exit_code"], kExitPartialFailure);
}

// ---- command line ----

TEST(FleetCommandLineTest, ParsesTheFleetCommands) {
  auto serve = ParseCommandLine(
      {"fleet", "serve", "--pub", "ipc:///p", "--router", "ipc:///r", "--control=ipc:///c",
       "--state-dir", "/var/lib/x", "--id", "ctl-a", "--beacon-interval", "0.25"},
      {});
  ASSERT_TRUE(serve.ok()) << serve.status().ToString();
  EXPECT_EQ(serve->command, Command::kFleetServe);
  EXPECT_EQ(serve->fleet.pub_endpoint, "ipc:///p");
  EXPECT_EQ(serve->fleet.router_endpoint, "ipc:///r");
  EXPECT_EQ(serve->fleet.control_endpoint, "ipc:///c");
  EXPECT_EQ(serve->fleet.state_dir, "/var/lib/x");
  EXPECT_EQ(serve->fleet.id, "ctl-a");
  EXPECT_EQ(serve->fleet.beacon_interval, milliseconds(250));

  Environment bad_env;
  bad_env.agent_endpoint = "nonsense";  // not used by fleet commands, so not in their way
  auto push = ParseCommandLine(
      {"fleet", "push", "web.cfg", "--agent", "a1", "--control", "tcp://10.0.0.1:7000", "--canary",
       "1", "--batch", "5", "--stop-on-failure", "--expect", "9", "--force", "--json"},
      bad_env);
  ASSERT_TRUE(push.ok()) << push.status().ToString();
  EXPECT_EQ(push->command, Command::kFleetPush);
  EXPECT_EQ(push->file, "web.cfg");
  EXPECT_EQ(push->fleet.target, FleetTarget::Agent("a1"));
  EXPECT_EQ(push->agent_endpoint, "nonsense") << "--agent names the target here";
  EXPECT_EQ(push->fleet.canary, 1u);
  EXPECT_EQ(push->fleet.batch, 5u);
  EXPECT_EQ(push->fleet.expect, 9u);
  EXPECT_TRUE(push->fleet.stop_on_failure);
  EXPECT_TRUE(push->force);
  EXPECT_TRUE(push->json);

  auto group =
      ParseCommandLine({"--control", "ipc:///c", "fleet", "push", "-", "--group", "web"}, {});
  ASSERT_TRUE(group.ok()) << group.status().ToString();
  EXPECT_EQ(group->fleet.target, FleetTarget::Group("web"));
  EXPECT_EQ(group->fleet.canary, 0u);
  EXPECT_FALSE(group->fleet.expect.has_value());

  auto agents = ParseCommandLine({"fleet", "agents", "--control", "ipc:///c"}, {});
  ASSERT_TRUE(agents.ok());
  EXPECT_EQ(agents->command, Command::kFleetAgents);

  auto curve = ParseCommandLine({"fleet", "serve", "--pub", "tcp://10.0.0.1:7001", "--router",
                                 "tcp://10.0.0.1:7002", "--control", "ipc:///c", "--state-dir",
                                 "/s", "--curve-key", "ctl_secret", "--clients", "/etc/agents"},
                                {});
  ASSERT_TRUE(curve.ok()) << curve.status().ToString();
  EXPECT_EQ(curve->curve_key, "ctl_secret");
  EXPECT_EQ(curve->fleet.clients, "/etc/agents");
  EXPECT_FALSE(curve->fleet.allow_insecure);
  Environment env_keys;  // lbctl's keys towards agents are not the controller's
  env_keys.curve_key = "lbctl_secret";
  env_keys.server_key = "agent.pub";
  auto insecure = ParseCommandLine(
      {"fleet", "serve", "--pub", "tcp://10.0.0.1:7001", "--router", "tcp://10.0.0.1:7002",
       "--control", "ipc:///c", "--state-dir", "/s", "--allow-insecure"},
      env_keys);
  ASSERT_TRUE(insecure.ok()) << insecure.status().ToString();
  EXPECT_TRUE(insecure->fleet.allow_insecure);
  EXPECT_EQ(insecure->curve_key, "");
  // --agent keeps its meaning elsewhere.
  auto ping = ParseCommandLine({"--agent", "tcp://10.0.0.2:5555", "ping"}, {});
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(ping->agent_endpoint, "tcp://10.0.0.2:5555");
}

TEST(FleetCommandLineTest, BadFleetUsageExitsTwo) {
  const std::vector<std::string> serve = {"fleet",    "serve",    "--pub",     "ipc:///p",
                                          "--router", "ipc:///r", "--control", "ipc:///c"};
  const std::vector<std::string> push = {"fleet", "push", "f.cfg", "--control", "ipc:///c"};
  auto with = [](std::vector<std::string> base, std::vector<std::string> more) {
    base.insert(base.end(), more.begin(), more.end());
    return base;
  };
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"fleet"}, "fleet needs a command: serve, push or agents"},
      {{"fleet", "launch"}, "unknown fleet command \"launch\""},
      {serve, "fleet serve needs --state-dir DIR"},
      {with(serve, {"--state-dir", "/s", "--pub", "nowhere"}), "--pub wants a ZeroMQ endpoint"},
      {with(serve, {"--state-dir", "/s", "--beacon-interval", "0"}), "--beacon-interval wants"},
      {with(serve, {"--state-dir", "/s", "--id", "a/b"}), "--id wants a name"},
      {with(serve, {"--state-dir", "/s", "extra"}), "fleet serve takes no arguments"},
      {{"fleet", "push", "f.cfg", "--all"}, "fleet push needs --control ENDPOINT"},
      {{"fleet", "push", "--all", "--control", "ipc:///c"}, "fleet push needs a FILE"},
      {push, "fleet push needs a target: --all, --group G or --agent ID"},
      {with(push, {"--all", "--group", "web"}), "fleet push takes one target"},
      {with(push, {"--group", "a/b"}), "--group wants a name"},
      {with(push, {"--all", "--canary", "0"}), "--canary wants a positive whole number"},
      {with(push, {"--all", "--stop-on-failure"}), "--stop-on-failure needs --canary or --batch"},
      {with(push, {"--all", "--pub", "ipc:///p"}), "--pub is an option of fleet serve only"},
      {{"fleet", "agents"}, "fleet agents needs --control ENDPOINT"},
      {{"status", "--control", "ipc:///c"}, "--control is an option of fleet serve, push and"},
      {{"ping", "--all"}, "--all is an option of fleet push only"},
      {with(serve, {"--state-dir", "/s", "--curve-key", "k"}),
       "fleet serve --curve-key needs --clients FILE|DIR"},
      {with(serve, {"--state-dir", "/s", "--clients", "d"}),
       "fleet serve --clients needs --curve-key FILE"},
      {with(serve, {"--state-dir", "/s", "--curve-key", "k", "--clients", "d", "--allow-insecure"}),
       "--allow-insecure is for serving without CURVE"},
      {with(serve, {"--state-dir", "/s", "--server-key", "k"}),
       "--server-key is an option of the commands that talk to the agent only"},
      {with(push, {"--all", "--clients", "d"}), "--clients is an option of fleet serve only"},
      {{"ping", "--allow-insecure"}, "--allow-insecure is an option of fleet serve only"},
  };
  for (const Case& c : cases) {
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    RunOutput r = RunLbctl(c.args);
    EXPECT_EQ(r.code, kExitUsage) << joined << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << joined << "\n" << r.err;
  }
  RunOutput help = RunLbctl({"fleet", "help"});
  EXPECT_EQ(help.code, kExitOk);
  for (const char* part :
       {"fleet serve --pub ENDPOINT", "--curve-key FILE --clients FILE|DIR", "--allow-insecure",
        "--control must be local", "fleet push FILE", "--canary N", "--batch K",
        "--stop-on-failure", "fleet agents", "4  fleet push", "5  fleet push"}) {
    EXPECT_NE(help.out.find(part), std::string::npos) << part;
  }
}

// ---- the real controller, fake agents ----

// lbctl fleet serve on ipc:// sockets in `dir`, served by its own thread.
class RunningController {
 public:
  explicit RunningController(const std::string& dir, const std::string& id = "ctl-1",
                             const std::function<void(ServeOptions&)>& adjust = nullptr) {
    options_.pub_endpoint = "ipc://" + dir + "/pub";
    options_.router_endpoint = "ipc://" + dir + "/router";
    options_.control_endpoint = "ipc://" + dir + "/control";
    options_.state_dir = dir + "/state";
    options_.id = id;
    options_.beacon_interval = milliseconds(50);
    if (adjust) adjust(options_);
    controller_ = std::make_unique<FleetController>(context_, options_, log_);
    const proto::Status open = controller_->Open();
    EXPECT_TRUE(open.ok()) << open.ToString();
    if (!open.ok()) return;
    thread_ = std::thread([this] {
      const proto::Status run = controller_->Run([this] { return stop_.load(); });
      EXPECT_TRUE(run.ok()) << run.ToString();
    });
  }
  ~RunningController() { Stop(); }

  // Stops serving; the log is complete afterwards.
  std::string Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    controller_.reset();
    return log_.str();
  }

  const ServeOptions& options() const { return options_; }

 private:
  ServeOptions options_;
  zmq::context_t context_;
  std::ostringstream log_;  // written by the serving and ZAP threads, read after Stop()
  std::unique_ptr<FleetController> controller_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The agent's side of the protocol, on a thread of its own: a SUB socket subscribed to its
// topics and a DEALER whose routing id is its id. It says hello at start and whenever a beacon's
// `latest` is above what the controller last confirmed; it processes every push above the last
// version it processed (the outcome comes from `decide`) and acks it, and acks older ones
// "ignored".
class FakeFleetAgent {
 public:
  using Decide = std::function<std::string(const json& push)>;  // applied/unchanged/refused

  struct Seen {
    int beacons = 0;
    int uptodates = 0;
    uint64_t applied_version = 0;
    uint64_t synced_version = 0;
    std::vector<json> processed;   // pushes it acted on, in order
    std::vector<std::string> via;  // "pub" or "router", for each of them
  };

  // With `keys`, both sockets are CURVE clients of the controller.
  FakeFleetAgent(
      const ServeOptions& controller, std::string id, std::vector<std::string> groups,
      uint64_t applied_version = 0,
      Decide decide = [](const json&) { return std::string("applied"); },
      std::optional<common::CurveClientKeys> keys = std::nullopt)
      : id_(std::move(id)),
        groups_(std::move(groups)),
        decide_(std::move(decide)),
        keys_(std::move(keys)) {
    seen_.applied_version = applied_version;
    thread_ = std::thread([this, controller] { Serve(controller); });
  }
  ~FakeFleetAgent() {
    stop_ = true;
    thread_.join();
  }

  // Waits until `ready(seen)`; false after kWait.
  bool WaitFor(const std::function<bool(const Seen&)>& ready) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kWait, [&] { return ready(seen_); });
  }
  Seen seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  void Serve(const ServeOptions& controller) {
    zmq::socket_t sub(context_, zmq::socket_type::sub);
    zmq::socket_t dealer(context_, zmq::socket_type::dealer);
    sub.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::routing_id, id_);
    if (keys_) {
      common::MakeCurveClient(sub, keys_->own, keys_->server_public_key);
      common::MakeCurveClient(dealer, keys_->own, keys_->server_public_key);
    }
    for (const std::string& topic : Topics()) sub.set(zmq::sockopt::subscribe, topic);
    sub.connect(controller.pub_endpoint);
    dealer.connect(controller.router_endpoint);
    SendHello(dealer);
    while (!stop_) {
      zmq::pollitem_t items[] = {{sub.handle(), 0, ZMQ_POLLIN, 0},
                                 {dealer.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, milliseconds(20));
      if (items[0].revents & ZMQ_POLLIN) {
        zmq::message_t topic, body;
        (void)sub.recv(topic);
        (void)sub.recv(body);
        auto message = proto::DecodeMsgpack(body.to_string_view(), proto::DecodeLimits());
        if (message.ok()) Handle(*message, "pub", dealer);
      }
      if (items[1].revents & ZMQ_POLLIN) {
        zmq::message_t body;
        (void)dealer.recv(body);
        auto message = proto::DecodeMsgpack(body.to_string_view(), proto::DecodeLimits());
        EXPECT_TRUE(message.ok());
        if (message.ok()) Handle(*message, "router", dealer);
      }
    }
  }

  std::vector<std::string> Topics() const {
    std::vector<std::string> topics = {"fleet/all", "fleet/agent/" + id_, "fleet/beacon"};
    for (const auto& g : groups_) topics.push_back("fleet/group/" + g);
    return topics;
  }

  void SendHello(zmq::socket_t& dealer) {
    json hello;
    {
      std::lock_guard lock(mutex_);
      hello = Hello(id_, groups_, seen_.applied_version, seen_.synced_version);
    }
    dealer.send(zmq::buffer(Frame(hello)), zmq::send_flags::none);
  }

  void Handle(const json& message, const std::string& via, zmq::socket_t& dealer) {
    const std::string type = message.value("type", "");
    std::unique_lock lock(mutex_);
    if (type == "beacon") {
      ++seen_.beacons;
      const bool behind = message["latest"].get<uint64_t>() > seen_.synced_version;
      changed_.notify_all();
      lock.unlock();
      if (behind) SendHello(dealer);
      return;
    }
    if (type == "uptodate") {
      ++seen_.uptodates;
      seen_.synced_version = message["latest"].get<uint64_t>();
      changed_.notify_all();
      return;
    }
    if (type != "push") return;
    auto target = TargetFromJson(message["target"]);
    if (!target.ok() || !TargetMatches(*target, id_, groups_)) return;  // fleet/group/web2
    const uint64_t version = message["version"].get<uint64_t>();
    std::string outcome = "ignored";
    if (version > seen_.applied_version) {
      outcome = decide_(message);
      seen_.applied_version = version;
      seen_.synced_version = std::max(seen_.synced_version, version);
      seen_.processed.push_back(message);
      seen_.via.push_back(via);
    }
    changed_.notify_all();
    lock.unlock();
    dealer.send(zmq::buffer(Frame(AckMessage(id_, version, outcome))), zmq::send_flags::none);
  }

  const std::string id_;
  const std::vector<std::string> groups_;
  const Decide decide_;
  const std::optional<common::CurveClientKeys> keys_;
  zmq::context_t context_;
  std::mutex mutex_;
  std::condition_variable changed_;
  Seen seen_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

bool HeardABeacon(const FakeFleetAgent::Seen& seen) { return seen.beacons > 0; }

TEST(FleetServeTest, HelloGetsTheDesiredStateAndPushesReachAgentsOverPub) {
  TempDir tmp;
  RunningController controller(tmp.path());
  const std::string control = controller.options().control_endpoint;
  FakeFleetAgent a1(controller.options(), "a1", {"web"});
  FakeFleetAgent a2(controller.options(), "a2", {"db"});
  ASSERT_TRUE(a1.WaitFor([](const auto& s) { return s.uptodates > 0 && s.beacons > 0; }));
  ASSERT_TRUE(a2.WaitFor([](const auto& s) { return s.uptodates > 0 && s.beacons > 0; }));

  RunOutput push =
      RunLbctl({"fleet", "push", "-", "--group", "web", "--control", control, "--timeout", "10"},
               "frontend web\n");
  EXPECT_EQ(push.code, kExitOk) << push.err << push.out;
  EXPECT_NE(push.out.find("a1     applied  1"), std::string::npos) << push.out;
  EXPECT_NE(push.out.find("applied 1 / unchanged 0 / failed 0 / pending 0 of 1"), std::string::npos)
      << push.out;
  EXPECT_NE(push.err.find("pushed version 1 to group/web: 1 known agent match"), std::string::npos)
      << push.err;
  FakeFleetAgent::Seen seen = a1.seen();
  ASSERT_EQ(seen.processed.size(), 1u);
  EXPECT_EQ(seen.processed[0]["args"]["config"], "frontend web\n");
  EXPECT_EQ(seen.processed[0]["controller"], "ctl-1");
  EXPECT_EQ(a2.seen().processed.size(), 0u) << "not in web";

  RunOutput agents = RunLbctl({"fleet", "agents", "--control", control, "--json"});
  ASSERT_EQ(agents.code, kExitOk) << agents.err;
  json listed = json::parse(agents.out);
  ASSERT_EQ(listed["agents"].size(), 2u);
  EXPECT_EQ(listed["agents"][0]["agent"], "a1");
  EXPECT_EQ(listed["agents"][0]["applied_version"], 1);
  EXPECT_EQ(listed["agents"][0]["last_ack"]["outcome"], "applied");
  EXPECT_EQ(listed["agents"][1]["desired_version"], 0);
  RunOutput table = RunLbctl({"fleet", "agents", "--control", control});
  EXPECT_NE(table.out.find("controller ctl-1, latest version 1, 2 agents known"), std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("a1     web     bbbbbbbbbbbb  1        1"), std::string::npos)
      << table.out;

  const std::string log = controller.Stop();
  EXPECT_NE(log.find("hello from a1 (groups web, applied 0"), std::string::npos) << log;
  EXPECT_NE(log.find("push v1 to group/web (reload, 13 bytes): 1 known agent match"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("ack from a1: v1 applied"), std::string::npos) << log;
  EXPECT_NE(log.find("controller ctl-1 stopping"), std::string::npos) << log;
}

TEST(FleetServeTest, ARestartedControllerAnswersHellosFromItsStateDir) {
  TempDir tmp;
  {
    RunningController controller(tmp.path());
    RunOutput push = RunLbctl(
        {"fleet", "push", "-", "--all", "--control", controller.options().control_endpoint},
        "global\n");
    EXPECT_EQ(push.code, kExitOk) << push.err;
  }
  RunningController restarted(tmp.path());
  FakeFleetAgent fresh(restarted.options(), "a3", {"web"});
  ASSERT_TRUE(fresh.WaitFor([](const auto& s) { return !s.processed.empty(); }));
  FakeFleetAgent::Seen seen = fresh.seen();
  EXPECT_EQ(seen.via[0], "router") << "the answer to its hello";
  EXPECT_EQ(seen.processed[0]["version"], 1);
  EXPECT_EQ(seen.processed[0]["args"]["config"], "global\n");

  FakeFleetAgent current(restarted.options(), "a4", {}, 1);
  ASSERT_TRUE(current.WaitFor([](const auto& s) { return s.uptodates > 0; }));
  EXPECT_TRUE(current.seen().processed.empty());
}

TEST(FleetServeTest, BatchesWaveByWaveAndRecordsTheTargetLast) {
  TempDir tmp;
  RunningController controller(tmp.path());
  const std::string control = controller.options().control_endpoint;
  FakeFleetAgent a1(controller.options(), "a1", {"web"});
  FakeFleetAgent a2(controller.options(), "a2", {"web"});
  FakeFleetAgent a3(controller.options(), "a3", {"web"});
  for (auto* agent : {&a1, &a2, &a3}) ASSERT_TRUE(agent->WaitFor(HeardABeacon));
  ASSERT_TRUE(a3.WaitFor([](const auto& s) { return s.uptodates > 0; }));

  RunOutput push = RunLbctl({"fleet", "push", "-", "--group", "web", "--batch", "2", "--control",
                             control, "--timeout", "10", "--json"},
                            "v2\n");
  ASSERT_EQ(push.code, kExitOk) << push.err << push.out;
  json report = json::parse(push.out);
  EXPECT_EQ(report["versions"], json({1, 2, 3, 4}));
  EXPECT_EQ(report["final_version"], 4);
  EXPECT_EQ(report["counts"]["applied"], 3);
  EXPECT_EQ(report["agents"][2]["agent"], "a3");
  EXPECT_EQ(report["agents"][2]["version"], 3);
  EXPECT_NE(push.err.find("wave 1 of 2: a1, a2"), std::string::npos) << push.err;
  EXPECT_NE(push.err.find("wave 2 of 2: a3"), std::string::npos) << push.err;

  // Each agent got its own push, then the group's, with the same config: unchanged for them.
  for (auto* agent : {&a1, &a2, &a3}) {
    ASSERT_TRUE(agent->WaitFor([](const auto& s) { return s.applied_version == 4; }));
  }
  EXPECT_EQ(a3.seen().processed[0]["target"], json({{"kind", "agent"}, {"name", "a3"}}));
  // A late agent of the group converges on the config of the rollout.
  FakeFleetAgent late(controller.options(), "a9", {"web"});
  ASSERT_TRUE(late.WaitFor([](const auto& s) { return !s.processed.empty(); }));
  EXPECT_EQ(late.seen().processed[0]["version"], 4);
  EXPECT_EQ(late.seen().processed[0]["args"]["config"], "v2\n");
}

TEST(FleetServeTest, AFailedCanaryStopsTheRollout) {
  TempDir tmp;
  RunningController controller(tmp.path());
  const std::string control = controller.options().control_endpoint;
  auto refuse = [](const json&) { return std::string("refused"); };
  FakeFleetAgent a1(controller.options(), "a1", {"web"}, 0, refuse);
  FakeFleetAgent a2(controller.options(), "a2", {"web"});
  for (auto* agent : {&a1, &a2}) {
    ASSERT_TRUE(agent->WaitFor([](const auto& s) { return s.beacons > 0 && s.uptodates > 0; }));
  }

  RunOutput push = RunLbctl(
      {"fleet", "push", "-", "--group", "web", "--canary", "1", "--control", control}, "bad\n");
  EXPECT_EQ(push.code, kExitPartialFailure) << push.err << push.out;
  EXPECT_NE(push.out.find("a1     refused  1        42  invalid_config: haproxy -c said no"),
            std::string::npos)
      << push.out;
  EXPECT_NE(push.out.find("a2     skipped  -"), std::string::npos) << push.out;
  EXPECT_NE(push.out.find("stopped: a canary did not apply the config"), std::string::npos);
  EXPECT_TRUE(a2.seen().processed.empty()) << "the rest keeps its config";

  // Nothing was recorded for the group: a2 says hello again and stays where it was.
  FakeFleetAgent late(controller.options(), "a5", {"web"});
  ASSERT_TRUE(late.WaitFor([](const auto& s) { return s.uptodates > 0; }));
  EXPECT_TRUE(late.seen().processed.empty());
}

TEST(FleetServeTest, PendingAgentsRefusalsAndAnAbsentControllerHaveTheirExitCodes) {
  TempDir tmp;
  RunningController controller(tmp.path());
  const std::string control = controller.options().control_endpoint;
  {
    // Known (it said hello), then gone: its ack never comes.
    FakeFleetAgent gone(controller.options(), "gone", {"web"});
    ASSERT_TRUE(gone.WaitFor([](const auto& s) { return s.uptodates > 0; }));
  }
  RunOutput push =
      RunLbctl({"fleet", "push", "-", "--all", "--control", control, "--timeout", "0.5"}, "x\n");
  EXPECT_EQ(push.code, kExitRolloutTimeout) << push.err << push.out;
  EXPECT_NE(push.out.find("gone   pending  1"), std::string::npos) << push.out;

  RunOutput expect = RunLbctl(
      {"fleet", "push", "-", "--all", "--expect", "2", "--control", control, "--timeout", "0.3"},
      "x\n");
  EXPECT_EQ(expect.code, kExitRolloutTimeout) << expect.err << expect.out;
  EXPECT_NE(expect.out.find("gone   pending  2"), std::string::npos) << expect.out;
  EXPECT_NE(expect.out.find("pending 2 of 2\n1 more expected agent never answered"),
            std::string::npos)
      << expect.out;

  // The controller cannot save the push (its state file is a directory now): refused, 1.
  const std::string state_file = controller.options().state_dir + "/fleet-controller.json";
  std::filesystem::remove(state_file);
  std::filesystem::create_directories(state_file + "/blocker");
  RunOutput refused = RunLbctl({"fleet", "push", "-", "--all", "--control", control}, "x\n");
  EXPECT_EQ(refused.code, kExitRefused) << refused.err << refused.out;
  EXPECT_NE(refused.err.find("lbctl: internal: cannot record version 3, nothing was pushed"),
            std::string::npos)
      << refused.err;
  EXPECT_EQ(refused.out, "");

  controller.Stop();
  RunOutput unreachable = RunLbctl({"fleet", "agents", "--control", control, "--timeout", "0.2"});
  EXPECT_EQ(unreachable.code, kExitUnreachable);
  EXPECT_NE(unreachable.err.find("is lbctl fleet serve running?"), std::string::npos)
      << unreachable.err;
}

// ---- security: CURVE on PUB/ROUTER, local-only endpoints without it ----

// Opens a FleetController with `adjust`ed options on ipc:// in `dir`; its status and log.
std::pair<proto::Status, std::string> OpenController(
    const std::string& dir, const std::function<void(ServeOptions&)>& adjust) {
  ServeOptions options;
  options.pub_endpoint = "ipc://" + dir + "/pub";
  options.router_endpoint = "ipc://" + dir + "/router";
  options.control_endpoint = "ipc://" + dir + "/control";
  options.state_dir = dir + "/state";
  options.id = "ctl-1";
  adjust(options);
  zmq::context_t context;
  std::ostringstream log;
  proto::Status status;
  {
    FleetController controller(context, options, log);
    status = controller.Open();
  }
  return {status, log.str()};
}

TEST(FleetServeTest, OpenRefusesUnauthenticatedEndpointsOtherHostsCouldReach) {
  TempDir tmp;
  // The control socket has no authentication at all: local only, whatever else is set.
  auto [control, control_log] =
      OpenController(tmp.path(), [](ServeOptions& o) { o.control_endpoint = "tcp://0.0.0.0:0"; });
  EXPECT_EQ(control.code(), proto::ErrorCode::kBadRequest);
  EXPECT_NE(control.message().find("refusing to bind the control socket on \"tcp://0.0.0.0:0\": "
                                   "it has no authentication"),
            std::string::npos)
      << control.message();
  auto [insecure_control, log2] = OpenController(tmp.path(), [](ServeOptions& o) {
    o.control_endpoint = "tcp://*:0";
    o.allow_insecure = true;
  });
  EXPECT_EQ(insecure_control.code(), proto::ErrorCode::kBadRequest) << "not even with the flag";

  // PUB and ROUTER: without CURVE, only loopback or ipc://, unless allow_insecure.
  for (const char* which : {"pub", "router"}) {
    auto [refused, log] = OpenController(tmp.path(), [&](ServeOptions& o) {
      (std::string(which) == "pub" ? o.pub_endpoint : o.router_endpoint) = "tcp://0.0.0.0:0";
    });
    EXPECT_EQ(refused.code(), proto::ErrorCode::kBadRequest) << which;
    EXPECT_NE(refused.message().find("refusing to bind the " + std::string(which) +
                                     " socket on \"tcp://0.0.0.0:0\" without CURVE"),
              std::string::npos)
        << refused.message();
    EXPECT_NE(refused.message().find("--allow-insecure"), std::string::npos);
  }
  auto [allowed, warned] = OpenController(tmp.path(), [](ServeOptions& o) {
    o.router_endpoint = "tcp://0.0.0.0:0";
    o.allow_insecure = true;
  });
  EXPECT_TRUE(allowed.ok()) << allowed.ToString();
  EXPECT_NE(warned.find("WARNING: the router socket tcp://0.0.0.0:0 is reachable from other hosts "
                        "WITHOUT authentication"),
            std::string::npos)
      << warned;
  auto [loopback, quiet] = OpenController(tmp.path(), [](ServeOptions& o) {
    o.pub_endpoint = "tcp://127.0.0.1:0";
    o.router_endpoint = "tcp://127.0.0.1:0";
    o.control_endpoint = "tcp://127.0.0.1:0";
  });
  EXPECT_TRUE(loopback.ok()) << loopback.ToString();
  EXPECT_EQ(quiet.find("WARNING"), std::string::npos) << quiet;
  EXPECT_NE(quiet.find("CURVE off"), std::string::npos) << quiet;

  // CURVE needs a usable certificate and allow-list.
  auto cert = common::GenerateCertificate();
  ASSERT_TRUE(cert.ok());
  ASSERT_TRUE(common::WriteCertificate(tmp.File("ctl"), *cert, "test").ok());
  test_util::WriteFile(tmp.File("clients"), "not a key\n");
  auto [bad_list, log3] = OpenController(tmp.path(), [&](ServeOptions& o) {
    o.curve_key = tmp.File("ctl_secret");
    o.clients = tmp.File("clients");
  });
  EXPECT_EQ(bad_list.code(), proto::ErrorCode::kBadRequest);
  EXPECT_EQ(bad_list.message().rfind("--clients: ", 0), 0u) << bad_list.message();
  auto [public_only, log4] = OpenController(tmp.path(), [&](ServeOptions& o) {
    o.curve_key = tmp.File("ctl");
    o.clients = tmp.File("clients");
  });
  EXPECT_EQ(public_only.code(), proto::ErrorCode::kBadRequest);
  EXPECT_NE(public_only.message().find("--curve-key: "), std::string::npos);
  auto [half, log5] =
      OpenController(tmp.path(), [&](ServeOptions& o) { o.curve_key = tmp.File("ctl_secret"); });
  EXPECT_EQ(half.code(), proto::ErrorCode::kBadRequest);
  // With CURVE, any endpoint: the allow-list decides who gets in.
  test_util::WriteFile(tmp.File("clients"), "");
  auto [curve, curve_log] = OpenController(tmp.path(), [&](ServeOptions& o) {
    o.curve_key = tmp.File("ctl_secret");
    o.clients = tmp.File("clients");
    o.pub_endpoint = "tcp://0.0.0.0:0";
    o.router_endpoint = "tcp://0.0.0.0:0";
  });
  EXPECT_TRUE(curve.ok()) << curve.ToString();
  EXPECT_NE(curve_log.find("CURVE on (public key " + cert->public_key), std::string::npos)
      << curve_log;
}

TEST(FleetServeTest, CurveServesOnlyListedAgentsPinnedToThisController) {
  TempDir tmp;
  auto make = [&](const std::string& name) {
    auto cert = common::GenerateCertificate();
    EXPECT_TRUE(cert.ok());
    EXPECT_TRUE(common::WriteCertificate(tmp.File(name), *cert, "test").ok());
    return *cert;
  };
  const common::CurveCertificate ctl = make("ctl");
  const common::CurveCertificate impostor_ctl = make("impostor-ctl");
  const common::CurveCertificate a1_key = make("a1");
  const common::CurveCertificate a2_key = make("a2");
  const common::CurveCertificate stranger_key = make("stranger");
  test_util::WriteFile(tmp.File("clients"),
                       a1_key.public_key + " a1\n" + a2_key.public_key + " a2\n");
  RunningController controller(tmp.path(), "ctl-1", [&](ServeOptions& o) {
    o.curve_key = tmp.File("ctl_secret");
    o.clients = tmp.File("clients");
  });
  const std::string control = controller.options().control_endpoint;
  auto keys = [](const common::CurveCertificate& own, const std::string& server) {
    return common::CurveClientKeys{own, server};
  };
  auto applied = [](const json&) { return std::string("applied"); };
  FakeFleetAgent a1(controller.options(), "a1", {"web"}, 0, applied, keys(a1_key, ctl.public_key));
  // Listed, but pinned to another controller's key: it must not follow this one.
  FakeFleetAgent a2(controller.options(), "a2", {"web"}, 0, applied,
                    keys(a2_key, impostor_ctl.public_key));
  // Pinned to this controller, but not listed.
  FakeFleetAgent stranger(controller.options(), "stranger", {"web"}, 0, applied,
                          keys(stranger_key, ctl.public_key));
  // Plaintext.
  FakeFleetAgent plain(controller.options(), "plain", {"web"});
  ASSERT_TRUE(a1.WaitFor([](const auto& s) { return s.uptodates > 0 && s.beacons > 0; }));

  RunOutput push =
      RunLbctl({"fleet", "push", "-", "--group", "web", "--control", control, "--timeout", "10"},
               "frontend web\n");
  EXPECT_EQ(push.code, kExitOk) << push.err << push.out;
  EXPECT_NE(push.err.find("1 known agent match"), std::string::npos) << push.err;
  ASSERT_TRUE(a1.WaitFor([](const auto& s) { return s.processed.size() == 1; }));
  // Wait for 10 more beacons at a1 (50 ms apart): the others had as long to hear anything.
  const int beacons = a1.seen().beacons;
  ASSERT_TRUE(a1.WaitFor([&](const auto& s) { return s.beacons >= beacons + 10; }));
  for (FakeFleetAgent* outsider : {&a2, &stranger, &plain}) {
    const FakeFleetAgent::Seen seen = outsider->seen();
    EXPECT_EQ(seen.beacons, 0);
    EXPECT_EQ(seen.uptodates, 0);
    EXPECT_TRUE(seen.processed.empty());
  }

  RunOutput agents = RunLbctl({"fleet", "agents", "--control", control, "--json"});
  ASSERT_EQ(agents.code, kExitOk) << agents.err;
  json listed = json::parse(agents.out);
  ASSERT_EQ(listed["agents"].size(), 1u) << listed.dump();
  EXPECT_EQ(listed["agents"][0]["agent"], "a1");
  EXPECT_EQ(listed["agents"][0]["curve_key"], a1_key.public_key);
  RunOutput table = RunLbctl({"fleet", "agents", "--control", control});
  EXPECT_NE(table.out.find("CURVE KEY"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(a1_key.public_key), std::string::npos) << table.out;

  const std::string log = controller.Stop();
  EXPECT_NE(log.find("refused a CURVE client"), std::string::npos) << log;
  EXPECT_NE(log.find("key " + stranger_key.public_key + " is not in the allow-list"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("hello from stranger"), std::string::npos) << log;
  EXPECT_EQ(log.find("hello from plain"), std::string::npos) << log;
  EXPECT_EQ(log.find("hello from a2"), std::string::npos) << log;
}

}  // namespace
}  // namespace lb::cli
