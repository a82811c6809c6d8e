// Server-only changes through haproxy's runtime API (issue 9): a real haproxy in managed mode,
// real backends that answer with their name, traffic through the frontend. Every change keeps
// the same worker (no reload), leaves the file equal to the pushed config and is read back by
// the agent (`verified`); what the runtime API cannot do exactly as a reload would falls back
// to a reload with its reason.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

std::map<std::string, int> Answers(int port, int n) {
  std::map<std::string, int> out;
  for (int i = 0; i < n; ++i) out[HttpGetBody(port)]++;
  return out;
}

json FindServer(const json& status, const std::string& name) {
  for (const auto& s : status["backends"][0]["servers"]) {
    if (s["name"] == name) return s;
  }
  return nullptr;
}

class RuntimeUpdateTest : public ::testing::Test {
 protected:
  explicit RuntimeUpdateTest(Keys haproxy_keys = {}) : agent_(std::move(haproxy_keys)) {}
  // A backend that lives until the agent is gone (see a_).
  HttpBackend& Backend(const std::string& name, const std::string& host = "127.0.0.1") {
    return extra_.emplace_back(name, host);
  }

  std::deque<HttpBackend> extra_;

  void Start(const std::vector<Server>& servers, const std::string& backend_extra = "") {
    frontend_ = FreePort();
    backend_extra_ = backend_extra;
    WriteFile(agent_.config_path(), Config(servers));
    agent_.StartAgent();
    for (const auto& s : servers) {
      ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus(s.name) == "UP"; }, milliseconds(10000)))
          << s.name;
    }
    worker_ = agent_.HaproxyWorkerPid();
    reloads_ = agent_.HaproxyReloads();
  }

  std::string Config(const std::vector<Server>& servers) {
    std::string c = HaproxyConfig(frontend_, servers);
    if (!backend_extra_.empty()) {
      // Right after `balance roundrobin`, before the servers.
      const std::string anchor = "    balance roundrobin\n";
      c.replace(c.find(anchor), anchor.size(), backend_extra_);
    }
    return c;
  }

  // Applies `config` and checks what every runtime apply must hold.
  json Runtime(const std::string& config) {
    json result = agent_.Ok("reload", {{"config", config}});
    EXPECT_EQ(result["outcome"], "applied") << result.dump();
    EXPECT_EQ(result["applied_via"], "runtime") << result.dump();
    EXPECT_EQ(result["verified"], true) << result.dump();
    EXPECT_EQ(agent_.HaproxyWorkerPid(), worker_) << "no new worker";
    EXPECT_EQ(agent_.HaproxyReloads(), reloads_) << "no reload";
    EXPECT_EQ(ReadFile(agent_.config_path()), config);
    return result;
  }

  // Applies `config` and checks it fell back to a reload whose reason contains `why`.
  json FallsBack(const std::string& config, const std::string& why) {
    json result = agent_.Ok("reload", {{"config", config}});
    EXPECT_EQ(result["outcome"], "applied") << result.dump();
    EXPECT_EQ(result["applied_via"], "reload") << result.dump();
    EXPECT_EQ(result["verified"], true) << result.dump();
    EXPECT_NE(result.value("reload_reason", "").find(why), std::string::npos) << result.dump();
    EXPECT_NE(agent_.HaproxyWorkerPid(), worker_) << "a new worker";
    EXPECT_EQ(ReadFile(agent_.config_path()), config);
    return result;
  }

  // Before the agent: destroyed after it, so that haproxy's idle keep-alive connections are gone
  // when the backends stop (httplib waits for them).
  HttpBackend a_{"a"};
  HttpBackend b_{"b"};
  HttpBackend c_{"c"};
  AgentFixture agent_;
  int frontend_ = 0;
  std::string backend_extra_;
  pid_t worker_ = 0;
  int reloads_ = 0;
};

