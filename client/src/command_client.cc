#include "lb/client/command_client.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <zmq.hpp>

#include "lb/client/describe.h"

namespace lb::client {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;
using std::chrono::milliseconds;

// How long one TCP connection attempt may take before libzmq gives up on it and retries.
constexpr milliseconds kConnectAttemptTimeout{5000};
// Above the agent's default max_config_bytes (16 MiB): worth a hint when no answer comes.
constexpr std::size_t kLargeRequestBytes = 16 * 1024 * 1024;

// Milliseconds left before `deadline`, at least 1 (0 would mean "do not wait", -1 "forever").
int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 1, INT32_MAX));
}

}  // namespace

struct CommandClient::Connection {
  explicit Connection(zmq::context_t& context) : socket(context, zmq::socket_type::req) {}
  zmq::socket_t socket;
  std::unique_ptr<HandshakeMonitor> monitor;  // destroyed before the socket
  bool connected = false;                     // a request went through on it
};

CommandClient::CommandClient(zmq::context_t& context, CommandClientOptions options)
    : context_(context), options_(std::move(options)) {}

CommandClient::~CommandClient() = default;

Result<std::unique_ptr<CommandClient::Connection>> CommandClient::Connect(milliseconds timeout) {
  const milliseconds connect_budget = std::min(timeout, options_.connect_timeout.value_or(timeout));
  auto connection = std::make_unique<Connection>(context_);
  zmq::socket_t& socket = connection->socket;
  socket.set(zmq::sockopt::linger, 0);
  // Queue only to completed connections: the send then waits for the server (see the DESIGN).
  socket.set(zmq::sockopt::immediate, true);
  socket.set(zmq::sockopt::connect_timeout,
             static_cast<int>(
                 std::max<int64_t>(1, std::min(connect_budget, kConnectAttemptTimeout).count())));
  // A reply above the limit is dropped by libzmq instead of being buffered.
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(options_.max_reply_bytes));
  if (options_.curve) {
    common::MakeCurveClient(socket, options_.curve->own, options_.curve->server_public_key);
  }
  connection->monitor = std::make_unique<HandshakeMonitor>(context_, socket);
  try {
    socket.connect(options_.endpoint);
  } catch (const zmq::error_t& e) {
    if (e.num() == EINVAL || e.num() == EPROTONOSUPPORT || e.num() == ENOENT) {
      return Status(ErrorCode::kBadRequest, "cannot use \"" + options_.endpoint + "\" as " +
                                                options_.wording.peer + "'s endpoint: " + e.what());
    }
    throw;
  }
  return connection;
}

Result<proto::Reply> CommandClient::Call(const std::string& cmd, const json& args) {
  return Call(cmd, args, options_.timeout);
}

Result<proto::Reply> CommandClient::Call(const std::string& cmd, const json& args,
                                         milliseconds timeout) {
  try {
    std::unique_ptr<Connection> connection = TakeIdle();
    if (!connection) {
      auto fresh = Connect(timeout);
      if (!fresh.ok()) return fresh.status();
      connection = std::move(*fresh);
    }
    Result<proto::Reply> reply = CallOn(*connection, cmd, args, timeout);
    // A REQ socket without its reply is stuck: only answered ones are kept.
    if (reply.ok()) ReturnIdle(std::move(connection));
    return reply;
  } catch (const std::exception& e) {
    return Status(ErrorCode::kInternal,
                  "talking to " + options_.endpoint + " failed: " + std::string(e.what()));
  }
}

std::unique_ptr<CommandClient::Connection> CommandClient::TakeIdle() {
  std::lock_guard<std::mutex> lock(idle_mutex_);
  if (idle_.empty()) return nullptr;
  std::unique_ptr<Connection> connection = std::move(idle_.back());
  idle_.pop_back();
  return connection;
}

void CommandClient::ReturnIdle(std::unique_ptr<Connection> connection) {
  std::lock_guard<std::mutex> lock(idle_mutex_);
  if (idle_.size() < options_.keep_connections) idle_.push_back(std::move(connection));
  // else: closed here, at once (ZMQ_LINGER 0)
}

