// GET /metrics on a real lb-bridge in front of a real lb-agent and haproxy: the agent's own
// counters after reloads, checked by promtool (Debian's `prometheus` package), and scraped by a
// real Prometheus server that the test queries through its HTTP API.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <sstream>
#include <string>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

const std::string kToken = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
constexpr const char* kPromtool = "/usr/bin/promtool";
constexpr const char* kPrometheus = "/usr/bin/prometheus";

// "name{labels}" -> value, for every sample line of a text exposition.
std::map<std::string, std::string> Samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = line.substr(space + 1);
  }
  return out;
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
    tokens_ = agent_.dir().File("tokens");
    WriteFile(tokens_, kToken + "\n");
    ASSERT_EQ(chmod(tokens_.c_str(), 0600), 0);
    agent_.SetSecurityKeys({{"bridge_tokens_file", tokens_}});
    agent_.StartAgent();
    agent_.StartBridge();
  }

  httplib::Client Client(bool with_token = true) {
    httplib::Client client("127.0.0.1", agent_.bridge_port());
    client.set_connection_timeout(2, 0);
    client.set_read_timeout(30, 0);
    if (with_token) client.set_bearer_token_auth(kToken.c_str());
    return client;
  }

  // A reload through the bridge that changes more than servers: haproxy really reloads.
  void ReloadThroughTheBridge(const std::string& config, int expected_status) {
    auto res = Client().Post("/reload", config, "text/plain");
    ASSERT_TRUE(res) << "no answer from the bridge";
    ASSERT_EQ(res->status, expected_status) << res->body;
  }

  std::string Scrape() {
    auto res = Client().Get("/metrics");
    EXPECT_TRUE(res) << "no answer from the bridge";
    if (!res) return "";
    EXPECT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    return res->body;
  }

  HttpBackend a_{"backend-a"};
  AgentFixture agent_;
  std::string tokens_;
  int frontend_ = 0;
};

TEST_F(MetricsTest, ScrapeAfterReloadsAndARollbackCountsTheAgentsOutcomesAndPassesPromtool) {
  ASSERT_EQ(access(kPromtool, X_OK), 0)
      << kPromtool << " is missing: install Debian's prometheus package (scripts/deps does)";
  const std::string config =
      HaproxyConfig(frontend_, {{"a", a_.port()}}, "scaling_nodes", "", "    retries 2\n");
  ReloadThroughTheBridge(config, 200);
  ReloadThroughTheBridge("global\n    no-such-keyword\n", 422);
  ASSERT_EQ(Client().Get("/no-such-route-chosen-by-a-client")->status, 404);
  // Back to the first config with the agent's `rollback` (not through the bridge): the
  // counters are the agent's.
  json rollback = agent_.Ok("rollback");
  ASSERT_EQ(rollback.value("outcome", ""), "applied") << rollback.dump();

  const std::string text = Scrape();
  auto samples = Samples(text);
  EXPECT_EQ(samples["lbagent_agent_up"], "1") << text;
  EXPECT_EQ(samples["lbagent_reloads_total{outcome=\"applied\"}"], "2") << text;
  EXPECT_EQ(samples["lbagent_reloads_total{outcome=\"invalid_config\"}"], "1");
  EXPECT_EQ(samples["lbagent_reloads_total{outcome=\"rolled_back\"}"], "0");
  EXPECT_EQ(samples["lbagent_updates_total{via=\"reload\"}"], "2");
  EXPECT_EQ(samples["lbagent_updates_total{via=\"runtime\"}"], "0");
  EXPECT_EQ(samples["lbagent_rollbacks_total{trigger=\"command\"}"], "1");
  EXPECT_EQ(samples["lbagent_rollbacks_total{trigger=\"automatic\"}"], "0");
  EXPECT_EQ(samples["lbagent_reload_duration_seconds_count"], "3");
  EXPECT_EQ(samples["lbagent_reload_duration_seconds_bucket{le=\"+Inf\"}"], "3");
  EXPECT_EQ(samples["lbagent_haproxy_up"], "1");
  EXPECT_EQ(samples.count("lbagent_haproxy_old_workers"), 1u) << "managed mode knows them";
  EXPECT_EQ(samples["lbagent_config_info{sha256=\"" + Sha256OfFile(agent_.config_path()) + "\"}"],
            "1")
      << text;
  EXPECT_EQ(samples["lbagent_bridge_requests_total{route=\"/reload\",code=\"200\"}"], "1");
  EXPECT_EQ(samples["lbagent_bridge_requests_total{route=\"/reload\",code=\"422\"}"], "1");
  EXPECT_EQ(samples["lbagent_bridge_requests_total{route=\"other\",code=\"404\"}"], "1");
  EXPECT_EQ(text.find("no-such-route"), std::string::npos) << "a raw path became a label";
  EXPECT_EQ(samples["lbagent_bridge_sse_streams"], "0");
  // The agent's event counters are the agent's: reload events were published.
  EXPECT_NE(samples["lbagent_events_published_total{type=\"reload\"}"], "");
  EXPECT_NE(samples["lbagent_events_published_total{type=\"reload\"}"], "0");
  EXPECT_EQ(samples["lbagent_event_seq"],
            std::to_string(agent_.Ok("info")["events"]["seq"].get<uint64_t>()));

  const std::string file = agent_.dir().File("metrics.txt");
  WriteFile(file, text);
  CommandResult lint = RunCommand({kPromtool, "check", "metrics"}, milliseconds(30000), file);
  EXPECT_EQ(lint.exit_code, 0) << lint.Describe() << "\n" << text;
  EXPECT_EQ(lint.out + lint.err, "") << "promtool has remarks:\n" << lint.Describe();
}

