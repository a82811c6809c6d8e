// GET /events and the EventHub behind it. The test owns a ZeroMQ PUB socket on ipc:// that stands
// in for the agent's event socket; the real hub and the real httplib server run on 127.0.0.1,
// port 0, and are read by SseClient, a plain socket that decodes the chunked stream itself (so
// that a test controls exactly when a client reads and when it goes away).
//
// PUB/SUB drops what is published before a subscription reaches the publisher, so no test
// assumes that the first event arrives: Synchronize() publishes marker events until every client
// has seen one, and the events that matter are published after that.
//
// Also here: GET /events behind bearer tokens, and the hub as a CURVE client of a CURVE
// publisher (the agent's event socket with [security] curve_secret_key).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "event_hub.h"
#include "event_stream.h"
#include "fake_agent.h"
#include "http_api.h"
#include "lb/common/curve_socket.h"
#include "lb/common/settings.h"
#include "lb/proto/codec.h"
#include "lb/proto/status.h"
#include "security.h"

namespace lb::bridge {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kWait{5000};  // generous bound for anything that should happen at once

// An HTTP/1.1 client for one GET, over a plain socket. With `accept_gzip`, it offers gzip,
// which httplib uses for a JSON answer but must not use for an event stream.
class SseClient {
 public:
  // `extra_headers`: whole header lines, each ending in \r\n.
  SseClient(int port, const std::string& target, bool accept_gzip = true,
            const std::string& extra_headers = "") {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ADD_FAILURE() << "connect to 127.0.0.1:" << port << " failed";
      Close();
      return;
    }
    const std::string request =
        "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" +
        (accept_gzip ? "Accept-Encoding: gzip, deflate\r\n" : "") + extra_headers + "\r\n";
    if (send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      ADD_FAILURE() << "sending the request failed";
      Close();
      return;
    }
    ReadHead();
  }
  ~SseClient() { Close(); }
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  int status() const { return status_; }
  // The value of header `name` (lower case), or "".
  std::string header(const std::string& name) const {
    auto it = headers_.find(name);
    return it == headers_.end() ? "" : it->second;
  }

  // The whole body of a response with a Content-Length (an error answer).
  std::string ReadBody() {
    const size_t length =
        std::stoul(header("content-length").empty() ? "0" : header("content-length"));
    const auto deadline = Clock::now() + kWait;
    while (raw_.size() < length && Fill(deadline)) {
    }
    return raw_.substr(0, length);
  }

  // The next SSE record, without its terminating blank line: a comment (": keep-alive") or an
  // event ("id: 1\nevent: x\ndata: {...}"). nullopt when nothing complete arrives within
  // `timeout` or the stream has ended.
  std::optional<std::string> NextRecord(milliseconds timeout = kWait) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      Dechunk();
      if (size_t end = body_.find("\n\n"); end != std::string::npos) {
        std::string record = body_.substr(0, end);
        body_.erase(0, end + 2);
        return record;
      }
      if (ended_ || !Fill(deadline)) return std::nullopt;
    }
  }

  // True once the terminating chunk or the end of the connection has been read.
  bool ended() const { return ended_; }

 private:
  void ReadHead() {
    const auto deadline = Clock::now() + kWait;
    size_t end;
    while ((end = raw_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) {
        ADD_FAILURE() << "no response head; got: " << raw_;
        return;
      }
    }
    std::string head = raw_.substr(0, end + 2);
    raw_.erase(0, end + 4);
    if (head.rfind("HTTP/1.1 ", 0) != 0) {
      ADD_FAILURE() << "not an HTTP response: " << head;
      return;
    }
    status_ = std::stoi(head.substr(9, 3));
    for (size_t line = head.find("\r\n") + 2; line < head.size();) {
      size_t eol = head.find("\r\n", line);
      std::string text = head.substr(line, eol - line);
      size_t colon = text.find(':');
      if (colon != std::string::npos) {
        std::string name = text.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t value = text.find_first_not_of(' ', colon + 1);
        headers_[name] = value == std::string::npos ? "" : text.substr(value);
      }
      line = eol + 2;
    }
    chunked_ = header("transfer-encoding") == "chunked";
  }

  // Reads what the socket has, waiting until `deadline`; false on timeout or end of connection.
  bool Fill(Clock::time_point deadline) {
    if (fd_ < 0) return false;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    pollfd item{fd_, POLLIN, 0};
    if (poll(&item, 1, static_cast<int>(std::max<int64_t>(left, 0))) <= 0) return false;
    char buffer[4096];
    ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      ended_ = true;
      return false;
    }
    raw_.append(buffer, static_cast<size_t>(n));
    return true;
  }

  // Moves the complete chunks of raw_ into body_.
  void Dechunk() {
    if (!chunked_) return;
    for (;;) {
      size_t eol = raw_.find("\r\n");
      if (eol == std::string::npos) return;
      size_t size = std::stoul(raw_.substr(0, eol), nullptr, 16);
      if (raw_.size() < eol + 2 + size + 2) return;
      body_ += raw_.substr(eol + 2, size);
      raw_.erase(0, eol + 2 + size + 2);
      if (size == 0) {
        ended_ = true;
        return;
      }
    }
  }

  int fd_ = -1;
  int status_ = -1;
  std::map<std::string, std::string> headers_;
  bool chunked_ = false;
  bool ended_ = false;
  std::string raw_;   // received, not yet de-chunked
  std::string body_;  // de-chunked, not yet returned
};

