// What a fleet controller keeps across restarts (PersistentState), and StateStore, where it is
// kept. The state dir (state_dir.h) is the first store; etcd (etcd_store.h) is the second, for
// several controllers of which one leads: ControllerCore only ever calls Save() with the whole
// next state and takes it as the truth once Save() returned ok.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "lb/proto/fleet.h"
#include "lb/proto/status.h"

namespace lb::controller {

struct StoredPush {
  uint64_t version = 0;
  proto::FleetTarget target;
  std::string cmd;  // "reload"
  // The push's args; pushes with equal args share one object (in memory and in the file).
  std::shared_ptr<const nlohmann::json> args;
  int64_t ts_ms = 0;  // when it was recorded (unix ms)
};

// Why a push is its target's desired state.
enum class DesiredBecause {
  kApplied,   // an agent applied it (or already ran that config)
  kOperator,  // pushed with desired = always, or to a target no known agent matched
};
std::string_view DesiredBecauseName(DesiredBecause because);

// What a target's reload pushes came to (proto/PROTOCOL.md, "Desired state").
struct TargetState {
  // What agents that say hello get; nullopt: nothing (yet).
  std::optional<StoredPush> desired;
  DesiredBecause because = DesiredBecause::kApplied;
  // A newer reload that no agent applied yet; it becomes `desired` at the first applied (or
  // unchanged) ack, or is rejected when every agent it waits for refused it (or went silent).
  std::optional<StoredPush> pending;
  std::set<std::string> awaiting;  // the agents the pending push still waits for
  uint64_t rejected_version = 0;   // the newest reload rejected that way; 0: none

  bool empty() const { return !desired && !pending && rejected_version == 0; }
};

struct PersistentState {
  std::string controller_id;  // the id of the controller that saved it; "" when never saved
  uint64_t latest = 0;        // the newest version handed out (the counter)
  std::map<std::string, TargetState> targets;  // by TargetKey(target)
  // Agent id -> the CURVE public key its first message came with: the id is pinned to it.
  std::map<std::string, std::string> agent_keys;
};

class StateStore {
 public:
  virtual ~StateStore() = default;
  // The saved state; an empty one (latest 0) when nothing was saved yet. A state that cannot be
  // read is an error (kInternal), never silently an empty state: starting again from version 0
  // would make every agent ignore the next pushes.
  virtual proto::Result<PersistentState> Load() = 0;
  // Replaces the saved state as a whole, durably. kInternal with the reason on failure; the
  // previous state is then still the saved one.
  virtual proto::Status Save(const PersistentState& state) = 0;
  // Where it is kept, for log lines: "state file /var/lib/lb-controller/fleet-controller.json".
  virtual std::string Describe() const = 0;
  // The fencing epoch of this controller's leadership, carried in every push, beacon and
  // uptodate (proto/fleet.h); 0 for a store without election (the state dir).
  virtual uint64_t epoch() const { return 0; }
  // Not empty once this controller may no longer lead (its lease may have expired): why. The
  // controller then stops publishing at once. Any thread.
  virtual std::string Deposed() const { return ""; }
};

}  // namespace lb::controller
