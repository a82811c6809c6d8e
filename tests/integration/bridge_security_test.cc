// lb-bridge's [security] settings with the real lb-bridge, lb-agent and haproxy processes: the
// bridge's own CURVE key towards an agent that uses CURVE (allowed, not allowed, missing), and
// the real binary with bearer tokens and HTTPS, and what it refuses to start with.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

const std::string kToken = "b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6";

// One GET /events read on its own thread, until the test ends it.
class EventStream {
 public:
  EventStream(int port, std::string path) : client_("127.0.0.1", port) {
    client_.set_read_timeout(30, 0);
    thread_ = std::thread([this, path] {
      client_.Get(path, [this](const char* data, size_t size) {
        std::lock_guard lock(mutex_);
        text_.append(data, size);
        return !done_;
      });
    });
  }
  ~EventStream() {
    done_ = true;
    client_.stop();  // closes the connection: the reading thread returns at once
    thread_.join();
  }
  bool Has(const std::string& s) {
    std::lock_guard lock(mutex_);
    return text_.find(s) != std::string::npos;
  }
  std::string text() {
    std::lock_guard lock(mutex_);
    return text_;
  }

 private:
  std::mutex mutex_;
  std::string text_;
  std::atomic<bool> done_{false};
  httplib::Client client_;
  std::thread thread_;
};

class BridgeSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    files_ = WriteCurveFiles(agent_.dir());
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
    SetBridgeKey(files_.client_secret);  // the allowed client's key
    agent_.SetClientKeys(files_.client);
  }

  // [security]: the agent's CURVE keys, and `bridge_secret` as the bridge's own key ("": none).
  void SetBridgeKey(const std::string& bridge_secret) {
    Keys keys = files_.SecurityKeys();
    keys["agent_public_key"] = files_.agent_public;
    if (!bridge_secret.empty()) keys["bridge_curve_secret_key"] = bridge_secret;
    for (const auto& [k, v] : extra_security_) keys[k] = v;
    agent_.SetSecurityKeys(keys);
  }

  httplib::Client Client() {
    httplib::Client client("127.0.0.1", agent_.bridge_port());
    client.set_connection_timeout(2, 0);
    client.set_read_timeout(30, 0);
    client.set_default_headers({{"X-Requested-With", "bridge_security_test"}});
    return client;
  }

  // Runs lb-bridge with the fixture's settings until it exits (it must, within 15 s).
  CommandResult RunBridgeToExit() {
    agent_.WriteSettings();
    return RunCommand({BridgeBinary(), "--config", agent_.settings_path()}, milliseconds(15000));
  }

  HttpBackend a_{"backend-a"};
  HttpBackend b_{"backend-b"};
  AgentFixture agent_{{}, {{"heartbeat_interval", "0.2"}}};
  CurveFiles files_;
  Keys extra_security_;
  int frontend_ = 0;
};

TEST_F(BridgeSecurityTest, BridgeWithAnAllowedKeyReachesTheCurveAgent) {
  agent_.StartAgent();
  agent_.StartBridge();
  auto client = Client();
  auto backends = client.Get("/getBackends");
  ASSERT_TRUE(backends);
  ASSERT_EQ(backends->status, 200) << backends->body;
  json list = json::parse(backends->body);
  EXPECT_EQ(list["success"], true);
  ASSERT_EQ(list["message"].size(), 1u);
  EXPECT_EQ(list["message"][0]["instance_id"], "a");

  // Events come through the bridge's CURVE SUB socket too.
  EventStream events(agent_.bridge_port(), "/events");
  ASSERT_TRUE(WaitFor([&] { return events.Has("event: heartbeat"); }, milliseconds(10000)))
      << events.text();

  const std::string config = HaproxyConfig(frontend_, {{"b", b_.port()}});
  auto reload = client.Post("/reloadHaproxy", config, "text/plain");
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 200) << reload->body;
  EXPECT_EQ(ReadFile(agent_.config_path()), config);
  EXPECT_EQ(HttpGetBody(frontend_), "backend-b");
  EXPECT_TRUE(WaitFor([&] { return events.Has("event: reload"); }, milliseconds(10000)))
      << events.text();
  EXPECT_GE(agent_.Ok("info")["security"]["clients_accepted"].get<int>(), 1);
}

