// FakeAgent: a ROUTER socket that answers like lb-agent's command socket, for the unit tests of
// its clients (the bridge, lbctl). Served by its own thread, which alone touches the socket; the
// handler and the recorded requests are shared with the test thread under a mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "lb/common/curve_certificate.h"
#include "lb/common/zap_handler.h"
#include "lb/proto/codec.h"
#include "temp_dir.h"

namespace lb::testing {

class FakeAgent {
 public:
  // The reply frame for a request (any bytes: a test may answer garbage), or nullopt to leave
  // it unanswered, as an agent that hangs.
  using Handler = std::function<std::optional<std::string>(const proto::Request&)>;

  // With `curve`, a CURVE server with that certificate accepting the keys listed in the file
  // `allow_list` (a real ZapHandler on the fake's context).
  struct Curve {
    common::CurveCertificate own;
    std::string allow_list;
  };
  // Binds `endpoint`; empty: ipc:// in a temp dir of its own.
  explicit FakeAgent(Handler handler = nullptr, std::string endpoint = "",
                     std::optional<Curve> curve = std::nullopt);
  ~FakeAgent();
  FakeAgent(const FakeAgent&) = delete;
  FakeAgent& operator=(const FakeAgent&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  const common::ZapHandler* zap() const { return zap_.get(); }

  void SetHandler(Handler handler);
  // Holds every request until `count` are held, then answers them all with `result`: proves
  // that a client has that many requests in flight at once.
  void HoldUntil(size_t count, nlohmann::json result);

  // Waits until at least `count` requests have arrived; false after `timeout`.
  bool WaitForRequests(size_t count,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  std::vector<proto::Request> requests();
  proto::Request last_request();  // a default Request when none came
  size_t request_count();
  // The routing id of the connection each request came on, in order: equal ids are one
  // connection (a REQ socket kept by the client), different ones are different sockets.
  std::vector<std::string> routing_ids();

 private:
  void Serve();

  std::unique_ptr<TempDir> dir_;  // only without an endpoint given
  std::string endpoint_;
  zmq::context_t context_;
  std::unique_ptr<common::ZapHandler> zap_;  // started before socket_ binds
  zmq::socket_t socket_;
  std::atomic<bool> stop_{false};
  std::thread thread_;

  std::mutex mutex_;
  std::condition_variable received_cv_;
  Handler handler_;
  std::vector<proto::Request> requests_;
  std::vector<std::string> routing_ids_;
  size_t hold_count_ = 0;
  nlohmann::json hold_result_;
  std::vector<std::pair<std::string, nlohmann::json>> held_;  // routing id, request id
};

// Handlers: an ok reply with `result`, an error reply with `status`, no reply at all.
FakeAgent::Handler AnswerWith(nlohmann::json result);
FakeAgent::Handler FailWith(proto::Status status);
FakeAgent::Handler NeverAnswer();

}  // namespace lb::testing