TEST_F(RuntimeUpdateTest, WeightChangeMovesTrafficWithTheSameWorker) {
  Start({{"a", a_.port()}, {"b", b_.port()}});
  json result = Runtime(
      Config({{"a", a_.port(), "check inter 100 fall 1 rise 1 weight 0"}, {"b", b_.port()}}));
  EXPECT_EQ(result["runtime_commands"], json::array({"set server scaling_nodes/a weight 0"}));
  EXPECT_EQ(FindServer(agent_.Ok("status"), "a")["weight"], 0);
  auto answers = Answers(frontend_, 20);
  EXPECT_EQ(answers["b"], 20);
  EXPECT_EQ(agent_.Ok("info")["agent"]["applies_runtime"], 1);
}

TEST_F(RuntimeUpdateTest, AddedServerComesUpWithHealthChecksAndTakesTraffic) {
  Start({{"a", a_.port()}});
  json result = Runtime(Config({{"a", a_.port()}, {"c", c_.port()}}));
  EXPECT_EQ(result["runtime_commands"],
            json::array({"add server scaling_nodes/c 127.0.0.1:" + std::to_string(c_.port()) +
                             " check inter 100 fall 1 rise 1",
                         "enable health scaling_nodes/c", "enable server scaling_nodes/c"}));
  ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus("c") == "UP"; }, milliseconds(5000)));
  json c;
  EXPECT_TRUE(WaitFor(
      [&] {
        c = FindServer(agent_.Ok("status"), "c");
        return c["check_status"] == "L4OK";
      },
      milliseconds(5000)))
      << c.dump() << ": health checks run";
  auto answers = Answers(frontend_, 20);
  EXPECT_GT(answers["c"], 5);
  // A check that fails takes it DOWN like any configured server.
  c_.Stop();
  EXPECT_TRUE(WaitFor([&] { return agent_.ServerStatus("c") == "DOWN"; }, milliseconds(5000)));
}

TEST_F(RuntimeUpdateTest, RemovedServerGetsNoTrafficAndLeavesStatus) {
  Start({{"a", a_.port()}, {"b", b_.port()}});
  json result = Runtime(Config({{"b", b_.port()}}));
  EXPECT_EQ(result["runtime_commands"],
            json::array({"set server scaling_nodes/a state maint", "del server scaling_nodes/a"}));
  EXPECT_TRUE(FindServer(agent_.Ok("status"), "a").is_null());
  EXPECT_EQ(agent_.WorkerCli("show servers state scaling_nodes").find(" a 127.0.0.1"),
            std::string::npos);
  auto answers = Answers(frontend_, 20);
  EXPECT_EQ(answers["b"], 20);
}

TEST_F(RuntimeUpdateTest, DisabledServerGoesToMaintenanceAndComesBack) {
  Start({{"a", a_.port()}, {"b", b_.port()}});
  Runtime(Config({{"a", a_.port(), "check inter 100 fall 1 rise 1 disabled"}, {"b", b_.port()}}));
  EXPECT_EQ(agent_.ServerStatus("a"), "MAINT");
  EXPECT_EQ(Answers(frontend_, 10)["b"], 10);
  Runtime(Config({{"a", a_.port()}, {"b", b_.port()}}));
  ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus("a") == "UP"; }, milliseconds(5000)));
  EXPECT_GT(Answers(frontend_, 10)["a"], 0);
}

TEST_F(RuntimeUpdateTest, AddressAndPortChangeSendsTrafficToTheNewEndpointOnly) {
  HttpBackend& there = Backend("there", "127.0.0.2");
  Start({{"a", a_.port()}});
  EventSubscriber events(agent_.events_endpoint());
  ASSERT_TRUE(events.WaitLive(milliseconds(10000)));
  json result =
      Runtime(Config({{"a", there.port(), "check inter 100 fall 1 rise 1", "127.0.0.2"}}));
  EXPECT_EQ(result["runtime_commands"],
            json::array({"set server scaling_nodes/a addr 127.0.0.2 port " +
                         std::to_string(there.port())}));
  EXPECT_EQ(FindServer(agent_.Ok("status"), "a")["address"],
            "127.0.0.2:" + std::to_string(there.port()));
  auto answers = Answers(frontend_, 20);
  EXPECT_EQ(answers["there"], 20) << "old endpoint: " << answers["a"]
                                  << ", failed: " << answers[""];
  // Health checks follow the server to its new address.
  a_.Stop();
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(agent_.ServerStatus("a"), "UP");
  auto moved = events.NextMatching(
      [](const Event& e) {
        return e.body.value("type", "") == "server" && e.body.value("change", "") == "address";
      },
      milliseconds(5000));
  ASSERT_TRUE(moved) << "an address change is an event";
  EXPECT_EQ(moved->body["why"], "runtime");
  EXPECT_EQ(moved->body["address"], "127.0.0.2:" + std::to_string(there.port()));
  EXPECT_EQ(moved->body["previous_address"], "127.0.0.1:" + std::to_string(a_.port()));
}

