// lb-bridge in front of a real lb-agent and haproxy: the 2015 HTTP API, and agent outages.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <sstream>
#include <thread>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

class BridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
    agent_.StartAgent();
    agent_.StartBridge();
  }
  httplib::Client Client() {
    httplib::Client client("127.0.0.1", agent_.bridge_port());
    client.set_connection_timeout(2, 0);
    client.set_read_timeout(30, 0);
    // httplib sends a Content-Type (text/plain at least), so a reload needs X-Requested-With
    // (the bridge's cross-site rule, bridge/src/security.h).
    client.set_default_headers({{"X-Requested-With", "bridge_test"}});
    return client;
  }

  HttpBackend a_{"backend-a"};
  HttpBackend b_{"backend-b"};
  AgentFixture agent_;
  int frontend_ = 0;
};

// Log injection (issue 14): a remote client without a token writes a line break into the URL;
// the bridge's log line quotes it escaped, so no line of the log is the client's.
TEST_F(BridgeTest, ALineBreakInTheUrlCannotForgeALogLine) {
  httplib::Client client = Client();
  auto res = client.Get(
      "/getBackends%0ats=2020-01-01T00:00:00Z%20level=error%20msg=forged"
      "%0d%0als=2020");
  ASSERT_TRUE(res) << "no answer";
  EXPECT_TRUE(res->status == 404 || res->status == 400) << res->status;
  const std::string log = ReadFile(agent_.dir().File("bridge.log"));
  ASSERT_TRUE(WaitFor(
      [&] { return ReadFile(agent_.dir().File("bridge.log")).find("forged") != std::string::npos; },
      milliseconds(5000)))
      << "the request was not logged:\n"
      << log;
  std::istringstream lines(ReadFile(agent_.dir().File("bridge.log")));
  for (std::string line; std::getline(lines, line);) {
    EXPECT_NE(line.rfind("ts=2020", 0), 0u) << "forged line: " << line;
    EXPECT_NE(line.rfind("ls=2020", 0), 0u) << "forged line: " << line;
    EXPECT_EQ(line.find('\r'), std::string::npos) << line;
  }
}

// Reads that went well write no log line at the default level (a poller would fill the log);
// a reload and a failed request do.
TEST_F(BridgeTest, SuccessfulReadsAreNotLoggedButReloadsAndFailuresAre) {
  auto client = Client();
  for (int i = 0; i < 3; ++i) {
    auto r = client.Post("/getBackends");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    auto h = client.Get("/healthz");
    ASSERT_TRUE(h);
    ASSERT_EQ(h->status, 200) << h->body;
  }
  auto missing = client.Get("/no-such-route");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  auto reload = client.Post("/reloadHaproxy", HaproxyConfig(frontend_, {{"b", b_.port()}}), "");
  ASSERT_TRUE(reload);
  ASSERT_EQ(reload->status, 200) << reload->body;
  const auto log = [&] { return ReadFile(agent_.dir().File("bridge.log")); };
  ASSERT_TRUE(WaitFor([&] { return log().find("POST /reloadHaproxy 200") != std::string::npos; },
                      milliseconds(5000)))
      << log();
  EXPECT_NE(log().find("GET /no-such-route 404"), std::string::npos) << log();
  EXPECT_EQ(log().find("/getBackends 200"), std::string::npos) << log();
  EXPECT_EQ(log().find("/healthz 200"), std::string::npos) << log();
}

// cpp-httplib listens with a backlog of 5; the bridge raises it, so that dozens of clients
// connecting at once do not lose SYNs (each lost one costs its client 1 s). `ss` shows a
// listening socket's backlog as its Send-Q.
TEST_F(BridgeTest, TheListenBacklogIsRaisedAboveHttplibsFive) {
  const std::string port = std::to_string(agent_.bridge_port());
  CommandResult ss = RunCommand({"/usr/bin/ss", "-Hltn", "sport = :" + port}, milliseconds(10000));
  ASSERT_EQ(ss.exit_code, 0) << ss.Describe();
  std::istringstream fields(ss.out);
  std::string state;
  long recv_q = -1, send_q = -1;
  fields >> state >> recv_q >> send_q;
  EXPECT_EQ(state, "LISTEN") << ss.out;
  EXPECT_GE(send_q, 128) << "backlog of the bridge's listening socket: " << ss.out;
}

TEST_F(BridgeTest, ReloadHaproxySendsTrafficToTheNewServers) {
  auto client = Client();
  std::string config = HaproxyConfig(frontend_, {{"b", b_.port()}});
  auto res = client.Post("/reloadHaproxy", config, "");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  json body = json::parse(res->body);
  EXPECT_EQ(body["success"], true);
  EXPECT_EQ(body["message"], "Load Balancer up to date");
  EXPECT_EQ(ReadFile(agent_.config_path()), config);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(HttpGetBody(frontend_), "backend-b");

  auto backends = client.Post("/getBackends");
  ASSERT_TRUE(backends);
  json list = json::parse(backends->body);
  EXPECT_EQ(list["success"], true);
  ASSERT_EQ(list["message"].size(), 1u);
  EXPECT_EQ(list["message"][0]["instance_id"], "b");
}

