// HandshakeMonitor: why a connection to a CURVE server never completes. A refused key, a wrong
// server key or CURVE on one side only all look alike from a client socket: the connection is
// made, the handshake fails, libzmq reconnects and fails again, and no message ever goes
// through. A socket monitor (zmq_socket_monitor on an inproc PAIR) reports those failures, so a
// client can say which one it is instead of "no answer".
//
// DESIGN: no thread. The owner polls socket() next to its own socket, or calls Drain() when its
// own wait ended; events pile up in the PAIR socket meanwhile (a few per reconnect interval).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace lb::client {

struct HandshakeFailure {
  enum class Kind {
    // The server's ZAP handler said no (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH): the client's key is
    // not in its allow-list. Definitive: retrying cannot help.
    kRefused,
    // Anything else. Seen from the client, CURVE on one side only and a wrong server key look
    // the same: the server closes the connection during the handshake (NO_DETAIL, EPIPE).
    kOther,
  };
  Kind kind = Kind::kOther;
  uint16_t event = 0;  // ZMQ_EVENT_HANDSHAKE_FAILED_*
  uint32_t value = 0;  // the ZAP status code, a ZMQ_PROTOCOL_ERROR_* or an errno
};

class HandshakeMonitor {
 public:
  // Monitors `socket`, which must not have connected yet and must outlive the monitor. Throws
  // zmq::error_t.
  HandshakeMonitor(zmq::context_t& context, zmq::socket_t& socket);
  ~HandshakeMonitor();
  HandshakeMonitor(const HandshakeMonitor&) = delete;
  HandshakeMonitor& operator=(const HandshakeMonitor&) = delete;

  // The PAIR socket that receives the events, for a poll set (POLLIN: call Drain()).
  zmq::socket_t& socket();

  // Reads every pending event; the newest handshake failure seen so far (also from earlier
  // calls), or nullopt when there was none or a handshake has since succeeded.
  std::optional<HandshakeFailure> Drain();

 private:
  zmq::socket_t& monitored_;
  std::unique_ptr<zmq::socket_t> pair_;
  std::optional<HandshakeFailure> last_;
};

// How a client names itself, its peer and its settings in the messages a person reads.
struct Wording {
  std::string client = "lbctl";                       // "refused lbctl's CURVE key"
  std::string peer = "the agent";                     // "the agent at ENDPOINT ..."
  std::string program = "lb-agent";                   // "is lb-agent running?"
  std::string endpoint_setting = "command_endpoint";  // "is that its command_endpoint?"
  std::string own_key = "--curve-key";      // where the client's secret key is set ("": no CURVE)
  std::string server_key = "--server-key";  // where the server's public key is set
  std::string keys_unset = "LBCTL_CURVE_KEY/LBCTL_SERVER_KEY";  // other places to unset them
};

// What a failure means, in one clause that completes "<peer> ...": e.g. "refused lbctl's CURVE
// key ...". `client_key` is the client's public key (empty: plaintext).
std::string DescribeHandshakeFailure(const HandshakeFailure& failure, const std::string& client_key,
                                     const Wording& wording = {});

}  // namespace lb::client
