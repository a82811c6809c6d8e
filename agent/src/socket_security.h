// Who may talk to the agent's sockets (SECURITY.md): CURVE on the command and event sockets
// with the ZAP allow-list, the pinned controller key on the fleet sockets, and the refusal to
// expose an unauthenticated socket beyond this host.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lb/common/connection_gate.h"
#include "lb/common/curve_socket.h"
#include "lb/common/settings.h"
#include "lb/common/zap_handler.h"
#include "lb/proto/status.h"

namespace lb::agent {

// The endpoint rules, without touching a file or a socket: an error when an endpoint would be
// reachable from other hosts without authentication (and allow_insecure is off) or when a key
// setting is missing its counterpart; otherwise the warnings to log at start.
proto::Result<std::vector<std::string>> CheckSocketPolicy(const common::Settings& settings);

class SocketSecurity {
 public:
  // Applies CheckSocketPolicy, reads the certificates and starts the ZAP handler on `context`
  // (which must outlive the result): with CURVE it checks client keys; always, it refuses a
  // connection beyond `max_connections` open on the same socket (ConnectionGate). `log`
  // receives the handler's lines.
  static proto::Result<std::unique_ptr<SocketSecurity>> SetUp(zmq::context_t& context,
                                                              const common::Settings& settings,
                                                              common::ZapHandler::LogFn log,
                                                              std::size_t max_connections);

  // What to apply to the command/event sockets (the connection count, a ZAP domain, CURVE when
  // on) and to the fleet sockets (empty without controller_public_key).
  common::SocketSetup Server(std::string domain) const;
  common::SocketSetup FleetClient() const;

  bool curve() const { return curve_; }
  // SIGHUP: re-reads the allow-list (curve_clients) now: its number of keys, or why the
  // previous list stays. Precondition: curve().
  proto::Result<std::size_t> ReloadAllowList() { return zap_->Reload(); }
  const std::vector<std::string>& warnings() const { return warnings_; }
  // {"curve": bool, "clients_accepted", "clients_refused", "fleet_curve": bool,
  //  "connections": {"max", "command", "events", "refused"}}.
  nlohmann::json Info() const;

 private:
  SocketSecurity() = default;
  common::CurveCertificate own_;
  std::string controller_key_;
  bool curve_ = false;
  // The gate before the handler: the handler's thread asks the gate, so it stops first.
  std::unique_ptr<common::ConnectionGate> gate_;
  std::unique_ptr<common::ZapHandler> zap_;
  std::vector<std::string> warnings_;
};

}  // namespace lb::agent
