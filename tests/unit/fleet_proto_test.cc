// proto/fleet.h: every fleet message round-trips through its Encode, the msgpack codec and its
// Parse, and every parser refuses what it must with bad_request and a message naming the field.
// One name rule for agent ids and group names, wherever they appear.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lb/proto/codec.h"
#include "lb/proto/fleet.h"

namespace lb::proto {
namespace {

using nlohmann::json;

// Through the wire, as the other end sees it.
json Wire(const json& message) {
  auto decoded = DecodeMsgpack(EncodeMsgpack(message), DecodeLimits{});
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  return decoded.ok() ? *decoded : json(nullptr);
}

// Encode -> wire -> Parse -> Encode gives the same message.
template <typename T, typename Encode, typename Parse>
void ExpectRoundTrip(const T& value, Encode encode, Parse parse) {
  const json encoded = encode(value);
  auto parsed = parse(Wire(encoded));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString() << "\n" << encoded.dump();
  EXPECT_EQ(encode(*parsed), encoded);
}

TEST(FleetProtoTest, OneNameRuleForAgentIdsAndGroups) {
  EXPECT_TRUE(IsValidFleetName("web-1.eu"));
  EXPECT_TRUE(IsValidFleetName(std::string(255, 'a')));
  EXPECT_TRUE(IsValidFleetName("caf\xc3\xa9"));
  for (const std::string& bad :
       {std::string(), std::string(256, 'a'), std::string("a/b"), std::string("a\nb"),
        std::string("a\x7f"), std::string("a\0b", 3)}) {
    EXPECT_FALSE(IsValidFleetName(bad))
        << json(bad).dump(-1, ' ', false, json::error_handler_t::replace);
    // The same rule in a target, a hello and an ack.
    EXPECT_FALSE(ParseTarget({{"kind", "group"}, {"name", bad}}).ok());
    EXPECT_FALSE(ParseHello({{"type", "hello"}, {"agent", bad}}).ok());
    EXPECT_FALSE(ParseHello({{"type", "hello"}, {"agent", "a1"}, {"groups", {bad}}}).ok());
    EXPECT_FALSE(
        ParseAck({{"type", "ack"}, {"agent", bad}, {"version", 1}, {"outcome", "applied"}}).ok());
  }
}

TEST(FleetProtoTest, TargetsKeysTopicsAndMatching) {
  for (const FleetTarget& t :
       {FleetTarget::All(), FleetTarget::Group("web"), FleetTarget::Agent("a1")}) {
    ExpectRoundTrip(t, EncodeTarget, ParseTarget);
    EXPECT_EQ(TargetFromKey(TargetKey(t)), t);
    EXPECT_EQ(TargetTopic(t), "fleet/" + TargetKey(t));
  }
  EXPECT_EQ(TargetKey(FleetTarget::Group("web")), "group/web");
  EXPECT_EQ(TargetFromKey("rack/1"), std::nullopt);
  EXPECT_EQ(TargetFromKey("group/a/b"), std::nullopt);
  EXPECT_TRUE(TargetMatches(FleetTarget::All(), "a1", {}));
  EXPECT_TRUE(TargetMatches(FleetTarget::Group("web"), "a1", {"db", "web"}));
  EXPECT_FALSE(TargetMatches(FleetTarget::Group("web"), "a1", {"web2"})) << "not by prefix";
  EXPECT_TRUE(TargetMatches(FleetTarget::Agent("a1"), "a1", {"web"}));
  EXPECT_FALSE(TargetMatches(FleetTarget::Agent("a1"), "a10", {}));
  for (const json& bad : {json("all"), json{{"kind", "rack"}}, json{{"kind", "group"}},
                          json{{"kind", "agent"}, {"name", 7}}}) {
    auto parsed = ParseTarget(bad);
    EXPECT_FALSE(parsed.ok()) << bad.dump();
    EXPECT_EQ(parsed.status().code(), ErrorCode::kBadRequest);
  }
}

TEST(FleetProtoTest, ControllerMessagesRoundTrip) {
  FleetPush push{
      "ctl-1", 12, FleetTarget::Group("web"), "reload", {{"config", "global\n"}, {"force", true}}};
  ExpectRoundTrip(push, EncodePush, ParsePush);
  EXPECT_EQ(EncodePush(push)["v"], kProtocolVersion);
  ExpectRoundTrip(FleetBeacon{"ctl-1", 3, 1700000000000}, EncodeBeacon, ParseBeacon);
  ExpectRoundTrip(FleetUptodate{"ctl-1", 0}, EncodeUptodate, ParseUptodate);
  // The epoch of an elected controller (etcd), in all three; absent when 0.
  FleetPush fenced = push;
  fenced.epoch = 4711;
  ExpectRoundTrip(fenced, EncodePush, ParsePush);
  EXPECT_EQ(ParsePush(Wire(EncodePush(fenced)))->epoch, 4711u);
  EXPECT_FALSE(EncodePush(push).contains("epoch"));
  EXPECT_EQ(ParsePush(EncodePush(push))->epoch, 0u);
  ExpectRoundTrip(FleetBeacon{"ctl-1", 3, 1700000000000, 9}, EncodeBeacon, ParseBeacon);
  EXPECT_EQ(ParseBeacon(EncodeBeacon({"ctl-1", 3, 1, 9}))->epoch, 9u);
  ExpectRoundTrip(FleetUptodate{"ctl-1", 5, 9}, EncodeUptodate, ParseUptodate);
  EXPECT_EQ(ParseUptodate(EncodeUptodate({"ctl-1", 5, 9}))->epoch, 9u);
  for (const json& bad_epoch : {json(-1), json("7"), json(1.5)}) {
    json message = EncodeBeacon({"ctl-1", 3, 1, 0});
    message["epoch"] = bad_epoch;
    auto parsed = ParseBeacon(message);
    EXPECT_FALSE(parsed.ok()) << bad_epoch.dump();
    if (!parsed.ok()) {
      EXPECT_NE(parsed.status().message().find("epoch"), std::string::npos);
    }
  }

  auto message = ParseControllerMessage(Wire(EncodePush(push)));
  ASSERT_TRUE(message.ok());
  const FleetPush& p = std::get<FleetPush>(*message);
  EXPECT_EQ(p.version, 12u);
  EXPECT_EQ(p.target, FleetTarget::Group("web"));
  EXPECT_EQ(p.args["config"], "global\n");
  EXPECT_TRUE(
      std::holds_alternative<FleetBeacon>(*ParseControllerMessage(EncodeBeacon({"ctl-1", 3, 0}))));
  // "v" may be left out (it defaults to 1); a signed version is as good as an unsigned one.
  auto up = ParseControllerMessage(
      {{"type", "uptodate"}, {"controller", "ctl-1"}, {"latest", json(int64_t{4})}});
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(std::get<FleetUptodate>(*up).latest, 4u);
  // A usable envelope with a bad cmd still parses: the agent refuses it with an ack.
  auto odd = ParsePush({{"type", "push"},
                        {"controller", "c"},
                        {"version", 1},
                        {"target", {{"kind", "all"}}},
                        {"cmd", 7},
                        {"args", "x"}});
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->cmd, "");
  EXPECT_EQ(odd->args, "x");
}

TEST(FleetProtoTest, ControllerMessagesAreRefusedWithTheFieldNamed) {
  const json all = {{"kind", "all"}};
  struct Case {
    json message;
    std::string says;
  };
  const std::vector<Case> cases = {
      {json::array(), "not a map"},
      {{{"type", "push"}, {"controller", "c"}, {"target", all}}, "\"version\" is missing"},
      {{{"type", "push"}, {"controller", "c"}, {"version", -1}, {"target", all}}, "\"version\""},
      {{{"type", "push"}, {"controller", "c"}, {"version", "1"}, {"target", all}}, "\"version\""},
      {{{"type", "push"}, {"controller", ""}, {"version", 1}, {"target", all}}, "\"controller\""},
      {{{"type", "push"}, {"version", 1}, {"target", all}}, "\"controller\""},
      {{{"type", "push"}, {"controller", "c"}, {"version", 1}}, "\"target\""},
      {{{"type", "push"}, {"controller", "c"}, {"version", 1}, {"target", {{"kind", "group"}}}},
       "needs a \"name\""},
      {{{"type", "push"}, {"controller", "c"}, {"version", 1}, {"target", {{"kind", "rack"}}}},
       "none of all, group, agent"},
      {{{"v", 2}, {"type", "beacon"}, {"controller", "c"}, {"latest", 1}},
       "unsupported protocol version"},
      {{{"type", "beacon"}, {"controller", "c"}}, "\"latest\""},
      {{{"type", "hello"}, {"controller", "c"}}, "unknown message type \"hello\""},
      {{{"controller", "c"}}, "\"type\""},
  };
  for (const Case& c : cases) {
    auto parsed = ParseControllerMessage(c.message);
    ASSERT_FALSE(parsed.ok()) << "accepted " << c.message.dump();
    EXPECT_EQ(parsed.status().code(), ErrorCode::kBadRequest);
    EXPECT_NE(parsed.status().message().find(c.says), std::string::npos)
        << c.message.dump() << ": " << parsed.status().message();
  }
}

// Fuzz input fuzz/corpus/command_frame/crash-version-invalid-utf8: quoting a version that is a
// string of invalid UTF-8 threw (json::dump) out of the parser and terminated the agent's fleet
// thread.
TEST(FleetProtoTest, VersionOfInvalidUtf8IsBadRequest) {
  // {"v": "\xff"} as msgpack: a str (not bin) holding a byte that is not UTF-8.
  auto decoded = DecodeMsgpack(std::string("\x81\xa1v\xa1\xff"), DecodeLimits{});
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  for (auto status :
       {ParseControllerMessage(*decoded).status(), ParseAgentMessage(*decoded).status()}) {
    EXPECT_EQ(status.code(), ErrorCode::kBadRequest);
    EXPECT_NE(status.message().find("unsupported protocol version"), std::string::npos)
        << status.message();
  }
}

TEST(FleetProtoTest, AgentMessagesRoundTrip) {
  FleetHello hello{"lb-1", {"web", "eu"}, std::string(64, 'a'), 5, 4, 5, 2000};
  ExpectRoundTrip(hello, EncodeHello, ParseHello);
  EXPECT_EQ(EncodeHello(hello)["hello_interval_ms"], 2000);
  // An older agent says neither completed_version nor hello_interval_ms.
  auto old = ParseHello({{"v", 1}, {"type", "hello"}, {"agent", "lb-1"}, {"applied_version", 3}});
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->completed_version, std::nullopt);
  EXPECT_EQ(old->hello_interval_ms, 0);
  EXPECT_EQ(old->synced_version, 0u);

