#include "lb/client/handshake_monitor.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <zmq.hpp>

namespace lb::client {
namespace {

constexpr int kEvents = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                        ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED;

std::string NextMonitorEndpoint() {
  static std::atomic<uint64_t> counter{0};
  return "inproc://lb-handshake-monitor-" + std::to_string(counter.fetch_add(1));
}

}  // namespace

HandshakeMonitor::HandshakeMonitor(zmq::context_t& context, zmq::socket_t& socket)
    : monitored_(socket) {
  const std::string endpoint = NextMonitorEndpoint();
  if (zmq_socket_monitor(socket.handle(), endpoint.c_str(), kEvents) != 0) {
    throw zmq::error_t();
  }
  pair_ = std::make_unique<zmq::socket_t>(context, zmq::socket_type::pair);
  pair_->set(zmq::sockopt::linger, 0);
  pair_->connect(endpoint);
}

HandshakeMonitor::~HandshakeMonitor() {
  // Stop the monitor before its PAIR goes away; errors do not matter any more.
  zmq_socket_monitor(monitored_.handle(), nullptr, 0);
}

zmq::socket_t& HandshakeMonitor::socket() { return *pair_; }

std::optional<HandshakeFailure> HandshakeMonitor::Drain() {
  while (true) {
    zmq::message_t header;
    if (!pair_->recv(header, zmq::recv_flags::dontwait)) break;
    bool more = header.more();
    while (more) {  // the endpoint frame
      zmq::message_t rest;
      if (!pair_->recv(rest, zmq::recv_flags::dontwait)) break;
      more = rest.more();
    }
    if (header.size() < 6) continue;
    uint16_t event = 0;
    uint32_t value = 0;
    std::memcpy(&event, header.data(), sizeof event);
    std::memcpy(&value, static_cast<const char*>(header.data()) + 2, sizeof value);
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      last_.reset();
      continue;
    }
    HandshakeFailure failure;
    failure.event = event;
    failure.value = value;
    failure.kind = event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? HandshakeFailure::Kind::kRefused
                                                            : HandshakeFailure::Kind::kOther;
    last_ = failure;
  }
  return last_;
}

std::string DescribeHandshakeFailure(const HandshakeFailure& failure, const std::string& client_key,
                                     const Wording& wording) {
  if (failure.kind == HandshakeFailure::Kind::kRefused) {
    return "refused " + wording.client + "'s CURVE key " + client_key + " (ZAP status " +
           std::to_string(failure.value) +
           "): add that public key to its curve_clients, or give a key that is there (" +
           wording.own_key + ")";
  }
  const std::string pass_keys = "pass " + wording.own_key + " (" + wording.client +
                                "'s secret certificate, whose public key is in its "
                                "curve_clients) and " +
                                wording.server_key + " (its public certificate)";
  if (failure.event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
      failure.value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
    // Seen when the client notices the mismatch before the server closes the connection.
    return client_key.empty()
               ? "uses CURVE and " + wording.client + " does not: " + pass_keys
               : "does not use CURVE: drop " + wording.own_key + "/" + wording.server_key +
                     (wording.keys_unset.empty() ? "" : " (and " + wording.keys_unset + ")") +
                     ", or turn CURVE on there";
  }
  std::string what = "failed the connection handshake";
  if (failure.event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && failure.value == EPIPE) {
    what = "closed the connection during the handshake";
  } else if (failure.event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%x", failure.value);
    what += " (ZeroMQ protocol error 0x" + std::string(hex) + ")";
  }
  if (client_key.empty()) return what + ": it probably uses CURVE; " + pass_keys;
  return what + ": CURVE on one side only, or " + wording.server_key +
         " is not its public certificate (" + wording.client + "'s key: " + client_key + ")";
}

}  // namespace lb::client
