// FleetState: the decisions of the agent's side of the fleet protocol (proto/PROTOCOL.md,
// "Fleet"), with no sockets, no threads and no clock of its own, so that every rule is a unit
// test: which pushes are ours, which versions to ignore, which controller to follow, when to say
// hello. Also the state file that keeps the last processed version across restarts. The
// messages themselves are proto/fleet.h's.
//
// DESIGN: FleetClient (fleet_client.h) owns one FleetState on its thread and feeds it every
// message with the time it arrived; FleetState answers what to do. Versions:
//   - applied_version: the newest push accepted for processing (in flight or done). A push at
//     or below it is a duplicate or stale: ignored (and acked `ignored`), unless that version is
//     still in flight (a hello answered with the push the agent is applying): then its own ack
//     is the answer, and an `ignored` one before it would read as a refusal to a client that
//     gives up on ignored agents after a grace (lbctl: 2 s, less than a slow reload).
//   - completed_version: the newest push whose processing ended (acked). This is what the state
//     file keeps: an agent killed during a reload says hello with the older version after a
//     restart and gets the push again, instead of never applying it.
//   - synced_version: the newest version the controller confirmed to this agent (an `uptodate`
//     answer, or a push it processed). A beacon whose `latest` is above it means the agent may
//     have missed a push (one that was not for it, or one it lost): it says hello.
// Versions count per controller id: when the agent starts following a different controller id
// (after the one it followed went silent), all three restart at 0, so that the new
// controller's hello answer is applied whatever its counter says.
// Epochs (fencing): an elected controller (lb-controller on etcd) puts its epoch in every push,
// beacon and uptodate. The highest epoch seen is kept (in the state file too); a message with a
// lower one is refused, whoever sent it and whatever else holds: a deposed leader cannot change
// this agent once it heard its successor. A higher epoch is followed at once, even while the
// followed controller is alive; versions are kept across it when the previous epoch was an
// elected one too (elected controllers share one counter in etcd), and restart at 0 otherwise.
// Not thread-safe: it belongs to the fleet thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lb/proto/fleet.h"
#include "lb/proto/status.h"

namespace lb::agent {

using proto::FleetBeacon;
using proto::FleetPush;
using proto::FleetTarget;
using proto::FleetUptodate;

// What the state file keeps.
struct FleetPersisted {
  uint64_t applied_version = 0;  // the newest push whose processing ended
  std::string controller;        // the controller it came from ("" before the first)
  uint64_t epoch = 0;            // the highest epoch seen (0: none)
  // The ack of that push (without its "result"), written before it is sent: an agent killed
  // between the two sends it again after its restart, so that the controller learns the
  // outcome rather than guessing it from the hello.
  std::optional<proto::FleetAck> last_ack;
};
// Reads the state file. A missing file is the zero state. A file that cannot be read or is not
// {"applied_version": <uint>, "controller": <str>, "epoch"?: <uint>, "last_ack"?: <ack>} is an
// error naming the file and the problem; the caller logs it and starts from the zero state.
proto::Result<FleetPersisted> LoadFleetState(const std::string& path);
// Writes the state file atomically (temp file, fsync, rename), creating its directory when
// missing. Errors are `internal` with the OS's words.
proto::Status SaveFleetState(const std::string& path, const FleetPersisted& state);

class FleetState {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  // The delay before a hello after a reconnect or a beacon-triggered resync: random in
  // [0, 500] ms by default, so that a controller restart is not met by every agent at once.
  using JitterFn = std::function<std::chrono::milliseconds()>;
  static JitterFn RandomJitter();

  // `beacon_timeout` is both the dead-connection timeout and the "alive" window of the
  // followed controller (3 beacon intervals). `jitter` null: RandomJitter(). `hello_interval`:
  // while the connection is alive, a hello at least this often (the controller's liveness
  // signal of this agent); 0: only the hellos the protocol needs.
  FleetState(std::string agent_id, std::vector<std::string> groups,
             std::chrono::milliseconds beacon_timeout, JitterFn jitter = nullptr,
             std::chrono::milliseconds hello_interval = {});

  // Starts from what the state file kept: applied = synced = completed = persisted version,
  // and the persisted controller is the one followed (until another one takes over).
  void Restore(const FleetPersisted& persisted);
  FleetPersisted ToPersisted() const;

  // Whether a push for `target` is for this agent (its id, one of its groups, or all).
  bool Matches(const FleetTarget& target) const;

  // The one-writer rule, applied to every push, beacon and uptodate that is for this agent.
  struct Admission {
    bool accepted = false;
    // accepted, and the followed controller changed from `previous` (not "") to this one. The
    // caller logs it and saves the state.
    bool switched = false;
    bool versions_reset = false;  // switched, and versions restarted at 0
    std::string previous;
    bool epoch_raised = false;  // accepted with an epoch above the highest seen: save the state
    std::string error;          // not accepted: why (names both controllers, or both epochs)
    bool fenced = false;        // not accepted because of a lower epoch
  };
  // The one-writer rule and the epoch rule (see the DESIGN) for a message of `controller`
  // carrying `epoch` (0: none).
  Admission Admit(const std::string& controller, uint64_t epoch, TimePoint now);

