// lb-controller (proto/PROTOCOL.md, "Fleet"), and lbctl's fleet commands against it.
//   - ControllerCore without sockets, with the test's clock: desired states (pending until an
//     agent applies a push, rejected when none does, the operator's call), hello answers, acks,
//     liveness, agent ids pinned to CURVE keys, the control commands, the version counter;
//   - StateDir: the state file's round trip (and the format before this one), its lock, what a
//     broken file or a failed save does;
//   - the settings file and the agent_keys file;
//   - the real Controller on ipc:// sockets in a temp dir, with FakeFleetAgents (a DEALER and a
//     SUB socket each, speaking the agent's side of the protocol) and lb::cli::Run for `fleet
//     push` and `fleet agents`. PUB drops what is published before a subscription reaches it, so
//     every fake agent waits for a beacon before a test pushes anything. With CURVE, the
//     controller runs a real ZapHandler and the fake agents are CURVE clients.
#include "controller.h"

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
#include "controller_core.h"
#include "fleet_rollout.h"
#include "lb/common/curve_socket.h"
#include "lb/common/log.h"
#include "lb/proto/codec.h"
#include "lb/proto/fleet.h"
#include "lbctl.h"
#include "lbctl_run.h"
#include "settings.h"
#include "state_dir.h"
#include "test_util.h"

namespace lb::controller {
namespace {

using cli::RunLbctl;
using cli::RunOutput;

using nlohmann::json;
using proto::FleetTarget;
using std::chrono::milliseconds;
using test_util::TempDir;

constexpr int64_t kNow = 1795516262123;
constexpr milliseconds kWait{10000};  // a bound for what should happen at once

std::string Frame(const json& message) { return proto::EncodeMsgpack(message); }

json Hello(const std::string& agent, std::vector<std::string> groups, uint64_t applied,
           uint64_t synced = 0, int64_t hello_interval_ms = 0,
           std::optional<uint64_t> completed = std::nullopt) {
  return proto::EncodeHello(
      {agent, groups, std::string(64, 'a'), applied, synced, completed, hello_interval_ms});
}

json AckMessage(const std::string& agent, uint64_t version, const std::string& outcome) {
  proto::FleetAck ack{agent, version, outcome, std::nullopt, std::string(64, 'b'), 42, nullptr};
  if (outcome == "refused") ack.error = proto::FleetError{"invalid_config", "haproxy -c said no"};
  return proto::EncodeAck(ack);
}

json ReloadArgs(const std::string& config) { return {{"config", config}}; }

json Control(ControllerCore& core, const std::string& cmd, const json& args,
             proto::ErrorCode expected = proto::ErrorCode::kOk, int64_t now = kNow) {
  proto::Request request{1, cmd, args};
  ControllerCore::ControlAnswer answer = core.OnControlRequest(request, now);
  EXPECT_EQ(answer.status.code(), expected) << cmd << ": " << answer.status.ToString();
  return answer.status.ok() ? answer.result : json(answer.status.message());
}

json PushArgs(const FleetTarget& target, const std::string& config, bool always = false,
              bool allow_no_match = false) {
  proto::FleetPushRequest request;
  request.target = target;
  request.args = ReloadArgs(config);
  if (always) request.desired = proto::FleetPushRequest::Desired::kAlways;
  request.allow_no_match = allow_no_match;
  return proto::EncodePushRequest(request);
}

// The version of the push a hello is answered with; 0 for an uptodate.
uint64_t Answer(ControllerCore& core, const json& hello, int64_t now = kNow) {
  auto answer = core.OnAgentFrame(hello["agent"].get<std::string>(), Frame(hello), now);
  EXPECT_TRUE(answer.reply.has_value()) << answer.log;
  if (!answer.reply || (*answer.reply)["type"] != "push") return 0;
  return (*answer.reply)["version"].get<uint64_t>();
}

StoredPush Stored(uint64_t version, const FleetTarget& target, const std::string& config) {
  return {version, target, "reload", std::make_shared<const json>(ReloadArgs(config)), kNow};
}

// Collects what is logged through common/log.h while it lives.
class LogCapture {
 public:
  LogCapture() {
    common::SetLogSink([this](common::LogLevel, std::string_view line) {
      std::lock_guard lock(mutex_);
      text_ += std::string(line) + "\n";
    });
  }
  ~LogCapture() { common::SetLogSink(nullptr); }
  std::string text() {
    std::lock_guard lock(mutex_);
    return text_;
  }

 private:
  std::mutex mutex_;
  std::string text_;
};

// ---- desired state ----

TEST(ControllerCoreTest, DesiredStateIsTheNewestMatchingDesiredPush) {
  // all v5, then agent a1 v6, then group web v7 (one counter across all pushes).
  PersistentState state;
  state.latest = 7;
  state.targets["all"].desired = Stored(5, FleetTarget::All(), "all");
  state.targets["agent/a1"].desired = Stored(6, FleetTarget::Agent("a1"), "a1 only");
  state.targets["group/web"].desired = Stored(7, FleetTarget::Group("web"), "web");
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

TEST(ControllerCoreTest, VersionsAreOneCounterAndADesiredAllPushDropsWhatItSupersedes) {
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
  EXPECT_EQ(core.state().targets.size(), 2u) << "a status push is no desired state";
  EXPECT_EQ(core.DesiredFor("a1", {"web"})->version, 2u)
      << "nobody awaited: desired at once (the operator's push for agents to come)";

  auto v4 = core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("two"), kNow);
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->version, 4u);
  ASSERT_EQ(core.state().targets.size(), 1u);
  EXPECT_EQ(core.state().targets.begin()->first, "all");
  EXPECT_EQ(core.DesiredFor("a1", {"web"})->version, 4u);
}

// ---- hello and ack ----

TEST(ControllerCoreTest, HelloIsAnsweredWithTheDesiredPushOrUptodate) {
  ControllerCore core("ctl-1", PersistentState(), nullptr);
  ControllerCore::AgentAnswer first = core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow);
  ASSERT_TRUE(first.reply.has_value()) << first.log;
  EXPECT_EQ(*first.reply, proto::EncodeUptodate({"ctl-1", 0}));
  EXPECT_NE(first.log.find("hello from a1 (groups web, applied 0"), std::string::npos) << first.log;

  ASSERT_TRUE(core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("base\n"), kNow).ok());
  ASSERT_TRUE(core.RecordPush(FleetTarget::Group("web"), "reload",
                              {{"config", "web\n"}, {"force", true}}, kNow)
                  .ok());

  // Behind: the whole desired push, exactly as it was published.
  ControllerCore::AgentAnswer behind =
      core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 1)), kNow);
  ASSERT_TRUE(behind.reply.has_value());
  EXPECT_EQ(*behind.reply, proto::EncodePush({"ctl-1",
                                              2,
                                              FleetTarget::Group("web"),
                                              "reload",
                                              {{"config", "web\n"}, {"force", true}}}));
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
  // A periodic hello that changes nothing is not worth a log line.
  auto quiet = core.OnAgentFrame("a9", Frame(Hello("a9", {}, 6, 6, 5000)), kNow);
  EXPECT_NE(quiet.log, "");
  auto again = core.OnAgentFrame("a9", Frame(Hello("a9", {}, 6, 6, 5000)), kNow + 5000);
  EXPECT_EQ(again.log, "") << "the liveness signal alone";
  ASSERT_TRUE(again.reply.has_value());

  const AgentRecord& a1 = core.agents().at("a1");
  EXPECT_EQ(a1.groups, std::vector<std::string>{"web"});
  EXPECT_EQ(a1.applied_version, 5u);
  EXPECT_EQ(a1.last_hello_ms, kNow);
}

TEST(ControllerCoreTest, AnElectedControllersEpochIsInEveryPushBeaconAndUptodate) {
  ControllerCore core("ctl-1", PersistentState(), nullptr);
  core.SetEpoch(4711);
  EXPECT_EQ(core.Beacon(kNow).body["epoch"], 4711);
  auto up = core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0, 0, 1000)), kNow);
  ASSERT_TRUE(up.reply.has_value());
  EXPECT_EQ((*up.reply)["type"], "uptodate");
  EXPECT_EQ((*up.reply)["epoch"], 4711);
  ControllerCore::ControlAnswer pushed =
      core.OnControlRequest({1, "push", PushArgs(FleetTarget::Group("web"), "web\n")}, kNow);
  ASSERT_TRUE(pushed.status.ok()) << pushed.status.ToString();
  ASSERT_TRUE(pushed.publish.has_value());
  EXPECT_EQ(pushed.publish->body["epoch"], 4711);
  // The hello answer is the published push, epoch included.
  auto behind = core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0, 0, 1000)), kNow);
  ASSERT_TRUE(behind.reply.has_value());
  EXPECT_EQ(*behind.reply, pushed.publish->body);
  // Without an election: no epoch on the wire.
  ControllerCore plain("ctl-2", PersistentState(), nullptr);
  EXPECT_FALSE(plain.Beacon(kNow).body.contains("epoch"));
}

