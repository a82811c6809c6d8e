// The bridge's HTTP API against a fake agent: a ZeroMQ ROUTER in a thread that records each
// request and answers with canned replies. The real routes (InstallHttpApi) and the real
// CommandClient run on 127.0.0.1, port 0, and are reached with httplib::Client. The access rules of
// security.h (bearer tokens, the cross-site rule, HTTPS) are tested here too: as pure functions,
// and through the real server.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "fake_agent.h"
#include "http_api.h"
#include "lb/common/curve_socket.h"
#include "lb/common/settings.h"
#include "lb/proto/codec.h"
#include "lb/proto/status.h"
#include "security.h"
#include "test_util.h"

namespace lb::bridge {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;
using Clock = std::chrono::steady_clock;

using testing::AnswerWith;
using testing::FailWith;
using testing::FakeAgent;
using testing::NeverAnswer;

const json kApplied = {{"outcome", "applied"},
                       {"sha256", "5f2b"},
                       {"warnings", json::array({"a warning"})},
                       {"rolled_back", false}};

const char* const kConfig =
    "global\n  daemon\ndefaults\n  mode http\n  timeout client 5s # a=b&c\n"
    "backend scaling_nodes\n  server i-1 10.0.0.1:80 check\n";

class BridgeHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/bridge_http_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    endpoint_ = "ipc://" + dir_ + "/cmd.sock";
    settings_.agent.command_endpoint = endpoint_;
    settings_.bridge.agent_timeout = std::chrono::milliseconds(300);
    settings_.bridge.max_body_bytes = 4096;
    settings_.haproxy.default_backend = "scaling_nodes";
  }

  void TearDown() override {
    Stop();
    std::filesystem::remove_all(dir_);
  }

  // Stops the bridge and the fake agent; Start() may be called again.
  void Stop() {
    if (server_) server_->stop();
    if (server_thread_.joinable()) server_thread_.join();
    server_.reset();
    agent_client_.reset();
    fake_.reset();
  }

  void StartFakeAgent() { fake_ = std::make_unique<FakeAgent>(nullptr, endpoint_); }

  // Starts the bridge with settings_; connections made before listen_after_bind() runs wait in
  // the listen backlog, so the server is usable as soon as this returns.
  // With tokens_ (not empty) the bridge requires them; with settings_.security's TLS files it
  // serves HTTPS.
  void StartBridge() {
    agent_client_ = std::make_unique<client::CommandClient>(
        context_, AgentClientOptions(settings_, std::nullopt));
    auto server = MakeHttpServer(settings_.security);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    InstallHttpApi(*server_, *agent_client_, settings_, tokens_);
    port_ = server_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    server_thread_ = std::thread([this] { server_->listen_after_bind(); });
  }

  void Start() {
    StartFakeAgent();
    StartBridge();
  }

  // A client that sends X-Requested-With, as scripts must for a reload with a form-like or
  // text/plain Content-Type (security.h); BareClient() sends only httplib's own headers.
  httplib::Client Client() {
    httplib::Client client = BareClient();
    client.set_default_headers({{"X-Requested-With", "bridge_http_test"}});
    return client;
  }
  httplib::Client BareClient() {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(std::chrono::seconds(10));
    return client;
  }

  struct RawResponse {
    int status = -1;
    std::string head;  // status line and headers
    std::string body;
  };

  // POSTs `body` with no Content-Type header over a plain socket, HTTP/1.1, Connection: close;
  // without Content-Length either when `send_length` is false.
  RawResponse RawPost(const std::string& path, const std::string& body, bool send_length = true) {
    RawResponse out;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ADD_FAILURE() << "connect to 127.0.0.1:" << port_ << " failed";
      if (fd >= 0) close(fd);
      return out;
    }
    std::string request = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (send_length) request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    request += "Connection: close\r\n\r\n" + body;
    for (size_t sent = 0; sent < request.size();) {
      ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    std::string response;
    char buffer[4096];
    for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) response.append(buffer, n);
    close(fd);
    size_t end_of_head = response.find("\r\n\r\n");
    if (response.rfind("HTTP/1.1 ", 0) != 0 || end_of_head == std::string::npos) {
      ADD_FAILURE() << "not an HTTP response: " << response;
      return out;
    }
    out.status = std::stoi(response.substr(9, 3));
    out.head = response.substr(0, end_of_head + 2);
    out.body = response.substr(end_of_head + 4);
    return out;
  }

  // A plain TCP connection to the bridge for hand-written requests; reads wait at most 10 s.
  class RawConnection {
   public:
    explicit RawConnection(int port) {
      fd_ = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ADD_FAILURE() << "connect to 127.0.0.1:" << port << " failed";
        return;
      }
      timeval timeout{10, 0};
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    }
    ~RawConnection() {
      if (fd_ >= 0) close(fd_);
    }
    void Send(const std::string& bytes) {
      for (size_t sent = 0; sent < bytes.size();) {
        ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) return;
        sent += static_cast<size_t>(n);
      }
    }
    // One whole response (head and a Content-Length body); "" when none comes.
    std::string ReadResponse() {
      for (;;) {
        size_t head_end = buffer_.find("\r\n\r\n");
        if (head_end != std::string::npos) {
          size_t length = 0;
          size_t at = buffer_.find("Content-Length: ");
          if (at != std::string::npos && at < head_end)
            length = std::stoul(buffer_.substr(at + 16));
          if (buffer_.size() >= head_end + 4 + length) {
            std::string response = buffer_.substr(0, head_end + 4 + length);
            buffer_.erase(0, response.size());
            return response;
          }
        }
        if (!Receive()) return "";
      }
    }
    // Everything until the server closes the connection.
    std::string ReadUntilClose() {
      while (Receive()) {
      }
      return std::exchange(buffer_, std::string());
    }

   private:
    bool Receive() {
      char chunk[4096];
      ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) return false;
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
    int fd_ = -1;
    std::string buffer_;
  };

  // Sends `request` (any bytes) on a fresh connection and returns every byte the server sends
  // until it closes its side: the request should say Connection: close.
  std::string RawExchange(const std::string& request) {
    RawConnection connection(port_);
    connection.Send(request);
    return connection.ReadUntilClose();
  }

  static json Body(const httplib::Result& result) {
    if (!result) return json();
    return json::parse(result->body, nullptr, false);
  }

  std::string dir_;
  std::string endpoint_;
  common::Settings settings_;
  TokenSet tokens_;
  zmq::context_t context_;
  std::unique_ptr<FakeAgent> fake_;
  std::unique_ptr<client::CommandClient> agent_client_;
  std::unique_ptr<HttpServer> server_;
  std::thread server_thread_;
  int port_ = 0;
};

TEST_F(BridgeHttpTest, ReloadRawBodyIsForwarded) {
  Start();
  json result = kApplied;
  result["warnings"].push_back("line 9: caf\xe9");  // haproxy echoes the config's bytes
  fake_->SetHandler(AnswerWith(result));
  // Bytes that are not UTF-8 travel unchanged: a config is bytes, not text.
  const std::string config = std::string(kConfig) + "# caf\xe9\n";
  for (const char* path : {"/reload", "/reloadHaproxy"}) {
    SCOPED_TRACE(path);
    // What requests.post(url, data=config_text) sends: no Content-Type at all (which
    // httplib::Client cannot do: it always sends one).
    RawResponse result = RawPost(path, config);
    EXPECT_EQ(result.status, 200);
    EXPECT_NE(result.head.find("Content-Type: application/json\r\n"), std::string::npos)
        << result.head;
    json body = json::parse(result.body, nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << result.body;
    EXPECT_EQ(body["success"], true);
    EXPECT_EQ(body["message"], "Load Balancer up to date");
    EXPECT_EQ(body["outcome"], "applied");
    EXPECT_EQ(body["sha256"], "5f2b");
    EXPECT_EQ(body["warnings"], json::array({"a warning", "line 9: caf\ufffd"}));
    EXPECT_EQ(body["rolled_back"], false);

    proto::Request request = fake_->last_request();
    EXPECT_EQ(request.cmd, "reload");
    EXPECT_EQ(request.args["config"], config);
    EXPECT_FALSE(request.args.contains("force"));
    EXPECT_FALSE(request.args.contains("expect_sha256"));
  }
}

TEST_F(BridgeHttpTest, ReloadRawBodyWithAnyContentTypeIsForwarded) {
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto client = Client();  // with X-Requested-With (security.h)
  // `curl --data-binary @haproxy.cfg` labels a raw config as a url-encoded form.
  for (const char* type :
       {"text/plain", "application/octet-stream", "application/x-www-form-urlencoded"}) {
    SCOPED_TRACE(type);
    auto result = client.Post("/reload", kConfig, type);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 200) << result->body;
    EXPECT_EQ(fake_->last_request().args["config"], kConfig);
  }
}