TEST_F(RuntimeUpdateTest, AddedAndRemovedServersArePublishedWithWhyRuntime) {
  Start({{"a", a_.port()}, {"b", b_.port()}});
  EventSubscriber events(agent_.events_endpoint());
  ASSERT_TRUE(events.WaitLive(milliseconds(10000)));
  Runtime(Config({{"b", b_.port()}, {"c", c_.port()}}));
  std::map<std::string, json> seen;
  auto all = events.NextMatching(
      [&](const Event& e) {
        if (e.topic == "reload") seen["reload"] = e.body;
        if (e.body.value("type", "") == "server") seen[e.body.value("change", "")] = e.body;
        return seen.count("added") && seen.count("removed") && seen.count("reload");
      },
      milliseconds(5000));
  ASSERT_TRUE(all) << "events seen: " << seen.size();
  EXPECT_EQ(seen["added"]["server"], "c");
  EXPECT_EQ(seen["added"]["why"], "runtime");
  EXPECT_EQ(seen["removed"]["server"], "a");
  EXPECT_EQ(seen["removed"]["why"], "runtime");
  EXPECT_EQ(seen["reload"]["outcome"], "applied");
  EXPECT_EQ(seen["reload"]["applied_via"], "runtime");
}

TEST_F(RuntimeUpdateTest, RemovalWaitsForALongRequestToFinish) {
  Start({{"a", a_.port()}, {"b", b_.port(), "check inter 100 fall 1 rise 1 weight 0"}});
  std::atomic<bool> done{false};
  std::string body;
  std::thread slow([&] {
    body = HttpGetBody(frontend_, "/slow/1000");  // to a: b has weight 0
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(200));
  ASSERT_FALSE(done);
  json result = Runtime(Config({{"b", b_.port()}}));
  slow.join();
  EXPECT_EQ(body, "a") << "the request in flight finished on the removed server";
  EXPECT_GE(result["runtime_ms"].get<int>(), 500) << "the removal waited for it";
}

class RuntimeDrainTimeoutTest : public RuntimeUpdateTest {
 protected:
  RuntimeDrainTimeoutTest() : RuntimeUpdateTest({{"runtime_drain_timeout", "0.3"}}) {}
};

TEST_F(RuntimeDrainTimeoutTest, RemovalStillBusyFallsBackToAReloadThatDrainsIt) {
  Start({{"a", a_.port()}, {"b", b_.port(), "check inter 100 fall 1 rise 1 weight 0"}});
  std::atomic<bool> done{false};
  std::string body;
  std::thread slow([&] {
    body = HttpGetBody(frontend_, "/slow/2000");
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(200));
  ASSERT_FALSE(done);
  FallsBack(Config({{"b", b_.port()}}),
            "server scaling_nodes/a still had connections after 300 ms");
  slow.join();
  EXPECT_EQ(body, "a") << "the old worker let the request finish";
  EXPECT_EQ(Answers(frontend_, 10)["b"], 10);
}

TEST_F(RuntimeUpdateTest, StaticRoundRobinFallsBackToAReload) {
  Start({{"a", a_.port()}}, "    balance static-rr\n");
  FallsBack(Config({{"a", a_.port()}, {"b", b_.port()}}), "balance static-rr");
  EXPECT_GT(Answers(frontend_, 10)["b"], 0);
}

TEST_F(RuntimeUpdateTest, MapBasedHashFallsBackToAReload) {
  Start({{"a", a_.port()}}, "    balance source\n    hash-type map-based\n");
  FallsBack(Config({{"a", a_.port(), "check inter 100 fall 1 rise 1 weight 2"}}),
            "hash-type map-based");
}

TEST_F(RuntimeUpdateTest, DefaultServerFallsBackToAReload) {
  Start({{"a", a_.port()}}, "    balance roundrobin\n    default-server maxconn 100\n");
  FallsBack(Config({{"a", a_.port()}, {"b", b_.port()}}), "default-server");
}

TEST_F(RuntimeUpdateTest, KeywordAddServerDoesNotTakeFallsBackToAReload) {
  Start({{"a", a_.port()}}, "    balance roundrobin\n    cookie SRV insert indirect nocache\n");
  FallsBack(Config({{"a", a_.port()}, {"b", b_.port(), "check inter 100 fall 1 rise 1 cookie b"}}),
            "\"cookie\"");
}

TEST_F(RuntimeUpdateTest, RuntimeCommandHaproxyRefusesFallsBackToAReload) {
  Start({{"a", a_.port()}});
  // Someone added a server named b by hand: haproxy refuses to add the config's b.
  agent_.WorkerCli("add server scaling_nodes/b 127.0.0.1:" + std::to_string(c_.port()));
  FallsBack(Config({{"a", a_.port()}, {"b", b_.port()}}), "Already exists a server");
  ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus("b") == "UP"; }, milliseconds(5000)));
  auto answers = Answers(frontend_, 20);
  EXPECT_GT(answers["b"], 0);
  EXPECT_EQ(answers["c"], 0) << "the hand-made server is gone with the reload";
}

