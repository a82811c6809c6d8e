#include "fake_agent.h"

#include <gtest/gtest.h>

#include "lb/common/curve_socket.h"

namespace lb::testing {

using nlohmann::json;

FakeAgent::FakeAgent(Handler handler, std::string endpoint, std::optional<Curve> curve)
    : endpoint_(std::move(endpoint)),
      socket_(context_, zmq::socket_type::router),
      handler_(handler ? std::move(handler) : AnswerWith(json::object())) {
  if (endpoint_.empty()) {
    dir_ = std::make_unique<TempDir>();
    endpoint_ = "ipc://" + dir_->File("cmd.sock");
  }
  socket_.set(zmq::sockopt::linger, 0);
  if (curve) {
    auto zap = common::ZapHandler::Start(context_, curve->allow_list, nullptr);
    EXPECT_TRUE(zap.ok()) << zap.status().ToString();
    if (zap.ok()) {
      zap_ = std::move(*zap);
      common::MakeCurveServer(socket_, curve->own, *zap_, "test");
    }
  }
  socket_.bind(endpoint_);
  thread_ = std::thread([this] { Serve(); });
}

FakeAgent::~FakeAgent() {
  stop_ = true;
  thread_.join();
  socket_.close();
  zap_.reset();
}

void FakeAgent::SetHandler(Handler handler) {
  std::lock_guard lock(mutex_);
  handler_ = std::move(handler);
}

void FakeAgent::HoldUntil(size_t count, json result) {
  std::lock_guard lock(mutex_);
  hold_count_ = count;
  hold_result_ = std::move(result);
}

bool FakeAgent::WaitForRequests(size_t count, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return received_cv_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
}

std::vector<proto::Request> FakeAgent::requests() {
  std::lock_guard lock(mutex_);
  return requests_;
}

proto::Request FakeAgent::last_request() {
  std::lock_guard lock(mutex_);
  return requests_.empty() ? proto::Request() : requests_.back();
}

std::vector<std::string> FakeAgent::routing_ids() {
  std::lock_guard lock(mutex_);
  return routing_ids_;
}

size_t FakeAgent::request_count() {
  std::lock_guard lock(mutex_);
  return requests_.size();
}

void FakeAgent::Serve() {
  while (!stop_) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(20));
    if (!(item.revents & ZMQ_POLLIN)) continue;
    // A REQ client's message: routing id, empty delimiter, request.
    std::vector<zmq::message_t> frames;
    do {
      frames.emplace_back();
      (void)socket_.recv(frames.back(), zmq::recv_flags::none);
    } while (frames.back().more());
    if (frames.size() != 3) continue;
    proto::DecodedRequest decoded =
        proto::DecodeRequest(frames[2].to_string_view(), proto::DecodeLimits());
    const std::string routing_id = frames[0].to_string();
    std::vector<std::pair<std::string, std::string>> replies;  // routing id, frame
    {
      std::lock_guard lock(mutex_);
      if (!decoded.status.ok()) {
        replies.emplace_back(routing_id,
                             proto::EncodeErrorReply(decoded.request.id, decoded.status));
      } else if (hold_count_ > 0) {
        held_.emplace_back(routing_id, decoded.request.id);
        if (held_.size() >= hold_count_) {
          for (const auto& [to, id] : held_) {
            replies.emplace_back(to, proto::EncodeOkReply(id, hold_result_));
          }
          held_.clear();
          hold_count_ = 0;
        }
      } else if (std::optional<std::string> reply = handler_(decoded.request)) {
        replies.emplace_back(routing_id, std::move(*reply));
      }
      requests_.push_back(decoded.request);
      routing_ids_.push_back(routing_id);
    }
    received_cv_.notify_all();
    for (const auto& [to, reply] : replies) {
      socket_.send(zmq::buffer(to), zmq::send_flags::sndmore);
      socket_.send(zmq::message_t(), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(reply), zmq::send_flags::none);
    }
  }
}

FakeAgent::Handler AnswerWith(json result) {
  return [result](const proto::Request& r) { return proto::EncodeOkReply(r.id, result); };
}

FakeAgent::Handler FailWith(proto::Status status) {
  return [status](const proto::Request& r) { return proto::EncodeErrorReply(r.id, status); };
}

FakeAgent::Handler NeverAnswer() {
  return [](const proto::Request&) { return std::nullopt; };
}

}  // namespace lb::testing