TEST_F(BridgeHttpTest, ReloadFormFieldIsForwarded) {
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto client = Client();

  auto form = client.Post("/reload", httplib::Params{{"other", "x"}, {"config", kConfig}});
  ASSERT_TRUE(form);
  EXPECT_EQ(form->status, 200) << form->body;
  EXPECT_EQ(fake_->last_request().args["config"], kConfig);

  httplib::MultipartFormDataItems items = {{"config", kConfig, "haproxy.cfg", "text/plain"}};
  auto multipart = client.Post("/reloadHaproxy", items);
  ASSERT_TRUE(multipart);
  EXPECT_EQ(multipart->status, 200) << multipart->body;
  EXPECT_EQ(fake_->last_request().args["config"], kConfig);
  EXPECT_EQ(fake_->request_count(), 2u);

  httplib::MultipartFormDataItems no_config = {{"file", kConfig, "haproxy.cfg", "text/plain"}};
  auto missing = client.Post("/reload", no_config);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 400);
  EXPECT_EQ(Body(missing)["code"], "bad_request");
  EXPECT_EQ(fake_->request_count(), 2u);
}

TEST_F(BridgeHttpTest, ReloadJsonBodyIsForwarded) {
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto client = Client();
  auto result = client.Post("/reload", json{{"config", kConfig}}.dump(), "application/json");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(fake_->last_request().args["config"], kConfig);

  for (const char* bad : {"{not json", "[1]", "{\"config\": 5}", "{\"cfg\": \"x\"}"}) {
    SCOPED_TRACE(bad);
    auto rejected = client.Post("/reload", bad, "application/json; charset=utf-8");
    ASSERT_TRUE(rejected);
    EXPECT_EQ(rejected->status, 400);
    json body = Body(rejected);
    EXPECT_EQ(body["success"], false);
    EXPECT_EQ(body["code"], "bad_request");
    EXPECT_TRUE(body["error"].is_string());
  }
  EXPECT_EQ(fake_->request_count(), 1u);
}

TEST_F(BridgeHttpTest, ReloadPassesForceAndExpectSha256) {
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto client = Client();
  auto result = client.Post("/reload?force=true&expect_sha256=abc123", kConfig, "");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << result->body;
  proto::Request request = fake_->last_request();
  EXPECT_EQ(request.args["force"], true);
  EXPECT_EQ(request.args["expect_sha256"], "abc123");
  EXPECT_EQ(request.args["config"], kConfig);

  auto bad = client.Post("/reload?force=maybe", kConfig, "");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(fake_->request_count(), 1u);
}

TEST_F(BridgeHttpTest, EmptyReloadIsRejected) {
  Start();
  auto result = Client().Post("/reload", "", "");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 400);
  EXPECT_EQ(Body(result)["code"], "bad_request");
  EXPECT_EQ(fake_->request_count(), 0u);
}

TEST_F(BridgeHttpTest, ErrorCodesMapToHttpStatus) {
  EXPECT_EQ(HttpStatusFor(ErrorCode::kOk), 200);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kBadRequest), 400);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kTooLarge), 413);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kInvalidConfig), 422);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kConflict), 409);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kSuperseded), 409);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kReloadFailed), 500);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kInternal), 500);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kUnknownCommand), 500);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kHaproxyUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kTimeout), 504);

  json body = ErrorBody(Status(ErrorCode::kSuperseded, "newer reload won", {{"sha256", "ff"}}));
  EXPECT_EQ(body, json({{"success", false},
                        {"error", "newer reload won"},
                        {"code", "superseded"},
                        {"details", {{"sha256", "ff"}}}}));
  EXPECT_FALSE(ErrorBody(Status(ErrorCode::kTimeout, "slow")).contains("details"));
}

TEST_F(BridgeHttpTest, AgentErrorsBecomeHttpErrors) {
  Start();
  auto client = Client();
  struct Case {
    Status status;
    int http;
  };
  const json haproxy_lines = {{"haproxy_output", "[ALERT] parsing [x:3] : unknown keyword"}};
  for (const Case& c : std::vector<Case>{
           {Status(ErrorCode::kInvalidConfig, "haproxy -c refused it", haproxy_lines), 422},
           {Status(ErrorCode::kConflict, "live config is 99ab"), 409},
           {Status(ErrorCode::kSuperseded, "newer reload", {{"sha256", "77"}}), 409},
           {Status(ErrorCode::kReloadFailed, "reload failed", {{"rolled_back", true}}), 500},
           {Status(ErrorCode::kHaproxyUnavailable, "no master socket"), 503},
           {Status(ErrorCode::kTooLarge, "too big for the agent"), 413},
           {Status(ErrorCode::kTimeout, "haproxy -c took too long"), 504},
       }) {
    SCOPED_TRACE(c.status.ToString());
    fake_->SetHandler(FailWith(c.status));
    auto result = client.Post("/reload", kConfig, "");
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, c.http);
    json body = Body(result);
    EXPECT_EQ(body["success"], false);
    EXPECT_EQ(body["error"], c.status.message());
    EXPECT_EQ(body["code"], std::string(proto::ErrorCodeName(c.status.code())));
    if (c.status.details().is_null()) {
      EXPECT_FALSE(body.contains("details"));
    } else {
      EXPECT_EQ(body["details"], c.status.details());
    }
  }
}

TEST_F(BridgeHttpTest, OversizedBodyIs413) {
  Start();
  auto client = Client();
  // Just above max_body_bytes: answered by the handler.
  auto above = client.Post("/reload", std::string(settings_.bridge.max_body_bytes + 1, 'x'), "");
  ASSERT_TRUE(above);
  EXPECT_EQ(above->status, 413);
  json body = Body(above);
  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["code"], "too_large");
  EXPECT_NE(body["error"].get<std::string>().find("4096"), std::string::npos) << body;

  // Far above: refused by httplib before any handler runs, still with a JSON answer.
  auto far_above = client.Post("/reload", std::string(1024 * 1024, 'x'), "");
  ASSERT_TRUE(far_above) << httplib::to_string(far_above.error());
  EXPECT_EQ(far_above->status, 413);
  EXPECT_EQ(Body(far_above)["code"], "too_large");

  // A form field above the limit, in a body that is not.
  httplib::MultipartFormDataItems items = {
      {"config", std::string(settings_.bridge.max_body_bytes + 10, 'x'), "", ""}};
  auto multipart = client.Post("/reload", items);
  ASSERT_TRUE(multipart);
  EXPECT_EQ(multipart->status, 413);
  EXPECT_EQ(fake_->request_count(), 0u);

  // At the limit exactly: accepted, although the multipart body around it is larger.
  fake_->SetHandler(AnswerWith(kApplied));
  const std::string at_limit(settings_.bridge.max_body_bytes, 'x');
  auto fits = client.Post("/reload", httplib::MultipartFormDataItems{{"config", at_limit, "", ""}});
  ASSERT_TRUE(fits);
  EXPECT_EQ(fits->status, 200) << fits->body;
  EXPECT_EQ(fake_->last_request().args["config"], at_limit);
  auto raw_fits = client.Post("/reload", at_limit, "text/plain");
  ASSERT_TRUE(raw_fits);
  EXPECT_EQ(raw_fits->status, 200) << raw_fits->body;
}