TEST_F(BridgeTest, InvalidConfigIs422WithHaproxysComplaint) {
  const std::string before = ReadFile(agent_.config_path());
  auto res = Client().Post("/reload", HaproxyConfig(frontend_, {{"b", b_.port()}}) + "  nonsense\n",
                           "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 422);
  json body = json::parse(res->body);
  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["code"], "invalid_config");
  EXPECT_NE(body["error"].get<std::string>().find("nonsense"), std::string::npos);
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
}

TEST_F(BridgeTest, AgentDownIsAnsweredQuicklyAndTheBridgeRecovers) {
  agent_.StopAgent();
  auto client = Client();
  const auto start = Clock::now();
  auto res = client.Post("/getBackends");
  const auto took = Clock::now() - start;
  ASSERT_TRUE(res);
  EXPECT_TRUE(res->status == 503 || res->status == 504) << res->status << " " << res->body;
  EXPECT_EQ(json::parse(res->body)["success"], false);
  EXPECT_LT(took, std::chrono::seconds(8)) << "agent_timeout is 3 s";
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_TRUE(health->status == 503 || health->status == 504);

  agent_.StartAgent();
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = client.Post("/getBackends");
        return r && r->status == 200;
      },
      milliseconds(15000)));
  auto again = client.Get("/getBackends");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(json::parse(again->body)["message"][0]["instance_id"], "a");
}

}  // namespace
}  // namespace lb::testing

namespace lb::testing {
namespace {

// One SSE client of the bridge's GET /events, reading on its own thread.
class SseClient {
 public:
  SseClient(int port, std::string path) : client_("127.0.0.1", port) {
    client_.set_read_timeout(30, 0);
    thread_ = std::thread([this, path] {
      client_.Get(path, [this](const char* data, size_t size) {
        std::lock_guard<std::mutex> lock(mu_);
        text_.append(data, size);
        return !done_;
      });
    });
  }
  ~SseClient() {
    done_ = true;
    client_.stop();  // closes the connection: the reading thread returns at once
    thread_.join();
  }
  std::string text() {
    std::lock_guard<std::mutex> lock(mu_);
    return text_;
  }
  bool Has(const std::string& s) { return text().find(s) != std::string::npos; }

 private:
  std::mutex mu_;
  std::string text_;
  std::atomic<bool> done_{false};
  httplib::Client client_;
  std::thread thread_;
};

TEST(BridgeEventsTest, TwoHttpClientsStreamTheAgentsEvents) {
  HttpBackend a("a");
  AgentFixture agent(Keys{}, Keys{{"heartbeat_interval", "0.2"}});
  const int frontend = FreePort();
  WriteFile(agent.config_path(), HaproxyConfig(frontend, {{"a", a.port()}}));
  agent.StartAgent();
  agent.StartBridge();
  auto all = std::make_unique<SseClient>(agent.bridge_port(), "/events");
  auto reloads = std::make_unique<SseClient>(agent.bridge_port(), "/events?topic=reload");
  // Heartbeats prove the first stream is live end to end (agent PUB -> bridge SUB -> HTTP).
  ASSERT_TRUE(WaitFor([&] { return all->Has("event: heartbeat"); }, milliseconds(10000)))
      << all->text();
  ASSERT_TRUE(WaitFor([&] { return reloads->Has(": connected"); }, milliseconds(10000)));

  HttpBackend b("b");
  json result = agent.Ok("reload", {{"config", HaproxyConfig(frontend, {{"b", b.port()}})}});
  const std::string sha = result["sha256"];
  for (SseClient* c : {all.get(), reloads.get()}) {
    EXPECT_TRUE(
        WaitFor([&] { return c->Has(sha) && c->Has("event: reload"); }, milliseconds(10000)))
        << c->text();
  }
  // The reload added b and removed a: server events on the unfiltered stream only.
  EXPECT_TRUE(WaitFor([&] { return all->Has("\"change\":\"added\""); }, milliseconds(10000)));
  EXPECT_FALSE(reloads->Has("event: heartbeat"));
  EXPECT_FALSE(reloads->Has("event: server"));
  // One client leaving does not disturb the other.
  reloads.reset();
  const std::size_t before = all->text().size();
  EXPECT_TRUE(
      WaitFor([&] { return all->text().size() > before && all->Has("id: "); }, milliseconds(5000)));
}

}  // namespace
}  // namespace lb::testing