TEST(ControllerCoreTest, MalformedAgentMessagesAreLoggedAndIgnored) {
  ControllerCore core("ctl", PersistentState(), nullptr);
  // What the messages say is proto's to check (fleet_proto_test.cc): here, that the core logs
  // it, with the sender, and does nothing else.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\xc1", "undecodable"},
      {Frame(json::array({1, 2})), "not a map"},
      {Frame({{"v", 1}, {"type", "hello"}, {"agent", "a/1"}}), "without '/'"},
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

TEST(ControllerCoreTest, AcksAreRecordedPerVersionAndTheFirstRealAnswerCounts) {
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

  auto acks = proto::ParseAcksResult(Control(core, "acks", {{"versions", {1, 2}}}));
  ASSERT_TRUE(acks.ok()) << acks.status().ToString();
  ASSERT_EQ(acks->acks.size(), 2u);
  EXPECT_EQ(acks->acks[0].ack.agent, "a1");
  EXPECT_EQ(acks->acks[0].ack.outcome, "applied");
  EXPECT_EQ(acks->acks[0].ack.total_ms, 42);
  EXPECT_EQ(acks->acks[0].received_ms, kNow + 5);
  EXPECT_EQ(acks->acks[1].ack.agent, "a9");
  EXPECT_EQ(acks->acks[1].ack.error->code, "invalid_config");
  EXPECT_EQ(core.agents().at("a1").applied_version, 1u);
  EXPECT_EQ(core.agents().at("a1").sha256, std::string(64, 'b'));

  Control(core, "acks", json::object(), proto::ErrorCode::kBadRequest);
  Control(core, "acks", {{"versions", {"one"}}}, proto::ErrorCode::kBadRequest);
}

TEST(ControllerCoreTest, ControlPushValidatesRecordsAndPublishes) {
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
  auto result = proto::ParsePushResult(answer.result);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->version, 1u);
  EXPECT_EQ(result->topic, "fleet/group/web");
  EXPECT_EQ(result->matching, std::vector<std::string>{"a1"});
  ASSERT_TRUE(answer.publish.has_value());
  EXPECT_EQ(answer.publish->topic, "fleet/group/web");
  EXPECT_EQ(
      answer.publish->body,
      proto::EncodePush(
          {"ctl", 1, FleetTarget::Group("web"), "reload", {{"config", "c\n"}, {"force", true}}}));
  EXPECT_NE(answer.log.find("push v1 to group/web (reload, 2 bytes): 1 known agent match; desired "
                            "once an agent applies it"),
            std::string::npos)
      << answer.log;

  using proto::ErrorCode;
  Control(core, "push", {{"args", ReloadArgs("c")}}, ErrorCode::kBadRequest);
  Control(core, "push", {{"target", {{"kind", "all"}}}, {"cmd", "rm"}, {"args", ReloadArgs("c")}},
          ErrorCode::kBadRequest);
  Control(core, "frobnicate", json::object(), ErrorCode::kUnknownCommand);
  EXPECT_EQ(core.latest(), 1u) << "refused pushes take no version";

  auto agents = proto::ParseAgentsResult(
      Control(core, "agents", {{"target", {{"kind", "group"}, {"name", "web"}}}}));
  ASSERT_TRUE(agents.ok()) << agents.status().ToString();
  ASSERT_EQ(agents->agents.size(), 1u);
  EXPECT_EQ(agents->agents[0].agent, "a1");
  EXPECT_EQ(agents->agents[0].desired_version, 0u) << "pending, not desired yet";
  EXPECT_EQ(agents->controller, "ctl");
  EXPECT_EQ(Control(core, "agents", json::object())["agents"].size(), 2u);
  EXPECT_EQ(Control(core, "ping", json::object())["latest"], 1);
}

// ---- the fleet gaps of issue 12 ----

TEST(ControllerCoreTest, APushMatchingNoKnownAgentIsRefusedUnlessAllowed) {
  ControllerCore core("ctl", PersistentState(), nullptr);
  core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow);
  const std::string refused = Control(core, "push", PushArgs(FleetTarget::Group("wbe"), "c\n"),
                                      proto::ErrorCode::kBadRequest);
  EXPECT_NE(refused.find("no agent the controller knows matches group/wbe (it knows 1 agent in "
                         "groups web); nothing was pushed"),
            std::string::npos)
      << refused;
  EXPECT_NE(refused.find("--allow-no-match"), std::string::npos) << refused;
  EXPECT_EQ(core.latest(), 0u) << "no version used up";
  Control(core, "push", PushArgs(FleetTarget::Agent("a2"), "c\n"), proto::ErrorCode::kBadRequest);

  // Allowed: recorded for agents that say hello later, and desired at once (nobody to wait for).
  json pushed = Control(core, "push", PushArgs(FleetTarget::Group("db"), "db\n", false, true));
  EXPECT_EQ(pushed["version"], 1);
  EXPECT_EQ(pushed["matching"], json::array());
  EXPECT_EQ(Answer(core, Hello("a2", {"db"}, 0)), 1u);
}

TEST(ControllerCoreTest, APushBecomesTheDesiredStateOnceAnAgentAppliedIt) {
  ControllerCore core("ctl", PersistentState(), nullptr);
  core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow);
  core.OnAgentFrame("a2", Frame(Hello("a2", {"web"}, 0)), kNow);
  Control(core, "push", PushArgs(FleetTarget::Group("web"), "v1\n", /*always=*/true));
  core.OnAgentFrame("a1", Frame(AckMessage("a1", 1, "applied")), kNow);
  core.OnAgentFrame("a2", Frame(AckMessage("a2", 1, "applied")), kNow);

  Control(core, "push", PushArgs(FleetTarget::Group("web"), "v2\n"));
  const TargetState& web = core.state().targets.at("group/web");
  ASSERT_TRUE(web.pending.has_value());
  EXPECT_EQ(web.pending->version, 2u);
  EXPECT_EQ(web.awaiting, (std::set<std::string>{"a1", "a2"}));
  // Meanwhile an agent that joins gets the config applied so far, and an uptodate that stays
  // below the pending push, so that it asks again once it is decided.
  EXPECT_EQ(Answer(core, Hello("late", {"web"}, 0)), 1u);
  auto waiting = core.OnAgentFrame("late", Frame(Hello("late", {"web"}, 1, 1)), kNow);
  EXPECT_EQ(*waiting.reply, proto::EncodeUptodate({"ctl", 1}));
  EXPECT_NE(waiting.log.find("a newer push is pending"), std::string::npos) << waiting.log;

  auto applied = core.OnAgentFrame("a2", Frame(AckMessage("a2", 2, "unchanged")), kNow);
  EXPECT_NE(applied.log.find("push v2 to group/web: applied by an agent; it is now the desired "
                             "state of group/web"),
            std::string::npos)
      << applied.log;
  EXPECT_EQ(core.DesiredFor("late", {"web"})->version, 2u);
  EXPECT_EQ(Answer(core, Hello("late", {"web"}, 1, 1)), 2u);
  auto listed = proto::ParseAgentsResult(Control(core, "agents", json::object()));
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->targets.size(), 1u);
  EXPECT_EQ(listed->targets[0].desired_version, 2u);
  EXPECT_EQ(listed->targets[0].desired_because, "applied");
  EXPECT_EQ(listed->targets[0].pending_version, 0u);
}

TEST(ControllerCoreTest, AnAwaitedAgentThatMissedAPendingPushGetsItOnHello) {
  // Pushed while a1 and a2 were known, but published before their SUB sockets were connected
  // (a restarted controller): their hellos show they never saw v2.
  ControllerCore core("ctl", PersistentState(), nullptr);
  core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow);
  core.OnAgentFrame("a2", Frame(Hello("a2", {"web"}, 0)), kNow);
  Control(core, "push", PushArgs(FleetTarget::Group("web"), "v1\n", /*always=*/true));
  core.OnAgentFrame("a1", Frame(AckMessage("a1", 1, "applied")), kNow);
  core.OnAgentFrame("a2", Frame(AckMessage("a2", 1, "applied")), kNow);
  Control(core, "push", PushArgs(FleetTarget::Group("web"), "v2\n"));
  ASSERT_TRUE(core.state().targets.at("group/web").pending.has_value());
  auto missed = core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 1, 1)), kNow);
  ASSERT_TRUE(missed.reply.has_value());
  auto push = proto::ParseControllerMessage(*missed.reply);
  ASSERT_TRUE(push.ok()) << push.status().ToString();
  ASSERT_TRUE(std::holds_alternative<proto::FleetPush>(*push));
  EXPECT_EQ(std::get<proto::FleetPush>(*push).version, 2u);
  EXPECT_NE(missed.log.find("sent pending push v2"), std::string::npos) << missed.log;
  // Once it has it (applied_version 2, still running), the hello is answered as before.
  auto running = core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 2, 1)), kNow);
  EXPECT_EQ(*running.reply, proto::EncodeUptodate({"ctl", 2}));
  // An agent that joined after the push is not given it while it is pending.
  EXPECT_EQ(Answer(core, Hello("late", {"web"}, 1, 1)), 0u);
}