struct Event {
  std::string id;  // "" when the record has none
  std::string type;
  json data;
};

// Parses an event record; nullopt for a comment.
std::optional<Event> ParseEvent(const std::string& record) {
  if (record.empty() || record[0] == ':') return std::nullopt;
  Event event;
  size_t start = 0;
  while (start <= record.size()) {
    size_t end = std::min(record.find('\n', start), record.size());
    std::string line = record.substr(start, end - start);
    if (line.rfind("id: ", 0) == 0) event.id = line.substr(4);
    if (line.rfind("event: ", 0) == 0) event.type = line.substr(7);
    if (line.rfind("data: ", 0) == 0) event.data = json::parse(line.substr(6), nullptr, false);
    start = end + 1;
  }
  return event;
}

bool IsSyncEvent(const Event& event) { return event.data.value("sync", false); }

// The next event that is not a Synchronize() marker; comments are skipped.
std::optional<Event> NextEvent(SseClient& client, milliseconds timeout = kWait) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    std::optional<std::string> record = client.NextRecord(left);
    if (!record) return std::nullopt;
    std::optional<Event> event = ParseEvent(*record);
    if (event && !IsSyncEvent(*event)) return event;
  }
  return std::nullopt;
}

// An event body as the agent publishes it.
json Body(const std::string& type, uint64_t seq) {
  return {{"v", 1},      {"agent", "test-agent"}, {"epoch", 1700000000000},
          {"seq", seq},  {"topic_seq", seq},      {"ts_ms", 1700000000123},
          {"type", type}};
}

// An agent that answers every request with one backend and no servers: enough for /getBackends.
testing::FakeAgent::Handler OneEmptyBackend() {
  return testing::AnswerWith(
      {{"backends",
        json::array({{{"name", "scaling_nodes"}, {"status", "UP"}, {"servers", json::array()}}})}});
}

class BridgeEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/bridge_events_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    event_endpoint_ = "ipc://" + dir_ + "/ev.sock";
    settings_.agent.command_endpoint = "ipc://" + dir_ + "/cmd.sock";
    settings_.agent.event_endpoint = event_endpoint_;
    settings_.bridge.agent_timeout = std::chrono::seconds(5);
    options_.keep_alive_interval = milliseconds(200);
    BindPublisher();
  }

  void TearDown() override {
    StopBridge();
    server_.reset();
    hub_.reset();
    agent_client_.reset();
    publisher_.close();
    std::filesystem::remove_all(dir_);
  }

  // The agent's PUB socket; used by the test thread only.
  void BindPublisher() {
    publisher_ = zmq::socket_t(agent_context_, zmq::socket_type::pub);
    publisher_.set(zmq::sockopt::linger, 0);
    publisher_.bind(event_endpoint_);
  }

  void StartHub() {
    auto hub = EventHub::Start(bridge_context_, event_endpoint_, options_);
    ASSERT_TRUE(hub.ok()) << hub.status().ToString();
    hub_ = std::move(hub).value();
  }

  // The hub and the HTTP server with every route, as lb-bridge runs them.
  void StartBridge() {
    StartHub();
    agent_client_ = std::make_unique<client::CommandClient>(
        bridge_context_, AgentClientOptions(settings_, std::nullopt));
    server_ = std::make_unique<HttpServer>();
    InstallHttpApi(*server_, *agent_client_, settings_, tokens_);
    InstallEventStream(*server_, *hub_);
    port_ = server_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    server_thread_ = std::thread([this] { server_->listen_after_bind(); });
  }

  // What lb-bridge does on SIGTERM: the server first, then the hub.
  void StopBridge() {
    if (server_) server_->stop();
    if (hub_) hub_->Stop();
    if (server_thread_.joinable()) server_thread_.join();
  }

  void Publish(const std::string& topic, const json& body) {
    Publish({topic, proto::EncodeMsgpack(body)});
  }
  void Publish(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      publisher_.send(zmq::buffer(frames[i]),
                      i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }

  // A stream that is open: 200 and its ": connected" comment read.
  std::unique_ptr<SseClient> OpenStream(const std::string& target = "/events") {
    auto client = std::make_unique<SseClient>(port_, target);
    EXPECT_EQ(client->status(), 200);
    EXPECT_EQ(client->NextRecord(), ": connected");
    return client;
  }

  // Publishes marker events on `topic` until every client has seen one: from then on, the path
  // from the test's PUB socket to every client is complete and nothing published is lost.
  bool Synchronize(const std::vector<SseClient*>& clients, const std::string& topic) {
    std::vector<bool> seen(clients.size(), false);
    const auto deadline = Clock::now() + kWait;
    while (Clock::now() < deadline) {
      json marker = Body("heartbeat", 0);
      marker["sync"] = true;
      Publish(topic, marker);
      for (size_t i = 0; i < clients.size(); ++i) {
        while (!seen[i]) {
          std::optional<std::string> record = clients[i]->NextRecord(milliseconds(20));
          if (!record) break;
          std::optional<Event> event = ParseEvent(*record);
          seen[i] = event && IsSyncEvent(*event);
        }
      }
      if (std::all_of(seen.begin(), seen.end(), [](bool s) { return s; })) return true;
    }
    return false;
  }

  // Same, for a subscription read directly: publishes on `topic` until NextChunk returns an event.
  bool Synchronize(EventHub::Subscription& subscription, const std::string& topic) {
    const auto deadline = Clock::now() + kWait;
    while (Clock::now() < deadline) {
      Publish(topic, Body("heartbeat", 0));
      std::optional<std::string> chunk = subscription.NextChunk();
      if (chunk && chunk->find("data: ") != std::string::npos) return true;
    }
    return false;
  }

  std::string dir_;
  std::string event_endpoint_;
  common::Settings settings_;
  TokenSet tokens_;  // empty: no bearer tokens
  EventHubOptions options_;
  zmq::context_t agent_context_;
  zmq::socket_t publisher_;
  zmq::context_t bridge_context_;
  std::unique_ptr<EventHub> hub_;
  std::unique_ptr<client::CommandClient> agent_client_;
  std::unique_ptr<HttpServer> server_;
  std::thread server_thread_;
  int port_ = 0;
};

TEST(FormatServerSentEventTest, IdEventAndOneLineData) {
  json body = Body("server", 7);
  body["status"] = "DOWN";
  body["why"] = "Layer4 connection problem\ninfo: \"Connection refused\"";
  std::string record = FormatServerSentEvent("server/app/web1", body);
  ASSERT_EQ(record.rfind("id: 7\nevent: server\ndata: {", 0), 0u) << record;
  ASSERT_TRUE(record.ends_with("}\n\n")) << record;
  EXPECT_EQ(std::count(record.begin(), record.end(), '\n'), 4) << record;  // 3 lines + blank
  std::optional<Event> event = ParseEvent(record.substr(0, record.size() - 2));
  ASSERT_TRUE(event);
  json expected = body;
  expected["topic"] = "server/app/web1";
  EXPECT_EQ(event->data, expected);
}

