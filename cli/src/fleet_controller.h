// FleetController: the sockets of `lbctl fleet serve` around a ControllerCore
// (fleet_controller_core.h), which makes every decision.
//
// DESIGN: one thread does everything: it owns the three sockets and the core, polls the agents'
// ROUTER and the control ROUTER, and publishes beacons on time. Nothing here blocks: sends are
// non-blocking (a full queue to an agent drops that message, which the protocol recovers from:
// the agent's next beacon-driven hello), and the poll wakes at least every 100 ms to look at
// stop_requested. A push is saved to the state dir by the core before it is published.
//   PUB     pushes and beacons, [topic, msgpack];
//   ROUTER  agents' DEALERs: [routing id, msgpack] both ways (ROUTER_HANDOVER: an agent that
//           reconnects takes its id over from its dead connection at once);
//   ROUTER  control clients (lbctl fleet push/agents with REQ; DEALER works too): the command
//           socket's envelope, proto/codec.h.
//
// SECURITY: with a certificate and an allow-list, PUB and ROUTER are CURVE servers (a ZapHandler
// on the controller's context, started before they bind, accepts only the listed agents' keys
// and re-reads the list when it changes); agents pin the controller's public key. Without them,
// PUB and ROUTER bind only to local endpoints unless allow_insecure. The control socket has no
// authentication at all: it binds only to local endpoints (IsLocalEndpoint), always.
#pragma once

#include <chrono>
#include <functional>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string>

#include "lb/common/allow_list.h"
#include "lb/common/curve_socket.h"
#include "lb/common/endpoint.h"
#include "lb/proto/status.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace lb::cli {

class ControllerCore;
class StateDir;

struct ServeOptions {
  std::string pub_endpoint;
  std::string router_endpoint;
  std::string control_endpoint;
  std::string state_dir;
  std::string id;  // the controller's id in every push and beacon
  std::chrono::milliseconds beacon_interval{1000};
  // CURVE: the controller's secret certificate file and the agents' public keys (a file or a
  // directory, common::ReadAllowList). Both or neither.
  std::string curve_key;
  std::string clients;
  // Without CURVE: bind PUB and ROUTER to non-local endpoints anyway (logged as a warning).
  bool allow_insecure = false;
};

class FleetController {
 public:
  // `context` and `log` must outlive the controller. `log` gets one line per action, each
  // starting with a UTC timestamp.
  FleetController(zmq::context_t& context, ServeOptions options, std::ostream& log);
  ~FleetController();
  FleetController(const FleetController&) = delete;
  FleetController& operator=(const FleetController&) = delete;

  // Checks the endpoints against the security rules above, reads the certificate and starts the
  // ZAP handler (with CURVE), locks and loads the state dir, then binds the three sockets.
  // kBadRequest: an endpoint ZeroMQ cannot parse or the rules refuse, an unusable certificate
  // or allow-list; kInternal: anything else (endpoint in use, state dir unusable, a malformed
  // state file). Call once. The thread that calls Run() owns the sockets from then
  // on; Open() may run on another thread if it happens before (starting the serving thread
  // after Open() returns is enough).
  proto::Status Open();

  // The endpoints as bound: a tcp port 0 becomes the port the kernel chose. Valid after Open().
  const std::string& pub_endpoint() const { return pub_bound_; }
  const std::string& router_endpoint() const { return router_bound_; }
  const std::string& control_endpoint() const { return control_bound_; }

  // Serves until stop_requested() returns true; it is called at least every 100 ms and after
  // every signal. Returns ok then, or the ZeroMQ failure that made serving impossible.
  proto::Status Run(const std::function<bool()>& stop_requested);

  // The controller's CURVE public key ("" without CURVE), and the ZAP handler's counts.
  const std::string& public_key() const { return own_.public_key; }
  const common::ZapHandler* zap() const { return zap_.get(); }

 private:
  void Log(const std::string& line);  // thread-safe: the ZAP handler's thread logs too
  proto::Status CheckEndpoints();
  void Publish(const std::string& topic, const std::string& body);
  void ServeAgents(int64_t now_ms);
  void ServeControl(int64_t now_ms);

  zmq::context_t& context_;
  const ServeOptions options_;
  std::ostream& log_;
  std::unique_ptr<StateDir> state_dir_;
  std::unique_ptr<ControllerCore> core_;
  std::mutex log_mutex_;
  common::CurveCertificate own_;
  std::unique_ptr<common::ZapHandler> zap_;  // declared before the sockets: outlives them
  std::unique_ptr<zmq::socket_t> pub_;
  std::unique_ptr<zmq::socket_t> router_;
  std::unique_ptr<zmq::socket_t> control_;
  std::string pub_bound_;
  std::string router_bound_;
  std::string control_bound_;
};

// The controller id when --id is not given: the host name.
std::string DefaultControllerId();

}  // namespace lb::cli
