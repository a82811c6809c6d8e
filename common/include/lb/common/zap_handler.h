// ZapHandler: the ZAP handler (RFC 27) of one ZeroMQ context, which decides every CURVE
// handshake of that context's server sockets from an allow-list (allow_list.h), and every
// handshake (CURVE or NULL: a plaintext server socket with a ZAP domain) by an admission
// callback (the ConnectionGate's connection cap).
//
// DESIGN: one thread of its own owns a REP socket bound to inproc://zeromq.zap.01. For each
// handshake it answers 200 (with the client's Z85 key as the user id, which the server socket
// reports as the message property "User-Id") when the key is in the allow-list, 400 otherwise.
// The allow-list is re-read, at most once a second, when the file or directory changed, and at
// once by Reload(); a list that fails to load keeps the previous one and is logged. Refusals are
// logged at most once a second. Must be started before the first server socket of the context binds
// (a handshake without a handler fails), and destroyed before the context.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "lb/proto/status.h"

namespace zmq {
class context_t;
}

namespace lb::common {

class ZapHandler {
 public:
  using LogFn = std::function<void(const std::string&)>;
  // Called with the socket's ZAP domain for each handshake that passed the key check; false
  // refuses it ("too many connections"). From the handler's thread.
  using AdmitFn = std::function<bool(const std::string& domain)>;
  // Reads the allow-list (its errors, see ReadAllowList), binds the handler's socket (kInternal
  // when the context already has a handler) and starts the thread. `log` (may be empty) gets the
  // handler's lines, from its thread. An empty `allow_list_path` accepts no CURVE client: only
  // NULL handshakes, decided by `admit` (may be empty: all admitted).
  static proto::Result<std::unique_ptr<ZapHandler>> Start(zmq::context_t& context,
                                                          std::string allow_list_path, LogFn log,
                                                          AdmitFn admit = {});
  ~ZapHandler();  // stops and joins the thread
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  // Re-reads the allow-list now, changed or not (SIGHUP): the number of keys it holds, or why it
  // could not be read (the previous list stays). Thread-safe.
  proto::Result<std::size_t> Reload();

  // Handshakes accepted and refused so far. Thread-safe.
  uint64_t accepted() const;
  uint64_t refused() const;
  // Handshakes refused by the admission callback (too many connections).
  uint64_t refused_busy() const;

 private:
  struct Impl;
  explicit ZapHandler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lb::common
