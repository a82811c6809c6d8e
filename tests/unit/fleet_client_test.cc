// The agent's side of the fleet (proto/PROTOCOL.md, "Fleet").
//
// FleetStateTest: the rules alone (targets, versions, one writer, hello triggers, the state
// file), with time passed in by the test. FleetClientTest: the real FleetClient against a fake
// controller that the test owns (a PUB and a ROUTER on ipc:// in a temp dir) and fake reload and
// status functions. PUB/SUB drops what is published before the subscription arrives, so the
// fake controller beacons while it waits and the tests publish pushes only after the client has
// seen a beacon. Every wait is a poll on a socket or a condition with a deadline.
#include "fleet_client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "fleet_state.h"
#include "lb/common/settings.h"
#include "lb/proto/codec.h"
#include "reload_pipeline.h"
#include "test_util.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;
using std::chrono::milliseconds;
using TimePoint = FleetState::TimePoint;

constexpr milliseconds kBeaconTimeout{3000};
constexpr milliseconds kWait{10000};  // bound for anything that should happen soon

FleetState::JitterFn FixedJitter(milliseconds ms) {
  return [ms] { return ms; };
}

FleetPush Push(const std::string& controller, uint64_t version, FleetTarget target = {}) {
  FleetPush p;
  p.controller = controller;
  p.version = version;
  p.target = std::move(target);
  p.cmd = "reload";
  p.args = json{{"config", "global\n"}};
  return p;
}

FleetTarget Group(const std::string& name) { return {FleetTarget::Kind::kGroup, name}; }
FleetTarget Agent(const std::string& name) { return {FleetTarget::Kind::kAgent, name}; }

class FleetStateTest : public ::testing::Test {
 protected:
  FleetStateTest() : state_("lb-1", {"web", "eu"}, kBeaconTimeout, FixedJitter(milliseconds(200))) {
    state_.OnSocketsCreated(t0_);
  }
  TimePoint At(int64_t ms) const { return t0_ + milliseconds(ms); }

  const TimePoint t0_ = FleetState::Clock::now();
  FleetState state_;
};

TEST_F(FleetStateTest, MatchesTargetsByBodyNotTopic) {
  EXPECT_TRUE(state_.Matches({FleetTarget::Kind::kAll, ""}));
  EXPECT_TRUE(state_.Matches(Group("web")));
  EXPECT_TRUE(state_.Matches(Group("eu")));
  // fleet/group/web2 arrives through the fleet/group/web subscription: the body decides.
  EXPECT_FALSE(state_.Matches(Group("web2")));
  EXPECT_FALSE(state_.Matches(Group("we")));
  EXPECT_TRUE(state_.Matches(Agent("lb-1")));
  EXPECT_FALSE(state_.Matches(Agent("lb-10")));
  EXPECT_FALSE(state_.Matches(Agent("web")));

  auto v = state_.OnPush(Push("ctl-1", 1, Group("web2")), false, At(0));
  EXPECT_EQ(v.action, FleetState::PushAction::kNotForUs);
  EXPECT_EQ(state_.applied_version(), 0u);
  EXPECT_EQ(state_.controller(), "") << "a push for others does not choose the controller";
}

TEST_F(FleetStateTest, IgnoresDuplicateAndStaleVersions) {
  EXPECT_EQ(state_.OnPush(Push("ctl-1", 5), false, At(0)).action, FleetState::PushAction::kProcess);
  EXPECT_EQ(state_.applied_version(), 5u);
  EXPECT_EQ(state_.synced_version(), 5u);
  EXPECT_EQ(state_.completed_version(), 0u) << "completed only when its ack goes out";
  // The same version again while it is applied (a hello answered with it): no second ack.
  EXPECT_EQ(state_.OnPush(Push("ctl-1", 5), true, At(1)).action, FleetState::PushAction::kInFlight);
  EXPECT_EQ(state_.OnPush(Push("ctl-1", 3), false, At(2)).action, FleetState::PushAction::kIgnore);
  EXPECT_EQ(state_.OnPush(Push("ctl-1", 6, Group("eu")), false, At(3)).action,
            FleetState::PushAction::kProcess);
  state_.PushCompleted("ctl-1", 6);
  state_.PushCompleted("ctl-1", 5);  // out of order: the newest stays
  EXPECT_EQ(state_.OnPush(Push("ctl-1", 5), false, At(4)).action, FleetState::PushAction::kIgnore)
      << "once done, a duplicate is acked ignored";
  EXPECT_EQ(state_.ToPersisted().applied_version, 6u);
  EXPECT_EQ(state_.ToPersisted().controller, "ctl-1");
  // A version from a controller no longer followed does not count.
  state_.PushCompleted("ctl-9", 100);
  EXPECT_EQ(state_.completed_version(), 6u);
}

TEST_F(FleetStateTest, AppliedVersionSurvivesSaveAndLoad) {
  test_util::TempDir dir;
  const std::string path = dir.File("sub/dir/fleet-state.json");  // parents created
  ASSERT_TRUE(SaveFleetState(path, {42, "ctl-1", 0, std::nullopt}).ok());
  auto loaded = LoadFleetState(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->applied_version, 42u);
  EXPECT_EQ(loaded->controller, "ctl-1");

  FleetState restored("lb-1", {"web"}, kBeaconTimeout, FixedJitter(milliseconds(0)));
  restored.Restore(*loaded);
  EXPECT_EQ(restored.applied_version(), 42u);
  EXPECT_EQ(restored.synced_version(), 42u);
  EXPECT_EQ(restored.OnPush(Push("ctl-1", 42), false, t0_).action, FleetState::PushAction::kIgnore);
  EXPECT_EQ(restored.OnPush(Push("ctl-1", 43), false, t0_).action,
            FleetState::PushAction::kProcess);
}

