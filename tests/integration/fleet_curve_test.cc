// The fleet with CURVE (SECURITY.md, proto/PROTOCOL.md "Fleet"): a real lb-controller with
// [security] curve_secret_key and curve_clients, and real lb-agents, each with its own key pair
// ([security] curve_secret_key, made by `lbctl keygen`), its own haproxy, and [fleet]
// controller_public_key. What an operator relies on: a push converges on the agents the controller
// lists and that pin its key; an agent whose key is not listed, or that pins another controller's
// key, never gets a push (its live config stays), never hears a beacon, and is not listed by `fleet
// agents`.
//
// The agents' command sockets are CURVE servers too (curve_secret_key turns them on): the test
// talks to them with the harness's client key, which every agent's curve_clients lists.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

std::string LbctlBinary() { return LBCTL_BINARY; }

// `lbctl keygen PATH`; the public key it wrote ("" and a test failure when it did not).
std::string Keygen(const std::string& path) {
  CommandResult r = RunCommand({LbctlBinary(), "keygen", path}, milliseconds(10000));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  auto cert = common::ReadCertificate(path, /*need_secret=*/false);
  EXPECT_TRUE(cert.ok()) << cert.status().ToString();
  return cert.ok() ? cert->public_key : "";
}

struct FleetAgent {
  std::string id;
  std::string public_key;
  std::unique_ptr<AgentFixture> fixture;
  std::string initial_config;
};

// An agent of the fleet with its own key pair `key` (written by Keygen), CURVE on its command
// socket (the test's client key in files.clients), following `controller`, pinning the key
// `pins`, with its own haproxy config. Not started.
FleetAgent CurveAgent(const std::string& id, const std::string& key, const CurveFiles& files,
                      const FleetController& controller, const std::string& pins, Keys fleet,
                      const HttpBackend& backend) {
  FleetAgent agent;
  agent.id = id;
  fleet["controller_pub"] = controller.pub();
  fleet["controller_router"] = controller.router();
  fleet["state_file"] = "fleet-state.json";
  fleet["beacon_timeout"] = "1";
  fleet["controller_public_key"] = pins;
  agent.fixture =
      std::make_unique<AgentFixture>(Keys{}, Keys{{"agent_id", id}, {"poll_interval", "1"}}, fleet);
  agent.fixture->SetSecurityKeys(
      {{"curve_secret_key", key + "_secret"}, {"curve_clients", files.clients}});
  auto client = common::LoadClientKeys({files.client_secret, key});
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  if (client.ok()) agent.fixture->SetClientKeys(*client);
  agent.initial_config = HaproxyConfig(FreePort(), {{"web", backend.port(), ""}});
  WriteFile(agent.fixture->config_path(), agent.initial_config);
  return agent;
}