TEST(FormatServerSentEventTest, LeavesOutWhatCannotBeAnIdOrEventName) {
  json body = {{"seq", -1}, {"type", "a\nb"}, {"topic", "forged"}, {"text", "caf\xe9"}};
  std::string record = FormatServerSentEvent("x\xff", body);
  EXPECT_EQ(record.rfind("data: ", 0), 0u) << record;
  std::optional<Event> event = ParseEvent(record.substr(0, record.size() - 2));
  ASSERT_TRUE(event);
  EXPECT_EQ(event->data["topic"], "x\ufffd");  // the frame's topic wins
  EXPECT_EQ(event->data["text"], "caf\ufffd");
  EXPECT_EQ(FormatServerSentEvent("t", {{"seq", 3}, {"type", ""}}),
            "id: 3\ndata: {\"seq\":3,\"topic\":\"t\",\"type\":\"\"}\n\n");
}

TEST_F(BridgeEventsTest, TwoClientsReceiveEachEvent) {
  StartBridge();
  auto a = OpenStream();
  auto b = OpenStream();
  EXPECT_EQ(a->header("content-type"), "text/event-stream");
  EXPECT_EQ(a->header("cache-control"), "no-cache");
  EXPECT_EQ(a->header("transfer-encoding"), "chunked");
  EXPECT_EQ(a->header("content-encoding"), "");
  ASSERT_TRUE(Synchronize({a.get(), b.get()}, "heartbeat"));

  json body = Body("server", 7);
  body["backend"] = "app";
  body["server"] = "web1";
  body["status"] = "DOWN";
  Publish("server/app/web1", body);
  Publish("reload", Body("reload", 8));
  for (SseClient* client : {a.get(), b.get()}) {
    std::optional<Event> event = NextEvent(*client);
    ASSERT_TRUE(event);
    EXPECT_EQ(event->id, "7");
    EXPECT_EQ(event->type, "server");
    EXPECT_EQ(event->data["topic"], "server/app/web1");
    EXPECT_EQ(event->data["status"], "DOWN");
    EXPECT_EQ(event->data["seq"], 7);
    EXPECT_EQ(event->data["agent"], "test-agent");
    event = NextEvent(*client);
    ASSERT_TRUE(event);
    EXPECT_EQ(event->id, "8");
    EXPECT_EQ(event->type, "reload");
  }
  EXPECT_EQ(hub_->subscription_count(), 2u);
}

TEST_F(BridgeEventsTest, TopicPrefixFilters) {
  StartBridge();
  auto app = OpenStream("/events?topic=server/app/");
  auto encoded = OpenStream("/events?topic=server%2Fapp%2F");
  auto all = OpenStream();
  ASSERT_TRUE(Synchronize({app.get(), encoded.get(), all.get()}, "server/app/sync"));

  Publish("server/app2/web1", Body("server", 10));  // backend app2: not app
  Publish("reload", Body("reload", 11));
  Publish("server/app/web1", Body("server", 12));
  Publish("heartbeat", Body("heartbeat", 12));
  Publish("server/app/web2", Body("server", 13));
  for (SseClient* client : {app.get(), encoded.get()}) {
    std::optional<Event> event = NextEvent(*client);
    ASSERT_TRUE(event);
    EXPECT_EQ(event->id, "12");
    EXPECT_EQ(event->data["topic"], "server/app/web1");
    event = NextEvent(*client);
    ASSERT_TRUE(event);
    EXPECT_EQ(event->id, "13");
    EXPECT_EQ(event->data["topic"], "server/app/web2");
  }
  std::vector<std::string> topics;
  for (int i = 0; i < 5; ++i) {
    std::optional<Event> event = NextEvent(*all);
    ASSERT_TRUE(event);
    topics.push_back(event->data["topic"]);
  }
  EXPECT_EQ(topics, std::vector<std::string>({"server/app2/web1", "reload", "server/app/web1",
                                              "heartbeat", "server/app/web2"}));
}

TEST_F(BridgeEventsTest, ClientThatLeavesDoesNotDisturbTheOthers) {
  StartBridge();
  auto leaving = OpenStream();
  auto staying = OpenStream();
  ASSERT_TRUE(Synchronize({leaving.get(), staying.get()}, "heartbeat"));
  leaving->Close();

  // Events keep flowing to the client that stays while the bridge notices the other has gone
  // (its writes fail) and removes its subscription.
  uint64_t seq = 100;
  const auto deadline = Clock::now() + kWait;
  while (hub_->subscription_count() > 1 && Clock::now() < deadline) {
    Publish("reload", Body("reload", ++seq));
    std::optional<Event> event = NextEvent(*staying);
    ASSERT_TRUE(event);
    ASSERT_EQ(event->id, std::to_string(seq));
    (void)staying->NextRecord(options_.keep_alive_interval * 3 / 2);  // paces the loop
  }
  EXPECT_EQ(hub_->subscription_count(), 1u);
  for (int i = 0; i < 3; ++i) {
    Publish("reload", Body("reload", ++seq));
    std::optional<Event> event = NextEvent(*staying);
    ASSERT_TRUE(event);
    EXPECT_EQ(event->id, std::to_string(seq));
  }
}