TEST(ControllerCoreTest, APushEveryAgentRefusedIsNeverHandedToAgentsThatJoinLater) {
  ControllerCore core("ctl", PersistentState(), nullptr);
  core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow);
  core.OnAgentFrame("a2", Frame(Hello("a2", {"web"}, 0)), kNow);
  Control(core, "push", PushArgs(FleetTarget::Group("web"), "good\n", /*always=*/true));
  Control(core, "push", PushArgs(FleetTarget::Group("web"), "broken\n"));
  auto first = core.OnAgentFrame("a1", Frame(AckMessage("a1", 2, "refused")), kNow);
  EXPECT_TRUE(core.state().targets.at("group/web").pending.has_value()) << "a2 has not answered";
  auto last = core.OnAgentFrame("a2", Frame(AckMessage("a2", 2, "refused")), kNow);
  EXPECT_NE(last.log.find("push v2 to group/web: no agent applied it (every agent it waited for "
                          "refused it or went silent); group/web keeps v1"),
            std::string::npos)
      << last.log;
  const TargetState& web = core.state().targets.at("group/web");
  EXPECT_FALSE(web.pending.has_value());
  EXPECT_EQ(web.rejected_version, 2u);
  // A new agent of the group gets the last config that was applied somewhere.
  EXPECT_EQ(Answer(core, Hello("late", {"web"}, 0)), 1u);
  auto up = core.OnAgentFrame("late", Frame(Hello("late", {"web"}, 1, 1)), kNow);
  EXPECT_EQ(*up.reply, proto::EncodeUptodate({"ctl", 2})) << "nothing pending: the real latest";
  auto listed = proto::ParseAgentsResult(Control(core, "agents", json::object()));
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->targets.size(), 1u);
  EXPECT_EQ(listed->targets[0].desired_version, 1u);
  EXPECT_EQ(listed->targets[0].desired_because, "operator");
  EXPECT_EQ(listed->targets[0].rejected_version, 2u);
  for (const auto& agent : listed->agents) {
    EXPECT_EQ(agent.desired_version, 1u) << agent.agent;
  }
}

TEST(ControllerCoreTest, DesiredAlwaysIsTheOperatorsCall) {
  ControllerCore core("ctl", PersistentState(), nullptr);
  core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow);
  auto pushed =
      core.OnControlRequest({1, "push", PushArgs(FleetTarget::All(), "forced\n", true)}, kNow);
  EXPECT_NE(pushed.log.find("desired at once (desired = always)"), std::string::npos) << pushed.log;
  core.OnAgentFrame("a1", Frame(AckMessage("a1", 1, "refused")), kNow);
  EXPECT_EQ(core.DesiredFor("late", {})->version, 1u) << "refused, but the operator said so";
  EXPECT_EQ(core.state().targets.at("all").because, DesiredBecause::kOperator);
}

TEST(ControllerCoreTest, SilentAgentsAreLostAndAPushDoesNotWaitForThem) {
  ControllerCore core("ctl", PersistentState(), nullptr, {}, kNow);
  core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0, 0, 1000)), kNow);
  core.OnAgentFrame("a2", Frame(Hello("a2", {"web"}, 0, 0, 1000)), kNow);
  core.OnAgentFrame("old", Frame(Hello("old", {"web"}, 0)), kNow);  // no periodic hello
  const AgentRecord& a1 = core.agents().at("a1");
  EXPECT_EQ(core.Liveness(a1, kNow + 3000), proto::FleetLiveness::kAlive);
  EXPECT_EQ(core.Liveness(a1, kNow + 3001), proto::FleetLiveness::kLost);
  EXPECT_EQ(core.Liveness(core.agents().at("old"), kNow + 60000), proto::FleetLiveness::kUnknown);

  // a2 keeps saying hello; a1 went away.
  core.OnAgentFrame("a2", Frame(Hello("a2", {"web"}, 0, 0, 1000)), kNow + 2500);
  auto pushed =
      proto::ParsePushResult(Control(core, "push", PushArgs(FleetTarget::Group("web"), "v1\n"),
                                     proto::ErrorCode::kOk, kNow + 4000));
  ASSERT_TRUE(pushed.ok());
  EXPECT_EQ(pushed->matching, (std::vector<std::string>{"a2", "old"}));
  EXPECT_EQ(pushed->lost, std::vector<std::string>{"a1"});
  EXPECT_EQ(core.state().targets.at("group/web").awaiting, (std::set<std::string>{"a2", "old"}));
  auto listed = proto::ParseAgentsResult(
      Control(core, "agents", json::object(), proto::ErrorCode::kOk, kNow + 4000));
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->agents[0].agent, "a1");
  EXPECT_EQ(listed->agents[0].liveness, proto::FleetLiveness::kLost);
  EXPECT_EQ(listed->agents[1].liveness, proto::FleetLiveness::kAlive);

  // The pending push stops waiting for an agent once it is lost: when none is left, rejected.
  core.OnAgentFrame("old", Frame(AckMessage("old", 1, "refused")), kNow + 4100);
  EXPECT_TRUE(core.Tick(kNow + 5000).empty()) << "a2 is alive";
  const std::vector<std::string> decided = core.Tick(kNow + 5600);
  ASSERT_EQ(decided.size(), 1u);
  EXPECT_NE(decided[0].find("no agent applied it"), std::string::npos) << decided[0];
  EXPECT_EQ(core.state().targets.at("group/web").rejected_version, 1u);
}

TEST(ControllerCoreTest, APendingPushAgentsHeardOfOnlyBeforeARestartStopWaitingForInTime) {
  PersistentState state;
  state.latest = 3;
  state.targets["all"].pending = Stored(3, FleetTarget::All(), "x\n");
  state.targets["all"].awaiting = {"a1", "a2"};
  ControllerCore core("ctl", state, nullptr, {}, kNow);
  // a1 comes back: it processed v3 (completed) but its ack went to the old process.
  core.OnAgentFrame("a1", Frame(Hello("a1", {}, 3, 3, 1000, 3)), kNow + 100);
  EXPECT_EQ(core.state().targets.at("all").awaiting, std::set<std::string>{"a2"});
  EXPECT_TRUE(core.Tick(kNow + ControllerCore::kUnheardAgentGraceMs).empty());
  core.OnAgentFrame("a1", Frame(Hello("a1", {}, 3, 3, 1000, 3)), kNow + 29000);
  const auto decided = core.Tick(kNow + ControllerCore::kUnheardAgentGraceMs + 1);
  ASSERT_EQ(decided.size(), 1u) << "a2 never came back";
  EXPECT_EQ(core.state().targets.at("all").rejected_version, 3u);
}

TEST(ControllerCoreTest, AnAgentIdIsPinnedToTheCurveKeyOfItsFirstMessage) {
  const std::string key_a(40, 'a'), key_b(40, 'b'), key_c(40, 'c');
  ControllerCore core("ctl", PersistentState(), nullptr, {{"web-9", key_c}});
  auto first = core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow, key_a);
  ASSERT_TRUE(first.reply.has_value());
  EXPECT_EQ(core.state().agent_keys.at("a1"), key_a) << "pinned, and saved with the state";
  // Another allow-listed host says hello, then acks, under a1's id.
  auto posing = core.OnAgentFrame("a1", Frame(Hello("a1", {"db"}, 9)), kNow, key_b);
  EXPECT_FALSE(posing.reply.has_value());
  EXPECT_NE(
      posing.log.find("refused a message under agent id a1 with CURVE key " + key_b +
                      ": that id is pinned to key " + key_a + " (the key of its first message)"),
      std::string::npos)
      << posing.log;
  core.OnAgentFrame("a1", Frame(AckMessage("a1", 1, "applied")), kNow, key_b);
  const AgentRecord& a1 = core.agents().at("a1");
  EXPECT_EQ(a1.groups, std::vector<std::string>{"web"}) << "nothing of the impostor recorded";
  EXPECT_EQ(a1.applied_version, 0u);
  EXPECT_TRUE(a1.acks.empty());
  EXPECT_EQ(a1.refused_messages, 2u);
  EXPECT_EQ(a1.refused_key, key_b);
  EXPECT_TRUE(core.OnAgentFrame("a1", Frame(Hello("a1", {"web"}, 0)), kNow, key_a).reply);

  // A configured key wins over the first one seen.
  auto configured = core.OnAgentFrame("web-9", Frame(Hello("web-9", {}, 0)), kNow, key_a);
  EXPECT_FALSE(configured.reply.has_value());
  EXPECT_NE(configured.log.find("(configured in [security] agent_keys)"), std::string::npos)
      << configured.log;
  EXPECT_TRUE(core.OnAgentFrame("web-9", Frame(Hello("web-9", {}, 0)), kNow, key_c).reply);
  auto listed = proto::ParseAgentsResult(Control(core, "agents", json::object()));
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->agents[0].refused_messages, 2u);
  EXPECT_EQ(listed->agents[0].curve_key, key_a);
  // Without CURVE there is no key to pin.
  EXPECT_TRUE(core.OnAgentFrame("p1", Frame(Hello("p1", {}, 0)), kNow).reply);
  EXPECT_EQ(core.state().agent_keys.count("p1"), 0u);
}