TEST_F(FleetStateTest, LastAckSurvivesSaveAndLoadWithoutItsResultAndWithItsErrorCut) {
  test_util::TempDir dir;
  const std::string path = dir.File("fleet-state.json");
  proto::FleetAck ack;
  ack.agent = "lb-1";
  ack.version = 9;
  ack.outcome = "refused";
  ack.error = proto::FleetError{"invalid_config", std::string(100 * 1024, 'x')};
  ack.sha256 = "abc";
  ack.total_ms = 12;
  ack.result = {{"big", std::string(10000, 'y')}};
  ASSERT_TRUE(SaveFleetState(path, {9, "ctl-1", 0, ack}).ok());
  auto loaded = LoadFleetState(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_TRUE(loaded->last_ack.has_value());
  EXPECT_EQ(loaded->last_ack->agent, "lb-1");
  EXPECT_EQ(loaded->last_ack->version, 9u);
  EXPECT_EQ(loaded->last_ack->outcome, "refused");
  EXPECT_EQ(loaded->last_ack->sha256, "abc");
  EXPECT_EQ(loaded->last_ack->total_ms, 12);
  EXPECT_TRUE(loaded->last_ack->result.is_null()) << loaded->last_ack->result.dump();
  ASSERT_TRUE(loaded->last_ack->error.has_value());
  EXPECT_EQ(loaded->last_ack->error->code, "invalid_config");
  EXPECT_LT(loaded->last_ack->error->message.size(), 4096u);
  EXPECT_EQ(loaded->last_ack->error->message.substr(0, 10), std::string(10, 'x'));

  // Saved without one, there is none.
  ASSERT_TRUE(SaveFleetState(path, {9, "ctl-1", 0, std::nullopt}).ok());
  loaded = LoadFleetState(path);
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->last_ack.has_value());
}

TEST_F(FleetStateTest, MissingStateFileIsVersionZeroAndCorruptOneIsAnError) {
  test_util::TempDir dir;
  auto missing = LoadFleetState(dir.File("none.json"));
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->applied_version, 0u);
  EXPECT_EQ(missing->controller, "");

  for (const char* text :
       {"not json", "[1,2]", "{\"applied_version\": -3}", "{\"applied_version\": \"7\"}",
        "{\"controller\": \"c\"}", "{\"applied_version\": 3, \"controller\": 5}",
        "{\"applied_version\": 3, \"controller\": \"c\", \"last_ack\": 7}",
        "{\"applied_version\": 3, \"controller\": \"c\", \"last_ack\": {\"v\": 1, \"type\": "
        "\"ack\", \"agent\": \"a\", \"version\": 3, \"outcome\": \"maybe\"}}",
        ""}) {
    const std::string path = dir.File("corrupt.json");
    test_util::WriteFile(path, text);
    auto loaded = LoadFleetState(path);
    EXPECT_FALSE(loaded.ok()) << "accepted: " << text;
    if (!loaded.ok()) {
      EXPECT_NE(loaded.status().message().find(path), std::string::npos);
    }
  }
}

TEST_F(FleetStateTest, FollowsFirstControllerAndRefusesAnotherWhileItIsAlive) {
  EXPECT_TRUE(state_.OnBeacon({"ctl-1", 0}, At(0)).admission.accepted);
  EXPECT_EQ(state_.controller(), "ctl-1");
  EXPECT_EQ(state_.OnPush(Push("ctl-1", 4), false, At(100)).action,
            FleetState::PushAction::kProcess);

  auto v = state_.OnPush(Push("ctl-2", 9), false, At(1000));
  EXPECT_EQ(v.action, FleetState::PushAction::kConflict);
  EXPECT_NE(v.admission.error.find("ctl-1"), std::string::npos) << v.admission.error;
  EXPECT_NE(v.admission.error.find("ctl-2"), std::string::npos) << v.admission.error;
  EXPECT_EQ(state_.applied_version(), 4u) << "a refused push changes nothing";

  auto b = state_.OnBeacon({"ctl-2", 9}, At(1100));
  EXPECT_FALSE(b.admission.accepted);
  EXPECT_TRUE(b.report_conflict);
  EXPECT_FALSE(state_.OnBeacon({"ctl-2", 9}, At(1200)).report_conflict) << "rate-limited";
  EXPECT_TRUE(state_.OnBeacon({"ctl-1", 4}, At(1300)).admission.accepted);
  // ctl-2's beacons do not keep ctl-1 alive, but ctl-1's last one still does.
  EXPECT_FALSE(state_.OnBeacon({"ctl-2", 9}, At(4000)).admission.accepted);
  EXPECT_TRUE(state_.OnBeacon({"ctl-2", 9}, At(4200)).report_conflict);
  EXPECT_EQ(state_.controller(), "ctl-1");
}

TEST_F(FleetStateTest, TakesOverAfterSilenceWithVersionsFromZero) {
  state_.OnBeacon({"ctl-1", 0}, At(0));
  state_.OnPush(Push("ctl-1", 50), false, At(10));
  state_.PushCompleted("ctl-1", 50);
  // ctl-1 silent for beacon_timeout: ctl-2 is followed, its counter starts anew.
  auto v = state_.OnPush(Push("ctl-2", 3), false, At(3000));
  EXPECT_EQ(v.action, FleetState::PushAction::kProcess);
  EXPECT_TRUE(v.admission.switched);
  EXPECT_EQ(v.admission.previous, "ctl-1");
  EXPECT_EQ(state_.controller(), "ctl-2");
  EXPECT_EQ(state_.applied_version(), 3u);
  EXPECT_EQ(state_.ToPersisted().applied_version, 0u);
  EXPECT_EQ(state_.ToPersisted().controller, "ctl-2");
  // And now ctl-1 is the intruder while ctl-2 beacons.
  state_.OnBeacon({"ctl-2", 3}, At(3100));
  EXPECT_EQ(state_.OnPush(Push("ctl-1", 51), false, At(3200)).action,
            FleetState::PushAction::kConflict);
}

