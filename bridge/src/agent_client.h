// AgentClient: the bridge's side of the agent's ZeroMQ command socket.
//
// DESIGN: every Call() opens its own REQ socket, sends one request, waits for one reply and
// closes the socket (ZMQ_LINGER 0). No socket outlives a call, so a socket whose request timed
// out is never reused, and the bridge recovers by itself when the agent restarts: the next call
// simply connects again. Sockets are never shared between threads, which is what makes Call()
// safe to use from httplib's many handler threads at once; only the context is shared, and a
// zmq context is thread-safe. A connect per call costs well under a millisecond next to the
// agent, which is nothing beside a reload.
//
// Telling "agent down" from "agent slow": the socket is created with ZMQ_IMMEDIATE, so a send
// blocks until a connection to the agent is complete (TCP connect and ZMTP handshake done).
//   - no connection within kConnectTimeout (or `timeout`, if shorter) -> kUnavailable ("agent at
//     <endpoint> is not reachable"): nothing listens there, or the connection is refused or
//     filtered. A local connection completes in well under a millisecond, and libzmq retries a
//     refused one every 100 ms, so an agent that restarts within that window is still reached;
//     an agent that is down is reported after kConnectTimeout, not after the whole `timeout`.
//   - connected, but no reply before the deadline -> kTimeout: the agent holds the request
//     (a slow reload, a stuck thread). The request may still run to completion on the agent.
// Both share one deadline: a Call() never takes much longer than `timeout` in total.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "lb/common/curve.h"
#include "lb/proto/codec.h"
#include "lb/proto/status.h"

namespace zmq {
class context_t;
}

namespace lb::bridge {

class AgentClient {
 public:
  // How long a call waits for a connection to the agent before it reports kUnavailable.
  static constexpr std::chrono::milliseconds kConnectTimeout{2000};

  // `context` must outlive the client. `endpoint` is a ZeroMQ endpoint the agent's ROUTER is
  // bound to (tcp://127.0.0.1:5555, ipc:///run/lb-agent/cmd.sock). `timeout` bounds each Call().
  // With `curve`, every socket is a CURVE client with those keys (the agent's [security]
  // curve_secret_key is set); an agent that refuses the key is reported as kUnavailable.
  AgentClient(zmq::context_t& context, std::string endpoint, std::chrono::milliseconds timeout,
              proto::DecodeLimits reply_limits = proto::DecodeLimits(),
              std::optional<common::CurveClientKeys> curve = std::nullopt);

  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  // Sends {"cmd": cmd, "args": args} and waits for the agent's answer. Thread-safe.
  //
  // The Result is ok whenever the agent answered: the agent's own verdict, success or error
  // (invalid_config, conflict, ...), is in Reply::status. A Result that is not ok means the
  // agent gave no usable answer:
  //   kUnavailable  no connection to the agent within the timeout;
  //   kTimeout      connected, but no reply within the timeout;
  //   kInternal     an unreadable reply, or a ZeroMQ failure (bad endpoint, too many sockets).
  // Never throws.
  proto::Result<proto::Reply> Call(const std::string& cmd, nlohmann::json args);

  const std::string& endpoint() const { return endpoint_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  zmq::context_t& context_;
  const std::string endpoint_;
  const std::chrono::milliseconds timeout_;
  const proto::DecodeLimits reply_limits_;
  const std::optional<common::CurveClientKeys> curve_;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace lb::bridge
