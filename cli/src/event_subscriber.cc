#include "event_subscriber.h"

#include <algorithm>
#include <cerrno>
#include <vector>
#include <zmq.hpp>

#include "lb/proto/codec.h"
#include "output.h"

namespace lb::cli {
namespace {

using client::DescribeHandshakeFailure;
using client::HandshakeFailure;
using client::HandshakeMonitor;
using proto::ErrorCode;
using proto::Status;

// Events are small maps; the largest is a reload event quoting haproxy's complaint.
constexpr std::size_t kMaxEventBytes = 4 * 1024 * 1024;
// More frames than this in one message are not an event; the rest is read and dropped.
constexpr std::size_t kMaxFrames = 8;

proto::DecodeLimits EventLimits() {
  proto::DecodeLimits limits;
  limits.max_frame_bytes = kMaxEventBytes;
  limits.max_container_entries = 10000;
  limits.max_depth = 16;
  return limits;
}

}  // namespace

EventSubscriber::EventSubscriber(zmq::context_t& context, std::string endpoint,
                                 std::vector<std::string> prefixes,
                                 const common::CurveClientKeys* keys)
    : context_(context), endpoint_(std::move(endpoint)), prefixes_(std::move(prefixes)) {
  if (keys != nullptr) keys_ = *keys;
}

EventSubscriber::~EventSubscriber() {
  monitor_.reset();
  socket_.reset();
}

std::string EventSubscriber::HandshakeTrouble() {
  if (!monitor_) return "";
  std::optional<HandshakeFailure> failure = monitor_->Drain();
  if (!failure) return "";
  return "the agent " + DescribeHandshakeFailure(*failure, keys_ ? keys_->own.public_key : "");
}

Status EventSubscriber::Open() {
  try {
    socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::sub);
    socket_->set(zmq::sockopt::linger, 0);
    for (const auto& prefix : prefixes_) socket_->set(zmq::sockopt::subscribe, prefix);
    if (keys_) common::MakeCurveClient(*socket_, keys_->own, keys_->server_public_key);
    monitor_ = std::make_unique<HandshakeMonitor>(context_, *socket_);
    socket_->connect(endpoint_);
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    monitor_.reset();
    socket_.reset();
    if (e.num() == EINVAL || e.num() == EPROTONOSUPPORT || e.num() == ENOENT) {
      return Status(ErrorCode::kBadRequest,
                    "cannot use \"" + endpoint_ + "\" as the agent's event endpoint: " + e.what());
    }
    return Status(ErrorCode::kInternal,
                  "cannot subscribe to events at " + endpoint_ + ": " + e.what());
  }
}

proto::Result<std::optional<Event>> EventSubscriber::Next(std::chrono::milliseconds wait) {
  if (!socket_) return Status(ErrorCode::kInternal, "EventSubscriber::Next before Open");
  try {
    if (std::optional<HandshakeFailure> failure = monitor_->Drain();
        failure && failure->kind == HandshakeFailure::Kind::kRefused) {
      return Status(ErrorCode::kUnavailable,
                    "the agent at " + endpoint_ + " " +
                        DescribeHandshakeFailure(*failure, keys_ ? keys_->own.public_key : ""));
    }
    socket_->set(zmq::sockopt::rcvtimeo,
                 static_cast<int>(std::clamp<int64_t>(wait.count(), 0, INT32_MAX)));
    std::vector<zmq::message_t> frames;
    size_t frame_count = 0;
    while (true) {
      zmq::message_t frame;
      // Later frames of a multi-part message are already here: libzmq delivers all or none.
      const auto flags = frame_count == 0 ? zmq::recv_flags::none : zmq::recv_flags::dontwait;
      if (!socket_->recv(frame, flags)) {
        if (frame_count == 0) return std::optional<Event>();
        break;
      }
      ++frame_count;
      const bool more = frame.more();
      if (frames.size() < kMaxFrames) frames.push_back(std::move(frame));
      if (!more) break;
    }
    if (frame_count != 2) {
      return Status(ErrorCode::kBadRequest,
                    "dropped a message of " + Count(static_cast<int64_t>(frame_count), "frame") +
                        " from " + endpoint_ + " (an event is [topic, msgpack map])");
    }
    Event event;
    event.topic = frames[0].to_string();
    auto body = proto::DecodeMsgpack(frames[1].to_string_view(), EventLimits());
    if (!body.ok()) {
      return Status(ErrorCode::kBadRequest, "dropped an undecodable event on topic \"" +
                                                event.topic + "\": " + body.status().message());
    }
    event.body = std::move(*body);
    return std::optional<Event>(std::move(event));
  } catch (const zmq::error_t& e) {
    // A signal (SIGINT, SIGTERM) interrupts the wait; the caller checks why and decides.
    if (e.num() == EINTR) return std::optional<Event>();
    return Status(ErrorCode::kInternal,
                  "reading events from " + endpoint_ + " failed: " + e.what());
  }
}

}  // namespace lb::cli