TEST_F(FleetStateTest, StandbyWithTheSameIdKeepsVersions) {
  state_.Restore({7, "ctl-1", 0, std::nullopt});
  state_.OnSocketsCreated(t0_);
  auto b = state_.OnBeacon({"ctl-1", 7}, At(10000));  // long silence, same id
  EXPECT_TRUE(b.admission.accepted);
  EXPECT_FALSE(b.admission.switched);
  EXPECT_EQ(state_.applied_version(), 7u);
  EXPECT_FALSE(b.resync) << "latest is what this agent already has";
}

TEST_F(FleetStateTest, RestoredControllerThatIsNeverHeardIsReplaced) {
  state_.Restore({7, "ctl-old", 0, std::nullopt});
  auto b = state_.OnBeacon({"ctl-new", 2}, At(0));
  EXPECT_TRUE(b.admission.accepted);
  EXPECT_TRUE(b.admission.switched);
  EXPECT_EQ(state_.applied_version(), 0u);
  EXPECT_TRUE(b.resync) << "the new controller's v2 is unknown here: hello";
}

FleetPush Fenced(const std::string& controller, uint64_t version, uint64_t epoch) {
  FleetPush p = Push(controller, version);
  p.epoch = epoch;
  return p;
}

TEST_F(FleetStateTest, FollowsAHigherEpochAtOnceAndKeepsTheSharedCounter) {
  // Leader ctl-a (epoch 10) pushes v5; standby ctl-b wins the election (epoch 14) while ctl-a
  // still beacons: the higher epoch wins at once, versions continue (one counter in etcd).
  EXPECT_TRUE(state_.OnBeacon({"ctl-a", 4, 0, 10}, At(0)).admission.accepted);
  EXPECT_EQ(state_.OnPush(Fenced("ctl-a", 5, 10), false, At(10)).action,
            FleetState::PushAction::kProcess);
  state_.PushCompleted("ctl-a", 5);
  auto b = state_.OnBeacon({"ctl-b", 5, 0, 14}, At(100));
  EXPECT_TRUE(b.admission.accepted);
  EXPECT_TRUE(b.admission.switched);
  EXPECT_TRUE(b.admission.epoch_raised);
  EXPECT_FALSE(b.admission.versions_reset);
  EXPECT_EQ(state_.controller(), "ctl-b");
  EXPECT_EQ(state_.epoch(), 14u);
  EXPECT_EQ(state_.applied_version(), 5u) << "no version goes back";
  EXPECT_EQ(state_.OnPush(Fenced("ctl-b", 5, 14), false, At(150)).action,
            FleetState::PushAction::kIgnore);
  EXPECT_EQ(state_.OnPush(Fenced("ctl-b", 6, 14), false, At(200)).action,
            FleetState::PushAction::kProcess);
  state_.PushCompleted("ctl-b", 6);
  EXPECT_EQ(state_.ToPersisted().epoch, 14u);
  EXPECT_EQ(state_.ToPersisted().applied_version, 6u);
}

TEST_F(FleetStateTest, SplitBrainRefusesALowerEpochWhateverItSends) {
  state_.OnBeacon({"ctl-b", 5, 0, 14}, At(0));
  // The deposed ctl-a still reaches this agent: its push (even with a newer version), beacon
  // and uptodate are refused, and nothing changes.
  auto v = state_.OnPush(Fenced("ctl-a", 99, 10), false, At(10));
  EXPECT_EQ(v.action, FleetState::PushAction::kConflict);
  EXPECT_TRUE(v.admission.fenced);
  EXPECT_NE(v.admission.error.find("epoch 10"), std::string::npos) << v.admission.error;
  EXPECT_NE(v.admission.error.find("epoch 14"), std::string::npos) << v.admission.error;
  EXPECT_NE(v.admission.error.find("ctl-b"), std::string::npos) << v.admission.error;
  EXPECT_FALSE(state_.OnBeacon({"ctl-a", 99, 0, 10}, At(20)).admission.accepted);
  EXPECT_FALSE(state_.OnUptodate({"ctl-a", 99, 10}, At(30)).accepted);
  // Neither silence of the leader nor a controller without an epoch (state dir) changes that.
  EXPECT_EQ(state_.OnPush(Fenced("ctl-a", 100, 10), false, At(60000)).action,
            FleetState::PushAction::kConflict);
  EXPECT_EQ(state_.OnPush(Push("ctl-old", 1), false, At(60000)).action,
            FleetState::PushAction::kConflict);
  EXPECT_EQ(state_.controller(), "ctl-b");
  EXPECT_EQ(state_.applied_version(), 0u);
  EXPECT_EQ(state_.synced_version(), 0u) << "ctl-a's uptodate did not count";
}

TEST_F(FleetStateTest, HighestEpochSurvivesARestart) {
  test_util::TempDir dir;
  const std::string path = dir.File("fleet-state.json");
  ASSERT_TRUE(SaveFleetState(path, {8, "ctl-b", 14, std::nullopt}).ok());
  auto loaded = LoadFleetState(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->epoch, 14u);
  state_.Restore(*loaded);
  EXPECT_EQ(state_.epoch(), 14u);
  EXPECT_EQ(state_.OnPush(Fenced("ctl-a", 9, 10), false, At(0)).action,
            FleetState::PushAction::kConflict)
      << "a restarted agent still refuses the deposed leader";
  // A state file of an agent before epochs has none: 0.
  test_util::WriteFile(path, R"({"v": 1, "applied_version": 3, "controller": "c"})");
  EXPECT_EQ(LoadFleetState(path)->epoch, 0u);
  test_util::WriteFile(path, R"({"v": 1, "applied_version": 3, "controller": "c", "epoch": -1})");
  EXPECT_FALSE(LoadFleetState(path).ok());
}