  FleetAck refused{"lb-1", 5,  "refused", FleetError{"invalid_config", "bad line"},
                   "abc",  12, nullptr};
  ExpectRoundTrip(refused, EncodeAck, ParseAck);
  EXPECT_EQ(EncodeAck(refused)["error"],
            (json{{"code", "invalid_config"}, {"message", "bad line"}}));
  EXPECT_FALSE(EncodeAck(refused).contains("result"));
  FleetAck applied{"lb-1", 6, "applied", std::nullopt, "def", 80, {{"outcome", "applied"}}};
  ExpectRoundTrip(applied, EncodeAck, ParseAck);
  EXPECT_FALSE(EncodeAck(applied).contains("error"));
  auto message = ParseAgentMessage(Wire(EncodeAck(applied)));
  ASSERT_TRUE(message.ok());
  EXPECT_EQ(std::get<FleetAck>(*message).result["outcome"], "applied");
}

TEST(FleetProtoTest, AgentMessagesAreRefusedWithTheFieldNamed) {
  struct Case {
    json message;
    std::string says;
  };
  const std::vector<Case> cases = {
      {json::array({1, 2}), "not a map"},
      {{{"v", 2}, {"type", "hello"}, {"agent", "a1"}}, "unsupported protocol version"},
      {{{"v", 1}, {"agent", "a1"}}, "\"type\" is missing"},
      {{{"v", 1}, {"type", "hello"}}, "\"agent\" is missing"},
      {{{"v", 1}, {"type", "hello"}, {"agent", "a/1"}}, "without '/'"},
      {{{"v", 1}, {"type", "hello"}, {"agent", "a1"}, {"groups", "web"}}, "\"groups\""},
      {{{"v", 1}, {"type", "hello"}, {"agent", "a1"}, {"applied_version", -1}}, "applied_version"},
      {{{"v", 1}, {"type", "ack"}, {"agent", "a1"}, {"outcome", "applied"}},
       "\"version\" is missing"},
      {{{"v", 1}, {"type", "ack"}, {"agent", "a1"}, {"version", 1}, {"outcome", "great"}},
       "\"outcome\""},
      {{{"v", 1},
        {"type", "ack"},
        {"agent", "a1"},
        {"version", 1},
        {"outcome", "refused"},
        {"error", "bad"}},
       "\"error\""},
      {{{"v", 1}, {"type", "gossip"}, {"agent", "a1"}}, "type \"gossip\""},
  };
  for (const Case& c : cases) {
    auto parsed = ParseAgentMessage(c.message);
    ASSERT_FALSE(parsed.ok()) << "accepted " << c.message.dump();
    EXPECT_EQ(parsed.status().code(), ErrorCode::kBadRequest);
    EXPECT_NE(parsed.status().message().find(c.says), std::string::npos)
        << c.message.dump() << ": " << parsed.status().message();
  }
}