TEST_F(MetricsTest, MetricsNeedTheBearerTokenLikeEveryReadRoute) {
  auto refused = Client(/*with_token=*/false).Get("/metrics");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401) << refused->body;
  EXPECT_EQ(refused->body.find("lbagent_"), std::string::npos) << refused->body;
  auto wrong = httplib::Client("127.0.0.1", agent_.bridge_port());
  wrong.set_bearer_token_auth("0000000000000000000000000000000000");
  auto res = wrong.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_NE(Scrape().find("lbagent_reloads_total"), std::string::npos);
}

TEST_F(MetricsTest, AgentDownStillAnswersWithAgentUpZeroAndTheBridgesCounters) {
  agent_.StopAgent();
  const std::string text = Scrape();
  auto samples = Samples(text);
  EXPECT_EQ(samples["lbagent_agent_up"], "0") << text;
  EXPECT_EQ(samples.count("lbagent_reloads_total{outcome=\"applied\"}"), 0u);
  EXPECT_NE(text.find("# TYPE lbagent_bridge_requests_total counter"), std::string::npos);
}

// A GET /events stream held open on a raw connection until destroyed; open() once the bridge
// has sent ": connected".
class EventStreamClient {
 public:
  EventStreamClient(int port, const std::string& token) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    const std::string request =
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\n\r\n";
    if (send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return;
    }
    std::string got;
    char buf[4096];
    while (got.find(": connected") == std::string::npos) {
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return;
      got.append(buf, static_cast<size_t>(n));
    }
    open_ = true;
  }
  ~EventStreamClient() {
    if (fd_ >= 0) close(fd_);
  }
  bool open() const { return open_; }

 private:
  int fd_ = -1;
  bool open_ = false;
};

TEST_F(MetricsTest, SseStreamsGaugeCountsTheOpenEventStreams) {
  {
    EventStreamClient one(agent_.bridge_port(), kToken);
    EventStreamClient two(agent_.bridge_port(), kToken);
    ASSERT_TRUE(one.open() && two.open());
    EXPECT_EQ(Samples(Scrape())["lbagent_bridge_sse_streams"], "2");
  }
  // A client that went away is noticed when a write to it fails, usually the second after it
  // left (event_stream.h): two reloads publish two events.
  ReloadThroughTheBridge(
      HaproxyConfig(frontend_, {{"a", a_.port()}}, "scaling_nodes", "", "    retries 2\n"), 200);
  ReloadThroughTheBridge(HaproxyConfig(frontend_, {{"a", a_.port()}}), 200);
  EXPECT_TRUE(WaitFor([&] { return Samples(Scrape())["lbagent_bridge_sse_streams"] == "0"; },
                      milliseconds(30000)))
      << Scrape();
}