TEST_F(FleetStateTest, FirstEpochAfterAStateDirControllerRestartsVersions) {
  state_.OnBeacon({"ctl-1", 0}, At(0));
  state_.OnPush(Push("ctl-1", 50), false, At(10));
  // The fleet moves to elected controllers: their counter is another one.
  auto v = state_.OnPush(Fenced("ctl-ha", 3, 7), false, At(20));
  EXPECT_EQ(v.action, FleetState::PushAction::kProcess);
  EXPECT_TRUE(v.admission.versions_reset);
  EXPECT_EQ(state_.applied_version(), 3u);
  EXPECT_EQ(state_.epoch(), 7u);
}

TEST_F(FleetStateTest, FirstConnectionSaysHelloAtOnceLaterOnesAfterJitter) {
  EXPECT_FALSE(state_.HelloDue(At(0)));
  state_.OnConnected(At(0));
  EXPECT_TRUE(state_.HelloDue(At(0)));
  state_.HelloSent(At(0));
  EXPECT_TRUE(state_.HelloOutstanding(At(1)));
  EXPECT_FALSE(state_.hello_due());
  // A reconnect: the outstanding hello may be lost; a new one after the jitter.
  state_.OnConnected(At(1000));
  EXPECT_FALSE(state_.HelloOutstanding(At(1000)));
  EXPECT_FALSE(state_.HelloDue(At(1199)));
  EXPECT_TRUE(state_.HelloDue(At(1200)));
}

TEST_F(FleetStateTest, BeaconAboveSyncedTriggersOneHello) {
  state_.OnConnected(At(0));
  state_.HelloSent(At(0));
  state_.OnUptodate({"ctl-1", 4}, At(10));
  EXPECT_EQ(state_.synced_version(), 4u);
  EXPECT_FALSE(state_.HelloOutstanding(At(10)));

  EXPECT_FALSE(state_.OnBeacon({"ctl-1", 4}, At(100)).resync);
  EXPECT_FALSE(state_.hello_due());
  // A push for another group moved `latest`: this agent asks.
  auto b = state_.OnBeacon({"ctl-1", 6}, At(1000));
  EXPECT_TRUE(b.resync);
  EXPECT_FALSE(state_.HelloDue(At(1100)));
  EXPECT_TRUE(state_.HelloDue(At(1200)));  // after the jitter
  EXPECT_FALSE(state_.OnBeacon({"ctl-1", 6}, At(1150)).resync) << "already scheduled";
  state_.HelloSent(At(1200));
  EXPECT_FALSE(state_.OnBeacon({"ctl-1", 6}, At(2000)).resync) << "one outstanding at a time";
  EXPECT_FALSE(state_.hello_due());
  // Unanswered for beacon_timeout: the next beacon asks again.
  EXPECT_TRUE(state_.OnBeacon({"ctl-1", 6}, At(4200)).resync);
  state_.HelloSent(At(4400));
  state_.OnUptodate({"ctl-1", 6}, At(4410));
  EXPECT_EQ(state_.synced_version(), 6u);
  EXPECT_FALSE(state_.OnBeacon({"ctl-1", 6}, At(5000)).resync);
}

TEST_F(FleetStateTest, HelloAnswerPushEndsTheOutstandingHello) {
  state_.OnConnected(At(0));
  state_.HelloSent(At(0));
  EXPECT_EQ(state_.OnPush(Push("ctl-1", 3), /*via_router=*/true, At(5)).action,
            FleetState::PushAction::kProcess);
  EXPECT_FALSE(state_.HelloOutstanding(At(5)));
  EXPECT_EQ(state_.synced_version(), 3u);
  EXPECT_FALSE(state_.OnBeacon({"ctl-1", 3}, At(100)).resync);
}

TEST_F(FleetStateTest, UptodateNeverLowersSyncedVersion) {
  state_.OnPush(Push("ctl-1", 8), false, At(0));
  state_.OnUptodate({"ctl-1", 5}, At(1));  // an answer overtaken by push 8
  EXPECT_EQ(state_.synced_version(), 8u);
}

TEST_F(FleetStateTest, DeadConnectionAfterBeaconTimeout) {
  EXPECT_FALSE(state_.ConnectionDead(At(2999)));
  EXPECT_TRUE(state_.ConnectionDead(At(3000))) << "no beacon since the sockets were created";
  state_.OnSocketsCreated(At(3000));
  state_.OnBeacon({"ctl-1", 0}, At(3500));
  EXPECT_TRUE(state_.Connected(At(6499)));
  EXPECT_FALSE(state_.ConnectionDead(At(6499)));
  EXPECT_TRUE(state_.ConnectionDead(At(6500)));
  EXPECT_FALSE(state_.Connected(At(6500)));
}

TEST_F(FleetStateTest, SaysHelloPeriodicallyWhileConnectedAsItsLivenessSignal) {
  FleetState periodic("lb-1", {"web"}, kBeaconTimeout, FixedJitter(milliseconds(0)),
                      milliseconds(1000));
  periodic.OnSocketsCreated(At(0));
  EXPECT_FALSE(periodic.HelloDue(At(5000))) << "no hello before the first connection";
  periodic.OnConnected(At(0));
  ASSERT_TRUE(periodic.HelloDue(At(0)));
  EXPECT_FALSE(periodic.PeriodicHelloOnly(At(0))) << "the connect hello is not a periodic one";
  periodic.HelloSent(At(0));
  periodic.OnBeacon({"ctl-1", 0}, At(100));
  periodic.OnUptodate({"ctl-1", 0}, At(100));
  EXPECT_FALSE(periodic.HelloDue(At(999)));
  EXPECT_EQ(periodic.NextHelloAt(At(500)), At(1000));
  periodic.OnBeacon({"ctl-1", 0}, At(900));
  ASSERT_TRUE(periodic.HelloDue(At(1000)));
  EXPECT_TRUE(periodic.PeriodicHelloOnly(At(1000)));
  periodic.HelloSent(At(1000));
  // Unanswered, it holds the next one back until it expires (beacon_timeout).
  periodic.OnBeacon({"ctl-1", 0}, At(1900));
  periodic.OnBeacon({"ctl-1", 0}, At(3000));
  EXPECT_FALSE(periodic.HelloDue(At(3000)));
  EXPECT_EQ(periodic.NextHelloAt(At(3000)), At(4000));
  periodic.OnBeacon({"ctl-1", 0}, At(3900));
  EXPECT_TRUE(periodic.HelloDue(At(4000)));
  // A dead connection says nothing periodic: the reconnect says hello.
  EXPECT_FALSE(periodic.HelloDue(At(7000)));
  EXPECT_EQ(periodic.NextHelloAt(At(7000)), std::nullopt);
  // Off by default.
  state_.OnConnected(At(0));
  state_.HelloSent(At(0));
  state_.OnBeacon({"ctl-1", 0}, At(4000));
  EXPECT_FALSE(state_.HelloDue(At(4500)));
}