TEST(FleetProtoTest, ControlRequestsAndResultsRoundTrip) {
  FleetPushRequest push;
  push.target = FleetTarget::Group("web");
  push.args = {{"config", "c\n"}, {"force", true}};
  push.desired = FleetPushRequest::Desired::kAlways;
  push.allow_no_match = true;
  ExpectRoundTrip(push, EncodePushRequest, ParsePushRequest);
  auto defaults = ParsePushRequest({{"target", {{"kind", "all"}}}, {"args", {{"config", "c"}}}});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->cmd, "reload");
  EXPECT_EQ(defaults->desired, FleetPushRequest::Desired::kOnApply);
  EXPECT_FALSE(defaults->allow_no_match);

  ExpectRoundTrip(FleetPushResult{7, FleetTarget::All(), "fleet/all", {"a1", "a2"}, {"a3"}, 7},
                  EncodePushResult, ParsePushResult);
  ExpectRoundTrip(FleetAgentsRequest{FleetTarget::Agent("a1")}, EncodeAgentsRequest,
                  ParseAgentsRequest);
  ExpectRoundTrip(FleetAgentsRequest{}, EncodeAgentsRequest, ParseAgentsRequest);
  ExpectRoundTrip(FleetAcksRequest{{1, 2, 3}}, EncodeAcksRequest, ParseAcksRequest);

  FleetAgentInfo agent;
  agent.agent = "a1";
  agent.groups = {"web"};
  agent.sha256 = "abc";
  agent.applied_version = 3;
  agent.desired_version = 2;
  agent.first_seen_ms = 10;
  agent.last_seen_ms = 20;
  agent.liveness = FleetLiveness::kLost;
  agent.hello_interval_ms = 5000;
  agent.last_ack =
      FleetAckRecord{{"a1", 3, "refused", FleetError{"conflict", "x"}, "abc", 4, nullptr}, 30};
  agent.curve_key = std::string(40, 'k');
  agent.refused_messages = 2;
  agent.refused_key = std::string(40, 'z');
  FleetAgentsResult agents{"ctl", 3, 40, {agent}, {}};
  agents.targets.push_back({FleetTarget::Group("web"), 2, "applied", 0, 3});
  ExpectRoundTrip(agents, EncodeAgentsResult, ParseAgentsResult);
  EXPECT_EQ(EncodeAgentsResult(agents)["agents"][0]["liveness"], "lost");

  FleetAcksResult acks{
      5,
      {FleetAckRecord{{"a1", 5, "applied", std::nullopt, "s", 9, {{"outcome", "applied"}}}, 99}}};
  ExpectRoundTrip(acks, EncodeAcksResult, ParseAcksResult);
  ExpectRoundTrip(FleetPingResult{"ctl", 5}, EncodePingResult, ParsePingResult);
}