TEST_F(BridgeSecurityTest, BridgeWithAKeyNotInTheAllowListGets503) {
  SetBridgeKey(files_.stranger_secret);
  agent_.StartAgent();
  agent_.StartBridge();
  const std::string before = ReadFile(agent_.config_path());
  auto client = Client();
  auto backends = client.Get("/getBackends");
  ASSERT_TRUE(backends);
  EXPECT_EQ(backends->status, 503) << backends->body;
  json body = json::parse(backends->body);
  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["code"], "unavailable");
  EXPECT_NE(body["error"].get<std::string>().find("curve_clients"), std::string::npos) << body;
  EXPECT_NE(body["error"].get<std::string>().find(files_.stranger.own.public_key),
            std::string::npos)
      << body;

  auto raw_reload = client.Post("/reload", HaproxyConfig(frontend_, {{"b", b_.port()}}),
                                "application/octet-stream");
  ASSERT_TRUE(raw_reload);
  EXPECT_EQ(raw_reload->status, 503) << raw_reload->body;
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
  EXPECT_GE(agent_.Ok("info")["security"]["clients_refused"].get<int>(), 1);
}

TEST_F(BridgeSecurityTest, BridgeWithoutItsOwnKeyRefusesToStart) {
  SetBridgeKey("");
  CommandResult missing = RunBridgeToExit();
  EXPECT_EQ(missing.exit_code, 2) << missing.Describe();
  EXPECT_NE(missing.err.find("bridge_curve_secret_key"), std::string::npos) << missing.Describe();

  SetBridgeKey(agent_.dir().File("no_such_secret"));
  CommandResult unreadable = RunBridgeToExit();
  EXPECT_EQ(unreadable.exit_code, 2) << unreadable.Describe();
  EXPECT_NE(unreadable.err.find("no_such_secret"), std::string::npos) << unreadable.Describe();
}

// The real binary with a tokens file and a certificate: HTTPS only, and only with a token.
TEST_F(BridgeSecurityTest, RealBridgeWithTokensAndTlsAnswersOnlyAuthenticatedHttps) {
  const std::string tokens = agent_.dir().File("tokens");
  WriteFile(tokens, "# the test's token\n" + kToken + "\n");
  ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
  const std::string cert = agent_.dir().File("bridge.crt");
  const std::string key = agent_.dir().File("bridge.key");
  CommandResult made =
      RunCommand({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days",
                  "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
  ASSERT_EQ(made.exit_code, 0) << made.Describe();
  extra_security_ = {
      {"bridge_tokens_file", tokens}, {"bridge_tls_cert", cert}, {"bridge_tls_key", key}};
  SetBridgeKey(files_.client_secret);
  agent_.StartAgent();
  agent_.WriteSettings();
  Process bridge({BridgeBinary(), "--config", agent_.settings_path()},
                 agent_.dir().File("bridge-tls.log"));

  httplib::SSLClient client("127.0.0.1", agent_.bridge_port());
  client.set_ca_cert_path(cert.c_str());
  client.enable_server_certificate_verification(true);
  client.set_connection_timeout(0, 200000);
  client.set_read_timeout(30, 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        if (!bridge.Running()) return true;
        return static_cast<bool>(client.Get("/healthz"));
      },
      milliseconds(15000)));
  ASSERT_TRUE(bridge.Running()) << ReadFile(agent_.dir().File("bridge-tls.log"));

  auto anonymous = client.Get("/getBackends");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_EQ(json::parse(anonymous->body)["code"], "unauthorized");
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body), json({{"success", true}, {"agent", "up"}}));

  client.set_bearer_token_auth(kToken);
  auto backends = client.Get("/getBackends");
  ASSERT_TRUE(backends);
  EXPECT_EQ(backends->status, 200) << backends->body;
  const std::string config = HaproxyConfig(frontend_, {{"b", b_.port()}});
  auto reload = client.Post("/reload", config, "text/plain");  // the token is enough
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 200) << reload->body;
  EXPECT_EQ(ReadFile(agent_.config_path()), config);

  httplib::Client plain("127.0.0.1", agent_.bridge_port());
  plain.set_read_timeout(5, 0);
  EXPECT_FALSE(plain.Get("/healthz"));

  const std::string log = ReadFile(agent_.dir().File("bridge-tls.log"));
  EXPECT_NE(log.find("(HTTPS)"), std::string::npos) << log;
  EXPECT_NE(log.find("GET /getBackends refused (401): no bearer token"), std::string::npos) << log;
  EXPECT_EQ(log.find(kToken), std::string::npos) << log;
  EXPECT_EQ(log.find("WARNING"), std::string::npos) << log;  // loopback
  bridge.Stop();
}