TEST_F(BridgeEventsTest, KeepAliveCommentWhenQuiet) {
  StartBridge();
  auto client = OpenStream();
  const auto start = Clock::now();
  EXPECT_EQ(client->NextRecord(), ": keep-alive");
  EXPECT_GE(Clock::now() - start, options_.keep_alive_interval / 2);
  EXPECT_EQ(client->NextRecord(), ": keep-alive");
}

TEST_F(BridgeEventsTest, OtherRoutesAnsweredWhileStreamsAreOpen) {
  testing::FakeAgent agent(OneEmptyBackend(), settings_.agent.command_endpoint);
  // More streams than httplib's default pool has threads: without the larger pool, /getBackends
  // would wait behind them.
  const size_t streams = CPPHTTPLIB_THREAD_POOL_COUNT + 1;
  options_.max_subscriptions = streams;
  StartBridge();
  std::vector<std::unique_ptr<SseClient>> open;
  for (size_t i = 0; i < streams; ++i) open.push_back(OpenStream());
  EXPECT_EQ(hub_->subscription_count(), streams);

  httplib::Client client("127.0.0.1", port_);
  client.set_read_timeout(std::chrono::seconds(5));
  for (int i = 0; i < 2; ++i) {
    auto result = client.Get("/getBackends");
    ASSERT_TRUE(result) << httplib::to_string(result.error());
    EXPECT_EQ(result->status, 200) << result->body;
    EXPECT_EQ(json::parse(result->body, nullptr, false)["success"], true) << result->body;
  }
  EXPECT_EQ(open.back()->NextRecord(), ": keep-alive");  // the streams are still served
}

TEST_F(BridgeEventsTest, TooManyStreamsIs503) {
  options_.max_subscriptions = 2;
  StartBridge();
  auto first = OpenStream();
  auto second = OpenStream();

  SseClient refused(port_, "/events", /*accept_gzip=*/false);
  EXPECT_EQ(refused.status(), 503);
  EXPECT_EQ(refused.header("content-type"), "application/json");
  const std::string text = refused.ReadBody();
  json body = json::parse(text, nullptr, false);
  ASSERT_TRUE(body.is_object()) << text;
  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["error"], "too many event streams");
  EXPECT_EQ(body["code"], "unavailable");
  EXPECT_EQ(hub_->subscription_count(), 2u);

  // Once a client has left and the bridge has noticed, its slot is free again.
  first->Close();
  const auto deadline = Clock::now() + kWait;
  std::unique_ptr<SseClient> third;
  while (Clock::now() < deadline) {
    (void)second->NextRecord(options_.keep_alive_interval * 3 / 2);  // paces the loop
    third = std::make_unique<SseClient>(port_, "/events");
    if (third->status() != 503) break;
  }
  ASSERT_TRUE(third);
  EXPECT_EQ(third->status(), 200);
  EXPECT_EQ(third->NextRecord(), ": connected");
}

TEST_F(BridgeEventsTest, ShutdownEndsStreamsPromptly) {
  options_.keep_alive_interval = std::chrono::seconds(60);  // a stream would otherwise wait
  StartBridge();
  auto a = OpenStream();
  auto b = OpenStream("/events?topic=reload");
  const auto start = Clock::now();
  StopBridge();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  for (SseClient* client : {a.get(), b.get()}) {
    EXPECT_EQ(client->NextRecord(), std::nullopt);
    EXPECT_TRUE(client->ended());
  }
  EXPECT_EQ(hub_->subscription_count(), 0u);
  auto refused = hub_->Subscribe("");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), proto::ErrorCode::kUnavailable);
}

