// CommandClient: one request on a command socket and its reply (proto/PROTOCOL.md): lb-agent's
// command socket, or lb-controller's control socket, which speaks the same envelope. The only
// code that sends on a REQ socket; lb-bridge, lbctl, lb-bench and the tests all call through it.
// Every zmq::error_t of a call stops here.
//
// DESIGN: a REQ socket per call (a fresh one, or an idle one from the pool below), ZMQ_LINGER 0,
// closed on return whenever the call failed, so a request that timed out can never leave a
// stuck socket or a stray reply behind, and a client recovers by itself when the server
// restarts (libzmq reconnects a pooled socket by itself). Sockets are never shared between threads,
// which makes Call() safe from many threads at once (only the context is shared, and a zmq context
// is thread-safe). ZMQ_IMMEDIATE makes the send wait for a completed connection (TCP or IPC connect
// plus the ZMTP handshake): that is how "nobody there" (kUnavailable) is told apart from "there,
// but silent" (kTimeout). libzmq retries a refused connection every 100 ms, so a client with a long
// connect budget waits for a server that is still starting. Connection and reply share one
// deadline. A HandshakeMonitor watches the connection meanwhile: a CURVE key the server refuses
// ends the call at once (kUnavailable naming the key), and any other failed handshake is named in
// the message of the timeout.
//
// With keep_connections > 0 the socket of a successful call goes back to a pool of at most
// that many idle connections, and the next call takes one from there instead of connecting
// (lb-bridge: a socket and a ZMTP handshake per HTTP request cost more than the request; lb-bench
// measures requests, not connections). A call that fails in any way closes its socket, so the
// pool only ever holds sockets whose last request got its reply. Calls still run at once on
// many threads: each takes its own socket, from the pool or new.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lb/client/handshake_monitor.h"
#include "lb/common/curve_socket.h"
#include "lb/proto/codec.h"
#include "lb/proto/status.h"

namespace zmq {
class context_t;
}

namespace lb::client {

struct CommandClientOptions {
  // The server's ROUTER: tcp://127.0.0.1:5555, ipc:///run/lb-agent/cmd.sock.
  std::string endpoint;
  // The whole budget of one call, connection included.
  std::chrono::milliseconds timeout{30000};
  // How long a call waits for a connection before it gives up with kUnavailable; never more
  // than `timeout`. Unset: the whole timeout (lbctl waits for an agent that is starting; the
  // bridge answers 503 after two seconds instead).
  std::optional<std::chrono::milliseconds> connect_timeout;
  // The largest reply accepted (libzmq drops a larger one; the call then times out).
  std::size_t max_reply_bytes = 256 * 1024 * 1024;
  // Set: every socket is a CURVE client with these keys (the server's [security]
  // curve_secret_key is set).
  std::optional<common::CurveClientKeys> curve;
  // How many idle connections are kept for later calls (see the DESIGN above); 0: none.
  std::size_t keep_connections = 0;
  // Names in the messages; the request ids are "<client>-<pid>-<n>".
  Wording wording;
};

class CommandClient {
 public:
  // `context` must outlive the client.
  CommandClient(zmq::context_t& context, CommandClientOptions options);
  ~CommandClient();
  CommandClient(const CommandClient&) = delete;
  CommandClient& operator=(const CommandClient&) = delete;

  // Sends {"v": 1, "id", "cmd", "args"} and waits at most the timeout (or `timeout`) in total.
  //
  // The Result is ok whenever the server answered: its verdict (ok, or invalid_config,
  // conflict, ...) is in Reply::status. An error reply with a null id (the agent answers
  // too_large without parsing the frame) is such an answer. Otherwise:
  //   kUnavailable  no connection within the connect budget (nothing listens there, not a
  //                 ZeroMQ peer, or the CURVE handshake keeps failing), or the server refused
  //                 this client's CURVE key (at once: its ZAP handler answered);
  //   kTimeout      connected, but no reply within the budget (the command may still
  //                 complete on the server);
  //   kBadRequest   the endpoint is not a valid ZeroMQ endpoint (a usage or settings error);
  //   kInternal     an unreadable reply, a reply to another request, another ZeroMQ failure.
  // The message names the endpoint and says what to check. Never throws. Thread-safe.
  proto::Result<proto::Reply> Call(const std::string& cmd, const nlohmann::json& args);
  proto::Result<proto::Reply> Call(const std::string& cmd, const nlohmann::json& args,
                                   std::chrono::milliseconds timeout);

  const std::string& endpoint() const { return options_.endpoint; }
  std::chrono::milliseconds timeout() const { return options_.timeout; }

 private:
  struct Connection;
  proto::Result<proto::Reply> CallOn(Connection& connection, const std::string& cmd,
                                     const nlohmann::json& args, std::chrono::milliseconds timeout);
  proto::Result<std::unique_ptr<Connection>> Connect(std::chrono::milliseconds timeout);
  std::unique_ptr<Connection> TakeIdle();
  void ReturnIdle(std::unique_ptr<Connection> connection);

  zmq::context_t& context_;
  const CommandClientOptions options_;
  std::atomic<uint64_t> next_id_{1};
  std::mutex idle_mutex_;
  std::vector<std::unique_ptr<Connection>> idle_;  // at most options_.keep_connections
};

}  // namespace lb::client