TEST_F(BridgeHttpTest, GetBackendsLegacyShape) {
  Start();
  json servers = json::array({
      {{"name", "i-0abc"},
       {"address", "10.0.0.1:80"},
       {"status", "UP"},
       {"weight", 1},
       {"check_status", "L4OK"},
       {"last_chk", "Layer4 check passed"}},
      {{"name", "web2"},
       {"address", "10.0.0.2:80"},
       {"status", "DOWN"},
       {"weight", 1},
       {"check_status", ""},
       {"last_chk", ""}},
  });
  fake_->SetHandler([servers](const proto::Request& request) {
    std::string name = request.args.value("backend", "");
    return proto::EncodeOkReply(
        request.id,
        {{"backends", json::array({{{"name", name}, {"status", "UP"}, {"servers", servers}}})}});
  });
  auto client = Client();

  auto post = client.Post("/getBackends", "ignored", "");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 200) << post->body;
  json body = Body(post);
  EXPECT_EQ(body["success"], true);
  ASSERT_TRUE(body["message"].is_array());
  ASSERT_EQ(body["message"].size(), 2u);
  EXPECT_EQ(body["message"][0]["instance_id"], "i-0abc");
  EXPECT_EQ(body["message"][0]["state"], "UP");
  EXPECT_EQ(body["message"][0]["description"], "Layer4 check passed");
  EXPECT_EQ(body["message"][0]["address"], "10.0.0.1:80");  // the richer fields ride along
  EXPECT_EQ(body["message"][1]["instance_id"], "web2");
  EXPECT_EQ(body["message"][1]["state"], "DOWN");
  EXPECT_TRUE(body["message"][1]["description"].is_null());
  proto::Request request = fake_->last_request();
  EXPECT_EQ(request.cmd, "status");
  EXPECT_EQ(request.args, json({{"backend", "scaling_nodes"}}));

  auto get = client.Get("/getBackends?backend=other");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(fake_->last_request().args["backend"], "other");

  auto all = client.Get("/getBackends?backend=*");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->status, 400);
  EXPECT_EQ(Body(all)["code"], "bad_request");
  EXPECT_EQ(fake_->request_count(), 2u);

  fake_->SetHandler(FailWith(Status(ErrorCode::kBadRequest, "no backend \"nope\"")));
  auto unknown = client.Get("/getBackends?backend=nope");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 400);
  EXPECT_EQ(Body(unknown)["error"], "no backend \"nope\"");

  fake_->SetHandler(FailWith(Status(ErrorCode::kHaproxyUnavailable, "stats socket refused")));
  auto down = client.Post("/getBackends", "", "");
  ASSERT_TRUE(down);
  EXPECT_EQ(down->status, 503);
  EXPECT_EQ(Body(down)["code"], "haproxy_unavailable");
}

// Concurrent /getBackends share agent calls, but never one that started before they arrived:
// requests sent while call 1 is under way are all answered by call 2 (single_flight.h).
TEST_F(BridgeHttpTest, ConcurrentGetBackendsShareAnAgentCallThatStartedAfterThem) {
  settings_.bridge.agent_timeout = std::chrono::seconds(10);
  Start();
  std::atomic<int> calls{0};
  std::promise<void> call1_started;
  fake_->SetHandler([&calls, &call1_started](const proto::Request& request) {
    const int n = ++calls;
    if (n == 1) {  // call 1 is slow
      call1_started.set_value();
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    json servers = json::array({{{"name", "call-" + std::to_string(n)}, {"status", "UP"}}});
    return proto::EncodeOkReply(
        request.id, {{"backends", json::array({{{"name", request.args.value("backend", "")},
                                                {"status", "UP"},
                                                {"servers", servers}}})}});
  });
  auto answered_by = [this] {
    auto res = Client().Post("/getBackends", "", "");
    if (!res || res->status != 200) return std::string("failed");
    return Body(res)["message"][0]["instance_id"].get<std::string>();
  };
  std::string first;
  std::thread a([&] { first = answered_by(); });
  ASSERT_EQ(call1_started.get_future().wait_for(std::chrono::seconds(10)),
            std::future_status::ready);
  constexpr int kLater = 7;
  std::vector<std::string> later(kLater);
  std::vector<std::thread> threads;
  for (int i = 0; i < kLater; ++i) threads.emplace_back([&, i] { later[i] = answered_by(); });
  for (auto& t : threads) t.join();
  a.join();
  EXPECT_EQ(first, "call-1");
  for (const std::string& got : later) {
    EXPECT_NE(got, "failed");
    EXPECT_NE(got, "call-1") << "answered by an agent call that started before the request";
  }
  // 8 requests, far fewer agent calls (2 when the 7 arrive while call 1 runs).
  EXPECT_LE(calls.load(), 4) << "agent calls for 8 concurrent requests";
}

TEST_F(BridgeHttpTest, GetBackendsKeepsOnlyInstancePrefix) {
  settings_.bridge.instance_prefix = "i-";
  Start();
  fake_->SetHandler(AnswerWith(
      {{"backends",
        json::array(
            {{{"name", "scaling_nodes"},
              {"status", "UP"},
              {"servers",
               json::array({{{"name", "i-1"}, {"status", "UP"}},
                            {{"name", "web"}, {"status", "UP"}},
                            {{"name", "i-2"}, {"status", "MAINT"}, {"last_chk", ""}}})}}})}}));
  auto result = Client().Post("/getBackends", "", "");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << result->body;
  json message = Body(result)["message"];
  ASSERT_EQ(message.size(), 2u) << message;
  EXPECT_EQ(message[0]["instance_id"], "i-1");
  EXPECT_EQ(message[1]["instance_id"], "i-2");
  EXPECT_EQ(message[1]["state"], "MAINT");
  EXPECT_TRUE(message[1]["description"].is_null());
}

TEST_F(BridgeHttpTest, AgentNotAnsweringIs504AndNextRequestSucceeds) {
  Start();
  fake_->SetHandler(NeverAnswer());
  auto client = Client();
  const auto timeout = settings_.bridge.agent_timeout;

  auto start = Clock::now();
  auto stuck = client.Post("/reload", kConfig, "");
  auto elapsed = Clock::now() - start;
  ASSERT_TRUE(stuck);
  EXPECT_EQ(stuck->status, 504);
  EXPECT_EQ(Body(stuck)["code"], "timeout");
  EXPECT_GE(elapsed, timeout / 2);  // it did wait for the agent (libzmq timers are coarse)
  EXPECT_LT(elapsed, 3 * timeout);
  EXPECT_EQ(fake_->request_count(), 1u);

  // The agent answers again; the socket that timed out must not be in the way.
  fake_->SetHandler(AnswerWith(kApplied));
  auto next = client.Post("/reload", kConfig, "");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200) << next->body;
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200) << health->body;
}

// The bridge keeps its connections to the agent (a pool of REQ sockets): requests one after
// another go over one connection, not a new socket and handshake each; one that timed out is
// never reused (its socket waits for a reply that is not coming).
TEST_F(BridgeHttpTest, RequestsReuseOneAgentConnectionAndATimedOutOneIsDropped) {
  Start();
  fake_->SetHandler(AnswerWith({{"pong", true}}));
  auto client = Client();
  for (int i = 0; i < 5; ++i) {
    auto health = client.Get("/healthz");
    ASSERT_TRUE(health);
    ASSERT_EQ(health->status, 200) << health->body;
  }
  std::vector<std::string> ids = fake_->routing_ids();
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u)
      << "5 requests in a row used more than one connection to the agent";

  fake_->SetHandler(NeverAnswer());
  auto stuck = client.Get("/healthz");
  ASSERT_TRUE(stuck);
  EXPECT_NE(stuck->status, 200);
  fake_->SetHandler(AnswerWith({{"pong", true}}));
  auto next = client.Get("/healthz");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200) << next->body;
  ids = fake_->routing_ids();
  ASSERT_EQ(ids.size(), 7u);
  EXPECT_EQ(ids[5], ids[4]) << "the pooled connection was not used";
  EXPECT_NE(ids[6], ids[5]) << "the connection whose request timed out was used again";
}