TEST_F(BridgeEventsTest, MalformedEventsAreSkipped) {
  StartBridge();
  auto client = OpenStream();
  ASSERT_TRUE(Synchronize({client.get()}, "heartbeat"));
  Publish({"server/app/web1"});                                          // no body
  Publish({"server/app/web1", "\xc1 is never msgpack"});                 // not msgpack
  Publish({"server/app/web1", proto::EncodeMsgpack(json::array({1}))});  // not a map
  Publish({"server/app/web1", proto::EncodeMsgpack(Body("server", 39)), "extra"});
  Publish("server/app/web1", Body("server", 40));
  std::optional<Event> event = NextEvent(*client);
  ASSERT_TRUE(event);
  EXPECT_EQ(event->id, "40");
  EXPECT_EQ(event->type, "server");

  // Above the size limit: skipped, and the connection to the agent stays up.
  Publish({"server/app/web1", std::string(options_.limits.max_frame_bytes + 1, 'x')});
  Publish("server/app/web1", Body("server", 41));
  event = NextEvent(*client);
  ASSERT_TRUE(event);
  EXPECT_EQ(event->id, "41");
}

TEST_F(BridgeEventsTest, EventsResumeWhenTheAgentRestarts) {
  StartBridge();
  auto client = OpenStream();
  ASSERT_TRUE(Synchronize({client.get()}, "heartbeat"));
  publisher_.close();  // the agent goes away...
  BindPublisher();     // ...and a new one binds the same endpoint
  ASSERT_TRUE(Synchronize({client.get()}, "heartbeat"));
  json body = Body("reload", 1);
  body["epoch"] = 1700000009999;
  Publish("reload", body);
  std::optional<Event> event = NextEvent(*client);
  ASSERT_TRUE(event);
  EXPECT_EQ(event->id, "1");
  EXPECT_EQ(event->data["epoch"], 1700000009999);
}

TEST_F(BridgeEventsTest, SlowSubscriptionLosesItsOldestEvents) {
  options_.queue_capacity = 3;
  StartHub();
  auto slow = hub_->Subscribe("x");
  auto marker = hub_->Subscribe("end");
  ASSERT_TRUE(slow.ok() && marker.ok());
  ASSERT_TRUE(Synchronize(**marker, "end"));

  for (uint64_t seq = 1; seq <= 5; ++seq) Publish("x", Body("server", seq));
  Publish("end", Body("reload", 99));
  // The hub delivers in order: once the marker has its event, `slow` has all five.
  const auto deadline = Clock::now() + kWait;
  std::string seen;
  while (seen.find("id: 99\n") == std::string::npos && Clock::now() < deadline) {
    seen += (*marker)->NextChunk().value_or("");
  }
  ASSERT_NE(seen.find("id: 99\n"), std::string::npos);

  std::optional<std::string> chunk = (*slow)->NextChunk();
  ASSERT_TRUE(chunk);
  EXPECT_EQ(chunk->rfind(": dropped 2 events", 0), 0u) << *chunk;
  EXPECT_EQ(chunk->find("id: 1\n"), std::string::npos) << *chunk;
  EXPECT_EQ(chunk->find("id: 2\n"), std::string::npos) << *chunk;
  size_t three = chunk->find("id: 3\n");
  size_t four = chunk->find("id: 4\n");
  size_t five = chunk->find("id: 5\n");
  EXPECT_NE(three, std::string::npos) << *chunk;
  EXPECT_LT(three, four);
  EXPECT_LT(four, five);
  EXPECT_NE(five, std::string::npos) << *chunk;
  EXPECT_EQ((*slow)->NextChunk(), ": keep-alive\n\n");  // nothing left, and no more drops
}

TEST_F(BridgeEventsTest, StopEndsSubscriptions) {
  StartHub();
  auto subscription = hub_->Subscribe("");
  ASSERT_TRUE(subscription.ok());
  hub_->Stop();
  EXPECT_EQ((*subscription)->NextChunk(), std::nullopt);
  EXPECT_FALSE(hub_->Subscribe("").ok());
}

TEST_F(BridgeEventsTest, MalformedEndpointFailsToStart) {
  auto hub = EventHub::Start(bridge_context_, "nonsense://nowhere", options_);
  ASSERT_FALSE(hub.ok());
  EXPECT_EQ(hub.status().code(), proto::ErrorCode::kInternal);
  EXPECT_NE(hub.status().message().find("nonsense://nowhere"), std::string::npos)
      << hub.status().message();
}

