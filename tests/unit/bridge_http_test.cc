// The bridge's HTTP API against a fake agent: a ZeroMQ ROUTER in a thread that records each
// request and answers with canned replies. The real routes (InstallHttpApi) and the real
// AgentClient run on 127.0.0.1, port 0, and are reached with httplib::Client.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "agent_client.h"
#include "http_api.h"
#include "lb/common/settings.h"
#include "lb/proto/codec.h"
#include "lb/proto/status.h"

namespace lb::bridge {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;
using Clock = std::chrono::steady_clock;

// What the fake agent answers: a result, an error, or nothing at all (nullopt: the request is
// dropped, as by an agent that hangs).
struct FakeAnswer {
  Status status;
  json result = json::object();
};
using FakeHandler = std::function<std::optional<FakeAnswer>(const proto::Request&)>;

FakeHandler AnswerWith(json result) {
  return [result](const proto::Request&) { return FakeAnswer{Status::Ok(), result}; };
}
FakeHandler FailWith(Status status) {
  return [status](const proto::Request&) { return FakeAnswer{status, json::object()}; };
}
FakeHandler NeverAnswer() {
  return [](const proto::Request&) { return std::nullopt; };
}

// A ROUTER socket bound to `endpoint`, served by its own thread (which alone touches the
// socket). The handler and the recorded requests are shared with the test thread under `mutex_`.
class FakeAgent {
 public:
  explicit FakeAgent(std::string endpoint) : socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind(endpoint);
    thread_ = std::thread([this] { Run(); });
  }
  ~FakeAgent() {
    stop_ = true;
    thread_.join();
  }

  void SetHandler(FakeHandler handler) {
    std::lock_guard lock(mutex_);
    handler_ = std::move(handler);
  }
  // Holds every request until `count` are held, then answers them all with `result`: proves
  // that the bridge has that many requests in flight at once.
  void HoldUntil(size_t count, json result) {
    std::lock_guard lock(mutex_);
    hold_count_ = count;
    hold_result_ = std::move(result);
  }

  // Waits until at least `count` requests have arrived; false after `timeout`.
  bool WaitForRequests(size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_lock lock(mutex_);
    return received_cv_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
  }
  std::vector<proto::Request> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  proto::Request last_request() {
    std::lock_guard lock(mutex_);
    return requests_.empty() ? proto::Request() : requests_.back();
  }
  size_t request_count() {
    std::lock_guard lock(mutex_);
    return requests_.size();
  }

 private:
  struct Envelope {
    std::string identity;
    json id;
  };

  void Run() {
    while (!stop_) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      // A REQ client's message: identity, empty delimiter, request.
      std::vector<zmq::message_t> frames;
      do {
        frames.emplace_back();
        (void)socket_.recv(frames.back(), zmq::recv_flags::none);
      } while (frames.back().more());
      if (frames.size() != 3) continue;
      proto::DecodedRequest decoded =
          proto::DecodeRequest(frames[2].to_string_view(), proto::DecodeLimits());
      Envelope envelope{frames[0].to_string(), decoded.request.id};
      std::vector<std::pair<Envelope, FakeAnswer>> answers;
      {
        std::lock_guard lock(mutex_);
        if (!decoded.status.ok()) {
          answers.push_back({envelope, FakeAnswer{decoded.status}});
        } else if (hold_count_ > 0) {
          held_.push_back(envelope);
          if (held_.size() >= hold_count_) {
            for (const Envelope& e : held_) answers.push_back({e, FakeAnswer{{}, hold_result_}});
            held_.clear();
            hold_count_ = 0;
          }
        } else if (std::optional<FakeAnswer> answer = handler_(decoded.request)) {
          answers.push_back({envelope, *answer});
        }
        requests_.push_back(decoded.request);
      }
      received_cv_.notify_all();
      for (const auto& [to, answer] : answers) {
        std::string reply = answer.status.ok() ? proto::EncodeOkReply(to.id, answer.result)
                                               : proto::EncodeErrorReply(to.id, answer.status);
        socket_.send(zmq::buffer(to.identity), zmq::send_flags::sndmore);
        socket_.send(zmq::message_t(), zmq::send_flags::sndmore);
        socket_.send(zmq::buffer(reply), zmq::send_flags::none);
      }
    }
  }

  zmq::context_t context_;
  zmq::socket_t socket_;
  std::atomic<bool> stop_{false};
  std::thread thread_;

  std::mutex mutex_;
  std::condition_variable received_cv_;
  FakeHandler handler_ = AnswerWith(json::object());
  std::vector<proto::Request> requests_;
  size_t hold_count_ = 0;
  json hold_result_;
  std::vector<Envelope> held_;
};

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
    if (server_) server_->stop();
    if (server_thread_.joinable()) server_thread_.join();
    server_.reset();
    agent_client_.reset();
    fake_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartFakeAgent() { fake_ = std::make_unique<FakeAgent>(endpoint_); }

  // Starts the bridge with settings_; connections made before listen_after_bind() runs wait in
  // the listen backlog, so the server is usable as soon as this returns.
  void StartBridge() {
    agent_client_ = std::make_unique<AgentClient>(context_, settings_.agent.command_endpoint,
                                                  settings_.bridge.agent_timeout);
    server_ = std::make_unique<httplib::Server>();
    InstallHttpApi(*server_, *agent_client_, settings_);
    port_ = server_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    server_thread_ = std::thread([this] { server_->listen_after_bind(); });
  }

  void Start() {
    StartFakeAgent();
    StartBridge();
  }

  httplib::Client Client() {
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

  static json Body(const httplib::Result& result) {
    if (!result) return json();
    return json::parse(result->body, nullptr, false);
  }

  std::string dir_;
  std::string endpoint_;
  common::Settings settings_;
  zmq::context_t context_;
  std::unique_ptr<FakeAgent> fake_;
  std::unique_ptr<AgentClient> agent_client_;
  std::unique_ptr<httplib::Server> server_;
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
  auto client = Client();
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
    return FakeAnswer{
        Status::Ok(),
        {{"backends", json::array({{{"name", name}, {"status", "UP"}, {"servers", servers}}})}}};
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

}  // namespace
}  // namespace lb::bridge