// ---- state dir ----

TEST(StateDirTest, RestartKeepsTheCounterTheTargetsAndThePins) {
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
    core.OnAgentFrame("a1", Frame(Hello("a1", {"db"}, 0)), kNow, std::string(40, 'k'));
    ASSERT_TRUE(core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("all\n"), kNow).ok());
    ASSERT_TRUE(core.RecordPush(FleetTarget::Agent("a1"), "reload", ReloadArgs(latin1), kNow).ok());
    ASSERT_TRUE(core.RecordPush(FleetTarget::Agent("a2"), "reload", ReloadArgs(latin1), kNow).ok());
    ASSERT_TRUE(core.RecordPush(FleetTarget::All(), "status", json::object(), kNow).ok());
    ASSERT_TRUE(core.RecordPush(FleetTarget::Group("web"), "reload",
                                {{"config", "web\n"}, {"force", true}}, kNow + 1, false, {"a3"})
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
  EXPECT_NE(second.status().message().find("is in use by another lb-controller (pid "),
            std::string::npos)
      << second.status().message();

  auto loaded = (*state_dir)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->latest, 5u);
  EXPECT_EQ(loaded->controller_id, "ctl-1");
  ASSERT_EQ(loaded->targets.size(), 4u);
  const StoredPush& a1 = *loaded->targets.at("agent/a1").desired;
  EXPECT_EQ(a1.version, 2u);
  EXPECT_EQ(a1.args->at("config"), latin1);
  EXPECT_EQ(a1.args.get(), loaded->targets.at("agent/a2").desired->args.get()) << "stored once";
  const TargetState& web = loaded->targets.at("group/web");
  EXPECT_FALSE(web.desired.has_value());
  ASSERT_TRUE(web.pending.has_value());
  EXPECT_EQ(web.pending->version, 5u);
  EXPECT_EQ(web.pending->target, FleetTarget::Group("web"));
  EXPECT_EQ(*web.pending->args, json({{"config", "web\n"}, {"force", true}}));
  EXPECT_EQ(web.pending->ts_ms, kNow + 1);
  EXPECT_EQ(web.awaiting, std::set<std::string>{"a3"});
  EXPECT_EQ(loaded->agent_keys.at("a1"), std::string(40, 'k'));

  // A restarted controller answers hellos as the old one would have, and counts on.
  ControllerCore core("ctl-1", *loaded, state_dir->get());
  auto hello = core.OnAgentFrame("a1", Frame(Hello("a1", {"db"}, 1)), kNow);
  ASSERT_TRUE(hello.reply.has_value());
  EXPECT_EQ((*hello.reply)["version"], 2);
  EXPECT_EQ((*hello.reply)["args"]["config"], latin1);
  auto next = core.RecordPush(FleetTarget::All(), "reload", ReloadArgs("next\n"), kNow);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->version, 6u);
}

TEST(StateDirTest, AFileOfTheFormerFormatIsReadAsDesiredStates) {
  const std::string text = R"({"format": 1, "controller": "ctl-1", "latest": 4,
    "args": [{"json": {"config": "all\n"}}, {"json": {"config": "web\n"}}],
    "pushes": [{"version": 2, "target": {"kind": "all"}, "cmd": "reload", "args": 0, "ts_ms": 1},
               {"version": 4, "target": {"kind": "group", "name": "web"}, "cmd": "reload",
                "args": 1, "ts_ms": 2}]})";
  auto state = DecodeState(text, "old.json");
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(state->latest, 4u);
  EXPECT_EQ(state->targets.at("all").desired->version, 2u);
  EXPECT_EQ(state->targets.at("group/web").desired->args->at("config"), "web\n");
  // Saved again, it reads back the same.
  auto again = DecodeState(EncodeState(*state), "new.json");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(EncodeState(*again), EncodeState(*state));
}

TEST(StateDirTest, AFailedSaveChangesNothing) {
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

  proto::Request request{1, "push",
                         PushArgs(FleetTarget::All(), "t", false, /*allow_no_match=*/true)};
  ControllerCore::ControlAnswer answer = core.OnControlRequest(request, kNow);
  EXPECT_EQ(answer.status.code(), proto::ErrorCode::kInternal);
  EXPECT_FALSE(answer.publish.has_value()) << "nothing is published that was not saved";
}

TEST(StateDirTest, ABrokenStateFileIsAnErrorNotAnEmptyState) {
  TempDir tmp;
  const std::string file = tmp.File("fleet-controller.json");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "not JSON"},
      {R"({"format": 3})", "format"},
      {R"({"format": 2, "latest": -3, "args": [], "targets": []})", "\"latest\""},
      {R"({"format": 2, "latest": 1, "args": [], "targets": [{"key": "all", "desired":
          {"version": 1, "target": {"kind": "all"}, "cmd": "reload", "args": 0}}]})",
       "names no stored args"},
      {R"({"format": 2, "latest": 1, "args": [{"json": {}}], "targets": [{"key": "all",
          "desired": {"version": 2, "target": {"kind": "all"}, "cmd": "reload", "args": 0}}]})",
       "push 2 is not in 1..1"},
      {R"({"format": 2, "latest": 1, "args": [{"json": {}}], "targets": [{"key": "group/web",
          "desired": {"version": 1, "target": {"kind": "all"}, "cmd": "reload", "args": 0}}]})",
       "is stored under target group/web"},
      {R"({"format": 2, "latest": 1, "args": [], "targets": [{"key": "rack/1"}]})",
       "names no target"},
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

// ---- settings ----

TEST(ControllerSettingsTest, DefaultsKeysAndOneLineErrors) {
  auto defaults = ParseControllerSettings("", "c.cfg", "/etc/lb-controller");
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->pub_endpoint, "tcp://127.0.0.1:5557");
  EXPECT_EQ(defaults->router_endpoint, "tcp://127.0.0.1:5558");
  EXPECT_EQ(defaults->control_endpoint, "ipc:///run/lb-controller/control.sock");
  EXPECT_EQ(defaults->state_dir, "/var/lib/lb-controller");
  EXPECT_EQ(defaults->beacon_interval, milliseconds(1000));
  EXPECT_FALSE(defaults->id.empty()) << "the host name";
  EXPECT_FALSE(defaults->curve());

  auto set = ParseControllerSettings(
      "[controller]\nid = ctl-a\npub = tcp://0.0.0.0:7001\nrouter = tcp://0.0.0.0:7002\n"
      "control = ipc:///run/c.sock\nstate_dir = state\nbeacon_interval = 0.25\n"
      "[security]\ncurve_secret_key = ctl_secret\ncurve_clients = agents/\n"
      "agent_keys = pins\n",
      "c.cfg", "/etc/lb-controller");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->id, "ctl-a");
  EXPECT_EQ(set->state_dir, "/etc/lb-controller/state");
  EXPECT_EQ(set->beacon_interval, milliseconds(250));
  EXPECT_EQ(set->curve_secret_key, "/etc/lb-controller/ctl_secret");
  EXPECT_EQ(set->agent_keys, "/etc/lb-controller/pins");

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[controller]\nid = a/b\n", "c.cfg:2: [controller] id: \"a/b\" is not a name"},
      {"[controller]\npub = nowhere\n", "c.cfg:2: [controller] pub: expected a ZeroMQ endpoint"},
      {"[controller]\nbeacon_interval = 0\n", "[controller] beacon_interval: must be more than 0"},
      {"[controller]\nflavour = x\n", "unknown key (see etc/lb-controller.cfg)"},
      {"[fleet]\n", "unknown section [fleet]; expected [controller], [security]"},
      {"[security]\ncurve_secret_key = k\n", "curve_secret_key needs curve_clients"},
      {"[security]\ncurve_clients = d\n", "curve_clients needs curve_secret_key"},
      {"[security]\ncurve_secret_key = k\ncurve_clients = d\nallow_insecure = yes\n",
       "allow_insecure is for serving without CURVE"},
      {"[security]\nagent_keys = pins\n", "agent_keys pins agent ids to CURVE keys: it needs"},
  };
  for (const auto& [text, message] : bad) {
    auto parsed = ParseControllerSettings(text, "c.cfg", "/x");
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), proto::ErrorCode::kBadRequest);
    EXPECT_NE(parsed.status().message().find(message), std::string::npos)
        << parsed.status().message();
  }
  auto missing = LoadControllerSettings("/nonexistent/lb-controller.cfg");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/lb-controller.cfg: cannot open: No such "
                                            "file"),
            std::string::npos)
      << missing.status().message();
}

