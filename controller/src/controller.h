// Controller: the sockets of lb-controller around a ControllerCore (controller_core.h), which
// makes every decision.
//
// DESIGN: one thread does everything: it owns the three sockets and the core, polls the agents'
// ROUTER and the control ROUTER, and publishes beacons on time (each beacon tick also lets the
// core decide pending pushes whose agents went silent). Nothing here blocks: sends are
// non-blocking (a full queue to an agent drops that message, which the protocol recovers from:
// the agent's next hello), and the poll wakes at least every 100 ms to look at the stop flag. A
// push is saved to the state store by the core before it is published.
//   PUB     pushes and beacons, [topic, msgpack];
//   ROUTER  agents' DEALERs: [routing id, msgpack] both ways (ROUTER_HANDOVER: an agent that
//           reconnects takes its id over from its dead connection at once);
//   ROUTER  control clients (lbctl fleet push/agents with REQ; DEALER works too): the command
//           socket's envelope, proto/codec.h.
// A standby of an HA fleet ([store] etcd_endpoints) binds only the control socket
// (BindControl) and answers it with ServeStandby until it leads; then Open binds the rest.
// Threads: this one, and with CURVE the ZapHandler's (it only logs through common/log.h).
//
// SECURITY: with a certificate and an allow-list, PUB and ROUTER are CURVE servers (a ZapHandler
// on the controller's context, started before they bind, accepts only the listed agents' keys
// and re-reads the list when it changes); agents pin the controller's public key, and the core
// pins each agent id to its key. Without them, PUB and ROUTER bind only to local endpoints
// unless allow_insecure. The control socket has no authentication at all: it binds only to
// local endpoints (IsLocalEndpoint), always.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "etcd_client.h"
#include "lb/common/curve_socket.h"
#include "lb/common/zap_handler.h"
#include "lb/proto/codec.h"
#include "lb/proto/status.h"
#include "settings.h"
#include "state_store.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace lb::controller {

class ControllerCore;

// What Open() checks before touching a socket or the state: the endpoint rules, the etcd
// client's settings (its files read, no connection), the certificate, the allow-list and the
// agent keys (read, not kept). kBadRequest with the reason; on success, the warnings to log (a
// non-local endpoint with allow_insecure, plaintext etcd beyond loopback). lb-controller
// --check runs exactly this.
proto::Result<std::vector<std::string>> CheckSettings(const ControllerSettings& settings);
// [store]'s etcd client options.
EtcdOptions EtcdClientOptions(const ControllerSettings& settings);

class Controller {
 public:
  // `context` and `settings` must outlive the controller.
  Controller(zmq::context_t& context, const ControllerSettings& settings);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // CheckSettings, then (with CURVE) starts the ZAP handler, opens and loads the state (the
  // state dir of the settings, or `store` when given), then binds the three sockets.
  // kBadRequest: an endpoint ZeroMQ cannot parse or the rules refuse, an unusable certificate,
  // allow-list or agent keys; kInternal: anything else (endpoint in use, state dir locked or
  // unusable, a malformed state file). Call once. The thread that calls Run() owns the sockets
  // from then on; Open() may run on another thread if it happens before.
  proto::Status Open(std::unique_ptr<StateStore> store = nullptr);

  // A standby ([store] etcd_endpoints, before it leads): CheckSettings, then binds the control
  // socket only (Open keeps it), so that lbctl hears at once that this controller does not
  // lead, and who does. Errors as Open's. The calling thread owns the socket from then on.
  proto::Status BindControl();
  // Answers every control request that arrives within `wait` with kUnavailable "controller
  // <id> stands by: <why>" (who leads, or why nobody does), and pings systemd's watchdog.
  // Precondition: BindControl().
  void ServeStandby(std::chrono::milliseconds wait, const std::string& why);

  // The endpoints as bound: a tcp port 0 becomes the port the kernel chose. Valid after Open().
  const std::string& pub_endpoint() const { return pub_bound_; }
  const std::string& router_endpoint() const { return router_bound_; }
  const std::string& control_endpoint() const { return control_bound_; }

  // Serves until `stop` is set (looked at least every 100 ms). Returns ok then, or the ZeroMQ
  // failure that made serving impossible, or kUnavailable (and deposed() is true) as soon as
  // the store says this controller may no longer lead (etcd: its lease may have expired).
  proto::Status Run(const std::atomic<bool>& stop);
  bool deposed() const { return deposed_; }

  // SIGHUP, from any thread: re-reads the allow-list (curve_clients) now. The number of keys, or
  // why the previous list stays. Precondition: Open() succeeded with CURVE (zap() not null).
  proto::Result<std::size_t> ReloadAllowList() { return zap_->Reload(); }

  // The controller's CURVE public key ("" without CURVE), and the ZAP handler's counts.
  const std::string& public_key() const { return own_.public_key; }
  const common::ZapHandler* zap() const { return zap_.get(); }

 private:
  // False once the store says this controller may no longer lead (deposed_ is then set): checked
  // before every send to agents, so nothing goes out after the lease may have ended.
  bool StillLeads();
  void Publish(const std::string& topic, const std::string& body);
  void ServeAgents(int64_t now_ms);
  void ServeControl(int64_t now_ms);
  // Receives control requests (at most kMaxMessagesPerWake) and sends back what `answer` makes
  // of each decoded one (an unreadable one gets its decoding error).
  void ServeControlWith(const std::function<std::string(const proto::DecodedRequest&)>& answer);
  proto::Status Bind(int type, const std::string& what, const std::string& endpoint,
                     std::unique_ptr<zmq::socket_t>* socket, std::string* bound);

  zmq::context_t& context_;
  const ControllerSettings& settings_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<ControllerCore> core_;
  common::CurveCertificate own_;
  std::unique_ptr<common::ZapHandler> zap_;  // declared before the sockets: outlives them
  std::unique_ptr<zmq::socket_t> pub_;
  std::unique_ptr<zmq::socket_t> router_;
  std::unique_ptr<zmq::socket_t> control_;
  std::string pub_bound_;
  std::string router_bound_;
  std::string control_bound_;
  bool deposed_ = false;
};

}  // namespace lb::controller
