#include "command_server.h"

#include <chrono>
#include <cstdio>
#include <zmq.hpp>

#include "lb/common/log.h"
#include "lb/common/service_manager.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;
using Clock = std::chrono::steady_clock;

// More envelope frames than this is not a REQ or DEALER client: drop the message.
constexpr std::size_t kMaxEnvelopeFrames = 8;

std::string ShortId(const json& id) {
  if (id.is_null()) return "-";
  // A string id as it is (the log quotes and escapes it when needed), anything else as JSON.
  std::string s = id.is_string() ? id.get<std::string>()
                                 : id.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

// Reads that succeeded are debug lines (a bridge polled every second would fill the log); every
// change, refusal and failure is an info line. The command name is the client's: common/log
// escapes whatever it holds.
void LogRequest(const std::string& cmd, const json& id, const Status& status, double ms) {
  char elapsed[32];
  std::snprintf(elapsed, sizeof elapsed, "%.1f", ms);
  const bool read = cmd == "ping" || cmd == "status" || cmd == "info" || cmd == "get_config" ||
                    cmd == "history" || cmd == "metrics";
  common::LogLine line(status.ok() && read ? common::LogLevel::kDebug : common::LogLevel::kInfo);
  line << "request";
  line.Field("cmd", cmd.empty() ? "-" : cmd)
      .Field("id", ShortId(id))
      .Field("outcome", status.ok() ? "ok" : std::string(proto::ErrorCodeName(status.code())))
      .Field("ms", elapsed);
}

}  // namespace

struct CommandServer::Impl {
  explicit Impl(zmq::context_t& ctx) : router(ctx, zmq::socket_type::router) {}
  zmq::socket_t router;
};

CommandServer::CommandServer(zmq::context_t& context, std::string endpoint,
                             proto::DecodeLimits limits, CommandHandler& handler)
    : context_(context),
      endpoint_(std::move(endpoint)),
      limits_(limits),
      handler_(handler),
      mailbox_(std::make_shared<Mailbox>()) {}

CommandServer::~CommandServer() = default;

Status CommandServer::Bind(const common::SocketSetup& secure) {
  try {
    impl_ = std::make_unique<Impl>(context_);
    impl_->router.set(zmq::sockopt::linger, 0);
    // A frame above the limit is cut off by ZeroMQ itself as soon as its header announces it
    // (the peer is disconnected), so no connection ever holds more than one frame's worth.
    // A config above max_config_bytes still fits in a frame and is answered `too_large`.
    impl_->router.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(limits_.max_frame_bytes));
    impl_->router.set(zmq::sockopt::sndhwm, 10000);
    // At most two received frames wait per connection (clients are REQ sockets, one request
    // at a time): a client that pipelines 16 MB reloads is held back in its own socket
    // buffers, not queued here. SECURITY.md has the bound across connections.
    impl_->router.set(zmq::sockopt::rcvhwm, 2);
    if (secure) secure(impl_->router);
    impl_->router.bind(endpoint_);
    bound_ = impl_->router.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status(ErrorCode::kInternal,
                  "cannot bind command socket " + endpoint_ + ": " + e.what());
  }
  return Status::Ok();
}

std::string CommandServer::bound_endpoint() const { return bound_; }

ReplyFn CommandServer::MakeReply(std::vector<std::string> envelope, const proto::Request& request) {
  std::weak_ptr<Mailbox> weak = mailbox_;
  auto start = Clock::now();
  json id = request.id;
  std::string cmd = request.cmd;
  return [weak, envelope = std::move(envelope), start, id, cmd](const Status& status,
                                                                const json& result) {
    std::string payload = status.ok()
                              ? proto::EncodeOkReply(id, result.is_null() ? json::object() : result)
                              : proto::EncodeErrorReply(id, status);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    LogRequest(cmd, id, status, ms);
    auto mailbox = weak.lock();
    if (mailbox) mailbox->Push(Outgoing{envelope, std::move(payload)});
  };
}

void CommandServer::Run(const std::atomic<bool>& stop) {
  zmq::socket_t& router = impl_->router;
  auto send_replies = [&] {
    std::deque<Outgoing> out = mailbox_->TakeAll();
    for (auto& msg : out) {
      try {
        for (auto& frame : msg.envelope) {
          router.send(zmq::buffer(frame), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
        }
        router.send(zmq::buffer(msg.payload), zmq::send_flags::dontwait);
      } catch (const zmq::error_t& e) {
        common::LogWarning() << "reply dropped: " << e.what();
      }
    }
  };
  while (!stop) {
    common::ServiceWatchdog();  // this loop turns at least every 200 ms while it serves
    zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, mailbox_->fd(), ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(200));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      common::LogError() << "command socket poll failed: " << e.what();
      return;
    }
    if (items[1].revents & ZMQ_POLLIN) send_replies();
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    // Read everything that is waiting, so one poll wake-up serves a burst of clients; the
    // replies ready meanwhile go out after each request, so that a stream of large frames
    // never holds up another client's answer.
    while (true) {
      send_replies();
      std::vector<zmq::message_t> frames;
      try {
        zmq::message_t frame;
        if (!router.recv(frame, zmq::recv_flags::dontwait)) break;
        frames.push_back(std::move(frame));
        while (frames.back().more()) {
          zmq::message_t next;
          if (!router.recv(next, zmq::recv_flags::dontwait)) break;
          frames.push_back(std::move(next));
        }
      } catch (const zmq::error_t& e) {
        common::LogError() << "command socket receive failed: " << e.what();
        break;
      }
      if (frames.size() < 2 || frames.size() > kMaxEnvelopeFrames + 1) continue;
      std::vector<std::string> envelope;
      for (std::size_t i = 0; i + 1 < frames.size(); ++i) envelope.push_back(frames[i].to_string());
      const zmq::message_t& body = frames.back();
      proto::DecodedRequest decoded = proto::DecodeRequest(
          std::string_view(static_cast<const char*>(body.data()), body.size()), limits_);
      ReplyFn reply = MakeReply(std::move(envelope), decoded.request);
      if (!decoded.status.ok()) {
        reply(decoded.status, nullptr);
        continue;
      }
      handler_.Handle(std::move(decoded.request), std::move(reply));
    }
  }
}

}  // namespace lb::agent
