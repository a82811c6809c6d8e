// CURVE on the agent's own sockets (SECURITY.md) with a real lb-agent and haproxy: only
// allow-listed client keys reach the command and event sockets, the allow-list is re-read
// without a restart, and without CURVE the agent refuses to expose a socket beyond this host.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

// Runs lb-agent with the fixture's settings and waits for it to exit; its exit code (or -1 if
// it is still running after `timeout`, then killed).
int RunAgentToExit(AgentFixture& agent, milliseconds timeout = milliseconds(15000)) {
  agent.WriteSettings();
  Process p({AgentBinary(), "--config", agent.settings_path()}, agent.dir().File("agent.log"));
  bool exited = WaitFor([&] { return !p.Running(); }, timeout);
  if (!exited) return -1;
  int status = p.Stop(milliseconds(0));
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class AgentCurveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    files_ = WriteCurveFiles(agent_.dir());
    WriteFile(agent_.config_path(), HaproxyConfig(FreePort(), {{"i-1", backend_.port()}}));
    agent_.SetSecurityKeys(files_.SecurityKeys());
    agent_.SetClientKeys(files_.client);
  }

  HttpBackend backend_{"b1"};
  AgentFixture agent_{{}, {{"heartbeat_interval", "0.2"}}};
  CurveFiles files_;
};

TEST_F(AgentCurveTest, OnlyAllowListedKeysReachTheCommandAndEventSockets) {
  agent_.StartAgent();
  json info = agent_.Ok("info");
  EXPECT_EQ(info["security"]["curve"], true);
  EXPECT_EQ(info["security"]["public_key"],
            common::ReadCertificate(files_.agent_public, false)->public_key);
  EXPECT_EQ(agent_.ServerStatus("i-1"), "UP");

  // A key that is not listed, and a plaintext client, never get an answer.
  auto stranger =
      AgentCall(agent_.endpoint(), "ping", json::object(), milliseconds(1500), &files_.stranger);
  EXPECT_FALSE(stranger.ok());
  auto plain = AgentCall(agent_.endpoint(), "ping", json::object(), milliseconds(1500));
  EXPECT_FALSE(plain.ok());
  // Nor does a client that pins a server key other than the agent's.
  common::CurveClientKeys wrong_server = files_.client;
  wrong_server.server_public_key = files_.stranger.own.public_key;
  EXPECT_FALSE(
      AgentCall(agent_.endpoint(), "ping", json::object(), milliseconds(1500), &wrong_server).ok());
  info = agent_.Ok("info");
  EXPECT_GE(info["security"]["clients_refused"].get<int>(), 1);
  EXPECT_NE(agent_.AgentLog().find(files_.stranger.own.public_key), std::string::npos)
      << "the refused key is logged:\n"
      << agent_.AgentLog();

  // Events: the allowed subscriber hears heartbeats, the stranger and a plaintext one nothing.
  EventSubscriber allowed(agent_.events_endpoint(), {""}, 0, &files_.client);
  EventSubscriber stranger_sub(agent_.events_endpoint(), {""}, 0, &files_.stranger);
  EventSubscriber plain_sub(agent_.events_endpoint());
  EXPECT_TRUE(allowed.WaitLive(milliseconds(10000)));
  EXPECT_FALSE(stranger_sub.WaitReadable(milliseconds(1000)));
  EXPECT_FALSE(plain_sub.WaitReadable(milliseconds(200)));

  // A reload through CURVE works and its event reaches the allowed subscriber only.
  std::string config = HaproxyConfig(FreePort(), {{"i-1", backend_.port()}});
  json result = agent_.Ok("reload", {{"config", config}});
  EXPECT_EQ(result["outcome"], "applied") << result.dump();
  auto reload = allowed.NextMatching([](const Event& e) { return e.topic.rfind("reload", 0) == 0; },
                                     milliseconds(10000));
  EXPECT_TRUE(reload.has_value());
  EXPECT_FALSE(stranger_sub.WaitReadable(milliseconds(200)));
  EXPECT_EQ(ReadFile(agent_.config_path()), config);
}

TEST_F(AgentCurveTest, AllowListEditsApplyWithoutARestart) {
  agent_.StartAgent();
  const json before = agent_.Ok("info");
  ASSERT_FALSE(
      AgentCall(agent_.endpoint(), "ping", json::object(), milliseconds(1000), &files_.stranger)
          .ok());
  // Admit the stranger, revoke the first client.
  WriteFile(files_.clients, files_.stranger.own.public_key + " stranger\n");
  bool admitted = WaitFor(
      [&] {
        auto r = AgentCall(agent_.endpoint(), "ping", json::object(), milliseconds(500),
                           &files_.stranger);
        return r.ok() && r->status.ok();
      },
      milliseconds(15000));
  EXPECT_TRUE(admitted) << agent_.AgentLog();
  EXPECT_FALSE(
      AgentCall(agent_.endpoint(), "ping", json::object(), milliseconds(1000), &files_.client)
          .ok());
  agent_.SetClientKeys(files_.stranger);
  EXPECT_EQ(agent_.Ok("info")["agent"]["pid"], before["agent"]["pid"]);
  EXPECT_NE(agent_.AgentLog().find("reloaded: 1 client key(s)"), std::string::npos)
      << agent_.AgentLog();
}