TEST(FleetCurveTest, PushesReachOnlyAllowListedAgentsThatPinThisController) {
  TempDir dir;
  HttpBackend backend("web");
  const CurveFiles files = WriteCurveFiles(dir);  // the test's own client key for the agents

  // The controller's pair, another controller's pair, and the controller's allow-list: a
  // directory of the allowed agents' public certificates.
  const std::string controller_key = dir.File("controller");
  Keygen(controller_key);
  const std::string impostor_key = dir.File("impostor");
  Keygen(impostor_key);
  const std::string allowed_dir = dir.File("fleet-agents");
  std::filesystem::create_directory(allowed_dir);

  FleetController::Options options;
  options.lbctl = LbctlBinary();
  options.dir = dir.path();
  options.beacon_interval_s = 0.2;
  options.curve_secret_key = controller_key + "_secret";
  options.curve_clients = allowed_dir;
  FleetController controller(options);

  // c0, c1: listed and pinned to this controller. stranger: pinned, not listed. pinned-elsewhere:
  // listed, but pinned to the impostor's key.
  struct Plan {
    std::string id;
    bool listed;
    std::string pins;
  };
  const std::vector<Plan> plans = {{"c0", true, controller_key},
                                   {"c1", true, controller_key},
                                   {"stranger", false, controller_key},
                                   {"pinned-elsewhere", true, impostor_key}};
  std::vector<FleetAgent> agents;
  for (const Plan& plan : plans) {
    const std::string key = dir.File("agent-" + plan.id);
    const std::string public_key = Keygen(key);
    if (plan.listed) std::filesystem::copy_file(key, allowed_dir + "/" + plan.id);
    agents.push_back(
        CurveAgent(plan.id, key, files, controller, plan.pins, Keys{{"groups", "web"}}, backend));
    agents.back().public_key = public_key;
  }
  controller.Start();
  ASSERT_FALSE(HasFailure());
  EXPECT_NE(controller.Log().find("CURVE on (public key " +
                                  common::ReadCertificate(controller_key, false)->public_key),
            std::string::npos)
      << controller.Log();
  for (FleetAgent& agent : agents) {
    agent.fixture->StartAgent();
    ASSERT_FALSE(HasFailure()) << agent.id << " did not start:\n" << agent.fixture->AgentLog();
  }
  // The listed agents that pin this controller say hello and are listed.
  ASSERT_TRUE(WaitFor(
      [&] {
        json listed = controller.Agents();
        return listed.is_object() && listed["agents"].size() >= 2;
      },
      milliseconds(15000)))
      << controller.Log();

  const int shared_port = FreePort();
  const std::string config = HaproxyConfig(shared_port, {{"web-v1", backend.port(), ""}});
  WriteFile(dir.File("v1.cfg"), config);
  CommandResult push =
      controller.Lbctl({"push", dir.File("v1.cfg"), "--all", "--timeout", "60", "--json"});
  ASSERT_EQ(push.exit_code, 0) << push.Describe() << controller.Log();
  json report = json::parse(push.out, nullptr, false);
  ASSERT_TRUE(report.is_object()) << push.out;

  // c0 and c1 run the pushed config; the others still run their own.
  for (const FleetAgent& agent : agents) {
    const bool follows = agent.id == "c0" || agent.id == "c1";
    json live = agent.fixture->Ok("get_config");
    EXPECT_EQ(live.value("config", ""), follows ? config : agent.initial_config) << agent.id;
    json fleet = agent.fixture->Ok("info")["fleet"];
    EXPECT_EQ(fleet["connected"], follows) << agent.id << ": " << fleet.dump();
    if (!follows) {
      EXPECT_EQ(fleet["applied_version"], 0) << agent.id << ": " << fleet.dump();
      EXPECT_TRUE(fleet["last_beacon_ms_ago"].is_null()) << agent.id << ": never heard a beacon";
    }
  }

  // The controller lists exactly the two, each with the key it authenticated.
  json listed = controller.Agents();
  ASSERT_TRUE(listed.is_object());
  std::map<std::string, std::string> keys;
  for (const json& entry : listed["agents"]) keys[entry["agent"]] = entry.value("curve_key", "");
  EXPECT_EQ(keys, (std::map<std::string, std::string>{{"c0", agents[0].public_key},
                                                      {"c1", agents[1].public_key}}))
      << listed.dump();

  // A push aimed at each outsider is never answered: it stays pending until --timeout (exit 5),
  // and its config stays.
  for (size_t i : {size_t{2}, size_t{3}}) {
    const FleetAgent& outsider = agents[i];
    CommandResult aimed = controller.Lbctl(
        {"push", dir.File("v1.cfg"), "--agent-id", outsider.id, "--expect", "1", "--timeout", "3"});
    EXPECT_EQ(aimed.exit_code, 5) << outsider.id << ": " << aimed.Describe();
    EXPECT_EQ(outsider.fixture->Ok("get_config").value("config", ""), outsider.initial_config)
        << outsider.id;
  }

  const std::string log = controller.Log();
  EXPECT_NE(log.find("key " + agents[2].public_key + " is not in the allow-list"),
            std::string::npos)
      << log;
  for (const char* outsider : {"stranger", "pinned-elsewhere"}) {
    EXPECT_EQ(log.find(std::string("hello from ") + outsider), std::string::npos) << log;
  }
}