TEST(ControllerSettingsTest, EtcdStoreSectionTurnsOnHighAvailability) {
  auto defaults = ParseControllerSettings("", "c.cfg", "/x");
  ASSERT_TRUE(defaults.ok());
  EXPECT_FALSE(defaults->ha()) << "the state dir stays the default";
  EXPECT_EQ(defaults->lease_ttl_s, 3);
  EXPECT_EQ(defaults->etcd_prefix, "/lb-controller/");

  auto set = ParseControllerSettings(
      "[store]\netcd_endpoints = http://10.0.0.1:2379, http://10.0.0.2:2379,http://[::1]:2379\n"
      "etcd_prefix = /fleet-eu/\nlease_ttl = 2\netcd_timeout = 0.5\n",
      "c.cfg", "/x");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_TRUE(set->ha());
  EXPECT_EQ(set->etcd_endpoints,
            (std::vector<std::string>{"http://10.0.0.1:2379", "http://10.0.0.2:2379",
                                      "http://[::1]:2379"}));
  EXPECT_EQ(set->etcd_prefix, "/fleet-eu/");
  EXPECT_EQ(set->lease_ttl_s, 2);
  EXPECT_EQ(set->etcd_timeout, milliseconds(500));

  // TLS: the files are relative to the settings file's directory.
  auto tls = ParseControllerSettings(
      "[store]\netcd_endpoints = https://e1:2379,https://e2:2379\netcd_ca_file = ca.pem\n"
      "etcd_cert_file = /etc/lb/client.pem\netcd_key_file = client.key\n",
      "c.cfg", "/x");
  ASSERT_TRUE(tls.ok()) << tls.status().ToString();
  EXPECT_EQ(tls->etcd_ca_file, "/x/ca.pem");
  EXPECT_EQ(tls->etcd_cert_file, "/etc/lb/client.pem");
  EXPECT_EQ(tls->etcd_key_file, "/x/client.key");
  // --check: unreadable files are refused, plaintext beyond loopback is a warning.
  auto checked = CheckSettings(*tls);
  ASSERT_FALSE(checked.ok());
  EXPECT_NE(checked.status().message().find("[store] cannot read /x/ca.pem"), std::string::npos)
      << checked.status().message();
  set->allow_insecure = true;  // the fleet sockets' own rule is not what this checks
  auto plaintext = CheckSettings(*set);
  ASSERT_TRUE(plaintext.ok()) << plaintext.status().message();
  int etcd_warnings = 0;
  for (const auto& warning : *plaintext) {
    if (warning.find("[store] etcd_endpoints: http://10.0.0.") == 0 &&
        warning.find("plaintext beyond loopback") != std::string::npos) {
      ++etcd_warnings;
    }
  }
  EXPECT_EQ(etcd_warnings, 2) << "10.0.0.1 and 10.0.0.2, not [::1]";

  for (const auto& [text, message] : std::vector<std::pair<std::string, std::string>>{
           {"[store]\netcd_endpoints = 10.0.0.1:2379\n",
            "c.cfg:2: [store] etcd_endpoints: etcd endpoint \"10.0.0.1:2379\": must start with"},
           {"[store]\netcd_endpoints = ftp://e:2379\n", "must start with http:// or https://"},
           {"[store]\netcd_prefix = fleet\n", "[store] etcd_prefix: expected a key prefix"},
           {"[store]\nlease_ttl = 1\n", "[store] lease_ttl"},
           {"[store]\nlease_ttl = 30\n", "[store] lease_ttl"},
       }) {
    auto parsed = ParseControllerSettings(text, "c.cfg", "/x");
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_NE(parsed.status().message().find(message), std::string::npos)
        << parsed.status().message();
  }
}

TEST(ControllerSettingsTest, AgentKeysFile) {
  auto cert = common::GenerateCertificate();
  ASSERT_TRUE(cert.ok());
  auto keys = ParseAgentKeys("# pinned\nweb-1 " + cert->public_key + "\n\n  web-2\t" +
                                 cert->public_key + "  # a comment\n",
                             "pins");
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_EQ(keys->size(), 2u);
  EXPECT_EQ(keys->at("web-2"), cert->public_key);
  for (const auto& [text, message] : std::vector<std::pair<std::string, std::string>>{
           {"web-1\n", "pins:1: expected \"<agent id> <public key>\""},
           {"a/b " + cert->public_key + "\n", "pins:1: \"a/b\" is not an agent id"},
           {"web-1 nokey\n", "pins:1: not a CURVE public key"},
           {"w " + cert->public_key + "\nw " + cert->public_key + "\n",
            "pins:2: agent w is "
            "listed twice"}}) {
    auto parsed = ParseAgentKeys(text, "pins");
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_NE(parsed.status().message().find(message), std::string::npos)
        << parsed.status().message();
  }
}

// ---- the real controller, fake agents ----

ControllerSettings TestSettings(const std::string& dir, const std::string& id = "ctl-1") {
  ControllerSettings settings;
  settings.pub_endpoint = "ipc://" + dir + "/pub";
  settings.router_endpoint = "ipc://" + dir + "/router";
  settings.control_endpoint = "ipc://" + dir + "/control";
  settings.state_dir = dir + "/state";
  settings.id = id;
  settings.beacon_interval = milliseconds(50);
  return settings;
}

// lb-controller on ipc:// sockets in `dir`, served by its own thread; its log is captured.
class RunningController {
 public:
  explicit RunningController(const std::string& dir, const std::string& id = "ctl-1",
                             const std::function<void(ControllerSettings&)>& adjust = nullptr)
      : settings_(TestSettings(dir, id)) {
    if (adjust) adjust(settings_);
    controller_ = std::make_unique<Controller>(context_, settings_);
    const proto::Status open = controller_->Open();
    EXPECT_TRUE(open.ok()) << open.ToString();
    if (!open.ok()) return;
    thread_ = std::thread([this] {
      const proto::Status run = controller_->Run(stop_);
      EXPECT_TRUE(run.ok()) << run.ToString();
    });
  }
  ~RunningController() { Stop(); }

  // Stops serving; the log is complete afterwards.
  std::string Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    controller_.reset();
    return log_.text();
  }

  const ControllerSettings& settings() const { return settings_; }
  const std::string& control() const { return settings_.control_endpoint; }

 private:
  LogCapture log_;  // the serving and ZAP threads log; read after Stop()
  ControllerSettings settings_;
  zmq::context_t context_;
  std::unique_ptr<Controller> controller_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The agent's side of the protocol, on a thread of its own: a SUB socket subscribed to its
// topics and a DEALER whose routing id is its id. It says hello at start, whenever a beacon's
// `latest` is above what the controller last confirmed, and every `hello_interval` when one is
// given; it processes every push above the last version it processed (the outcome comes from
// `decide`) and acks it, and acks older ones "ignored".
struct FakeFleetAgentOptions {
  uint64_t applied_version = 0;
  // applied/unchanged/refused, for each push it processes.
  std::function<std::string(const json& push)> decide = [](const json&) {
    return std::string("applied");
  };
  // Both sockets CURVE clients of the controller.
  std::optional<common::CurveClientKeys> keys;
  milliseconds hello_interval{0};
};

class FakeFleetAgent {
 public:
  struct Seen {
    int beacons = 0;
    int uptodates = 0;
    uint64_t applied_version = 0;
    uint64_t synced_version = 0;
    std::vector<json> processed;   // pushes it acted on, in order
    std::vector<std::string> via;  // "pub" or "router", for each of them
  };

  using Options = FakeFleetAgentOptions;