TEST_F(BridgeHttpTest, AgentRestartIsNoticed) {
  Start();
  fake_->SetHandler(AnswerWith({{"pong", true}}));
  auto client = Client();
  auto before = client.Get("/healthz");
  ASSERT_TRUE(before);
  EXPECT_EQ(before->status, 200);

  fake_.reset();  // the agent goes away...
  auto start = Clock::now();
  auto gone = client.Get("/healthz");
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 503) << gone->body;
  EXPECT_EQ(Body(gone)["code"], "unavailable");
  EXPECT_LT(Clock::now() - start, 3 * settings_.bridge.agent_timeout);

  StartFakeAgent();  // ...and comes back on the same endpoint.
  fake_->SetHandler(AnswerWith({{"pong", true}}));
  auto after = client.Get("/healthz");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << after->body;
}

TEST_F(BridgeHttpTest, NoAgentIs503) {
  StartBridge();  // nothing is bound to the endpoint
  auto client = Client();
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  json body = Body(health);
  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["agent"], "down");
  EXPECT_EQ(body["code"], "unavailable");
  EXPECT_NE(body["error"].get<std::string>().find(endpoint_), std::string::npos) << body;

  auto reload = client.Post("/reload", kConfig, "");
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 503);
  EXPECT_EQ(Body(reload)["code"], "unavailable");
}

TEST_F(BridgeHttpTest, HealthzPingsTheAgent) {
  Start();
  fake_->SetHandler(AnswerWith({{"pong", true}, {"version", "0.1.0"}}));
  auto result = Client().Get("/healthz");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  json body = Body(result);
  EXPECT_EQ(body["success"], true);
  EXPECT_EQ(body["agent"], "up");
  EXPECT_EQ(body["agent_version"], "0.1.0");
  EXPECT_EQ(fake_->last_request().cmd, "ping");
}

TEST_F(BridgeHttpTest, PostWithoutContentLengthIsAnsweredAtOnce) {
  Start();
  fake_->SetHandler(AnswerWith({{"backends", json::array({{{"name", "scaling_nodes"},
                                                           {"status", "UP"},
                                                           {"servers", json::array()}}})}}));
  // What `curl -X POST host:6666/getBackends` sends: no Content-Length, no body. httplib alone
  // would wait for the body until its 30 s read timeout.
  auto start = Clock::now();
  RawResponse backends = RawPost("/getBackends", "", /*send_length=*/false);
  EXPECT_EQ(backends.status, 200) << backends.body;
  EXPECT_EQ(json::parse(backends.body, nullptr, false)["message"], json::array());
  RawResponse reload = RawPost("/reload", "", /*send_length=*/false);
  EXPECT_EQ(reload.status, 400) << reload.body;
  RawResponse unknown = RawPost("/nope", "", /*send_length=*/false);
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  EXPECT_EQ(json::parse(unknown.body, nullptr, false)["code"], "not_found");
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(fake_->request_count(), 1u);
}

TEST_F(BridgeHttpTest, UnknownRouteIs404Json) {
  Start();
  auto client = Client();
  auto result = client.Get("/nope");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
  json body = Body(result);
  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["code"], "not_found");

  auto wrong_method = client.Get("/reload");
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 404);
  EXPECT_EQ(Body(wrong_method)["success"], false);
  EXPECT_EQ(fake_->request_count(), 0u);
}

// --- The /v1 API (rest_api.h); its contract with a real agent: rest_api_contract_test.cc ----

TEST_F(BridgeHttpTest, V1PutMapsIfMatchForceAndApplyViaToTheReloadAndAConflictTo412) {
  Start();
  const std::string live(64, 'a');
  fake_->SetHandler(
      FailWith(Status(ErrorCode::kConflict, "the live config changed", {{"sha256", live}})));
  auto client = Client();
  auto res = client.Put("/v1/config?force=true&apply_via=reload",
                        {{"If-Match", "\"" + std::string(64, 'b') + "\""}}, kConfig, "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 412) << res->body;
  json body = Body(res);
  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["code"], "conflict");
  EXPECT_EQ(body["details"]["sha256"], live);
  proto::Request request = fake_->last_request();
  EXPECT_EQ(request.cmd, "reload");
  EXPECT_EQ(request.args["config"], kConfig);
  EXPECT_EQ(request.args["expect_sha256"], std::string(64, 'b'));
  EXPECT_EQ(request.args["force"], true);
  EXPECT_EQ(request.args["apply_via"], "reload");

  // Applied: the agent's answer as it is, and the new ETag.
  fake_->SetHandler(AnswerWith(kApplied));
  auto applied = client.Put("/v1/config", kConfig, "text/plain");
  ASSERT_TRUE(applied);
  EXPECT_EQ(applied->status, 200) << applied->body;
  EXPECT_EQ(Body(applied), kApplied);
  EXPECT_EQ(applied->get_header_value("ETag"), "\"5f2b\"");
  EXPECT_FALSE(fake_->last_request().args.contains("expect_sha256"));
}

TEST_F(BridgeHttpTest, V1IfMatchTheAgentCannotHonourIsRefusedWithoutAskingIt) {
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto client = Client();
  struct Case {
    std::string if_match;
    int status;
    std::string code;
  };
  for (const Case& c : std::vector<Case>{
           {"W/\"abc\"", 412, "conflict"},  // If-Match compares strongly: never matches
           {"\"abc\", \"def\"", 400, "bad_request"},
           {"abc", 400, "bad_request"},  // not quoted
           {"\"abc", 400, "bad_request"},
       }) {
    SCOPED_TRACE(c.if_match);
    auto res = client.Put("/v1/config", {{"If-Match", c.if_match}}, kConfig, "text/plain");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, c.status) << res->body;
    EXPECT_EQ(Body(res)["code"], c.code);
  }
  EXPECT_EQ(fake_->request_count(), 0u);
}

TEST_F(BridgeHttpTest, V1PutAndValidateTakeTheRawConfigOnly) {
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto client = Client();
  for (const std::string& path : {std::string("/v1/config"), std::string("/v1/config/validate")}) {
    SCOPED_TRACE(path);
    const bool put = path == "/v1/config";
    auto wrapped = put ? client.Put(path, "{\"config\": \"x\"}", "application/json")
                       : client.Post(path, "{\"config\": \"x\"}", "application/json");
    ASSERT_TRUE(wrapped);
    EXPECT_EQ(wrapped->status, 400) << wrapped->body;
    EXPECT_NE(Body(wrapped)["error"].get<std::string>().find("text/plain"), std::string::npos);
    const std::string big(settings_.bridge.max_body_bytes + 1, '#');
    auto too_large =
        put ? client.Put(path, big, "text/plain") : client.Post(path, big, "text/plain");
    ASSERT_TRUE(too_large);
    EXPECT_EQ(too_large->status, 413) << too_large->body;
    EXPECT_EQ(Body(too_large)["code"], "too_large");
    // No Content-Length, no body: answered at once (httplib alone would wait 30 s for a body).
    const auto start = Clock::now();
    std::string raw = RawExchange((put ? "PUT " : "POST ") + path +
                                  " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 400", 0), 0u) << raw;
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  }
  EXPECT_EQ(fake_->request_count(), 0u);
  auto valid = client.Post("/v1/config/validate?force=1", kConfig, "text/plain");
  ASSERT_TRUE(valid);
  EXPECT_EQ(valid->status, 200);
  EXPECT_EQ(fake_->last_request().cmd, "validate");
  EXPECT_EQ(fake_->last_request().args["config"], kConfig);
  EXPECT_EQ(fake_->last_request().args["force"], true);
}

// Without tokens, PUT /v1/config follows the cross-site rule of a reload (security.h).
TEST_F(BridgeHttpTest, V1PutWithOnlySimpleHeadersIsRefusedAsCrossSite) {
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto bare = BareClient();
  auto refused = bare.Put("/v1/config", kConfig, "text/plain");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403) << refused->body;
  EXPECT_EQ(Body(refused)["code"], "forbidden");
  auto form = bare.Post("/v1/config/validate", kConfig, "application/x-www-form-urlencoded");
  ASSERT_TRUE(form);
  EXPECT_EQ(form->status, 403) << form->body;
  EXPECT_EQ(fake_->request_count(), 0u);
  auto allowed = Client().Put("/v1/config", kConfig, "text/plain");  // X-Requested-With
  ASSERT_TRUE(allowed);
  EXPECT_EQ(allowed->status, 200) << allowed->body;
}

