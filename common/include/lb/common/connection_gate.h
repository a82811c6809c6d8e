// ConnectionGate: counts the live connections of server sockets and says whether one more may
// be admitted, so that a flood of local connections cannot use up the process's descriptors.
//
// DESIGN: Watch() puts a ZeroMQ socket monitor (inproc PAIR) on a server socket before it binds;
// one thread per watched socket reads its events and keeps the set of connection descriptors
// accepted and not yet disconnected. The ZapHandler asks Admit(domain) during each handshake
// (a NULL handshake reaches ZAP because the socket has a ZAP domain): beyond `cap` open
// connections the handshake is refused and ZeroMQ closes the connection, so at most `cap`
// connections per socket stay open (plus those between accept and handshake, which ZeroMQ
// closes after its handshake timeout). ZeroMQ queues a connection's ACCEPTED event before its
// handshake reaches ZAP, and Admit waits (up to 500 ms) until the thread has read every event
// queued when it asked: the connection asking is always counted, however far the thread lags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "lb/proto/status.h"

namespace lb::common {

class ConnectionGate {
 public:
  ConnectionGate(zmq::context_t& context, std::size_t cap);
  ~ConnectionGate();  // stops and joins the monitor threads; before the context closes
  ConnectionGate(const ConnectionGate&) = delete;
  ConnectionGate& operator=(const ConnectionGate&) = delete;

  // Counts `socket`'s connections under `domain` from now on. Call before it binds, from the
  // thread that owns it. One socket per domain: a domain already watched is an error.
  proto::Status Watch(zmq::socket_ref socket, const std::string& domain);
  // True when the socket of `domain` has at most `cap` open connections (the one asking
  // included); a domain not watched is always admitted. Counts refusals. Thread-safe.
  bool Admit(const std::string& domain);
  std::size_t open(const std::string& domain) const;
  std::size_t cap() const;
  uint64_t refused() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lb::common
