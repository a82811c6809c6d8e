// CommandServer: the agent's ZeroMQ command socket.
//
// DESIGN: one ROUTER socket, owned by the thread that calls Run(). REQ and DEALER clients talk
// to it unchanged: every frame before the last is envelope (routing id, and the empty delimiter
// of a REQ), the last frame is the request. Run() decodes each request and hands it to the
// CommandHandler, which must not block: slow commands go to worker threads, which answer
// through the ReplyFn. A ReplyFn may be called from any thread, exactly once; it queues the
// encoded reply and wakes the ROUTER thread through an eventfd, so the socket itself is only
// ever touched by its own thread. Every request is logged on stderr as one line: command, id,
// outcome, milliseconds.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lb/common/curve_socket.h"
#include "lb/common/mailbox.h"
#include "lb/proto/codec.h"
#include "reply.h"

namespace zmq {
class context_t;
}

namespace lb::agent {

class CommandHandler {
 public:
  virtual ~CommandHandler() = default;
  // Called on the ROUTER thread; must return quickly. `reply` answers the request.
  virtual void Handle(proto::Request request, ReplyFn reply) = 0;
};

class CommandServer {
 public:
  // `context` and `handler` must outlive the server.
  CommandServer(zmq::context_t& context, std::string endpoint, proto::DecodeLimits limits,
                CommandHandler& handler);
  ~CommandServer();

  // Binds the socket, after `secure` (CURVE server options) when given. Fails with a message
  // naming the endpoint.
  proto::Status Bind(const common::SocketSetup& secure = {});
  // The endpoint actually bound (tcp://127.0.0.1:0 becomes the real port).
  std::string bound_endpoint() const;
  // Serves until `stop` is set (checked at least every 200 ms).
  void Run(const std::atomic<bool>& stop);

 private:
  struct Outgoing {
    std::vector<std::string> envelope;
    std::string payload;
  };
  ReplyFn MakeReply(std::vector<std::string> envelope, const proto::Request& request);

  zmq::context_t& context_;
  std::string endpoint_;
  std::string bound_;
  proto::DecodeLimits limits_;
  CommandHandler& handler_;
  struct Impl;
  std::unique_ptr<Impl> impl_;

  // Shared with the ReplyFns, which may outlive a request but not the server.
  using Mailbox = common::Mailbox<Outgoing>;
  std::shared_ptr<Mailbox> mailbox_;
};

}  // namespace lb::agent