TEST_F(BridgeHttpTest, V1AgentDownIs503InTheOneErrorShape) {
  StartBridge();  // no agent
  auto res = Client().Get("/v1/backends");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503) << res->body;
  json body = Body(res);
  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["code"], "unavailable");
  EXPECT_TRUE(body["error"].is_string());
}

TEST_F(BridgeHttpTest, RequestsAreForwardedConcurrently) {
  settings_.bridge.agent_timeout = std::chrono::seconds(5);
  Start();
  // The fake answers only once two requests wait at the same time: with calls to the agent
  // serialized, the first would time out.
  fake_->HoldUntil(2, kApplied);
  std::vector<int> statuses(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      auto result = Client().Post("/reload", kConfig, "");
      statuses[i] = result ? result->status : -1;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(statuses, std::vector<int>({200, 200}));
}

// --- Access control: bearer tokens, cross-site requests, HTTPS (security.h) ----------------

const std::string kToken = "0123456789abcdef0123456789abcdef";
const std::string kOtherToken = "fedcba9876543210fedcba9876543210";

TokenSet Tokens(const std::string& text) {
  auto tokens = ParseTokens(text, "test");
  EXPECT_TRUE(tokens.ok()) << tokens.status().ToString();
  return tokens.ok() ? *tokens : TokenSet();
}

// Writes `text` to `path` with `mode` (exactly: no umask).
void WriteFileMode(const std::string& path, const std::string& text, mode_t mode) {
  test_util::WriteFile(path, text);
  ASSERT_EQ(chmod(path.c_str(), mode), 0) << path;
}

TEST(TokensFileTest, ParsesTokensCommentsAndBlankLines) {
  auto tokens = ParseTokens(
      "# ops team\n\n  " + kToken + "  \r\n\t# " + kOtherToken + "\n" + kOtherToken, "tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  EXPECT_EQ(tokens->size(), 2u);
  EXPECT_TRUE(TokenMatches(*tokens, kToken));
  EXPECT_TRUE(TokenMatches(*tokens, kOtherToken));
  EXPECT_FALSE(TokenMatches(*tokens, "# ops team"));
}

TEST(TokensFileTest, RefusesBadTokensWithoutEchoingThem) {
  const std::string secret_part = "supersecretvalue";
  struct Case {
    std::string text;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {kToken + "\n" + secret_part + " " + secret_part + "\n", "tokens:2: "},
           {kToken + " # a comment\n", "tokens:1: "},
           {"short" + std::string("\n"), "too short"},
           {std::string(kMaxTokenLength + 1, 'a'), "exceeds the limit"},
           {secret_part + "\x01" + secret_part, "printable ASCII"},
           {secret_part + "\xc3\xa9" + secret_part, "printable ASCII"},
           {std::string(kMaxTokensFileBytes + 1, 'a'), "bytes exceeds the limit"},
       }) {
    SCOPED_TRACE(c.text.substr(0, 80));
    auto tokens = ParseTokens(c.text, "tokens");
    ASSERT_FALSE(tokens.ok());
    EXPECT_EQ(tokens.status().code(), ErrorCode::kBadRequest);
    EXPECT_NE(tokens.status().message().find(c.error), std::string::npos)
        << tokens.status().message();
    EXPECT_EQ(tokens.status().message().find(secret_part), std::string::npos)
        << tokens.status().message();
    EXPECT_EQ(tokens.status().message().find(kToken), std::string::npos);
  }
}

TEST(TokensFileTest, RefusesAFileWithoutTokens) {
  for (const char* text : {"", "\n\n", "# only a comment\n  # another\n"}) {
    auto tokens = ParseTokens(text, "tokens");
    ASSERT_FALSE(tokens.ok()) << text;
    EXPECT_NE(tokens.status().message().find("no token"), std::string::npos);
  }
}

TEST(TokensFileTest, LoadRefusesUnreadableAndWorldReadableFiles) {
  test_util::TempDir dir;
  const std::string path = dir.File("tokens");
  WriteFileMode(path, kToken + "\n", 0600);
  auto loaded = LoadTokensFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(TokenMatches(*loaded, kToken));
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);  // group-readable: allowed (a bridge group)
  EXPECT_TRUE(LoadTokensFile(path).ok());

  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  auto world = LoadTokensFile(path);
  ASSERT_FALSE(world.ok());
  EXPECT_NE(world.status().message().find("readable by other users"), std::string::npos)
      << world.status().message();
  EXPECT_NE(world.status().message().find("bridge_tokens_file"), std::string::npos);

  auto missing = LoadTokensFile(dir.File("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot read"), std::string::npos);

  auto directory = LoadTokensFile(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_NE(directory.status().message().find("not a regular file"), std::string::npos);

  WriteFileMode(path, "# no tokens yet\n", 0600);
  auto empty = LoadTokensFile(path);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no token"), std::string::npos);

  if (geteuid() != 0) {  // root reads a mode-000 file anyway; the other cases cover root
    ASSERT_EQ(chmod(path.c_str(), 0000), 0);
    auto unreadable = LoadTokensFile(path);
    ASSERT_FALSE(unreadable.ok());
    EXPECT_NE(unreadable.status().message().find("cannot read"), std::string::npos);
  }
}

TEST(BearerTokenTest, ParsesOnlyTheBearerScheme) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("bearer   abc  "), "abc");
  EXPECT_EQ(BearerToken("BEARER\tabc"), "abc");
  EXPECT_EQ(BearerToken("Bearer"), std::nullopt);
  EXPECT_EQ(BearerToken("Bearer   "), std::nullopt);
  EXPECT_EQ(BearerToken("Bearerabc"), std::nullopt);
  EXPECT_EQ(BearerToken("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), std::nullopt);
  EXPECT_EQ(BearerToken(""), std::nullopt);
}

TEST(TokenMatchesTest, AcceptsEveryTokenOfTheSetAndNothingElse) {
  TokenSet tokens = Tokens(kToken + "\n" + kOtherToken + "\n");
  EXPECT_TRUE(TokenMatches(tokens, kToken));
  EXPECT_TRUE(TokenMatches(tokens, kOtherToken));
  for (const std::string& wrong :
       {std::string(), kToken.substr(0, kToken.size() - 1), kToken + "0",
        std::string("X") + kToken.substr(1), kToken.substr(0, kToken.size() - 1) + "X",
        std::string(kToken.size(), '0')}) {
    EXPECT_FALSE(TokenMatches(tokens, wrong)) << wrong;
  }
  EXPECT_FALSE(TokenMatches(TokenSet(), kToken));
}

// The time of a check must not tell which token matched, or whether any did: with 1000 tokens,
// a comparison that stopped at the first match would answer ~1000 times faster for the first
// token than for none. Medians of interleaved runs; the bound leaves room for a loaded machine.
TEST(TokenMatchesTest, TakesAsLongWhicheverTokenMatchesOrNone) {
  std::string text;
  std::vector<std::string> all;
  for (int i = 0; i < 1000; ++i) {
    all.push_back("token-number-" + std::to_string(100000 + i) + "-padding");
    text += all.back() + "\n";
  }
  TokenSet tokens = Tokens(text);
  ASSERT_EQ(tokens.size(), 1000u);
  const std::vector<std::string> probes = {all.front(), all.back(), "token-number-not-there-pad"};
  std::vector<std::vector<double>> samples(probes.size());
  for (int run = 0; run < 201; ++run) {
    for (size_t p = 0; p < probes.size(); ++p) {
      auto start = Clock::now();
      bool matched = TokenMatches(tokens, probes[p]);
      samples[p].push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
      ASSERT_EQ(matched, p < 2);
    }
  }
  std::vector<double> medians;
  for (auto& v : samples) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    medians.push_back(v[v.size() / 2]);
  }
  const double low = *std::min_element(medians.begin(), medians.end());
  const double high = *std::max_element(medians.begin(), medians.end());
  EXPECT_LT(high, 3 * low) << "medians (us): first " << medians[0] << ", last " << medians[1]
                           << ", none " << medians[2];
}

