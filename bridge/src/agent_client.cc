// The one adapter around cppzmq in the bridge: every zmq::error_t stops here.
#include "agent_client.h"

#include <algorithm>
#include <utility>
#include <zmq.hpp>

namespace lb::bridge {
namespace {

using Clock = std::chrono::steady_clock;
using proto::ErrorCode;
using proto::Status;

// Milliseconds left before `deadline`, at least 1: a ZeroMQ timeout of 0 would mean "do not
// wait at all" and -1 "wait forever", neither of which is wanted here.
int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 1, INT32_MAX));
}

int ToMs(std::chrono::milliseconds d) {
  return static_cast<int>(std::clamp<int64_t>(d.count(), 1, INT32_MAX));
}

}  // namespace

AgentClient::AgentClient(zmq::context_t& context, std::string endpoint,
                         std::chrono::milliseconds timeout, proto::DecodeLimits reply_limits,
                         std::optional<common::CurveClientKeys> curve)
    : context_(context),
      endpoint_(std::move(endpoint)),
      timeout_(timeout),
      reply_limits_(reply_limits),
      curve_(std::move(curve)) {}

proto::Result<proto::Reply> AgentClient::Call(const std::string& cmd, nlohmann::json args) {
  const Clock::time_point deadline = Clock::now() + timeout_;
  const uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  try {
    proto::Request request;
    request.id = id;
    request.cmd = cmd;
    request.args = std::move(args);
    const std::string frame = proto::EncodeRequest(request);

    zmq::socket_t socket(context_, zmq::socket_type::req);
    socket.set(zmq::sockopt::linger, 0);
    // Queue only to completed connections: send() then waits for the agent, which is how a
    // missing agent is told apart from a slow one (see the header).
    socket.set(zmq::sockopt::immediate, true);
    const std::chrono::milliseconds connect_timeout = std::min(timeout_, kConnectTimeout);
    socket.set(zmq::sockopt::connect_timeout, ToMs(connect_timeout));
    // A reply above the decode limit is dropped by libzmq instead of being buffered.
    socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(reply_limits_.max_frame_bytes));
    socket.set(zmq::sockopt::sndtimeo, ToMs(connect_timeout));
    // A refused CURVE handshake never completes the connection: the send below then times out.
    if (curve_) common::MakeCurveClient(socket, curve_->own, curve_->server_public_key);
    socket.connect(endpoint_);
    if (!socket.send(zmq::buffer(frame), zmq::send_flags::none)) {
      return Status(ErrorCode::kUnavailable,
                    "agent at " + endpoint_ + " is not reachable (no connection within " +
                        std::to_string(connect_timeout.count()) + " ms); is lb-agent running?" +
                        (curve_ ? " Is this bridge's public key " + curve_->own.public_key +
                                      " in the agent's [security] curve_clients?"
                                : std::string()));
    }
    socket.set(zmq::sockopt::rcvtimeo, RemainingMs(deadline));
    zmq::message_t message;
    if (!socket.recv(message, zmq::recv_flags::none)) {
      return Status(ErrorCode::kTimeout, "agent at " + endpoint_ + " did not answer `" + cmd +
                                             "` within " + std::to_string(timeout_.count()) +
                                             " ms; the command may still complete on the agent");
    }
    // `socket` is closed on return, with whatever it still holds: a late or extra frame can
    // never be mistaken for the answer to another request.
    proto::Result<proto::Reply> reply = proto::DecodeReply(message.to_string_view(), reply_limits_);
    if (!reply.ok()) {
      return Status(ErrorCode::kInternal, "agent at " + endpoint_ + " sent an unreadable reply: " +
                                              reply.status().message());
    }
    if (reply->id != nlohmann::json(id)) {
      return Status(ErrorCode::kInternal,
                    "agent at " + endpoint_ + " answered request " +
                        reply->id.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                        " instead of " + std::to_string(id));
    }
    return reply;
  } catch (const zmq::error_t& e) {
    return Status(ErrorCode::kInternal,
                  "talking to the agent at " + endpoint_ + " failed: " + e.what());
  } catch (const std::exception& e) {
    return Status(ErrorCode::kInternal,
                  "talking to the agent at " + endpoint_ + " failed: " + e.what());
  }
}

}  // namespace lb::bridge
