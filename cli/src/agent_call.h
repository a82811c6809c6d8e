// CallAgent: one request on lb-agent's command socket (proto/PROTOCOL.md), the only code in
// lbctl that sends on a REQ socket; every zmq::error_t of it stops here.
//
// DESIGN: a fresh REQ socket per call, ZMQ_LINGER 0, closed on return whatever happened, so a
// request that timed out can never leave a stuck socket or a stray reply behind. ZMQ_IMMEDIATE
// makes the send wait for a completed connection (TCP or IPC connect plus the ZMTP handshake):
// that is how "nobody there" is told apart from "there, but silent", and it lets a script run
// `lbctl --timeout 10 ping` to wait for an agent that is still starting (libzmq retries a
// refused connection every 100 ms). ZMQ_CONNECT_TIMEOUT bounds each TCP attempt, so a filtered
// port is retried too instead of hanging in one SYN. Connection and reply share one deadline.
// A HandshakeMonitor watches the connection meanwhile: a CURVE key the agent refuses ends the
// call at once, and any other failed handshake is named in the timeout's message.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "lb/proto/codec.h"
#include "lb/proto/status.h"

namespace zmq {
class context_t;
}
namespace lb::common {
struct CurveClientKeys;
}

namespace lb::cli {

// Sends {"v": 1, "id", "cmd", "args"} to `endpoint` and waits at most `timeout` in total.
// With `keys`, the socket is a CURVE client (lbctl's own key pair, the agent's public key).
//
// The Result is ok whenever the agent answered; its verdict (ok, or invalid_config, conflict,
// ...) is in Reply::status. Otherwise:
//   kUnavailable  no connection within `timeout` (nothing listens there, not a ZeroMQ peer, or
//                 the CURVE handshake keeps failing), or the agent refused lbctl's CURVE key
//                 (at once: its ZAP handler answered, waiting cannot help);
//   kTimeout      connected, but no reply within `timeout` (the command may still complete);
//   kBadRequest   `endpoint` is not a valid ZeroMQ endpoint (a usage error);
//   kInternal     an unreadable reply, or another ZeroMQ failure.
// The message names the endpoint and says what to check. Never throws.
proto::Result<proto::Reply> CallAgent(zmq::context_t& context, const std::string& endpoint,
                                      const std::string& cmd, const nlohmann::json& args,
                                      std::chrono::milliseconds timeout,
                                      const common::CurveClientKeys* keys = nullptr);

// The largest reply accepted: a get_config of a config far above any sane max_config_bytes.
inline constexpr std::size_t kMaxReplyBytes = 256 * 1024 * 1024;

}  // namespace lb::cli