TEST(CrossSiteTest, DecisionTable) {
  using V = CrossSiteVerdict;
  struct Case {
    httplib::Headers headers;
    V verdict;
  };
  const std::vector<Case> cases = {
      // The 2015 clients: requests.post(url, data=config_text).
      {{{"User-Agent", "python-requests/2.28"}, {"Accept", "*/*"}, {"Content-Length", "9"}},
       V::kNotABrowser},
      {{}, V::kNotABrowser},
      // A header that needs a CORS preflight.
      {{{"X-Requested-With", "curl"}}, V::kNonSimpleHeader},
      {{{"x-requested-with", ""}}, V::kNonSimpleHeader},
      {{{"X-Requested-With", "XMLHttpRequest"},
        {"Content-Type", "application/x-www-form-urlencoded"},
        {"Origin", "https://evil.example"}},
       V::kNonSimpleHeader},
      {{{"Content-Type", "application/json"}}, V::kNonSimpleHeader},
      {{{"Content-Type", "Application/JSON; charset=utf-8"}, {"Origin", "https://x.example"}},
       V::kNonSimpleHeader},
      {{{"Content-Type", "application/octet-stream"}, {"Sec-Fetch-Site", "cross-site"}},
       V::kNonSimpleHeader},
      // What a web page can make a browser send without asking.
      {{{"Content-Type", "application/x-www-form-urlencoded"}}, V::kRefused},  // curl -d
      {{{"Content-Type", "multipart/form-data; boundary=xyz"}}, V::kRefused},
      {{{"Content-Type", "text/plain;charset=UTF-8"}}, V::kRefused},
      {{{"Content-Type", " TEXT/PLAIN "}}, V::kRefused},
      {{{"Content-Type", ""}}, V::kRefused},
      {{{"Content-Type", "nonsense"}}, V::kRefused},
      {{{"Content-Type", "application/json"}, {"Content-Type", "text/plain"}}, V::kRefused},
      {{{"Origin", "https://evil.example"}}, V::kRefused},
      {{{"Origin", "null"}}, V::kRefused},
      {{{"Sec-Fetch-Site", "cross-site"}}, V::kRefused},
      {{{"sec-fetch-mode", "no-cors"}}, V::kRefused},
      {{{"Sec-Fetch-Dest", "empty"}}, V::kRefused},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(CheckCrossSite(cases[i].headers), cases[i].verdict) << "case " << i;
  }
}

TEST(DecideAccessTest, WithoutTokensOnlyStateChangingRequestsAreChecked) {
  using V = AccessDecision::Verdict;
  const httplib::Headers form = {{"Content-Type", "application/x-www-form-urlencoded"}};
  const httplib::Headers origin = {{"Origin", "https://evil.example"}};
  const httplib::Headers none;
  struct Case {
    std::string method, path;
    httplib::Headers headers;
    V verdict;
  };
  for (const Case& c : std::vector<Case>{
           {"POST", "/reload", none, V::kAllowed},
           {"POST", "/reload", form, V::kForbidden},
           {"POST", "/reloadHaproxy", form, V::kForbidden},
           {"POST", "/reloadHaproxy", origin, V::kForbidden},
           {"PUT", "/reload", form, V::kForbidden},
           {"DELETE", "/anything", origin, V::kForbidden},
           {"OPTIONS", "/reload", origin, V::kForbidden},
           {"POST", "/nope", form, V::kForbidden},
           {"POST", "/getBackends", form, V::kAllowed},
           {"GET", "/getBackends", origin, V::kAllowed},
           {"GET", "/events", origin, V::kAllowed},
           {"HEAD", "/healthz", origin, V::kAllowed},
       }) {
    SCOPED_TRACE(c.method + " " + c.path);
    AccessDecision decision = DecideAccess(c.method, c.path, c.headers, TokenSet());
    EXPECT_EQ(decision.verdict, c.verdict);
    EXPECT_FALSE(decision.authenticated);
    if (c.verdict == V::kForbidden) {
      EXPECT_EQ(RefusalStatus(decision), 403);
      json body = json::parse(RefusalBody(decision));
      EXPECT_EQ(body["success"], false);
      EXPECT_EQ(body["code"], "forbidden");
      EXPECT_NE(body["error"].get<std::string>().find("X-Requested-With"), std::string::npos);
      EXPECT_NE(body["error"].get<std::string>().find("bearer token"), std::string::npos);
    }
  }
}

TEST(DecideAccessTest, WithTokensEverythingButTheHealthCheckNeedsOne) {
  using V = AccessDecision::Verdict;
  const TokenSet tokens = Tokens(kToken + "\n" + kOtherToken + "\n");
  const httplib::Headers good = {{"Authorization", "Bearer " + kOtherToken}};
  const httplib::Headers bad = {{"Authorization", "Bearer " + kToken + "x"}};
  const httplib::Headers basic = {{"Authorization", "Basic " + kToken}};
  const httplib::Headers none;
  struct Case {
    std::string method, path;
    httplib::Headers headers;
    V verdict;
    bool authenticated;
  };
  for (const Case& c : std::vector<Case>{
           {"GET", "/healthz", none, V::kAllowed, false},
           {"HEAD", "/healthz", none, V::kAllowed, false},
           {"GET", "/healthz", good, V::kAllowed, true},
           {"GET", "/healthz", bad, V::kAllowed, false},
           {"POST", "/healthz", none, V::kUnauthorized, false},
           {"GET", "/getBackends", none, V::kUnauthorized, false},
           {"POST", "/getBackends", none, V::kUnauthorized, false},
           {"GET", "/events", none, V::kUnauthorized, false},
           {"GET", "/nope", none, V::kUnauthorized, false},
           {"POST", "/reload", none, V::kUnauthorized, false},
           {"POST", "/reload", bad, V::kUnauthorized, false},
           {"POST", "/reload", basic, V::kUnauthorized, false},
           {"POST", "/reload", good, V::kAllowed, true},
           {"GET", "/events", good, V::kAllowed, true},
           // A token makes the cross-site rule moot: a page cannot send an Authorization header.
           {"POST",
            "/reloadHaproxy",
            {{"Authorization", "bearer " + kToken},
             {"Content-Type", "application/x-www-form-urlencoded"}},
            V::kAllowed,
            true},
       }) {
    SCOPED_TRACE(c.method + " " + c.path + " " +
                 (c.headers.empty() ? "" : c.headers.begin()->second));
    AccessDecision decision = DecideAccess(c.method, c.path, c.headers, tokens);
    EXPECT_EQ(decision.verdict, c.verdict);
    EXPECT_EQ(decision.authenticated, c.authenticated);
    if (c.verdict == V::kUnauthorized) {
      EXPECT_EQ(RefusalStatus(decision), 401);
      json body = json::parse(RefusalBody(decision));
      EXPECT_EQ(body["success"], false);
      EXPECT_EQ(body["code"], "unauthorized");
      EXPECT_EQ(body["error"].get<std::string>().find(kToken), std::string::npos);
      EXPECT_EQ(WwwAuthenticate(decision).rfind("Bearer realm=\"lb-bridge\"", 0), 0u);
      EXPECT_EQ(WwwAuthenticate(decision).find("invalid_token") != std::string::npos,
                c.headers == bad);
    }
  }
}

TEST(LoopbackHostTest, OnlyLoopbackAddresses) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "", "::", "10.0.0.1", "127.example.com", "127.0.0", "lb1"}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

