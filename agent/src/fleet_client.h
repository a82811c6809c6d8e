// FleetClient: the agent's side of a fleet controller (proto/PROTOCOL.md, "Fleet").
//
// DESIGN: one thread owns a SUB socket connected to the controller's PUB (pushes, beacons), a
// DEALER connected to its ROUTER (to every controller listed, for an HA fleet: only the leader
// binds) (hello and acks out, hello answers in; its routing id is
// ZeroMQ's, not the agent id, so that no other agent can take its connection over),
// a PAIR that receives the DEALER's monitor events (each established connection, first or
// reconnected, is followed by a hello) and an eventfd. The decisions are FleetState's
// (fleet_state.h); this file moves bytes and runs commands.
//   - A `reload` push goes to the agent's ReloadWorker through `submit` (the same pipeline,
//     validation, rollback and coalescing as a local reload); a `status` push runs `status` on
//     a thread of this client's own (it may wait for haproxy up to socket_timeout; the socket
//     thread never waits). Both answer on their thread; the outcome is queued (mutex + eventfd)
//     to the socket thread, which sends the ack, saves the state file and logs one line.
//   - No beacon for beacon_timeout: both sockets are closed and opened again (a fresh TCP
//     connection, which a half-open one after a network cut never becomes by itself), and the
//     new connection says hello after the jitter. ZeroMQ heartbeats on both sockets catch most
//     dead peers sooner.
//   - Malformed messages are logged (one line) and dropped. A PUB message larger than
//     max_config_bytes + 1 MiB is dropped after receipt: a size limit on a SUB socket would
//     cut the connection and every push behind it.
// Acks for pushes still running at Stop() are dropped (the controller learns the outcome from
// the next hello). Thread-safety: Info() may be called from any thread; Start and Stop from the
// owner's.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fleet_state.h"
#include "lb/common/curve_socket.h"
#include "lb/common/mailbox.h"
#include "lb/common/settings.h"
#include "lb/proto/codec.h"
#include "lb/proto/status.h"
#include "reply.h"
#include "work_pool.h"

namespace zmq {
class context_t;
class message_t;
class socket_t;
}  // namespace zmq

namespace lb::agent {

class FleetClient {
 public:
  // Queues a reload with the push's `args` (the `reload` command's arguments, a map, not checked
  // yet: a bad one is answered bad_request through `reply`). `reply` is called exactly once, on
  // any thread.
  using SubmitReloadFn = std::function<void(const nlohmann::json& args, ReplyFn reply)>;
  // The `status` command's result for `args`. May block (bounded by the haproxy socket
  // timeout); never called on the socket thread.
  using StatusFn = std::function<proto::Result<nlohmann::json>(const nlohmann::json& args)>;

  // `context` and `settings` must outlive the client; settings.fleet.enabled() must hold.
  // `live_sha256` names the live config in hellos and acks. `jitter` null: random 0..500 ms.
  FleetClient(zmq::context_t& context, const common::Settings& settings, SubmitReloadFn submit,
              StatusFn status, std::function<std::string()> live_sha256,
              FleetState::JitterFn jitter = nullptr);
  ~FleetClient();  // Stop()

  // Loads the state file (missing: version 0; corrupt: a log line and version 0), creates and
  // connects the sockets and starts the thread. Fails, with nothing started, when a socket
  // cannot be set up (an endpoint ZeroMQ does not accept).
  proto::Status Start();
  // CURVE client options for both sockets (this agent's key pair and the controller's public
  // key), applied at every (re)connection. Call before Start().
  void SetSocketSetup(common::SocketSetup secure) { secure_ = std::move(secure); }
  // Stops the thread and closes the sockets. Idempotent.
  void Stop();

  // {"enabled": true, "agent_id", "controller", "applied_version", "synced_version", "epoch"
  //  (the highest controller epoch seen; 0: none), "connected", "last_beacon_ms_ago" (null
  //  before the first beacon), "groups",
  //  "controller_pub", "controller_router"}.
  nlohmann::json Info() const;

 private:
  struct Sockets;
  struct Completion;
  using Mailbox = common::Mailbox<Completion>;
  struct Snapshot {
    std::string controller;
    uint64_t applied_version = 0;
    uint64_t synced_version = 0;
    uint64_t epoch = 0;
    std::optional<FleetState::TimePoint> last_beacon;
  };

  proto::Status OpenSockets();
  void Run();
  void Reconnect(FleetState::TimePoint now);
  // One whole message from `socket` (see RecvMessage); false when none is waiting or the receive
  // failed (logged with `endpoint`).
  bool Receive(zmq::socket_t& socket, const std::string& endpoint,
               std::vector<zmq::message_t>* frames, std::size_t* count);
  void ReadSub();
  void ReadDealer();
  void ReadMonitor();
  void HandlePush(const FleetPush& push, bool via_router);
  void Process(const FleetPush& push, bool via_router);
  void Complete(Completion done);
  // `periodic`: the liveness hello, logged neither itself nor its unremarkable answer.
  void SendHello(bool periodic);
  void SendAck(proto::FleetAck ack);  // fills in the agent id
  void SendConflictAck(uint64_t version, const std::string& error);
  // Writes the state file when it changed; `ack`: the ack of the push just completed, kept in
  // the file with its version.
  void SaveState(const proto::FleetAck* ack = nullptr);
  void LogSwitch(const FleetState::Admission& admission);
  void UpdateSnapshot();

  zmq::context_t& context_;
  const common::Settings& settings_;
  SubmitReloadFn submit_;
  StatusFn status_;
  std::function<std::string()> live_sha256_;
  const std::size_t max_message_bytes_;
  const proto::DecodeLimits decode_limits_;  // max_frame_bytes: max_message_bytes_
  common::SocketSetup secure_;

  // Socket thread only (after Start).
  FleetState state_;
  std::unique_ptr<Sockets> sockets_;
  bool beacons_flowing_ = false;         // a beacon since the sockets were created
  bool outage_logged_ = false;           // the current outage was logged
  bool quiet_answer_ = false;            // the outstanding hello is a periodic one
  std::optional<FleetPersisted> saved_;  // what the state file holds
  // The state file's last ack, sent again before the first hello after a restart.
  std::optional<proto::FleetAck> recovered_ack_;
  std::shared_ptr<Mailbox> mailbox_;  // shared with the reply callbacks, which may outlive us
  std::unique_ptr<WorkPool> status_pool_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex snapshot_mu_;
  Snapshot snapshot_;
};

}  // namespace lb::agent