// An agent id is pinned to the CURVE key of its first hello: another allow-listed agent that
// says hello (or acks) under that id is refused, visibly (the controller's log and `fleet
// agents`): its hellos are not answered and nothing it says is recorded for the id, and the real
// agent is not disturbed. (The PUB socket is a broadcast every allow-listed agent may subscribe
// to, as SECURITY.md says: pinning protects what the controller records and answers, not what
// is published.)
TEST(FleetCurveTest, AnAgentIdIsPinnedToTheKeyOfItsFirstHello) {
  TempDir dir;
  HttpBackend backend("web");
  const CurveFiles files = WriteCurveFiles(dir);
  const std::string controller_key = dir.File("controller");
  Keygen(controller_key);
  const std::string allowed_dir = dir.File("fleet-agents");
  std::filesystem::create_directory(allowed_dir);
  FleetController::Options options;
  options.lbctl = LbctlBinary();
  options.dir = dir.path();
  options.curve_secret_key = controller_key + "_secret";
  options.curve_clients = allowed_dir;
  FleetController controller(options);

  // Both listed; the second one's agent_id is the first one's.
  std::vector<FleetAgent> agents;
  for (const std::string name : {"real", "posing"}) {
    const std::string key = dir.File("agent-" + name);
    const std::string public_key = Keygen(key);
    std::filesystem::copy_file(key, allowed_dir + "/" + name);
    agents.push_back(CurveAgent(
        "c0", key, files, controller, controller_key,
        Keys{{"groups", name == "real" ? "web" : "db"}, {"hello_interval", "0.5"}}, backend));
    agents.back().public_key = public_key;
  }
  controller.Start();
  ASSERT_FALSE(HasFailure());
  agents[0].fixture->StartAgent();
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(WaitFor(
      [&] {
        json listed = controller.Agents();
        return listed.is_object() && listed["agents"].size() == 1 &&
               listed["agents"][0].value("curve_key", "") == agents[0].public_key;
      },
      milliseconds(15000)))
      << controller.Log();
  agents[1].fixture->StartAgent();
  ASSERT_FALSE(HasFailure());

  json c0;
  ASSERT_TRUE(WaitFor(
      [&] {
        json listed = controller.Agents();
        if (!listed.is_object() || listed["agents"].size() != 1) return false;
        c0 = listed["agents"][0];
        return c0.value("refused_messages", 0) >= 2;
      },
      milliseconds(15000)))
      << c0.dump() << "\n"
      << controller.Log();
  EXPECT_EQ(c0["agent"], "c0");
  EXPECT_EQ(c0["curve_key"], agents[0].public_key) << "still the first key";
  EXPECT_EQ(c0["refused_key"], agents[1].public_key);
  EXPECT_EQ(c0["groups"], json::array({"web"})) << "nothing of the impostor's hello recorded";
  EXPECT_EQ(c0["liveness"], "alive");
  EXPECT_NE(controller.Log().find("refused a message under agent id c0 with CURVE key " +
                                  agents[1].public_key + ": that id is pinned to key " +
                                  agents[0].public_key),
            std::string::npos)
      << controller.Log();
  CommandResult table = controller.Lbctl({"agents"});
  EXPECT_NE(table.out.find("(key " + agents[1].public_key + ")"), std::string::npos) << table.out;

  // A push to the id reaches the real agent, whose ack is the one recorded.
  const std::string config = HaproxyConfig(FreePort(), {{"web-v1", backend.port(), ""}});
  WriteFile(dir.File("v1.cfg"), config);
  CommandResult push =
      controller.Lbctl({"push", dir.File("v1.cfg"), "--agent-id", "c0", "--timeout", "60"});
  EXPECT_EQ(push.exit_code, 0) << push.Describe() << controller.Log();
  EXPECT_EQ(agents[0].fixture->Ok("get_config").value("config", ""), config);
  json after = controller.Agents();
  ASSERT_TRUE(after.is_object());
  EXPECT_EQ(after["agents"][0]["curve_key"], agents[0].public_key) << after.dump();
  EXPECT_EQ(after["agents"][0]["groups"], json::array({"web"})) << after.dump();
}

}  // namespace
}  // namespace lb::testing