TEST_F(BridgeEventsTest, WithTokensEventsNeedABearerToken) {
  const std::string token = "0123456789abcdef0123456789abcdef";
  auto tokens = ParseTokens(token + "\n", "test");
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  tokens_ = *tokens;
  StartBridge();

  SseClient anonymous(port_, "/events", /*accept_gzip=*/false);
  EXPECT_EQ(anonymous.status(), 401);
  EXPECT_EQ(anonymous.header("www-authenticate").rfind("Bearer", 0), 0u);
  json refused = json::parse(anonymous.ReadBody(), nullptr, false);
  EXPECT_EQ(refused["code"], "unauthorized");
  SseClient wrong(port_, "/events", true, "Authorization: Bearer " + token + "0\r\n");
  EXPECT_EQ(wrong.status(), 401);
  EXPECT_EQ(hub_->subscription_count(), 0u);

  SseClient allowed(port_, "/events", true, "Authorization: Bearer " + token + "\r\n");
  ASSERT_EQ(allowed.status(), 200);
  EXPECT_EQ(allowed.NextRecord(), ": connected");
  ASSERT_TRUE(Synchronize({&allowed}, "heartbeat"));
  Publish("reload", Body("reload", 9));
  std::optional<std::string> record;
  while ((record = allowed.NextRecord()) && record->find("\"seq\":9") == std::string::npos) {
  }
  EXPECT_TRUE(record) << "the event never arrived";
}

// The hub with a key in the publisher's allow-list reads its events; a hub with any other key
// reads nothing, however long the allowed one keeps receiving.
TEST_F(BridgeEventsTest, HubReadsACurvePublisherOnlyWithAnAllowedKey) {
  auto agent = common::GenerateCertificate();
  auto bridge = common::GenerateCertificate();
  auto stranger = common::GenerateCertificate();
  ASSERT_TRUE(agent.ok() && bridge.ok() && stranger.ok());
  const std::string allow_list = dir_ + "/clients";
  {
    std::FILE* f = std::fopen(allow_list.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs((bridge->public_key + " lb-bridge\n").c_str(), f);
    std::fclose(f);
  }
  auto zap = common::ZapHandler::Start(agent_context_, allow_list, nullptr);
  ASSERT_TRUE(zap.ok()) << zap.status().ToString();
  publisher_.close();
  event_endpoint_ = "ipc://" + dir_ + "/curve-ev.sock";
  publisher_ = zmq::socket_t(agent_context_, zmq::socket_type::pub);
  publisher_.set(zmq::sockopt::linger, 0);
  common::MakeCurveServer(publisher_, *agent, **zap, "events");
  publisher_.bind(event_endpoint_);

  options_.curve = common::CurveClientKeys{*bridge, agent->public_key};
  StartHub();
  EventHubOptions stranger_options = options_;
  stranger_options.curve = common::CurveClientKeys{*stranger, agent->public_key};
  auto stranger_hub = EventHub::Start(bridge_context_, event_endpoint_, stranger_options);
  ASSERT_TRUE(stranger_hub.ok());

  auto allowed = hub_->Subscribe("");
  auto refused = (*stranger_hub)->Subscribe("");
  ASSERT_TRUE(allowed.ok() && refused.ok());
  ASSERT_TRUE(Synchronize(**allowed, "heartbeat"));
  for (uint64_t seq = 1; seq <= 20; ++seq) Publish("reload", Body("reload", seq));
  std::string received;
  const auto deadline = Clock::now() + kWait;
  while (received.find("\"seq\":20") == std::string::npos && Clock::now() < deadline) {
    std::optional<std::string> chunk = (*allowed)->NextChunk();
    ASSERT_TRUE(chunk);
    received += *chunk;
  }
  EXPECT_NE(received.find("\"seq\":20"), std::string::npos) << received;
  // Everything the allowed hub got was published to the stranger too: it got none of it (a
  // keep-alive comment after keep_alive_interval, then nothing).
  std::optional<std::string> nothing = (*refused)->NextChunk();
  ASSERT_TRUE(nothing);
  EXPECT_EQ(*nothing, ": keep-alive\n\n");
  EXPECT_GE((*zap)->refused(), 1u);
  EXPECT_GE((*zap)->accepted(), 1u);
  refused->reset();
  allowed->reset();
  stranger_hub->reset();
  hub_.reset();
  publisher_.close();  // before the ZAP handler goes; the context outlives both
}

}  // namespace
}  // namespace lb::bridge
