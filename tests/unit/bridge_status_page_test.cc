// The status page's routes (status_page.h) through the real bridge (InstallHttpApi's access
// check + InstallStatusPage) on 127.0.0.1, port 0, against a fake agent. What the page does in a
// browser is tests/browser/status_page_test.py.
#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <zmq.hpp>

#include "fake_agent.h"
#include "http_api.h"
#include "lb/common/settings.h"
#include "lb/proto/codec.h"
#include "security.h"
#include "status_page.h"
#include "temp_dir.h"
#include "web_assets.h"

namespace lb::bridge {
namespace {

using nlohmann::json;
using testing::FakeAgent;

const std::string kToken = "0123456789abcdef0123456789abcdef";

const json kStatus = {{"backends",
                       {{{"name", "app"},
                         {"status", "UP"},
                         {"servers",
                          {{{"name", "web1"},
                            {"address", "10.0.0.1:80"},
                            {"status", "UP"},
                            {"weight", 1},
                            {"check_status", "L7OK"},
                            {"last_chk", "<img src=x onerror=alert(1)>"},
                            {"current_sessions", 0},
                            {"total_sessions", 12}}}}}}},
                      {"seq", 7}};
const json kInfo = {
    {"agent", {{"version", "1.2.3"}, {"command_endpoint", "tcp://127.0.0.1:5555"}}},
    {"haproxy", {{"running", true}, {"pid", 42}, {"version", "2.6.12"}, {"master_pid", 41}}},
    {"config", {{"path", "/etc/haproxy/haproxy.cfg"}, {"sha256", "ab12"}}},
    {"last_reload", {{"outcome", "applied"}, {"applied_via", "runtime"}, {"total_ms", 3}}}};

// Answers `status` and `info` like the agent; anything else is an unknown command.
std::optional<std::string> AgentLike(const proto::Request& request) {
  if (request.cmd == "status") return proto::EncodeOkReply(request.id, kStatus);
  if (request.cmd == "info") return proto::EncodeOkReply(request.id, kInfo);
  return proto::EncodeErrorReply(
      request.id, proto::Status(proto::ErrorCode::kUnknownCommand, "unknown " + request.cmd));
}

class StatusPageTest : public ::testing::Test {
 protected:
  void Start(TokenSet tokens = {}) {
    fake_ = std::make_unique<FakeAgent>(AgentLike, "ipc://" + dir_.path() + "/cmd.sock");
    settings_.agent.command_endpoint = fake_->endpoint();
    settings_.bridge.agent_timeout = std::chrono::milliseconds(2000);
    agent_ = std::make_unique<client::CommandClient>(context_,
                                                     AgentClientOptions(settings_, std::nullopt));
    InstallHttpApi(server_, *agent_, settings_, std::move(tokens));
    InstallStatusPage(server_, *agent_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }

  void TearDown() override {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  httplib::Result Get(const std::string& path, httplib::Headers headers = {}) {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(std::chrono::seconds(10));
    return client.Get(path, headers);
  }

  static void ExpectPageHeaders(const httplib::Result& result) {
    ASSERT_TRUE(result);
    EXPECT_EQ(result->get_header_value("Content-Security-Policy"), kStatusPageCsp);
    EXPECT_EQ(result->get_header_value("X-Content-Type-Options"), "nosniff");
    EXPECT_EQ(result->get_header_value("Referrer-Policy"), "no-referrer");
  }

  testing::TempDir dir_;
  common::Settings settings_;
  zmq::context_t context_;
  std::unique_ptr<FakeAgent> fake_;
  std::unique_ptr<client::CommandClient> agent_;
  HttpServer server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_F(StatusPageTest, ServesThePageAndItsFilesFromTheBinary) {
  Start();
  struct Asset {
    std::string path, type;
    std::string_view body;
  };
  for (const Asset& asset : {Asset{"/", "text/html; charset=utf-8", web::kIndexHtml},
                             Asset{"/ui/app.js", "text/javascript; charset=utf-8", web::kAppJs},
                             Asset{"/ui/app.css", "text/css; charset=utf-8", web::kAppCss},
                             Asset{"/ui/icon.svg", "image/svg+xml", web::kIconSvg}}) {
    SCOPED_TRACE(asset.path);
    httplib::Result result = Get(asset.path);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 200);
    EXPECT_EQ(result->get_header_value("Content-Type"), asset.type);
    EXPECT_EQ(result->body, asset.body);
    EXPECT_GT(result->body.size(), 100u);
    ExpectPageHeaders(result);
  }
  // The page's files are the source files, whole: the raw strings lost nothing.
  EXPECT_NE(web::kIndexHtml.find("<script src=\"/ui/app.js\" defer></script>"), std::string::npos);
  EXPECT_NE(web::kIndexHtml.find("</html>"), std::string::npos);
  EXPECT_NE(web::kAppJs.find("})();"), std::string::npos);
  EXPECT_EQ(fake_->request_count(), 0u);  // the page itself asks the agent nothing
}

TEST_F(StatusPageTest, ThePageHasNoInlineScriptAndNeverWritesHtml) {
  // The CSP allows no inline script: every script is a separate file of the bridge.
  EXPECT_EQ(web::kIndexHtml.find("<script>"), std::string::npos);
  EXPECT_FALSE(std::regex_search(std::string(web::kIndexHtml), std::regex(R"(\son[a-z]+\s*=)")))
      << "an inline event handler";
  EXPECT_EQ(web::kIndexHtml.find("style="), std::string::npos);
  // Text from haproxy goes in through textContent only.
  for (std::string_view sink : {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                                "eval(", "new Function"}) {
    EXPECT_EQ(web::kAppJs.find(sink), std::string::npos) << sink;
  }
  EXPECT_EQ(web::kIndexHtml.find("http://"), std::string::npos) << "nothing from another site";
  EXPECT_EQ(web::kIndexHtml.find("https://"), std::string::npos) << "nothing from another site";
}

TEST_F(StatusPageTest, StatusHoldsEveryBackendTheConfigAndTheLastReload) {
  Start();
  httplib::Result result = Get("/ui/status");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(result->get_header_value("Cache-Control"), "no-store");
  ExpectPageHeaders(result);
  json body = json::parse(result->body);
  EXPECT_EQ(body["success"], true);
  EXPECT_EQ(body["backends"], kStatus["backends"]);  // as the agent said it, text untouched
  EXPECT_EQ(body["config"], json({{"sha256", "ab12"}}));
  EXPECT_EQ(body["last_reload"], kInfo["last_reload"]);
  EXPECT_EQ(body["haproxy"], json({{"running", true}, {"pid", 42}, {"version", "2.6.12"}}));
  EXPECT_EQ(body["agent"], json({{"version", "1.2.3"}}));
  // Every backend, and nothing the page does not show (paths, endpoints).
  ASSERT_EQ(fake_->request_count(), 2u);
  EXPECT_EQ(fake_->requests()[0].cmd, "status");
  EXPECT_EQ(fake_->requests()[0].args, json({{"backend", "*"}}));
  EXPECT_EQ(fake_->requests()[1].cmd, "info");
  EXPECT_EQ(result->body.find("/etc/haproxy"), std::string::npos);
  EXPECT_EQ(result->body.find("tcp://"), std::string::npos);
}

TEST_F(StatusPageTest, StatusCarriesTheAgentsError) {
  Start();
  fake_->SetHandler(testing::FailWith(
      proto::Status(proto::ErrorCode::kHaproxyUnavailable, "haproxy is not running")));
  httplib::Result result = Get("/ui/status");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 503);
  json body = json::parse(result->body);
  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["code"], "haproxy_unavailable");
  EXPECT_EQ(body["error"], "haproxy is not running");
}

TEST_F(StatusPageTest, WithTokensThePageIsPublicAndItsDataIsNot) {
  auto tokens = ParseTokens(kToken + "\n", "test");
  ASSERT_TRUE(tokens.ok());
  Start(std::move(tokens).value());
  for (const char* path : {"/", "/ui/app.js", "/ui/app.css", "/ui/icon.svg"}) {
    SCOPED_TRACE(path);
    httplib::Result result = Get(path);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 200);
  }
  for (const char* path : {"/ui/status", "/events", "/index.html", "/ui/other.js"}) {
    SCOPED_TRACE(path);
    httplib::Result result = Get(path);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 401);
    EXPECT_EQ(result->get_header_value("WWW-Authenticate").rfind("Bearer", 0), 0u);
  }
  EXPECT_EQ(fake_->request_count(), 0u);
  httplib::Result result = Get("/ui/status", {{"Authorization", "Bearer " + kToken}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(json::parse(result->body)["config"]["sha256"], "ab12");
}

TEST(PublicPageAssetTest, OnlyReadsOfThePageFiles) {
  EXPECT_TRUE(IsPublicPageAsset("GET", "/"));
  EXPECT_TRUE(IsPublicPageAsset("HEAD", "/ui/app.js"));
  EXPECT_TRUE(IsPublicPageAsset("GET", "/ui/app.css"));
  EXPECT_TRUE(IsPublicPageAsset("GET", "/ui/icon.svg"));
  EXPECT_FALSE(IsPublicPageAsset("POST", "/"));
  EXPECT_FALSE(IsPublicPageAsset("GET", "/ui/status"));
  EXPECT_FALSE(IsPublicPageAsset("GET", "/events"));
  EXPECT_FALSE(IsPublicPageAsset("GET", "//"));
  EXPECT_FALSE(IsPublicPageAsset("GET", "/ui/app.js/../status"));
}

}  // namespace
}  // namespace lb::bridge