// A real Prometheus on loopback scrapes the bridge every second with the bearer token; the
// reloads counter it stores goes from 0 to 1 after a reload through the bridge.
class PrometheusServer {
 public:
  PrometheusServer(const TempDir& dir, int bridge_port, const std::string& token_file)
      : dir_(dir), port_(FreePort()) {
    std::ostringstream yml;
    yml << "global:\n"
        << "  scrape_interval: 1s\n"
        << "  scrape_timeout: 1s\n"
        << "  evaluation_interval: 1m\n"
        << "scrape_configs:\n"
        << "  - job_name: lb-bridge\n"
        << "    authorization:\n"
        << "      type: Bearer\n"
        << "      credentials_file: " << token_file << "\n"
        << "    static_configs:\n"
        << "      - targets: ['127.0.0.1:" << bridge_port << "']\n";
    WriteFile(dir_.File("prometheus.yml"), yml.str());
    process_ = std::make_unique<Process>(
        std::vector<std::string>{kPrometheus, "--config.file=" + dir_.File("prometheus.yml"),
                                 "--storage.tsdb.path=" + dir_.File("prometheus-data"),
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_),
                                 "--storage.tsdb.retention.time=1h", "--log.level=warn"},
        dir_.File("prometheus.log"));
  }
  ~PrometheusServer() { process_->Stop(milliseconds(10000)); }

  bool Running() { return process_->Running(); }
  std::string Log() const { return ReadFile(dir_.File("prometheus.log")); }

  bool Ready(milliseconds timeout) {
    return WaitFor(
               [this] {
                 httplib::Client client("127.0.0.1", port_);
                 client.set_connection_timeout(0, 200000);
                 auto res = client.Get("/-/ready");
                 return !process_->Running() || (res && res->status == 200);
               },
               timeout) &&
           process_->Running();
  }

  // The value of the one series `query` selects through /api/v1/query, "" when there is none.
  std::string QueryOne(const std::string& query) {
    httplib::Client client("127.0.0.1", port_);
    client.set_connection_timeout(1, 0);
    client.set_read_timeout(5, 0);
    auto res = client.Get("/api/v1/query", httplib::Params{{"query", query}}, httplib::Headers{});
    if (!res || res->status != 200) return "";
    json body = json::parse(res->body, nullptr, false);
    if (body.is_discarded() || body.value("status", "") != "success") return "";
    const json& result = body["data"]["result"];
    if (!result.is_array() || result.size() != 1) return "";
    return result[0]["value"][1].get<std::string>();
  }

 private:
  const TempDir& dir_;
  int port_;
  std::unique_ptr<Process> process_;
};

TEST_F(MetricsTest, RealPrometheusScrapesTheBridgeAndReadsAReloadBackThroughItsQueryApi) {
  ASSERT_EQ(access(kPrometheus, X_OK), 0)
      << kPrometheus << " is missing: install Debian's prometheus package (scripts/deps does)";
  PrometheusServer prometheus(agent_.dir(), agent_.bridge_port(), tokens_);
  ASSERT_TRUE(prometheus.Ready(milliseconds(30000))) << "Prometheus not ready:\n"
                                                     << prometheus.Log();
  const std::string applied = "lbagent_reloads_total{job=\"lb-bridge\",outcome=\"applied\"}";
  // Scraped before the reload: the counter is there at 0, and the target is up.
  ASSERT_TRUE(WaitFor([&] { return prometheus.QueryOne(applied) == "0"; }, milliseconds(30000)))
      << "Prometheus has no lbagent_reloads_total 0 from the bridge:\n"
      << prometheus.Log() << "\nup: " << prometheus.QueryOne("up{job=\"lb-bridge\"}");
  EXPECT_EQ(prometheus.QueryOne("up{job=\"lb-bridge\"}"), "1");

  ReloadThroughTheBridge(
      HaproxyConfig(frontend_, {{"a", a_.port()}}, "scaling_nodes", "", "    retries 2\n"), 200);
  EXPECT_TRUE(WaitFor([&] { return prometheus.QueryOne(applied) == "1"; }, milliseconds(30000)))
      << "Prometheus did not see the reload; it holds " << prometheus.QueryOne(applied) << "\n"
      << prometheus.Log();
  EXPECT_EQ(prometheus.QueryOne("lbagent_config_info{sha256=\"" +
                                Sha256OfFile(agent_.config_path()) + "\"}"),
            "1");
  EXPECT_TRUE(prometheus.Running()) << prometheus.Log();
}

}  // namespace
}  // namespace lb::testing
