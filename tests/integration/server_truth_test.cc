// What haproxy runs after an apply is what the file declares (issue 9, "truth"): a real haproxy
// with a server-state file (the set-up in which 2.6 used to keep a moved server on its old
// address), real backends that answer with their name, traffic through the frontend and
// `show servers state` read from the master socket.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

// The state file set-up the agent recommends (and that exposed the trap).
std::string Global(AgentFixture& agent) {
  return "    server-state-file " + agent.dir().File("server-state") + "\n";
}
const char kDefaults[] = "    load-server-state-from-file global\n";

// Bodies of `n` GETs through the frontend, counted.
std::map<std::string, int> Answers(int port, int n) {
  std::map<std::string, int> out;
  for (int i = 0; i < n; ++i) out[HttpGetBody(port)]++;
  return out;
}

// "addr port" of `server` in `show servers state` of the current worker ("" when absent).
std::string RunningEndpoint(const AgentFixture& agent, const std::string& server) {
  std::istringstream in(agent.WorkerCli("show servers state scaling_nodes"));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    // be_id be_name srv_id srv_name srv_addr ... srv_port is column 18
    if (w.size() > 18 && w[3] == server) return w[4] + " " + w[18];
  }
  return "";
}

std::string StatusAddress(AgentFixture& agent, const std::string& server) {
  const json status = agent.Ok("status");
  for (const auto& s : status["backends"][0]["servers"]) {
    if (s["name"] == server) return s["address"];
  }
  return "";
}

class ServerTruthTest : public ::testing::Test {
 protected:
  void Start(const std::vector<Server>& servers) {
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), Config(servers));
    agent_.StartAgent();
    ASSERT_TRUE(
        WaitFor([&] { return agent_.ServerStatus(servers[0].name) == "UP"; }, milliseconds(10000)));
  }
  std::string Config(const std::vector<Server>& servers) {
    return HaproxyConfig(frontend_, servers, "scaling_nodes", Global(agent_), kDefaults);
  }

  // A backend that outlives the agent: haproxy's idle keep-alive connections are gone when it
  // stops (httplib waits for them).
  HttpBackend& Backend(const std::string& name, const std::string& host = "127.0.0.1") {
    return backends_.emplace_back(name, host);
  }

  std::deque<HttpBackend> backends_;
  // ColdStart stops the agent to start haproxy afresh: stop_haproxy_on_exit (default no).
  AgentFixture agent_{{{"stop_haproxy_on_exit", "yes"}}};
  int frontend_ = 0;
};

TEST_F(ServerTruthTest, ReloadMovingAServerToAnotherPortSendsItsTrafficThereOnly) {
  HttpBackend& old_port = Backend("old");
  HttpBackend& new_port = Backend("new");
  Start({{"node1", old_port.port()}});
  json result = agent_.Ok(
      "reload", {{"config", Config({{"node1", new_port.port()}})}, {"apply_via", "reload"}});
  ASSERT_EQ(result["outcome"], "applied") << result.dump();
  EXPECT_EQ(result["applied_via"], "reload");
  EXPECT_EQ(result["verified"], true);
  EXPECT_EQ(RunningEndpoint(agent_, "node1"), "127.0.0.1 " + std::to_string(new_port.port()));
  EXPECT_EQ(StatusAddress(agent_, "node1"), "127.0.0.1:" + std::to_string(new_port.port()));
  auto answers = Answers(frontend_, 20);
  EXPECT_EQ(answers["new"], 20) << "traffic still reaches the old port: " << answers["old"];
}

TEST_F(ServerTruthTest, ReloadMovingAServerToAnotherAddressAndPortSendsItsTrafficThereOnly) {
  HttpBackend& here = Backend("here");
  HttpBackend& there = Backend("there", "127.0.0.2");
  Start({{"node1", here.port()}});
  json result = agent_.Ok(
      "reload",
      {{"config", Config({{"node1", there.port(), "check inter 100 fall 1 rise 1", "127.0.0.2"}})},
       {"apply_via", "reload"}});
  ASSERT_EQ(result["outcome"], "applied") << result.dump();
  EXPECT_EQ(result["verified"], true);
  EXPECT_EQ(RunningEndpoint(agent_, "node1"), "127.0.0.2 " + std::to_string(there.port()));
  EXPECT_TRUE(WaitFor([&] { return agent_.ServerStatus("node1") == "UP"; }, milliseconds(5000)));
  EXPECT_EQ(StatusAddress(agent_, "node1"), "127.0.0.2:" + std::to_string(there.port()));
  auto answers = Answers(frontend_, 20);
  EXPECT_EQ(answers["there"], 20) << "answers from here: " << answers["here"]
                                  << ", failures: " << answers[""];
}