  FakeFleetAgent(const ControllerSettings& controller, std::string id,
                 std::vector<std::string> groups, Options options = Options())
      : id_(std::move(id)), groups_(std::move(groups)), options_(std::move(options)) {
    seen_.applied_version = options_.applied_version;
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
  void Serve(const ControllerSettings& controller) {
    zmq::socket_t sub(context_, zmq::socket_type::sub);
    zmq::socket_t dealer(context_, zmq::socket_type::dealer);
    sub.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::routing_id, id_);
    if (options_.keys) {
      common::MakeCurveClient(sub, options_.keys->own, options_.keys->server_public_key);
      common::MakeCurveClient(dealer, options_.keys->own, options_.keys->server_public_key);
    }
    for (const std::string& topic : Topics()) sub.set(zmq::sockopt::subscribe, topic);
    sub.connect(controller.pub_endpoint);
    dealer.connect(controller.router_endpoint);
    SendHello(dealer);
    auto last_hello = std::chrono::steady_clock::now();
    while (!stop_) {
      zmq::pollitem_t items[] = {{sub.handle(), 0, ZMQ_POLLIN, 0},
                                 {dealer.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, milliseconds(20));
      if (options_.hello_interval.count() > 0 &&
          std::chrono::steady_clock::now() - last_hello >= options_.hello_interval) {
        SendHello(dealer);
        last_hello = std::chrono::steady_clock::now();
      }
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
      hello = Hello(id_, groups_, seen_.applied_version, seen_.synced_version,
                    options_.hello_interval.count(), seen_.applied_version);
    }
    dealer.send(zmq::buffer(Frame(hello)), zmq::send_flags::none);
  }

  void Handle(const json& body, const std::string& via, zmq::socket_t& dealer) {
    auto message = proto::ParseControllerMessage(body);
    EXPECT_TRUE(message.ok()) << message.status().ToString();
    if (!message.ok()) return;
    std::unique_lock lock(mutex_);
    if (auto* beacon = std::get_if<proto::FleetBeacon>(&*message)) {
      ++seen_.beacons;
      const bool behind = beacon->latest > seen_.synced_version;
      changed_.notify_all();
      lock.unlock();
      if (behind) SendHello(dealer);
      return;
    }
    if (auto* uptodate = std::get_if<proto::FleetUptodate>(&*message)) {
      ++seen_.uptodates;
      seen_.synced_version = std::max(seen_.synced_version, uptodate->latest);
      changed_.notify_all();
      return;
    }
    const auto& push = std::get<proto::FleetPush>(*message);
    if (!proto::TargetMatches(push.target, id_, groups_)) return;  // fleet/group/web2
    std::string outcome = "ignored";
    if (push.version > seen_.applied_version) {
      outcome = options_.decide(body);
      seen_.applied_version = push.version;
      seen_.synced_version = std::max(seen_.synced_version, push.version);
      seen_.processed.push_back(body);
      seen_.via.push_back(via);
    }
    changed_.notify_all();
    lock.unlock();
    dealer.send(zmq::buffer(Frame(AckMessage(id_, push.version, outcome))), zmq::send_flags::none);
  }

  const std::string id_;
  const std::vector<std::string> groups_;
  const Options options_;
  zmq::context_t context_;
  std::mutex mutex_;
  std::condition_variable changed_;
  Seen seen_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

bool HeardABeacon(const FakeFleetAgent::Seen& seen) { return seen.beacons > 0; }
bool Greeted(const FakeFleetAgent::Seen& seen) { return seen.beacons > 0 && seen.uptodates > 0; }

FakeFleetAgent::Options Refusing() {
  FakeFleetAgent::Options options;
  options.decide = [](const json&) { return std::string("refused"); };
  return options;
}

TEST(ControllerTest, HelloGetsTheDesiredStateAndPushesReachAgentsOverPub) {
  TempDir tmp;
  RunningController controller(tmp.path());
  FakeFleetAgent a1(controller.settings(), "a1", {"web"});
  FakeFleetAgent a2(controller.settings(), "a2", {"db"});
  ASSERT_TRUE(a1.WaitFor(Greeted));
  ASSERT_TRUE(a2.WaitFor(Greeted));

  RunOutput push = RunLbctl({"fleet", "push", "-", "--group", "web", "--control",
                             controller.control(), "--timeout", "10"},
                            "frontend web\n");
  EXPECT_EQ(push.code, cli::kExitOk) << push.err << push.out;
  EXPECT_NE(push.out.find("a1     applied  1"), std::string::npos) << push.out;
  EXPECT_NE(push.out.find("applied 1 / unchanged 0 / failed 0 / pending 0 of 1"), std::string::npos)
      << push.out;
  EXPECT_NE(push.out.find("version 1 is the desired state of group/web"), std::string::npos)
      << push.out;
  EXPECT_NE(push.err.find("pushed version 1 to group/web: 1 known agent match"), std::string::npos)
      << push.err;
  FakeFleetAgent::Seen seen = a1.seen();
  ASSERT_EQ(seen.processed.size(), 1u);
  EXPECT_EQ(seen.processed[0]["args"]["config"], "frontend web\n");
  EXPECT_EQ(seen.processed[0]["controller"], "ctl-1");
  EXPECT_EQ(a2.seen().processed.size(), 0u) << "not in web";

  RunOutput agents = RunLbctl({"fleet", "agents", "--control", controller.control(), "--json"});
  ASSERT_EQ(agents.code, cli::kExitOk) << agents.err;
  json listed = json::parse(agents.out);
  ASSERT_EQ(listed["agents"].size(), 2u);
  EXPECT_EQ(listed["agents"][0]["agent"], "a1");
  EXPECT_EQ(listed["agents"][0]["applied_version"], 1);
  EXPECT_EQ(listed["agents"][0]["desired_version"], 1) << "a1 applied it";
  EXPECT_EQ(listed["agents"][0]["last_ack"]["outcome"], "applied");
  EXPECT_EQ(listed["agents"][1]["desired_version"], 0);
  RunOutput table = RunLbctl({"fleet", "agents", "--control", controller.control()});
  EXPECT_NE(table.out.find("controller ctl-1, latest version 1, 2 agents known"), std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("group/web: desired v1 (applied by an agent)"), std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("a1     unknown  web     bbbbbbbbbbbb  1        1"), std::string::npos)
      << table.out;

  const std::string log = controller.Stop();
  EXPECT_NE(log.find("hello from a1 (groups web, applied 0"), std::string::npos) << log;
  EXPECT_NE(log.find("push v1 to group/web (reload, 13 bytes): 1 known agent match"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("ack from a1: v1 applied"), std::string::npos) << log;
  EXPECT_NE(log.find("controller ctl-1 stopping"), std::string::npos) << log;
}

TEST(ControllerTest, ARestartedControllerAnswersHellosFromItsStateDir) {
  TempDir tmp;
  {
    RunningController controller(tmp.path());
    RunOutput push = RunLbctl(
        {"fleet", "push", "-", "--all", "--allow-no-match", "--control", controller.control()},
        "global\n");
    EXPECT_EQ(push.code, cli::kExitOk) << push.err;
    EXPECT_NE(push.err.find("recorded for agents that say hello later (--allow-no-match)"),
              std::string::npos)
        << push.err;
  }
  RunningController restarted(tmp.path());
  FakeFleetAgent fresh(restarted.settings(), "a3", {"web"});
  ASSERT_TRUE(fresh.WaitFor([](const auto& s) { return !s.processed.empty(); }));
  FakeFleetAgent::Seen seen = fresh.seen();
  EXPECT_EQ(seen.via[0], "router") << "the answer to its hello";
  EXPECT_EQ(seen.processed[0]["version"], 1);
  EXPECT_EQ(seen.processed[0]["args"]["config"], "global\n");

  FakeFleetAgent::Options current_options;
  current_options.applied_version = 1;
  FakeFleetAgent current(restarted.settings(), "a4", {}, current_options);
  ASSERT_TRUE(current.WaitFor([](const auto& s) { return s.uptodates > 0; }));
  EXPECT_TRUE(current.seen().processed.empty());
}

TEST(ControllerTest, BatchesWaveByWaveAndRecordsTheTargetLast) {
  TempDir tmp;
  RunningController controller(tmp.path());
  FakeFleetAgent a1(controller.settings(), "a1", {"web"});
  FakeFleetAgent a2(controller.settings(), "a2", {"web"});
  FakeFleetAgent a3(controller.settings(), "a3", {"web"});
  for (auto* agent : {&a1, &a2, &a3}) ASSERT_TRUE(agent->WaitFor(Greeted));

  RunOutput push = RunLbctl({"fleet", "push", "-", "--group", "web", "--batch", "2", "--control",
                             controller.control(), "--timeout", "10", "--json"},
                            "v2\n");
  ASSERT_EQ(push.code, cli::kExitOk) << push.err << push.out;
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
  // A late agent of the group converges on the config of the rollout, once an agent acked it.
  FakeFleetAgent late(controller.settings(), "a9", {"web"});
  ASSERT_TRUE(late.WaitFor(
      [](const auto& s) { return !s.processed.empty() && s.processed.back()["version"] == 4; }));
  EXPECT_EQ(late.seen().processed.back()["args"]["config"], "v2\n");
}

TEST(ControllerTest, AFailedCanaryStopsTheRollout) {
  TempDir tmp;
  RunningController controller(tmp.path());
  FakeFleetAgent a1(controller.settings(), "a1", {"web"}, Refusing());
  FakeFleetAgent a2(controller.settings(), "a2", {"web"});
  for (auto* agent : {&a1, &a2}) ASSERT_TRUE(agent->WaitFor(Greeted));

  RunOutput push = RunLbctl(
      {"fleet", "push", "-", "--group", "web", "--canary", "1", "--control", controller.control()},
      "bad\n");
  EXPECT_EQ(push.code, cli::kExitPartialFailure) << push.err << push.out;
  EXPECT_NE(push.out.find("a1     refused  1        42  invalid_config: haproxy -c said no"),
            std::string::npos)
      << push.out;
  EXPECT_NE(push.out.find("a2     skipped  -"), std::string::npos) << push.out;
  EXPECT_NE(push.out.find("stopped: a canary did not apply the config"), std::string::npos);
  EXPECT_TRUE(a2.seen().processed.empty()) << "the rest keeps its config";

  // Nothing was recorded for the group: a new agent says hello and stays where it was.
  FakeFleetAgent late(controller.settings(), "a5", {"web"});
  ASSERT_TRUE(late.WaitFor([](const auto& s) { return s.uptodates > 0; }));
  EXPECT_TRUE(late.seen().processed.empty());
}

// Issue 12: a config every agent refused does not reach agents that join later.
TEST(ControllerTest, AConfigEveryAgentRefusedIsNotHandedToALateAgent) {
  TempDir tmp;
  RunningController controller(tmp.path());
  // Recorded before any agent is known: the operator's desired state for the group.
  RunOutput first = RunLbctl({"fleet", "push", "-", "--group", "web", "--allow-no-match",
                              "--control", controller.control()},
                             "good\n");
  ASSERT_EQ(first.code, cli::kExitOk) << first.err << first.out;
  FakeFleetAgent r1(controller.settings(), "r1", {"web"}, Refusing());
  FakeFleetAgent r2(controller.settings(), "r2", {"web"}, Refusing());
  ASSERT_TRUE(r1.WaitFor([](const auto& s) { return s.processed.size() == 1; })) << "got v1";
  ASSERT_TRUE(r2.WaitFor([](const auto& s) { return s.processed.size() == 1; }));
  RunOutput bad = RunLbctl({"fleet", "push", "-", "--group", "web", "--control",
                            controller.control(), "--expect", "2", "--timeout", "10"},
                           "broken\n");
  EXPECT_EQ(bad.code, cli::kExitPartialFailure) << bad.err << bad.out;
  EXPECT_NE(bad.out.find("no agent applied version 2: the desired state of group/web stays"),
            std::string::npos)
      << bad.out;
  RunOutput table = RunLbctl({"fleet", "agents", "--control", controller.control()});
  EXPECT_NE(table.out.find("group/web: desired v1 (set by the operator); v2 refused by every "
                           "agent, not handed out"),
            std::string::npos)
      << table.out;
  FakeFleetAgent late(controller.settings(), "late", {"web"});
  ASSERT_TRUE(late.WaitFor([](const auto& s) { return !s.processed.empty(); }));
  EXPECT_EQ(late.seen().processed[0]["args"]["config"], "good\n");
  EXPECT_EQ(late.seen().processed.size(), 1u);
}

TEST(ControllerTest, NoMatchLostAgentsRefusalsAndAnAbsentControllerHaveTheirExitCodes) {
  TempDir tmp;
  RunningController controller(tmp.path());
  const std::string control = controller.control();
  {
    // Known, saying hello every 100 ms, then gone: lost after 300 ms.
    FakeFleetAgent::Options periodic;
    periodic.hello_interval = milliseconds(100);
    FakeFleetAgent gone(controller.settings(), "gone", {"web"}, periodic);
    ASSERT_TRUE(gone.WaitFor([](const auto& s) { return s.uptodates > 1; }));
  }
  // Lost after 3 s of silence: alive throughout, however loaded the machine.
  FakeFleetAgent::Options slower;
  slower.hello_interval = milliseconds(1000);
  FakeFleetAgent here(controller.settings(), "here", {"web"}, slower);
  ASSERT_TRUE(here.WaitFor(Greeted));
  // A push waits for `here` only; `gone` is reported lost at once.
  std::this_thread::sleep_for(milliseconds(400));  // gone's lost threshold: 3 x 100 ms
  RunOutput push =
      RunLbctl({"fleet", "push", "-", "--all", "--control", control, "--timeout", "10"}, "x\n");
  EXPECT_EQ(push.code, cli::kExitRolloutTimeout) << push.err << push.out;
  EXPECT_LT(push.out.size(), 2000u);
  EXPECT_NE(push.out.find("gone   lost     1"), std::string::npos) << push.out;
  EXPECT_NE(push.out.find("here   applied  1"), std::string::npos) << push.out;
  EXPECT_NE(push.err.find("1 known agent match (and 1 lost, not waited for)"), std::string::npos)
      << push.err;
  RunOutput table = RunLbctl({"fleet", "agents", "--control", control});
  EXPECT_NE(table.out.find("gone   lost"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("here   alive"), std::string::npos) << table.out;

  // A target no agent matches: refused, nothing recorded.
  RunOutput nobody =
      RunLbctl({"fleet", "push", "-", "--group", "wbe", "--control", control}, "x\n");
  EXPECT_EQ(nobody.code, cli::kExitRefused) << nobody.err << nobody.out;
  EXPECT_NE(nobody.err.find("no agent the controller knows matches group/wbe"), std::string::npos)
      << nobody.err;
  RunOutput nobody_staged = RunLbctl(
      {"fleet", "push", "-", "--group", "wbe", "--batch", "2", "--control", control}, "x\n");
  EXPECT_EQ(nobody_staged.code, cli::kExitRefused) << nobody_staged.err;

  // --expect waits for agents that are not known yet.
  RunOutput expect = RunLbctl(
      {"fleet", "push", "-", "--all", "--expect", "3", "--control", control, "--timeout", "0.5"},
      "y\n");
  EXPECT_EQ(expect.code, cli::kExitRolloutTimeout) << expect.err << expect.out;
  EXPECT_NE(expect.out.find("1 more expected agent never answered"), std::string::npos)
      << expect.out;

  // The controller cannot save the push (its state file is a directory now): refused, 1.
  const std::string state_file = controller.settings().state_dir + "/fleet-controller.json";
  std::filesystem::remove(state_file);
  std::filesystem::create_directories(state_file + "/blocker");
  RunOutput refused = RunLbctl({"fleet", "push", "-", "--all", "--control", control}, "x\n");
  EXPECT_EQ(refused.code, cli::kExitRefused) << refused.err << refused.out;
  EXPECT_NE(refused.err.find("lbctl: internal: cannot record version 3, nothing was pushed"),
            std::string::npos)
      << refused.err;
  EXPECT_EQ(refused.out, "");

  controller.Stop();
  RunOutput unreachable = RunLbctl({"fleet", "agents", "--control", control, "--timeout", "0.2"});
  EXPECT_EQ(unreachable.code, cli::kExitUnreachable);
  EXPECT_NE(unreachable.err.find("is lb-controller running? is that its control endpoint?"),
            std::string::npos)
      << unreachable.err;
}

TEST(ControllerTest, LbctlGivenEveryControllerFindsTheOneThatLeads) {
  TempDir tmp;
  RunningController controller(tmp.path());
  // A standby binds no control socket: an endpoint nobody listens on stands for it.
  const std::string standby = "ipc://" + tmp.File("standby-control.sock");
  RunOutput agents = RunLbctl({"fleet", "agents", "--json", "--control",
                               standby + "," + controller.control(), "--timeout", "1"});
  EXPECT_EQ(agents.code, cli::kExitOk) << agents.err;
  EXPECT_NE(agents.out.find("\"controller\""), std::string::npos) << agents.out;
  RunOutput push = RunLbctl({"fleet", "push", "-", "--all", "--allow-no-match", "--control",
                             controller.control() + ", " + standby, "--timeout", "2"},
                            "x\n");
  EXPECT_EQ(push.code, cli::kExitOk) << push.err << push.out;
  // Nobody leads: said so, exit 3, after the ping's deadline.
  RunOutput none =
      RunLbctl({"fleet", "agents", "--control", standby + "," + standby + "2", "--timeout", "0.3"});
  EXPECT_EQ(none.code, cli::kExitUnreachable);
  EXPECT_NE(none.err.find("none leads now"), std::string::npos) << none.err;
  EXPECT_EQ(RunLbctl({"fleet", "agents", "--control", standby + ",nowhere"}).code, cli::kExitUsage);
}

// ---- security: CURVE on PUB/ROUTER, local-only endpoints without it ----

// Opens a Controller with `adjust`ed settings on ipc:// in `dir`; its status and log.
std::pair<proto::Status, std::string> OpenController(
    const std::string& dir, const std::function<void(ControllerSettings&)>& adjust) {
  ControllerSettings settings = TestSettings(dir);
  adjust(settings);
  LogCapture log;
  zmq::context_t context;
  proto::Status status;
  {
    Controller controller(context, settings);
    status = controller.Open();
  }
  return {status, log.text()};
}

TEST(ControllerTest, OpenRefusesUnauthenticatedEndpointsOtherHostsCouldReach) {
  TempDir tmp;
  // The control socket has no authentication at all: local only, whatever else is set.
  auto [control, control_log] = OpenController(
      tmp.path(), [](ControllerSettings& s) { s.control_endpoint = "tcp://0.0.0.0:0"; });
  EXPECT_EQ(control.code(), proto::ErrorCode::kBadRequest);
  EXPECT_NE(control.message().find("refusing to bind the control socket on \"tcp://0.0.0.0:0\": "
                                   "it has no authentication"),
            std::string::npos)
      << control.message();
  auto [insecure_control, log2] = OpenController(tmp.path(), [](ControllerSettings& s) {
    s.control_endpoint = "tcp://*:0";
    s.allow_insecure = true;
  });
  EXPECT_EQ(insecure_control.code(), proto::ErrorCode::kBadRequest) << "not even allowed";

  // PUB and ROUTER: without CURVE, only loopback or ipc://, unless allow_insecure.
  for (const char* which : {"pub", "router"}) {
    auto [refused, log] = OpenController(tmp.path(), [&](ControllerSettings& s) {
      (std::string(which) == "pub" ? s.pub_endpoint : s.router_endpoint) = "tcp://0.0.0.0:0";
    });
    EXPECT_EQ(refused.code(), proto::ErrorCode::kBadRequest) << which;
    EXPECT_NE(refused.message().find("refusing to bind the " + std::string(which) +
                                     " socket on \"tcp://0.0.0.0:0\" without CURVE"),
              std::string::npos)
        << refused.message();
    EXPECT_NE(refused.message().find("allow_insecure"), std::string::npos);
  }
  auto [allowed, warned] = OpenController(tmp.path(), [](ControllerSettings& s) {
    s.router_endpoint = "tcp://0.0.0.0:0";
    s.allow_insecure = true;
  });
  EXPECT_TRUE(allowed.ok()) << allowed.ToString();
  EXPECT_NE(warned.find("WARNING: the router socket tcp://0.0.0.0:0 is reachable from other hosts "
                        "WITHOUT authentication"),
            std::string::npos)
      << warned;
  auto [loopback, quiet] = OpenController(tmp.path(), [](ControllerSettings& s) {
    s.pub_endpoint = "tcp://127.0.0.1:0";
    s.router_endpoint = "tcp://127.0.0.1:0";
    s.control_endpoint = "tcp://127.0.0.1:0";
  });
  EXPECT_TRUE(loopback.ok()) << loopback.ToString();
  EXPECT_EQ(quiet.find("WARNING"), std::string::npos) << quiet;
  EXPECT_NE(quiet.find("CURVE off"), std::string::npos) << quiet;

  // CURVE needs a usable certificate, allow-list and agent keys.
  auto cert = common::GenerateCertificate();
  ASSERT_TRUE(cert.ok());
  ASSERT_TRUE(common::WriteCertificate(tmp.File("ctl"), *cert, "test").ok());
  test_util::WriteFile(tmp.File("clients"), "not a key\n");
  auto [bad_list, log3] = OpenController(tmp.path(), [&](ControllerSettings& s) {
    s.curve_secret_key = tmp.File("ctl_secret");
    s.curve_clients = tmp.File("clients");
  });
  EXPECT_EQ(bad_list.code(), proto::ErrorCode::kBadRequest);
  EXPECT_EQ(bad_list.message().rfind("[security] curve_clients: ", 0), 0u) << bad_list.message();
  auto [public_only, log4] = OpenController(tmp.path(), [&](ControllerSettings& s) {
    s.curve_secret_key = tmp.File("ctl");
    s.curve_clients = tmp.File("clients");
  });
  EXPECT_EQ(public_only.code(), proto::ErrorCode::kBadRequest);
  EXPECT_NE(public_only.message().find("[security] curve_secret_key: "), std::string::npos);
  test_util::WriteFile(tmp.File("clients"), "");
  test_util::WriteFile(tmp.File("pins"), "a1 nokey\n");
  auto [bad_pins, log5] = OpenController(tmp.path(), [&](ControllerSettings& s) {
    s.curve_secret_key = tmp.File("ctl_secret");
    s.curve_clients = tmp.File("clients");
    s.agent_keys = tmp.File("pins");
  });
  EXPECT_EQ(bad_pins.code(), proto::ErrorCode::kBadRequest);
  EXPECT_NE(bad_pins.message().find("[security] agent_keys: "), std::string::npos);
  // With CURVE, any endpoint: the allow-list decides who gets in.
  auto [curve, curve_log] = OpenController(tmp.path(), [&](ControllerSettings& s) {
    s.curve_secret_key = tmp.File("ctl_secret");
    s.curve_clients = tmp.File("clients");
    s.pub_endpoint = "tcp://0.0.0.0:0";
    s.router_endpoint = "tcp://0.0.0.0:0";
  });
  EXPECT_TRUE(curve.ok()) << curve.ToString();
  EXPECT_NE(curve_log.find("CURVE on (public key " + cert->public_key), std::string::npos)
      << curve_log;
}

TEST(ControllerTest, CurveServesOnlyListedAgentsPinnedToThisControllerAndPinsTheirIds) {
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
  const common::CurveCertificate a3_key = make("a3");
  const common::CurveCertificate stranger_key = make("stranger");
  test_util::WriteFile(tmp.File("clients"), a1_key.public_key + " a1\n" + a2_key.public_key +
                                                " a2\n" + a3_key.public_key + " a3\n");
  RunningController controller(tmp.path(), "ctl-1", [&](ControllerSettings& s) {
    s.curve_secret_key = tmp.File("ctl_secret");
    s.curve_clients = tmp.File("clients");
  });
  auto with_keys = [](const common::CurveCertificate& own, const std::string& server) {
    FakeFleetAgent::Options options;
    options.keys = common::CurveClientKeys{own, server};
    return options;
  };
  FakeFleetAgent a1(controller.settings(), "a1", {"web"}, with_keys(a1_key, ctl.public_key));
  // Listed, but pinned to another controller's key: it must not follow this one.
  FakeFleetAgent a2(controller.settings(), "a2", {"web"},
                    with_keys(a2_key, impostor_ctl.public_key));
  // Pinned to this controller, but not listed.
  FakeFleetAgent stranger(controller.settings(), "stranger", {"web"},
                          with_keys(stranger_key, ctl.public_key));
  // Plaintext.
  FakeFleetAgent plain(controller.settings(), "plain", {"web"});
  ASSERT_TRUE(a1.WaitFor(Greeted));

  RunOutput push = RunLbctl({"fleet", "push", "-", "--group", "web", "--control",
                             controller.control(), "--timeout", "10"},
                            "frontend web\n");
  EXPECT_EQ(push.code, cli::kExitOk) << push.err << push.out;
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
  // a3 is listed too, and says hello under a1's id: its messages are refused, visibly.
  {
    FakeFleetAgent posing(controller.settings(), "a1", {"db"}, with_keys(a3_key, ctl.public_key));
    ASSERT_TRUE(posing.WaitFor(HeardABeacon));
    RunOutput listed;
    ASSERT_TRUE(a1.WaitFor([&](const auto&) {
      listed = RunLbctl({"fleet", "agents", "--control", controller.control(), "--json"});
      return listed.out.find("\"refused_messages\": 0") == std::string::npos;
    })) << listed.out;
    EXPECT_TRUE(posing.seen().processed.empty());
    EXPECT_EQ(posing.seen().uptodates, 0) << "no answer to an impostor's hello";
  }

  RunOutput agents = RunLbctl({"fleet", "agents", "--control", controller.control(), "--json"});
  ASSERT_EQ(agents.code, cli::kExitOk) << agents.err;
  auto listed = proto::ParseAgentsResult(json::parse(agents.out));
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->agents.size(), 1u) << agents.out;
  EXPECT_EQ(listed->agents[0].agent, "a1");
  EXPECT_EQ(listed->agents[0].curve_key, a1_key.public_key);
  EXPECT_EQ(listed->agents[0].groups, std::vector<std::string>{"web"});
  EXPECT_GE(listed->agents[0].refused_messages, 1u);
  EXPECT_EQ(listed->agents[0].refused_key, a3_key.public_key);
  RunOutput table = RunLbctl({"fleet", "agents", "--control", controller.control()});
  EXPECT_NE(table.out.find("CURVE KEY"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(a1_key.public_key), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("(key " + a3_key.public_key + ")"), std::string::npos) << table.out;

  const std::string log = controller.Stop();
  EXPECT_NE(log.find("refused a CURVE client"), std::string::npos) << log;
  EXPECT_NE(log.find("key " + stranger_key.public_key + " is not in the allow-list"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("refused a message under agent id a1 with CURVE key " + a3_key.public_key),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("hello from stranger"), std::string::npos) << log;
  EXPECT_EQ(log.find("hello from plain"), std::string::npos) << log;
  EXPECT_EQ(log.find("hello from a2"), std::string::npos) << log;
}

}  // namespace
}  // namespace lb::controller
