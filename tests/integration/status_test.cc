// Status, health state across reloads, and haproxy going away, against a real haproxy.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

TEST(StatusTest, ReportsServersUpAndDown) {
  HttpBackend a("a");
  const int closed_port = FreePort();  // nothing listens there
  AgentFixture agent;
  const int frontend = FreePort();
  WriteFile(agent.config_path(),
            HaproxyConfig(frontend, {{"up1", a.port()}, {"down1", closed_port}}));
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return agent.ServerStatus("down1") == "DOWN"; }, milliseconds(10000)));
  ASSERT_TRUE(WaitFor([&] { return agent.ServerStatus("up1") == "UP"; }, milliseconds(10000)));
  json result = agent.Ok("status");
  ASSERT_EQ(result["backends"].size(), 1u);
  const json& backend = result["backends"][0];
  EXPECT_EQ(backend["name"], "scaling_nodes");
  EXPECT_EQ(backend["status"], "UP");
  for (const auto& s : backend["servers"]) {
    const bool up = s["name"] == "up1";
    EXPECT_EQ(s["address"], "127.0.0.1:" + std::to_string(up ? a.port() : closed_port));
    EXPECT_EQ(s["check_status"], up ? "L4OK" : "L4CON");
    EXPECT_EQ(s["weight"], 1);
    EXPECT_GE(s["seconds_since_change"].get<int>(), 0);
    for (const char* key : {"last_chk", "current_sessions", "total_sessions"}) {
      EXPECT_TRUE(s.contains(key)) << key;
    }
  }
  // "*" lists every backend; an unknown one is a clear error.
  EXPECT_EQ(agent.Ok("status", {{"backend", "*"}})["backends"].size(), 1u);
  auto unknown = agent.Call("status", {{"backend", "nope"}});
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->status.code(), proto::ErrorCode::kBadRequest);
  EXPECT_NE(unknown->status.message().find("scaling_nodes"), std::string::npos);
}

TEST(StatusTest, DownServerStaysDownRightAfterAReload) {
  HttpBackend a("a");
  const int closed_port = FreePort();
  AgentFixture agent;
  const int frontend = FreePort();
  const std::string state = agent.dir().File("server-state");
  const std::string global = "    server-state-file " + state + "\n";
  const std::string defaults = "    load-server-state-from-file global\n";
  // Once DOWN, a server is checked again only after downinter: only the state file can keep
  // it DOWN in the new worker, which would otherwise start with every server UP.
  const std::vector<Server> servers = {
      {"up1", a.port()}, {"down1", closed_port, "check inter 100 downinter 60s fall 1 rise 1"}};
  WriteFile(agent.config_path(),
            HaproxyConfig(frontend, servers, "scaling_nodes", global, defaults));
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return agent.ServerStatus("down1") == "DOWN"; }, milliseconds(10000)));
  const pid_t old_worker = agent.HaproxyWorkerPid();

  std::string next = HaproxyConfig(frontend, servers, "scaling_nodes", global, defaults) + "# v2\n";
  json result = agent.Ok("reload", {{"config", next}, {"apply_via", "reload"}});
  ASSERT_EQ(result["outcome"], "applied");
  EXPECT_NE(agent.HaproxyWorkerPid(), old_worker);
  EXPECT_EQ(agent.ServerStatus("down1"), "DOWN");
  EXPECT_NE(ReadFile(state).find("down1"), std::string::npos) << "state file written";
  for (const auto& w : result["warnings"]) {
    EXPECT_EQ(w.get<std::string>().find("server-state"), std::string::npos) << w;
  }
}

TEST(StatusTest, HaproxyStoppedIsUnavailableAndTheAgentLives) {
  // reload_method = master: haproxy belongs to the test, the agent only talks to it.
  HttpBackend a("a");
  AgentFixture agent(Keys{{"reload_method", "master"}});
  const int frontend = FreePort();
  WriteFile(agent.config_path(), HaproxyConfig(frontend, {{"a", a.port()}}));
  auto start_haproxy = [&] {
    return std::make_unique<Process>(
        std::vector<std::string>{HaproxyBinary(), "-W", "-db", "-S",
                                 agent.dir().File("master.sock"), "-f", agent.config_path(), "-p",
                                 agent.dir().File("haproxy.pid")},
        agent.dir().File("haproxy.log"));
  };
  auto haproxy = start_haproxy();
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return agent.ServerStatus("a") == "UP"; }, milliseconds(10000)));

  haproxy->Stop();
  auto reply = agent.Call("status");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kHaproxyUnavailable);
  EXPECT_NE(reply->status.message().find("master.sock"), std::string::npos)
      << reply->status.message();
  EXPECT_EQ(agent.Ok("info")["haproxy"]["running"], false);
  EXPECT_TRUE(agent.Ok("ping")["pong"]);

  haproxy = start_haproxy();
  EXPECT_TRUE(WaitFor([&] { return agent.ServerStatus("a") == "UP"; }, milliseconds(10000)));
  // And reloads go through the master socket in this mode.
  HttpBackend b("b");
  EXPECT_EQ(agent.Ok("reload", {{"config", HaproxyConfig(frontend, {{"b", b.port()}})}})["outcome"],
            "applied");
  EXPECT_EQ(HttpGetBody(frontend), "b");
}

TEST(StatusTest, ManagedModeRestartsAKilledHaproxy) {
  HttpBackend a("a");
  AgentFixture agent;
  const int frontend = FreePort();
  WriteFile(agent.config_path(), HaproxyConfig(frontend, {{"a", a.port()}}));
  agent.StartAgent();
  const pid_t master = agent.Ok("info")["haproxy"]["master_pid"];
  ASSERT_GT(master, 0);
  kill(-master, SIGKILL);
  EXPECT_TRUE(WaitFor(
      [&] {
        auto info = agent.Call("info");
        return info.ok() && info->status.ok() && info->result["haproxy"]["running"] == true &&
               info->result["haproxy"]["master_pid"] != master;
      },
      milliseconds(15000)))
      << agent.AgentLog();
  EXPECT_TRUE(WaitFor([&] { return HttpGetBody(frontend) == "a"; }, milliseconds(5000)));
  EXPECT_EQ(agent.Ok("info")["haproxy"]["starts"], 2);
}

TEST(StatusTest, RestartedAgentAdoptsTheRunningHaproxy) {
  HttpBackend a("a");
  AgentFixture agent;
  const int frontend = FreePort();
  WriteFile(agent.config_path(), HaproxyConfig(frontend, {{"a", a.port()}}));
  agent.StartAgent();
  const pid_t master = agent.Ok("info")["haproxy"]["master_pid"];
  agent.KillAgent();
  EXPECT_EQ(HttpGetBody(frontend), "a") << "haproxy serves while the agent is gone";
  agent.StartAgent();
  json info = agent.Ok("info");
  EXPECT_EQ(info["haproxy"]["master_pid"], master);
  EXPECT_EQ(info["haproxy"]["starts"], 0) << "adopted, not started again";
}

}  // namespace
}  // namespace lb::testing