// ---------------------------------------------------------------------------------------------
// FleetClient against a fake controller.

// The controller's two sockets, owned by the test thread. While a test waits for a message from
// the agent, the fake beacons every 50 ms (unless beacons are off), so that the agent sees a
// live controller and its subscription is known to work once it has seen one.
class FakeController {
 public:
  explicit FakeController(const std::string& dir)
      : pub_(ctx_, zmq::socket_type::pub), router_(ctx_, zmq::socket_type::router) {
    pub_endpoint = "ipc://" + dir + "/fleet-pub.sock";
    router_endpoint = "ipc://" + dir + "/fleet-router.sock";
    pub_.set(zmq::sockopt::linger, 0);
    router_.set(zmq::sockopt::linger, 0);
    pub_.bind(pub_endpoint);
    router_.bind(router_endpoint);
  }

  std::string pub_endpoint;
  std::string router_endpoint;
  std::string id = "ctl-1";
  uint64_t latest = 0;
  uint64_t epoch = 0;  // in beacons when not 0
  bool beacons = true;

  void Publish(const std::string& topic, const json& body) {
    PublishRaw(topic, proto::EncodeMsgpack(body));
  }
  void PublishRaw(const std::string& topic, const std::string& payload) {
    pub_.send(zmq::buffer(topic), zmq::send_flags::sndmore);
    pub_.send(zmq::buffer(payload));
  }
  void Beacon(const std::string& from = "") {
    json beacon = {{"v", 1},
                   {"type", "beacon"},
                   {"controller", from.empty() ? id : from},
                   {"latest", latest},
                   {"ts_ms", 0}};
    if (epoch != 0) beacon["epoch"] = epoch;
    Publish("fleet/beacon", beacon);
  }
  // To the connection the agent `agent` last sent from.
  void Send(const std::string& agent, const json& body) {
    std::string payload = proto::EncodeMsgpack(body);
    auto route = routes_.find(agent);
    router_.send(zmq::buffer(route == routes_.end() ? agent : route->second),
                 zmq::send_flags::sndmore);
    router_.send(zmq::buffer(payload));
  }
  json PushBody(uint64_t version, json target, json args, const std::string& cmd = "reload") {
    latest = std::max(latest, version);
    return {{"v", 1},           {"type", "push"}, {"controller", id}, {"version", version},
            {"target", target}, {"cmd", cmd},     {"args", args}};
  }

  struct Received {
    std::string agent;    // the "agent" of the message
    std::string routing;  // the routing id of its connection
    json body;
  };
  // The next message from an agent, beaconing meanwhile; nullopt after `wait`.
  std::optional<Received> Next(milliseconds wait = kWait) {
    auto deadline = FleetState::Clock::now() + wait;
    while (FleetState::Clock::now() < deadline) {
      if (beacons) Beacon();
      zmq::pollitem_t item = {router_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, milliseconds(50));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      zmq::message_t frame;
      do {
        if (!router_.recv(frame)) break;
        frames.emplace_back(std::move(frame));
      } while (frames.back().more());
      if (frames.size() != 2) {
        ADD_FAILURE() << "agent sent " << frames.size() - 1 << " frames, expected 1";
        continue;
      }
      auto body = proto::DecodeMsgpack(frames[1].to_string_view(), proto::DecodeLimits{});
      if (!body.ok()) {
        ADD_FAILURE() << "agent sent a malformed message: " << body.status().ToString();
        continue;
      }
      const std::string agent = body->value("agent", "");
      routes_[agent] = frames[0].to_string();
      return Received{agent, frames[0].to_string(), *body};
    }
    return std::nullopt;
  }
  // The next message of `type`; hellos met on the way are answered `uptodate` when
  // `answer_hellos`.
  std::optional<Received> Expect(const std::string& type, bool answer_hellos = true) {
    auto deadline = FleetState::Clock::now() + kWait;
    while (FleetState::Clock::now() < deadline) {
      auto m = Next(std::chrono::duration_cast<milliseconds>(deadline - FleetState::Clock::now()));
      if (!m) break;
      if (m->body.value("type", "") == type) return m;
      if (m->body.value("type", "") == "hello" && answer_hellos) {
        Send(m->agent, {{"v", 1}, {"type", "uptodate"}, {"controller", id}, {"latest", latest}});
      }
    }
    ADD_FAILURE() << "no " << type << " from the agent within " << kWait.count() << " ms";
    return std::nullopt;
  }

 private:
  zmq::context_t ctx_;
  zmq::socket_t pub_;
  zmq::socket_t router_;
  std::map<std::string, std::string> routes_;  // agent id -> routing id of its last message
};

// What the fake reload and status functions saw.
struct Calls {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<ReloadRequest> reloads;
  std::vector<json> statuses;
  bool hold = false;                        // reloads wait for the test to answer them
  std::vector<std::function<void()>> held;  // their answers, to call
};