// wrk's summary: requests, non-2xx answers and socket errors.
struct WrkResult {
  long requests = -1;
  long non2xx = 0;
  long socket_errors = 0;
  std::string text;
};

TEST_F(RuntimeUpdateTest, HundredServerChangesUnderLoadLoseNoRequestAndStartNoWorker) {
  Start({{"a", a_.port()}, {"b", b_.port()}});
  WrkResult wrk;
  std::thread load([&] {
    CommandResult r = RunCommand({"/usr/bin/wrk", "-t1", "-c8", "-d8s", "--timeout", "2s",
                                  "http://127.0.0.1:" + std::to_string(frontend_) + "/"},
                                 milliseconds(30000));
    wrk.text = r.Describe();
    std::smatch m;
    if (std::regex_search(r.out, m, std::regex(R"((\d+) requests in)"))) {
      wrk.requests = std::stol(m[1]);
    }
    if (std::regex_search(r.out, m, std::regex(R"(Non-2xx or 3xx responses: (\d+))"))) {
      wrk.non2xx = std::stol(m[1]);
    }
    if (std::regex_search(
            r.out, m,
            std::regex(
                R"(Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+))"))) {
      wrk.socket_errors = std::stol(m[1]) + std::stol(m[2]) + std::stol(m[3]) + std::stol(m[4]);
    }
  });
  std::this_thread::sleep_for(milliseconds(500));
  // Weights, an added and removed server, a disabled one: 100 server-only changes.
  for (int i = 0; i < 100; ++i) {
    std::vector<Server> servers = {
        {"a", a_.port(), "check inter 100 fall 1 rise 1 weight " + std::to_string(1 + i % 5)}};
    if (i % 4 != 3) servers.push_back({"b", b_.port()});
    if (i % 3 == 0) servers.push_back({"c", c_.port()});
    json result = agent_.Ok("reload", {{"config", Config(servers)}});
    ASSERT_EQ(result["applied_via"], "runtime") << i << ": " << result.dump();
    ASSERT_EQ(result["verified"], true);
  }
  load.join();
  EXPECT_GT(wrk.requests, 1000) << wrk.text;
  EXPECT_EQ(wrk.non2xx, 0) << wrk.text;
  EXPECT_EQ(wrk.socket_errors, 0) << wrk.text;
  EXPECT_EQ(agent_.HaproxyWorkerPid(), worker_);
  EXPECT_EQ(agent_.HaproxyReloads(), reloads_);
  json info = agent_.Ok("info")["agent"];
  EXPECT_EQ(info["applies_runtime"], 100);
  EXPECT_EQ(info["applies_reload"], 0);
}

}  // namespace
}  // namespace lb::testing