  enum class PushAction {
    kNotForUs,  // the target does not match: nothing to do, no ack
    kConflict,  // from a controller other than the live followed one: ack `refused`/`conflict`
    kIgnore,    // version at or below applied_version and not in flight: ack `ignored`
    kInFlight,  // that very version is being processed: its own ack follows, no other
    kProcess,   // run it, then ack; applied_version and synced_version are now its version
  };
  struct PushVerdict {
    PushAction action = PushAction::kNotForUs;
    Admission admission;
  };
  // `via_router`: the answer to a hello (it ends the outstanding hello, whatever it says).
  PushVerdict OnPush(const FleetPush& push, bool via_router, TimePoint now);
  // The processing of a push ended (its ack is going out). Versions from a controller that is
  // no longer followed are dropped.
  void PushCompleted(const std::string& controller, uint64_t version);

  struct BeaconVerdict {
    Admission admission;
    // Not accepted, and this controller's conflict was not reported in the last
    // beacon_timeout: log it and ack `refused` (rate-limited, beacons come every second).
    bool report_conflict = false;
    // Accepted and `latest` > synced_version: a hello is now scheduled (after the jitter).
    bool resync = false;
  };
  // Any beacon proves the connection alive; only the followed controller's keeps it alive for
  // the one-writer rule.
  BeaconVerdict OnBeacon(const FleetBeacon& beacon, TimePoint now);
  // An `uptodate` answer: ends the outstanding hello; accepted, it raises synced_version to
  // `latest`.
  Admission OnUptodate(const FleetUptodate& uptodate, TimePoint now);

  // Hello scheduling. At most one hello is outstanding (sent, not answered, younger than
  // beacon_timeout) or scheduled at a time.
  // A connection to the controller's ROUTER was established: the outstanding hello (if any)
  // may have been lost with the old one. The first connection says hello at once; later ones
  // after the jitter.
  void OnConnected(TimePoint now);
  // The sockets were (re)created: forget hellos scheduled or in flight; the dead-connection
  // clock starts from `now`. Call it before the first ConnectionDead().
  void OnSocketsCreated(TimePoint now);
  // The hello scheduled by the protocol (connect, resync), if any.
  std::optional<TimePoint> hello_due() const { return hello_due_; }
  // A scheduled hello is due, or the periodic one (hello_interval since the last hello, the
  // connection alive, none outstanding).
  bool HelloDue(TimePoint now) const;
  // Only the periodic hello is due: nothing to resync, not worth a log line.
  bool PeriodicHelloOnly(TimePoint now) const;
  // When HelloDue turns true if nothing arrives (nullopt: not before something arrives).
  std::optional<TimePoint> NextHelloAt(TimePoint now) const;
  void HelloSent(TimePoint now);
  bool HelloOutstanding(TimePoint now) const;

  // Liveness of the connection: a beacon (from any controller) within beacon_timeout.
  bool Connected(TimePoint now) const;
  // No beacon for beacon_timeout since the last one or since the sockets were created.
  bool ConnectionDead(TimePoint now) const;
  // When ConnectionDead turns true if nothing arrives.
  TimePoint DeadAt() const;
  std::optional<TimePoint> last_beacon() const { return last_beacon_; }

  const std::string& agent_id() const { return agent_id_; }
  const std::vector<std::string>& groups() const { return groups_; }
  const std::string& controller() const { return followed_; }
  uint64_t applied_version() const { return applied_version_; }
  uint64_t synced_version() const { return synced_version_; }
  uint64_t completed_version() const { return completed_version_; }
  uint64_t epoch() const { return epoch_; }

 private:
  void ScheduleHello(TimePoint at);
  bool FollowedAlive(TimePoint now) const;

  const std::string agent_id_;
  const std::vector<std::string> groups_;
  const std::chrono::milliseconds beacon_timeout_;
  const std::chrono::milliseconds hello_interval_;
  JitterFn jitter_;

  std::string followed_;
  std::optional<TimePoint> followed_beacon_;  // the followed controller's last beacon
  uint64_t epoch_ = 0;                        // the highest epoch seen
  std::string epoch_controller_;  // who it came from ("" when restored from the state file)
  uint64_t applied_version_ = 0;
  uint64_t synced_version_ = 0;
  uint64_t completed_version_ = 0;
  std::set<uint64_t> in_flight_;  // versions accepted for processing and not completed yet

  std::optional<TimePoint> last_beacon_;  // any controller's
  TimePoint sockets_since_{};
  int connections_ = 0;
  std::optional<TimePoint> hello_due_;
  std::optional<TimePoint> hello_sent_;  // outstanding while set and young
  std::optional<TimePoint> last_hello_;  // the last hello sent, answered or not
  std::string conflict_reported_;        // the controller whose beacons were last refused
  TimePoint conflict_reported_at_{};
};

}  // namespace lb::agent