class FleetClientTest : public ::testing::Test {
 protected:
  FleetClientTest() : controller_(dir_.path()), calls_(std::make_shared<Calls>()) {
    settings_.agent.agent_id = "lb-1";
    settings_.fleet.controller_pub = controller_.pub_endpoint;
    settings_.fleet.controller_router = controller_.router_endpoint;
    settings_.fleet.groups = {"web"};
    settings_.fleet.state_file = dir_.File("state/fleet-state.json");
    settings_.fleet.beacon_timeout = milliseconds(2000);
  }
  ~FleetClientTest() override {
    if (client_) client_->Stop();
  }

  void StartClient() {
    auto calls = calls_;
    auto submit = [calls](const json& args, ReplyFn reply) {
      auto parsed = ReloadRequestFromArgs(args);
      if (!parsed.ok()) {
        reply(parsed.status(), nullptr);
        return;
      }
      const ReloadRequest& request = *parsed;
      json result = {{"outcome", request.config == "same\n" ? "unchanged" : "applied"},
                     {"sha256", "new-sha"},
                     {"total_ms", 1}};
      {
        std::lock_guard<std::mutex> lock(calls->mu);
        calls->reloads.push_back(request);
      }
      auto answer = [reply, result, bad = request.config == "bad\n"] {
        if (bad) {
          reply(Status(ErrorCode::kInvalidConfig, "haproxy says no\n[ALERT] line 1"), nullptr);
        } else {
          reply(Status::Ok(), result);
        }
      };
      {
        std::lock_guard<std::mutex> lock(calls->mu);
        if (calls->hold) {
          calls->held.push_back(answer);
          calls->cv.notify_all();
          return;
        }
      }
      calls->cv.notify_all();
      answer();
    };
    auto status = [calls](const json& args) -> proto::Result<json> {
      {
        std::lock_guard<std::mutex> lock(calls->mu);
        calls->statuses.push_back(args);
      }
      return json{{"backends", json::array()}, {"asked", args}};
    };
    client_ = std::make_unique<FleetClient>(
        ctx_, settings_, submit, status, [] { return std::string("live-sha"); },
        FixedJitter(milliseconds(0)));
    ASSERT_TRUE(client_->Start().ok());
  }

  // Answers the connection's hello with `uptodate`, then beacons until the agent has seen one.
  void Handshake() {
    auto hello = controller_.Expect("hello", /*answer_hellos=*/false);
    ASSERT_TRUE(hello);
    EXPECT_EQ(hello->agent, "lb-1");
    controller_.Send("lb-1", {{"v", 1},
                              {"type", "uptodate"},
                              {"controller", controller_.id},
                              {"latest", controller_.latest}});
    WaitForBeaconSeen();
  }
  // Beacons until the agent counts the connection as alive (a beacon within beacon_timeout).
  void WaitForBeaconSeen() {
    auto deadline = FleetState::Clock::now() + kWait;
    while (!client_->Info()["connected"].get<bool>() && FleetState::Clock::now() < deadline) {
      controller_.Next(milliseconds(50));  // beacons; nothing is expected meanwhile
    }
    ASSERT_TRUE(client_->Info()["connected"].get<bool>()) << "the agent saw no beacon";
  }

  test_util::TempDir dir_;
  FakeController controller_;
  std::shared_ptr<Calls> calls_;
  common::Settings settings_;
  zmq::context_t ctx_;
  std::unique_ptr<FleetClient> client_;
};

TEST_F(FleetClientTest, HelloOnConnectAnsweredWithSnapshotIsAppliedAndAcked) {
  StartClient();
  auto hello = controller_.Expect("hello", false);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->agent, "lb-1");
  EXPECT_NE(hello->routing, "lb-1") << "ZeroMQ's routing id, not one another agent could take";
  EXPECT_EQ(hello->body["agent"], "lb-1");
  EXPECT_EQ(hello->body["groups"], json::array({"web"}));
  EXPECT_EQ(hello->body["sha256"], "live-sha");
  EXPECT_EQ(hello->body["applied_version"], 0);
  EXPECT_EQ(hello->body["synced_version"], 0);

  controller_.Send("lb-1", controller_.PushBody(3, {{"kind", "group"}, {"name", "web"}},
                                                {{"config", "cfg-3\n"}, {"force", true}}));
  auto ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 3);
  EXPECT_EQ(ack->body["agent"], "lb-1");
  EXPECT_EQ(ack->body["outcome"], "applied");
  EXPECT_EQ(ack->body["sha256"], "live-sha");
  EXPECT_EQ(ack->body["result"]["sha256"], "new-sha");
  EXPECT_TRUE(ack->body.contains("total_ms"));
  {
    std::lock_guard<std::mutex> lock(calls_->mu);
    ASSERT_EQ(calls_->reloads.size(), 1u);
    EXPECT_EQ(calls_->reloads[0].config, "cfg-3\n");
    EXPECT_TRUE(calls_->reloads[0].force);
  }
  auto saved = LoadFleetState(settings_.fleet.state_file);
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->applied_version, 3u);
  EXPECT_EQ(saved->controller, "ctl-1");
  // The ack is on disk with its version (sent again should the agent die before it left).
  ASSERT_TRUE(saved->last_ack.has_value());
  EXPECT_EQ(saved->last_ack->version, 3u);
  EXPECT_EQ(saved->last_ack->outcome, "applied");
  EXPECT_EQ(saved->last_ack->agent, "lb-1");
  json info = client_->Info();
  EXPECT_EQ(info["applied_version"], 3);
  EXPECT_EQ(info["controller"], "ctl-1");
}

