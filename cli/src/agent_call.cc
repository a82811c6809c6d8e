#include "agent_call.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <zmq.hpp>

#include "command_line.h"
#include "handshake_monitor.h"
#include "lb/common/curve.h"

namespace lb::cli {
namespace {

using Clock = std::chrono::steady_clock;
using proto::ErrorCode;
using proto::Status;

// How long one TCP connection attempt may take before libzmq gives up on it and retries.
constexpr std::chrono::milliseconds kConnectAttemptTimeout{5000};
// Above the agent's default max_config_bytes (16 MiB): worth a hint when no answer comes.
constexpr std::size_t kLargeRequestBytes = 16 * 1024 * 1024;

// Milliseconds left before `deadline`, at least 1 (0 would mean "do not wait", -1 "forever").
int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 1, INT32_MAX));
}

}  // namespace

proto::Result<proto::Reply> CallAgent(zmq::context_t& context, const std::string& endpoint,
                                      const std::string& cmd, const nlohmann::json& args,
                                      std::chrono::milliseconds timeout,
                                      const common::CurveClientKeys* keys) {
  const Clock::time_point deadline = Clock::now() + timeout;
  const std::string id = "lbctl-" + std::to_string(getpid());
  try {
    const std::string frame = proto::EncodeRequest(proto::Request{id, cmd, args});
    zmq::socket_t socket(context, zmq::socket_type::req);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::immediate, true);
    socket.set(zmq::sockopt::connect_timeout,
               static_cast<int>(std::min(timeout, kConnectAttemptTimeout).count()));
    socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxReplyBytes));
    if (keys != nullptr) common::MakeCurveClient(socket, keys->own, keys->server_public_key);
    HandshakeMonitor monitor(context, socket);
    const std::string client_key = keys != nullptr ? keys->own.public_key : "";
    try {
      socket.connect(endpoint);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINVAL || e.num() == EPROTONOSUPPORT || e.num() == ENOENT) {
        return Status(ErrorCode::kBadRequest,
                      "cannot use \"" + endpoint + "\" as the agent's endpoint: " + e.what());
      }
      throw;
    }
    // ZMQ_IMMEDIATE: the socket becomes writable once a connection completed its handshake.
    bool sent = false;
    while (!sent && Clock::now() < deadline) {
      zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLOUT, 0},
                                 {monitor.socket().handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, std::chrono::milliseconds(RemainingMs(deadline)));
      if ((items[1].revents & ZMQ_POLLIN) != 0) {
        std::optional<HandshakeFailure> failure = monitor.Drain();
        if (failure && failure->kind == HandshakeFailure::Kind::kRefused) {
          return Status(
              ErrorCode::kUnavailable,
              "the agent at " + endpoint + " " + DescribeHandshakeFailure(*failure, client_key));
        }
      }
      if ((items[0].revents & ZMQ_POLLOUT) != 0) {
        sent = socket.send(zmq::buffer(frame), zmq::send_flags::dontwait).has_value();
      }
    }
    if (!sent) {
      if (std::optional<HandshakeFailure> failure = monitor.Drain()) {
        return Status(ErrorCode::kUnavailable, "no answer from " + endpoint + " within " +
                                                   DescribeSeconds(timeout) + ": the agent " +
                                                   DescribeHandshakeFailure(*failure, client_key));
      }
      return Status(
          ErrorCode::kUnavailable,
          "no answer from " + endpoint + " within " + DescribeSeconds(timeout) +
              " (is lb-agent running? is that its command_endpoint? " +
              (keys != nullptr ? "if the agent uses CURVE, check --curve-key/--server-key and that "
                                 "this key is in its curve_clients)"
                               : "if the agent uses CURVE, pass --curve-key and --server-key)"));
    }
    socket.set(zmq::sockopt::rcvtimeo, RemainingMs(deadline));
    zmq::message_t message;
    if (!socket.recv(message, zmq::recv_flags::none)) {
      std::string why =
          "the agent is connected but busy or stuck; the command may still complete there: "
          "check with lbctl info";
      if (frame.size() > kLargeRequestBytes) {
        // The agent drops a frame far above its max_config_bytes without answering.
        why = "a request of " + std::to_string(frame.size() >> 20) +
              " MiB may be far above the agent's max_config_bytes, which makes it drop the "
              "request unanswered; or " +
              why;
      }
      return Status(ErrorCode::kTimeout, "no answer from " + endpoint + " to `" + cmd +
                                             "` within " + DescribeSeconds(timeout) + " (" + why +
                                             ")");
    }
    proto::DecodeLimits limits;
    limits.max_frame_bytes = kMaxReplyBytes;
    proto::Result<proto::Reply> reply = proto::DecodeReply(message.to_string_view(), limits);
    if (!reply.ok()) {
      return Status(ErrorCode::kInternal, "unreadable reply from " + endpoint + ": " +
                                              reply.status().message() +
                                              " (is that lb-agent's command_endpoint?)");
    }
    // The REQ socket already pairs the reply with this request; the id is a second check. An
    // error reply may carry a null id: the agent answers too_large without parsing the frame.
    const bool unparsed_error = reply->id.is_null() && !reply->status.ok();
    if (reply->id != nlohmann::json(id) && !unparsed_error) {
      return Status(ErrorCode::kInternal,
                    "reply from " + endpoint + " carries id " +
                        reply->id.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                        " instead of \"" + id + "\"");
    }
    return reply;
  } catch (const zmq::error_t& e) {
    return Status(ErrorCode::kInternal, "talking to " + endpoint + " failed: " + e.what());
  } catch (const std::exception& e) {
    return Status(ErrorCode::kInternal, "talking to " + endpoint + " failed: " + e.what());
  }
}

}  // namespace lb::cli