TEST_F(BridgeSecurityTest, RealBridgeRefusesBadTokensAndTlsFiles) {
  SetBridgeKey(files_.client_secret);
  const std::string tokens = agent_.dir().File("tokens");
  WriteFile(tokens, kToken + "\n");
  ASSERT_EQ(chmod(tokens.c_str(), 0644), 0);
  struct Case {
    Keys keys;
    std::string error;
  };
  const std::string garbage = agent_.dir().File("garbage.pem");
  WriteFile(garbage, "not PEM\n");
  for (const Case& c : std::vector<Case>{
           {{{"bridge_tokens_file", tokens}}, "readable by other users"},
           {{{"bridge_tokens_file", agent_.dir().File("nope")}}, "cannot read"},
           {{{"bridge_tls_cert", garbage}, {"bridge_tls_key", garbage}}, "not a PEM certificate"},
           {{{"bridge_tls_cert", agent_.dir().File("nope.crt")}, {"bridge_tls_key", garbage}},
            "cannot read"},
       }) {
    SCOPED_TRACE(c.error);
    extra_security_ = c.keys;
    SetBridgeKey(files_.client_secret);
    CommandResult result = RunBridgeToExit();
    EXPECT_EQ(result.exit_code, 2) << result.Describe();
    EXPECT_NE(result.err.find(c.error), std::string::npos) << result.Describe();
  }
  ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
  WriteFile(tokens, "# nothing\n");
  extra_security_ = {{"bridge_tokens_file", tokens}};
  SetBridgeKey(files_.client_secret);
  CommandResult empty = RunBridgeToExit();
  EXPECT_EQ(empty.exit_code, 2) << empty.Describe();
  EXPECT_NE(empty.err.find("no token"), std::string::npos) << empty.Describe();
}

// A bridge that listens beyond this host without tokens says so at start; with tokens it does
// not.
TEST(BridgeSecurityWarningTest, NonLoopbackListenerWithoutTokensIsWarnedAbout) {
  for (bool with_tokens : {false, true}) {
    SCOPED_TRACE(with_tokens ? "tokens" : "no tokens");
    AgentFixture agent{{}, {{"host", "0.0.0.0"}}};
    if (with_tokens) {
      const std::string tokens = agent.dir().File("tokens");
      WriteFile(tokens, kToken + "\n");
      ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
      agent.SetSecurityKeys({{"bridge_tokens_file", tokens}});
    }
    agent.WriteSettings();
    Process bridge({BridgeBinary(), "--config", agent.settings_path()},
                   agent.dir().File("bridge.log"));
    ASSERT_TRUE(WaitFor(
        [&] {
          return !bridge.Running() ||
                 ReadFile(agent.dir().File("bridge.log")).find("listening on") != std::string::npos;
        },
        milliseconds(15000)));
    const std::string log = ReadFile(agent.dir().File("bridge.log"));
    EXPECT_EQ(log.find("WARNING: listening on 0.0.0.0") != std::string::npos, !with_tokens) << log;
    EXPECT_TRUE(bridge.Running()) << log;
    bridge.Stop();
  }
}

}  // namespace
}  // namespace lb::testing