// Runs `argv` (no shell) with output to `log`; false when it fails or outlives 60 s.
bool Run(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a child's exit
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// A self-signed certificate for 127.0.0.1 (P-256), made by the openssl CLI: <dir>/<name>.crt
// and <dir>/<name>.key.
void MakeSelfSigned(const std::string& dir, const std::string& name) {
  const std::string log = dir + "/openssl.log";
  ASSERT_TRUE(Run({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", dir + "/" + name + ".key",
                   "-out", dir + "/" + name + ".crt", "-days", "2", "-subj", "/CN=127.0.0.1",
                   "-addext", "subjectAltName=IP:127.0.0.1"},
                  log))
      << test_util::ReadFile(log);
}

TEST(TlsServerTest, RefusesMissingGarbageAndMismatchedFiles) {
  test_util::TempDir dir;
  MakeSelfSigned(dir.path(), "a");
  MakeSelfSigned(dir.path(), "b");
  test_util::WriteFile(dir.File("garbage.pem"), "not a certificate\n");
  struct Case {
    std::string cert, key, error;
  };
  for (const Case& c : std::vector<Case>{
           {dir.File("missing.crt"), dir.File("a.key"), "bridge_tls_cert"},
           {dir.File("a.crt"), dir.File("missing.key"), "bridge_tls_key"},
           {dir.File("garbage.pem"), dir.File("a.key"), "not a PEM certificate"},
           {dir.File("a.crt"), dir.File("garbage.pem"), "bridge_tls_key"},
           {dir.File("a.crt"), dir.File("b.key"), "bridge_tls_key"},
           {dir.File("a.crt"), "", "go together"},
       }) {
    SCOPED_TRACE(c.cert + " " + c.key);
    common::SecuritySettings security;
    security.bridge_tls_cert = c.cert;
    security.bridge_tls_key = c.key;
    auto server = MakeHttpServer(security);
    ASSERT_FALSE(server.ok());
    EXPECT_NE(server.status().message().find(c.error), std::string::npos)
        << server.status().message();
  }
  common::SecuritySettings good;
  good.bridge_tls_cert = dir.File("b.crt");
  good.bridge_tls_key = dir.File("b.key");
  auto server = MakeHttpServer(good);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_NE((*server)->options().tls, nullptr);
  auto plain = MakeHttpServer(common::SecuritySettings());
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->options().tls, nullptr);
}

TEST(BridgeCurveKeysTest, TheAgentsCurveNeedsTheBridgesOwnKey) {
  test_util::TempDir dir;
  auto agent_cert = common::GenerateCertificate();
  auto bridge_cert = common::GenerateCertificate();
  ASSERT_TRUE(agent_cert.ok() && bridge_cert.ok());
  ASSERT_TRUE(common::WriteCertificate(dir.File("agent"), *agent_cert, "test").ok());
  ASSERT_TRUE(common::WriteCertificate(dir.File("bridge"), *bridge_cert, "test").ok());

  common::SecuritySettings security;
  auto off = BridgeCurveKeys(security);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->has_value());

  security.curve_secret_key = dir.File("agent_secret");
  security.curve_clients = dir.File("clients");
  security.agent_public_key = dir.File("agent");
  auto missing = BridgeCurveKeys(security);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("bridge_curve_secret_key"), std::string::npos)
      << missing.status().message();

  security.bridge_curve_secret_key = dir.File("bridge_secret");
  auto keys = BridgeCurveKeys(security);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  ASSERT_TRUE(keys->has_value());
  EXPECT_EQ((*keys)->own.public_key, bridge_cert->public_key);
  EXPECT_EQ((*keys)->own.secret_key, bridge_cert->secret_key);
  EXPECT_EQ((*keys)->server_public_key, agent_cert->public_key);

  // A bridge in front of a remote agent: its own key and the agent's, without curve_secret_key.
  common::SecuritySettings remote;
  remote.bridge_curve_secret_key = dir.File("bridge_secret");
  auto no_agent_key = BridgeCurveKeys(remote);
  ASSERT_FALSE(no_agent_key.ok());
  EXPECT_NE(no_agent_key.status().message().find("agent_public_key"), std::string::npos);
  remote.agent_public_key = dir.File("agent");
  auto remote_keys = BridgeCurveKeys(remote);
  ASSERT_TRUE(remote_keys.ok()) << remote_keys.status().ToString();
  EXPECT_TRUE(remote_keys->has_value());

  remote.bridge_curve_secret_key = dir.File("nope_secret");
  EXPECT_FALSE(BridgeCurveKeys(remote).ok());
}

// --- Access control through the real server -------------------------------------------------

TEST_F(BridgeHttpTest, WithTokensEveryRouteButHealthzIs401WithoutOne) {
  tokens_ = Tokens(kToken + "\n");
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto client = Client();  // X-Requested-With is no substitute for a token
  std::vector<httplib::Result> results;
  results.push_back(client.Get("/getBackends"));
  results.push_back(client.Post("/getBackends", "", "application/json"));
  results.push_back(client.Get("/events"));
  results.push_back(client.Get("/nope"));
  results.push_back(client.Post("/reload", kConfig, "application/json"));
  results.push_back(client.Post("/reloadHaproxy", kConfig, "text/plain"));
  httplib::Headers wrong = {{"Authorization", "Bearer " + kOtherToken}};
  results.push_back(client.Post("/reload", wrong, kConfig, "text/plain"));
  results.push_back(client.Get("/events", wrong));
  httplib::Headers basic = {{"Authorization", "Basic " + kToken}};
  results.push_back(client.Get("/getBackends", basic));
  for (size_t i = 0; i < results.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(results[i]);
    EXPECT_EQ(results[i]->status, 401);
    EXPECT_EQ(results[i]->get_header_value("Content-Type"), "application/json");
    json body = Body(results[i]);
    EXPECT_EQ(body["success"], false);
    EXPECT_EQ(body["code"], "unauthorized");
    EXPECT_TRUE(body["error"].is_string());
    const std::string challenge = results[i]->get_header_value("WWW-Authenticate");
    EXPECT_EQ(challenge.rfind("Bearer", 0), 0u) << challenge;
    EXPECT_EQ(challenge.find("invalid_token") != std::string::npos, i == 6 || i == 7) << challenge;
  }
  // A POST without Content-Length is refused before routing, too.
  RawResponse bodyless = RawPost("/reload", "", /*send_length=*/false);
  EXPECT_EQ(bodyless.status, 401);
  EXPECT_EQ(fake_->request_count(), 0u);
}

TEST_F(BridgeHttpTest, WithTokensAValidTokenReachesEveryRoute) {
  tokens_ = Tokens(kOtherToken + "\n" + kToken + "\n");
  Start();
  auto client = Client();
  client.set_bearer_token_auth(kToken);
  fake_->SetHandler(AnswerWith(kApplied));
  auto reload = client.Post("/reload", kConfig, "text/plain");
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 200) << reload->body;
  EXPECT_EQ(fake_->last_request().args["config"], kConfig);

  // A form post with a token: no cross-site rule, the token is the proof.
  auto bare = BareClient();
  bare.set_bearer_token_auth(kOtherToken);
  auto form = bare.Post("/reloadHaproxy", httplib::Params{{"config", kConfig}});
  ASSERT_TRUE(form);
  EXPECT_EQ(form->status, 200) << form->body;

  fake_->SetHandler(AnswerWith({{"backends", json::array({{{"name", "scaling_nodes"},
                                                           {"status", "UP"},
                                                           {"servers", json::array()}}})}}));
  auto backends = client.Get("/getBackends");
  ASSERT_TRUE(backends);
  EXPECT_EQ(backends->status, 200) << backends->body;
  EXPECT_EQ(fake_->request_count(), 3u);
}

TEST_F(BridgeHttpTest, WithTokensHealthzWithoutTokenSaysOnlyUpOrDown) {
  tokens_ = Tokens(kToken + "\n");
  Start();
  fake_->SetHandler(AnswerWith({{"pong", true}, {"version", "0.1.0"}}));
  auto anonymous = BareClient().Get("/healthz");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 200);
  EXPECT_EQ(Body(anonymous), json({{"success", true}, {"agent", "up"}}));

  auto client = BareClient();
  client.set_bearer_token_auth(kToken);
  auto full = client.Get("/healthz");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 200);
  EXPECT_EQ(Body(full)["agent_version"], "0.1.0");
  EXPECT_EQ(Body(full)["endpoint"], endpoint_);

  fake_->SetHandler(FailWith(Status(ErrorCode::kUnavailable, "at " + endpoint_)));
  auto down = BareClient().Get("/healthz");
  ASSERT_TRUE(down);
  EXPECT_EQ(down->status, 503);
  EXPECT_EQ(Body(down), json({{"success", false}, {"agent", "down"}}));
}