Result<proto::Reply> CommandClient::CallOn(Connection& connection, const std::string& cmd,
                                           const json& args, milliseconds timeout) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + timeout;
  const Clock::time_point connect_deadline =
      start + std::min(timeout, options_.connect_timeout.value_or(timeout));
  const Wording& w = options_.wording;
  const std::string id = w.client + "-" + std::to_string(getpid()) + "-" +
                         std::to_string(next_id_.fetch_add(1, std::memory_order_relaxed));
  const std::string frame = proto::EncodeRequest(proto::Request{id, cmd, args});
  const std::string client_key = options_.curve ? options_.curve->own.public_key : "";
  zmq::socket_t& socket = connection.socket;
  HandshakeMonitor& monitor = *connection.monitor;

  // ZMQ_IMMEDIATE: the socket becomes writable once a connection completed its handshake.
  bool sent = false;
  while (!sent && Clock::now() < connect_deadline) {
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLOUT, 0},
                               {monitor.socket().handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, milliseconds(RemainingMs(connect_deadline)));
    if ((items[1].revents & ZMQ_POLLIN) != 0) {
      std::optional<HandshakeFailure> failure = monitor.Drain();
      if (failure && failure->kind == HandshakeFailure::Kind::kRefused) {
        return Status(ErrorCode::kUnavailable,
                      w.peer + " at " + options_.endpoint + " " +
                          DescribeHandshakeFailure(*failure, client_key, w));
      }
    }
    if ((items[0].revents & ZMQ_POLLOUT) != 0) {
      sent = socket.send(zmq::buffer(frame), zmq::send_flags::dontwait).has_value();
    }
  }
  if (!sent) {
    const std::string within =
        "no answer from " + options_.endpoint + " within " +
        DescribeSeconds(std::chrono::duration_cast<milliseconds>(connect_deadline - start));
    // A peer without CURVE (no key setting to name, e.g. the controller's control socket) fails
    // a handshake only while it goes away: the plain hint below fits that better.
    std::optional<HandshakeFailure> failure = monitor.Drain();
    if (failure && !w.own_key.empty()) {
      return Status(ErrorCode::kUnavailable, within + ": " + w.peer + " " +
                                                 DescribeHandshakeFailure(*failure, client_key, w));
    }
    std::string hint = "is " + w.program + " running? is that its " + w.endpoint_setting + "?";
    if (options_.curve) {
      hint += " if " + w.peer + " uses CURVE, check " + w.own_key + "/" + w.server_key +
              " and that this key is in its curve_clients";
    } else if (!w.own_key.empty()) {
      hint += " if " + w.peer + " uses CURVE, pass " + w.own_key + " and " + w.server_key;
    }
    return Status(ErrorCode::kUnavailable, within + " (" + hint + ")");
  }
  connection.connected = true;
  socket.set(zmq::sockopt::rcvtimeo, RemainingMs(deadline));
  zmq::message_t message;
  if (!socket.recv(message, zmq::recv_flags::none)) {
    std::string why = w.peer +
                      " is connected but busy or stuck; the command may still complete "
                      "there";
    if (frame.size() > kLargeRequestBytes) {
      // The agent drops a frame far above its max_config_bytes without answering.
      why = "a request of " + std::to_string(frame.size() >> 20) +
            " MiB may be far above the agent's max_config_bytes, which makes it drop the "
            "request unanswered; or " +
            why;
    }
    return Status(ErrorCode::kTimeout, "no answer from " + options_.endpoint + " to `" + cmd +
                                           "` within " + DescribeSeconds(timeout) + " (" + why +
                                           ")");
  }
  proto::DecodeLimits limits;
  limits.max_frame_bytes = options_.max_reply_bytes;
  Result<proto::Reply> reply = proto::DecodeReply(message.to_string_view(), limits);
  if (!reply.ok()) {
    return Status(ErrorCode::kInternal, "unreadable reply from " + options_.endpoint + ": " +
                                            reply.status().message() + " (is that " + w.program +
                                            "'s " + w.endpoint_setting + "?)");
  }
  // The REQ socket already pairs the reply with this request; the id is a second check. An
  // error reply may carry a null id: the agent answers too_large without parsing the frame.
  const bool unparsed_error = reply->id.is_null() && !reply->status.ok();
  if (reply->id != json(id) && !unparsed_error) {
    return Status(ErrorCode::kInternal,
                  "reply from " + options_.endpoint + " carries id " +
                      reply->id.dump(-1, ' ', false, json::error_handler_t::replace) +
                      " instead of \"" + id + "\"");
  }
  return reply;
}

}  // namespace lb::client