TEST_F(ServerTruthTest, UnchangedServersKeepTheirHealthAndAnOperatorsMaintenance) {
  HttpBackend& a = Backend("a");
  HttpBackend& b = Backend("b");
  HttpBackend& c = Backend("c");
  const int closed = FreePort();
  // down1 is DOWN, and once DOWN checked again only after downinter: only carried state keeps
  // it DOWN in the new worker.
  Start({{"a", a.port()},
         {"b", b.port()},
         {"down1", closed, "check inter 100 downinter 60s fall 1 rise 1"}});
  ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus("down1") == "DOWN"; }, milliseconds(5000)));
  // An operator drains b by hand.
  agent_.WorkerCli("set server scaling_nodes/b state maint");
  ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus("b") == "MAINT"; }, milliseconds(5000)));
  json result = agent_.Ok("reload", {{"config", Config({{"a", a.port()},
                                                        {"b", b.port()},
                                                        {"down1", closed,
                                                         "check inter 100 downinter 60s fall 1 "
                                                         "rise 1"},
                                                        {"c", c.port()}})},
                                     {"apply_via", "reload"}});
  ASSERT_EQ(result["outcome"], "applied") << result.dump();
  EXPECT_EQ(result["verified"], true) << result.dump();
  EXPECT_EQ(agent_.ServerStatus("down1"), "DOWN");
  EXPECT_EQ(agent_.ServerStatus("b"), "MAINT") << "the operator's maintenance is carried";
  auto answers = Answers(frontend_, 20);
  EXPECT_EQ(answers["b"], 0);
  EXPECT_EQ(answers[""], 0) << "no request went to the DOWN server";
}

TEST_F(ServerTruthTest, ChangedWeightAndDisabledComeFromTheNewConfig) {
  HttpBackend& a = Backend("a");
  HttpBackend& b = Backend("b");
  Start({{"a", a.port()}, {"b", b.port()}});
  // A weight set by hand is carried only while the config does not change that server's
  // weight; here it does.
  agent_.WorkerCli("set server scaling_nodes/a weight 7");
  json result = agent_.Ok(
      "reload", {{"config", Config({{"a", a.port(), "check inter 100 fall 1 rise 1 weight 3"},
                                    {"b", b.port(), "check inter 100 fall 1 rise 1 disabled"}})},
                 {"apply_via", "reload"}});
  ASSERT_EQ(result["outcome"], "applied") << result.dump();
  EXPECT_EQ(result["verified"], true) << result.dump();
  const std::string state = agent_.WorkerCli("show servers state scaling_nodes");
  EXPECT_NE(state.find(" a 127.0.0.1 2 0 3 3 "), std::string::npos) << state;
  EXPECT_EQ(agent_.ServerStatus("b"), "MAINT");
  auto answers = Answers(frontend_, 10);
  EXPECT_EQ(answers["a"], 10);
}

TEST_F(ServerTruthTest, ColdStartDoesNotBringBackStaleServerState) {
  HttpBackend& a = Backend("a");
  HttpBackend& b = Backend("b");
  // rise 3 every 300 ms: a server that starts DOWN stays DOWN for most of a second.
  const std::string slow_rise = "check inter 300 fall 1 rise 3";
  Start({{"a", a.port()}, {"b", b.port(), slow_rise}});
  b.Stop();
  ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus("b") == "DOWN"; }, milliseconds(5000)));
  // The state file now says b is DOWN.
  ASSERT_EQ(agent_.Ok("reload",
                      {{"config", Config({{"a", a.port()}, {"b", b.port(), slow_rise}}) + "# v2\n"},
                       {"apply_via", "reload"}})["outcome"],
            "applied");
  ASSERT_NE(ReadFile(agent_.dir().File("server-state")).find(" b "), std::string::npos);
  ASSERT_TRUE(b.Restart());
  ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus("b") == "UP"; }, milliseconds(5000)));
  // A clean stop takes haproxy down with it (stop_haproxy_on_exit = yes, set above); the next
  // start is cold.
  agent_.StopAgent();
  agent_.StartAgent();
  const auto until = std::chrono::steady_clock::now() + milliseconds(1500);
  int polls = 0;
  while (std::chrono::steady_clock::now() < until) {
    const std::string status = agent_.ServerStatus("b");
    EXPECT_NE(status, "DOWN") << "b came back DOWN from a stale state file after " << polls
                              << " polls";
    if (status == "DOWN") break;
    ++polls;
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_GT(polls, 10);
  EXPECT_NE(agent_.AgentLog().find("before starting haproxy afresh"), std::string::npos);
}

TEST_F(ServerTruthTest, SyntaxErrorsAreRefusedInHaproxysOwnWords) {
  HttpBackend& a = Backend("a");
  Start({{"a", a.port()}});
  const std::string before = ReadFile(agent_.config_path());
  auto bad = agent_.Call("reload", {{"config", "global\n foo bar\n"}});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status.code(), proto::ErrorCode::kInvalidConfig);
  EXPECT_NE(bad->status.message().find("unknown keyword 'foo'"), std::string::npos)
      << bad->status.message();
  EXPECT_EQ(bad->status.message().find("no backend"), std::string::npos) << bad->status.message();
  auto empty = agent_.Call("reload", {{"config", ""}});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->status.code(), proto::ErrorCode::kInvalidConfig);
  EXPECT_NE(empty->status.message().find("no listener"), std::string::npos)
      << empty->status.message();
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
}

}  // namespace
}  // namespace lb::testing