// A refused request's body is never read, let alone parsed as a request of its own: here the
// body of a refused form post is 40 complete reload requests, with X-Requested-With and a token
// (more than a 4 KiB read buffer, which would hide a short one). One answer, the refusal, and the
// connection closes after it (a request sent after it gets nothing).
TEST_F(BridgeHttpTest, RefusedRequestBodyIsNeverParsedAsARequest) {
  for (bool with_tokens : {false, true}) {
    SCOPED_TRACE(with_tokens ? "tokens" : "no tokens");
    tokens_ = with_tokens ? Tokens(kToken + "\n") : TokenSet();
    Start();
    fake_->SetHandler(AnswerWith(kApplied));
    const std::string inner =
        "POST /reload HTTP/1.1\r\nHost: x\r\nX-Requested-With: x\r\n"
        "Authorization: Bearer " +
        kToken + "\r\nContent-Length: " + std::to_string(std::string(kConfig).size()) + "\r\n\r\n" +
        kConfig;
    std::string body;
    for (int i = 0; i < 40; ++i) body += inner;
    const std::string outer =
        "POST /reload HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    RawConnection connection(port_);
    connection.Send(outer);
    connection.Send("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::string response = connection.ReadUntilClose();
    EXPECT_EQ(response.rfind(with_tokens ? "HTTP/1.1 401" : "HTTP/1.1 403", 0), 0u) << response;
    std::vector<std::string> statuses;
    for (size_t at = 0; (at = response.find("HTTP/1.1 ", at)) != std::string::npos; ++at) {
      statuses.push_back(response.substr(at + 9, 3));
    }
    EXPECT_EQ(statuses, std::vector<std::string>({with_tokens ? "401" : "403"})) << response;
    EXPECT_NE(response.find("Connection: close"), std::string::npos) << response;
    EXPECT_EQ(fake_->request_count(), 0u);
    Stop();
  }
}

TEST_F(BridgeHttpTest, CrossSiteReloadsAreRefused) {
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto bare = BareClient();
  std::vector<std::pair<std::string, httplib::Result>> results;
  // An HTML form, in each of its encodings, and what `curl -d` sends.
  results.emplace_back("form", bare.Post("/reload", httplib::Params{{"config", kConfig}}));
  results.emplace_back(
      "multipart",
      bare.Post("/reloadHaproxy", httplib::MultipartFormDataItems{{"config", kConfig, "", ""}}));
  results.emplace_back("text/plain", bare.Post("/reload", kConfig, "text/plain"));
  // fetch(url, {method: "POST", mode: "no-cors", body: new Blob([config])}) sends no
  // Content-Type, but an Origin and Sec-Fetch-* headers (below, with a text/plain body).
  RawResponse no_type = RawPost("/reload", kConfig);
  EXPECT_EQ(no_type.status, 200);  // the control: the same body without browser headers
  auto origin_only = bare.Post("/reload", {{"Origin", "null"}}, kConfig, "text/plain");
  results.emplace_back("origin", std::move(origin_only));
  results.emplace_back("sec-fetch", bare.Post("/reloadHaproxy", {{"Sec-Fetch-Mode", "no-cors"}},
                                              kConfig, "text/plain"));
  results.emplace_back("unknown route", bare.Post("/other", kConfig, "text/plain"));
  for (auto& [name, result] : results) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 403);
    json body = Body(result);
    EXPECT_EQ(body["success"], false);
    EXPECT_EQ(body["code"], "forbidden");
    EXPECT_NE(body["error"].get<std::string>().find("X-Requested-With"), std::string::npos);
    EXPECT_EQ(result->get_header_value("Access-Control-Allow-Origin"), "");
  }
  // Bodyless requests are answered before routing: a browser's POST with an Origin header.
  std::string bodyless = RawExchange(
      "POST /reload HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
      "Connection: close\r\n\r\n");
  EXPECT_EQ(bodyless.rfind("HTTP/1.1 403", 0), 0u) << bodyless;
  EXPECT_EQ(fake_->request_count(), 1u);  // the control only
}

TEST_F(BridgeHttpTest, ReloadsWithANonSimpleHeaderOrNoBrowserHeadersAreAccepted) {
  Start();
  fake_->SetHandler(AnswerWith(kApplied));
  auto bare = BareClient();
  std::vector<std::pair<std::string, httplib::Result>> results;
  results.emplace_back("json",
                       bare.Post("/reload", json{{"config", kConfig}}.dump(), "application/json"));
  results.emplace_back("octet-stream", bare.Post("/reload", kConfig, "application/octet-stream"));
  results.emplace_back("x-requested-with form",
                       bare.Post("/reloadHaproxy", {{"X-Requested-With", "curl"}},
                                 httplib::Params{{"config", kConfig}}));
  results.emplace_back(
      "x-requested-with text, with an Origin",
      bare.Post("/reload",
                {{"X-Requested-With", "XMLHttpRequest"}, {"Origin", "https://lb-admin.example"}},
                kConfig, "text/plain"));
  for (auto& [name, result] : results) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 200) << result->body;
    EXPECT_EQ(fake_->last_request().args["config"], kConfig);
  }
  // The 2015 clients: requests.post(url, data=config_text), no Content-Type, no Origin.
  std::string legacy = RawExchange(
      "POST /reloadHaproxy HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: python-requests/2.28.1\r\n"
      "Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: close\r\n"
      "Content-Length: " +
      std::to_string(std::string(kConfig).size()) + "\r\n\r\n" + kConfig);
  EXPECT_EQ(legacy.rfind("HTTP/1.1 200", 0), 0u) << legacy;
  EXPECT_EQ(fake_->request_count(), 5u);
}

TEST_F(BridgeHttpTest, CorsPreflightIsNeverGranted) {
  for (bool with_tokens : {false, true}) {
    SCOPED_TRACE(with_tokens ? "tokens" : "no tokens");
    tokens_ = with_tokens ? Tokens(kToken + "\n") : TokenSet();
    Start();
    for (const char* path : {"/reload", "/reloadHaproxy", "/getBackends", "/events"}) {
      SCOPED_TRACE(path);
      std::string response =
          RawExchange(std::string("OPTIONS ") + path +
                      " HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
                      "Access-Control-Request-Method: POST\r\n"
                      "Access-Control-Request-Headers: x-requested-with, authorization\r\n"
                      "Connection: close\r\n\r\n");
      ASSERT_EQ(response.rfind("HTTP/1.1 ", 0), 0u) << response;
      EXPECT_GE(std::stoi(response.substr(9, 3)), 400) << response;
      const std::string head = response.substr(0, response.find("\r\n\r\n"));
      EXPECT_EQ(head.find("Access-Control-"), std::string::npos) << head;
    }
    EXPECT_EQ(fake_->request_count(), 0u);
    Stop();
  }
}

TEST_F(BridgeHttpTest, ServesHttpsWithTheConfiguredCertificate) {
  MakeSelfSigned(dir_, "bridge");
  settings_.security.bridge_tls_cert = dir_ + "/bridge.crt";
  settings_.security.bridge_tls_key = dir_ + "/bridge.key";
  tokens_ = Tokens(kToken + "\n");
  Start();
  fake_->SetHandler(AnswerWith({{"pong", true}, {"version", "0.1.0"}}));

  httplib::SSLClient trusting("127.0.0.1", port_);
  trusting.set_ca_cert_path((dir_ + "/bridge.crt").c_str());
  trusting.enable_server_certificate_verification(true);
  trusting.set_bearer_token_auth(kToken);
  trusting.set_read_timeout(std::chrono::seconds(10));
  auto answer = trusting.Get("/healthz");
  ASSERT_TRUE(answer) << httplib::to_string(answer.error());
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(Body(answer)["agent_version"], "0.1.0");
  fake_->SetHandler(AnswerWith(kApplied));
  auto reload = trusting.Post("/reload", kConfig, "text/plain");
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 200) << reload->body;
  EXPECT_EQ(fake_->last_request().args["config"], kConfig);

  // A client that does not trust the certificate gives up in the handshake.
  httplib::SSLClient distrusting("127.0.0.1", port_);
  distrusting.enable_server_certificate_verification(true);
  distrusting.set_ca_cert_path((dir_ + "/nope.crt").c_str());
  auto refused = distrusting.Get("/healthz");
  EXPECT_FALSE(refused);

  // Plain HTTP to the TLS port gets no HTTP answer.
  auto plain = BareClient().Get("/healthz");
  EXPECT_FALSE(plain) << plain->status;
  std::string raw = RawExchange("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(raw.find("HTTP/1."), std::string::npos) << raw;
  EXPECT_EQ(fake_->request_count(), 2u);
}

}  // namespace
}  // namespace lb::bridge