TEST_F(FleetClientTest, ListsEveryControllerFollowsTheBoundOneAndRefusesALowerEpoch) {
  // An HA fleet: the standby binds nothing, the leader (the fake) is second in the lists.
  settings_.fleet.controller_pub =
      "ipc://" + dir_.File("standby-pub.sock") + ", " + controller_.pub_endpoint;
  settings_.fleet.controller_router =
      "ipc://" + dir_.File("standby-router.sock") + "," + controller_.router_endpoint;
  StartClient();
  Handshake();  // the hello reached the leader, and its beacons are heard
  controller_.epoch = 12;
  json push = controller_.PushBody(4, {{"kind", "all"}}, {{"config", "cfg-4\n"}});
  push["epoch"] = 12;
  controller_.Publish("fleet/all", push);
  auto ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 4);
  EXPECT_EQ(ack->body["outcome"], "applied");
  EXPECT_EQ(client_->Info()["epoch"], 12);

  // The deposed leader (epoch 11) still reaches the agent: refused, nothing runs.
  json stale = controller_.PushBody(5, {{"kind", "all"}}, {{"config", "cfg-5\n"}});
  stale["epoch"] = 11;
  stale["controller"] = "ctl-old";
  controller_.Publish("fleet/all", stale);
  auto refused = controller_.Expect("ack");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->body["version"], 5);
  EXPECT_EQ(refused->body["outcome"], "refused");
  EXPECT_EQ(refused->body["error"]["code"], "conflict");
  EXPECT_NE(refused->body["error"]["message"].get<std::string>().find("epoch 11"),
            std::string::npos)
      << refused->body.dump();
  {
    std::lock_guard<std::mutex> lock(calls_->mu);
    ASSERT_EQ(calls_->reloads.size(), 1u);
    EXPECT_EQ(calls_->reloads[0].config, "cfg-4\n");
  }
  auto saved = LoadFleetState(settings_.fleet.state_file);
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->epoch, 12u);
  EXPECT_EQ(saved->applied_version, 4u);
}

TEST_F(FleetClientTest, PushesOverPubAreAckedIgnoredOrSkipped) {
  StartClient();
  Handshake();

  controller_.Publish(
      "fleet/group/web",
      controller_.PushBody(5, {{"kind", "group"}, {"name", "web"}}, {{"config", "cfg-5\n"}}));
  auto ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 5);
  EXPECT_EQ(ack->body["outcome"], "applied");

  // The same push again: a duplicate.
  controller_.Publish(
      "fleet/group/web",
      controller_.PushBody(5, {{"kind", "group"}, {"name", "web"}}, {{"config", "cfg-5\n"}}));
  ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 5);
  EXPECT_EQ(ack->body["outcome"], "ignored");

  // fleet/group/web2 reaches this agent through its fleet/group/web subscription: not for it.
  controller_.Publish(
      "fleet/group/web2",
      controller_.PushBody(6, {{"kind", "group"}, {"name", "web2"}}, {{"config", "cfg-6\n"}}));
  // Malformed messages are dropped without harm.
  controller_.PublishRaw("fleet/all", "\xc1 not msgpack");
  controller_.Publish("fleet/all", {{"type", "push"}, {"controller", "ctl-1"}});
  controller_.Publish("fleet/all", json::array({1, 2}));
  // A status push for this agent by name: the next ack is this one, not one for v6.
  controller_.Publish(
      "fleet/agent/lb-1",
      controller_.PushBody(7, {{"kind", "agent"}, {"name", "lb-1"}}, {{"backend", "*"}}, "status"));
  // The beacon now says latest 7 > synced 5; the agent may ask (hello, answered uptodate).
  ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 7);
  EXPECT_EQ(ack->body["outcome"], "applied");
  EXPECT_EQ(ack->body["result"]["asked"], (json{{"backend", "*"}}));

  // An unchanged reload and a refused one.
  controller_.Publish("fleet/all",
                      controller_.PushBody(8, {{"kind", "all"}}, {{"config", "same\n"}}));
  ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 8);
  EXPECT_EQ(ack->body["outcome"], "unchanged");
  controller_.Publish("fleet/all",
                      controller_.PushBody(9, {{"kind", "all"}}, {{"config", "bad\n"}}));
  ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 9);
  EXPECT_EQ(ack->body["outcome"], "refused");
  EXPECT_EQ(ack->body["error"]["code"], "invalid_config");
  EXPECT_FALSE(ack->body.contains("result"));
  // A push without a usable cmd is refused but counts as processed.
  controller_.Publish("fleet/all",
                      controller_.PushBody(10, {{"kind", "all"}}, json::object(), "dance"));
  ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 10);
  EXPECT_EQ(ack->body["error"]["code"], "unknown_command");

  std::lock_guard<std::mutex> lock(calls_->mu);
  EXPECT_EQ(calls_->reloads.size(), 3u) << "v5, v8, v9; never v6";
  EXPECT_EQ(calls_->statuses.size(), 1u);
}

// A hello answered with the push the agent is still applying (it came on PUB first): no
// `ignored` ack before the real one. lbctl counts an agent whose only ack is `ignored` as failed
// after 2 s, and a reload on a loaded machine can take longer (a CI run failed that way).
TEST_F(FleetClientTest, TheSamePushArrivingWhileItIsAppliedGetsOnlyItsRealAck) {
  StartClient();
  Handshake();
  {
    std::lock_guard<std::mutex> lock(calls_->mu);
    calls_->hold = true;
  }
  const json push =
      controller_.PushBody(5, {{"kind", "group"}, {"name", "web"}}, {{"config", "cfg-5\n"}});
  controller_.Publish("fleet/group/web", push);
  {
    std::unique_lock<std::mutex> lock(calls_->mu);
    ASSERT_TRUE(calls_->cv.wait_for(lock, kWait, [&] { return !calls_->held.empty(); }))
        << "the reload did not start";
  }
  controller_.Send("lb-1", push);  // the copy a hello answer carries
  // Nothing is acked while the reload runs (half a second of whatever the agent sends).
  const auto quiet_until = FleetState::Clock::now() + milliseconds(500);
  while (FleetState::Clock::now() < quiet_until) {
    auto early = controller_.Next(milliseconds(100));
    EXPECT_FALSE(early && early->body.value("type", "") == "ack")
        << "acked before the reload ended: " << early->body.dump();
  }
  std::function<void()> answer;
  {
    std::lock_guard<std::mutex> lock(calls_->mu);
    ASSERT_EQ(calls_->held.size(), 1u) << "the copy must not run a second reload";
    answer = calls_->held.front();
    calls_->hold = false;
  }
  answer();
  auto ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 5);
  EXPECT_EQ(ack->body["outcome"], "applied");
  // Once done, a copy is a duplicate again: acked `ignored`.
  controller_.Publish("fleet/group/web", push);
  ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 5);
  EXPECT_EQ(ack->body["outcome"], "ignored");
}