// SIGHUP re-reads the allow-list at once (no wait for the next handshake) and says so.
TEST_F(AgentCurveTest, HupRereadsTheAllowListAndKeepsServing) {
  agent_.StartAgent();
  const pid_t pid = agent_.agent_pid();
  WriteFile(files_.clients, files_.client.own.public_key + " client\n" +
                                files_.stranger.own.public_key + " stranger\n");
  ASSERT_EQ(kill(pid, SIGHUP), 0);
  EXPECT_TRUE(WaitFor(
      [&] { return agent_.AgentLog().find("allow_list=\"2 client key(s)\"") != std::string::npos; },
      milliseconds(5000)))
      << agent_.AgentLog();
  auto admitted =
      AgentCall(agent_.endpoint(), "ping", json::object(), milliseconds(2000), &files_.stranger);
  EXPECT_TRUE(admitted.ok() && admitted->status.ok());
  EXPECT_EQ(agent_.agent_pid(), pid);
  EXPECT_TRUE(agent_.AgentRunning());
  EXPECT_EQ(agent_.ServerStatus("i-1"), "UP");
}

TEST_F(AgentCurveTest, WithCurveTheCommandSocketMayListenOnEveryAddress) {
  AgentFixture wide({}, {{"command_endpoint", "tcp://0.0.0.0:" + std::to_string(FreePort())}});
  CurveFiles files = WriteCurveFiles(wide.dir());
  wide.SetSecurityKeys(files.SecurityKeys());
  wide.WriteSettings();
  // The fixture's own endpoint is ipc://; reach this one over loopback.
  std::string settings = ReadFile(wide.settings_path());
  auto at = settings.find("tcp://0.0.0.0:");
  ASSERT_NE(at, std::string::npos);
  std::string port = settings.substr(at + 14, settings.find('\n', at) - at - 14);
  Process p({AgentBinary(), "--config", wide.settings_path()}, wide.dir().File("agent.log"));
  bool up = WaitFor(
      [&] {
        auto r = AgentCall("tcp://127.0.0.1:" + port, "ping", json::object(), milliseconds(300),
                           &files.client);
        return r.ok() && r->status.ok();
      },
      milliseconds(15000));
  EXPECT_TRUE(up) << wide.AgentLog();
  EXPECT_EQ(wide.AgentLog().find("WARNING"), std::string::npos) << wide.AgentLog();
  p.Stop();
}

TEST(AgentSocketPolicyTest, RefusesANonLoopbackCommandSocketWithoutCurve) {
  const std::string wide = "tcp://0.0.0.0:" + std::to_string(FreePort());
  AgentFixture agent({}, {{"command_endpoint", wide}});
  EXPECT_EQ(RunAgentToExit(agent), 1) << agent.AgentLog();
  EXPECT_NE(agent.AgentLog().find("refusing to bind command_endpoint = " + wide), std::string::npos)
      << agent.AgentLog();
  EXPECT_NE(agent.AgentLog().find("allow_insecure"), std::string::npos);

  // The event socket likewise.
  AgentFixture events({}, {{"event_endpoint", "tcp://0.0.0.0:" + std::to_string(FreePort())}});
  EXPECT_EQ(RunAgentToExit(events), 1) << events.AgentLog();
  EXPECT_NE(events.AgentLog().find("refusing to bind event_endpoint"), std::string::npos)
      << events.AgentLog();

  // A fleet controller beyond this host without its public key.
  AgentFixture fleet({}, {},
                     {{"controller_pub", "tcp://192.0.2.1:7001"},
                      {"controller_router", "tcp://192.0.2.1:7002"},
                      {"state_file", "fleet-state.json"}});
  EXPECT_EQ(RunAgentToExit(fleet), 1) << fleet.AgentLog();
  EXPECT_NE(fleet.AgentLog().find("controller_public_key"), std::string::npos) << fleet.AgentLog();
}

TEST(AgentSocketPolicyTest, AllowInsecureBindsWithAWarningAtEveryStart) {
  const std::string port = std::to_string(FreePort());
  AgentFixture agent({}, {{"command_endpoint", "tcp://0.0.0.0:" + port}});
  agent.SetSecurityKeys({{"allow_insecure", "yes"}});
  agent.WriteSettings();
  for (int start = 1; start <= 2; ++start) {
    Process p({AgentBinary(), "--config", agent.settings_path()}, agent.dir().File("agent.log"));
    bool up = WaitFor(
        [&] {
          auto r = AgentCall("tcp://127.0.0.1:" + port, "ping", json::object(), milliseconds(300));
          return r.ok() && r->status.ok();
        },
        milliseconds(15000));
    ASSERT_TRUE(up) << agent.AgentLog();
    p.Stop();
    std::string log = agent.AgentLog();
    size_t warnings = 0;
    for (size_t at = log.find("WARNING: command_endpoint"); at != std::string::npos;
         at = log.find("WARNING: command_endpoint", at + 1)) {
      ++warnings;
    }
    EXPECT_EQ(warnings, static_cast<size_t>(start)) << log;
  }
}

TEST(AgentSocketPolicyTest, BadKeyFilesStopTheAgentWithTheReason) {
  AgentFixture agent;
  CurveFiles files = WriteCurveFiles(agent.dir());
  chmod(files.agent_secret.c_str(), 0644);
  agent.SetSecurityKeys(files.SecurityKeys());
  EXPECT_EQ(RunAgentToExit(agent), 1) << agent.AgentLog();
  EXPECT_NE(agent.AgentLog().find("chmod 600"), std::string::npos) << agent.AgentLog();

  AgentFixture missing;
  CurveFiles more = WriteCurveFiles(missing.dir());
  missing.SetSecurityKeys({{"curve_secret_key", more.agent_secret},
                           {"curve_clients", missing.dir().File("no-such-list")}});
  EXPECT_EQ(RunAgentToExit(missing), 1) << missing.AgentLog();
  EXPECT_NE(missing.AgentLog().find("curve_clients"), std::string::npos) << missing.AgentLog();
}

}  // namespace
}  // namespace lb::testing