TEST(FleetProtoTest, ControlRequestsAreRefusedWithTheFieldNamed) {
  const json all = {{"kind", "all"}};
  const json config = {{"config", "c"}};
  struct Case {
    json args;
    std::string says;
  };
  const std::vector<Case> pushes = {
      {{{"args", config}}, "\"target\" is missing"},
      {{{"target", {{"kind", "planet"}}}, {"args", config}}, "none of all, group, agent"},
      {{{"target", {{"kind", "group"}, {"name", "a/b"}}}, {"args", config}}, "needs a \"name\""},
      {{{"target", all}}, "needs args.config"},
      {{{"target", all}, {"args", {{"config", 1}}}}, "needs args.config"},
      {{{"target", all}, {"args", {{"config", "c"}, {"force", "yes"}}}}, "args.force"},
      {{{"target", all}, {"args", {{"config", "c"}, {"expect_sha256", "x"}}}},
       "takes args config and force"},
      {{{"target", all}, {"cmd", "rm"}, {"args", config}}, "reload or status"},
      {{{"target", all}, {"args", config}, {"desired", "never"}}, "on_apply or always"},
      {{{"target", all}, {"args", config}, {"allow_no_match", "yes"}}, "allow_no_match"},
  };
  for (const Case& c : pushes) {
    auto parsed = ParsePushRequest(c.args);
    ASSERT_FALSE(parsed.ok()) << "accepted " << c.args.dump();
    EXPECT_EQ(parsed.status().code(), ErrorCode::kBadRequest);
    EXPECT_NE(parsed.status().message().find(c.says), std::string::npos)
        << c.args.dump() << ": " << parsed.status().message();
  }
  EXPECT_FALSE(ParseAcksRequest(json::object()).ok());
  EXPECT_FALSE(ParseAcksRequest({{"versions", {"one"}}}).ok());
  EXPECT_FALSE(ParseAcksRequest({{"versions", std::vector<int>(100001, 1)}}).ok());
  EXPECT_FALSE(ParseAgentsRequest({{"target", {{"kind", "group"}}}}).ok());
}

}  // namespace
}  // namespace lb::proto