TEST_F(FleetClientTest, DropsOversizedPushButKeepsTheConnection) {
  settings_.agent.max_config_bytes = 1024;  // messages up to 1 MiB + 1 KiB
  StartClient();
  Handshake();
  controller_.Publish("fleet/all",
                      controller_.PushBody(5, {{"kind", "all"}},
                                           {{"config", std::string(1100 * 1024, '#') + "\n"}}));
  controller_.Publish("fleet/all",
                      controller_.PushBody(6, {{"kind", "all"}}, {{"config", "small\n"}}));
  auto ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 6) << "the oversized v5 is dropped without an ack";
  EXPECT_EQ(ack->body["outcome"], "applied");
  std::lock_guard<std::mutex> lock(calls_->mu);
  ASSERT_EQ(calls_->reloads.size(), 1u);
  EXPECT_EQ(calls_->reloads[0].config, "small\n");
}

TEST_F(FleetClientTest, RefusesAnotherControllerWhileTheFollowedOneBeacons) {
  StartClient();
  Handshake();
  json intruder = controller_.PushBody(4, {{"kind", "all"}}, {{"config", "x\n"}});
  intruder["controller"] = "ctl-2";
  controller_.Publish("fleet/all", intruder);
  auto ack = controller_.Expect("ack");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->body["version"], 4);
  EXPECT_EQ(ack->body["outcome"], "refused");
  EXPECT_EQ(ack->body["error"]["code"], "conflict");
  const std::string message = ack->body["error"]["message"];
  EXPECT_NE(message.find("ctl-1"), std::string::npos) << message;
  EXPECT_NE(message.find("ctl-2"), std::string::npos) << message;
  std::lock_guard<std::mutex> lock(calls_->mu);
  EXPECT_TRUE(calls_->reloads.empty());
}

TEST_F(FleetClientTest, SilentControllerMeansReconnectAndHelloAgain) {
  settings_.fleet.beacon_timeout = milliseconds(400);
  StartClient();
  Handshake();
  controller_.beacons = false;  // as if the network dropped everything silently
  auto hello = controller_.Expect("hello", false);
  ASSERT_TRUE(hello) << "no hello after the beacons stopped";
  EXPECT_EQ(hello->agent, "lb-1");
  controller_.beacons = true;
  controller_.Send("lb-1",
                   {{"v", 1}, {"type", "uptodate"}, {"controller", "ctl-1"}, {"latest", 0}});
  WaitForBeaconSeen();
  EXPECT_TRUE(client_->Info()["connected"]);
}

TEST_F(FleetClientTest, RestartKeepsAppliedVersion) {
  ASSERT_TRUE(SaveFleetState(settings_.fleet.state_file, {11, "ctl-1", 0, std::nullopt}).ok());
  StartClient();
  auto hello = controller_.Expect("hello", false);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->body["applied_version"], 11);
  EXPECT_EQ(client_->Info()["applied_version"], 11);
}

// Killed after the state file recorded a push's outcome but before its ack left: after the
// restart the controller gets that ack first, then the hello, on the same connection.
TEST_F(FleetClientTest, AckWrittenBeforeARestartIsSentAgainBeforeTheFirstHello) {
  proto::FleetAck ack;
  ack.agent = "lb-1";
  ack.version = 11;
  ack.outcome = "applied";
  ack.sha256 = "live-sha";
  ack.total_ms = 40;
  ASSERT_TRUE(SaveFleetState(settings_.fleet.state_file, {11, "ctl-1", 0, ack}).ok());
  StartClient();
  auto first = controller_.Next(kWait);
  ASSERT_TRUE(first) << "the agent sent nothing";
  EXPECT_EQ(first->body.value("type", ""), "ack") << first->body.dump();
  EXPECT_EQ(first->body["version"], 11);
  EXPECT_EQ(first->body["outcome"], "applied");
  EXPECT_EQ(first->body["agent"], "lb-1");
  auto hello = controller_.Expect("hello", false);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->body["applied_version"], 11);
}

// An ack of an older version than the file's (a file from before this agent version, or from a
// push of another controller) is not sent again.
TEST_F(FleetClientTest, AckOfAnotherVersionThanTheFilesIsNotSentAgain) {
  proto::FleetAck ack;
  ack.agent = "lb-1";
  ack.version = 10;
  ack.outcome = "applied";
  ASSERT_TRUE(SaveFleetState(settings_.fleet.state_file, {11, "ctl-1", 0, ack}).ok());
  StartClient();
  auto first = controller_.Next(kWait);
  ASSERT_TRUE(first) << "the agent sent nothing";
  EXPECT_EQ(first->body.value("type", ""), "hello") << first->body.dump();
}

TEST_F(FleetClientTest, CorruptStateFileStartsFromZero) {
  std::filesystem::create_directories(dir_.File("state"));
  test_util::WriteFile(settings_.fleet.state_file, "{garbage");
  StartClient();
  auto hello = controller_.Expect("hello", false);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->body["applied_version"], 0);
}

}  // namespace
}  // namespace lb::agent
