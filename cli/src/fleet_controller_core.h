// ControllerCore: every decision of `lbctl fleet serve`, without a socket (proto/PROTOCOL.md,
// "Fleet", and its "Controller control socket" subsection). FleetController (fleet_controller.h)
// feeds it frames and sends what it returns; tests call it directly with their own clock.
//
// DESIGN: one version counter for every push; a push gets the next version and is saved to the
// state dir before anything is published, so no agent ever sees a version that a restarted
// controller could hand out again. Per target the newest `reload` push is kept: it is the
// desired state of every agent it matches, and an agent's desired state is the newest of those
// (an `all` push therefore makes every older push unreachable, and they are dropped). Agents are
// known from their hellos and acks (id, groups, live sha256, last processed version, the
// acks of the last versions); that table lives in memory only, since agents say hello again
// when a controller comes back. Everything that comes from an agent or a control client is
// checked; a malformed message yields a log line and nothing else. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fleet_protocol.h"
#include "fleet_state_file.h"
#include "lb/proto/codec.h"
#include "lb/proto/status.h"

namespace lb::cli {

// A message for the PUB socket.
struct Publication {
  std::string topic;
  nlohmann::json body;
};

struct AckRecord {
  Ack ack;
  int64_t received_ms = 0;
};

struct AgentRecord {
  std::string id;
  std::vector<std::string> groups;
  std::string sha256;            // from the last hello or ack that named one
  uint64_t applied_version = 0;  // the newest version it says it processed
  uint64_t synced_version = 0;   // from its last hello
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;            // last hello or ack
  int64_t last_hello_ms = 0;           // 0: acked without a hello (this controller restarted since)
  std::map<uint64_t, AckRecord> acks;  // by version; the newest kMaxAcksPerAgent
  std::string curve_key;  // the CURVE public key of its last message ("" without CURVE)
};

class ControllerCore {
 public:
  static constexpr size_t kMaxAcksPerAgent = 256;

  // `state` is what StateDir::Load returned. `state_dir` may be null (in memory only, for
  // tests); otherwise it must outlive the core, and every change to the state is saved to it
  // before it takes effect.
  ControllerCore(std::string controller_id, PersistentState state, StateDir* state_dir);

  const std::string& id() const { return id_; }
  uint64_t latest() const { return state_.latest; }
  const PersistentState& state() const { return state_; }
  const std::map<std::string, AgentRecord>& agents() const { return agents_; }

  // The newest stored push meant for the agent `agent_id` in `groups`; null when none is.
  const StoredPush* DesiredFor(std::string_view agent_id,
                               const std::vector<std::string>& groups) const;

  // Gives the push the next version and records it: a `reload` becomes the desired state of
  // its target (replacing the target's previous push); a `status` push is only counted. Saved
  // before returning. kInternal (the state dir's error) leaves everything as it was.
  proto::Result<StoredPush> RecordPush(const FleetTarget& target, const std::string& cmd,
                                       nlohmann::json args, int64_t now_ms);

  struct AgentAnswer {
    std::optional<nlohmann::json> reply;  // for the agent, on the ROUTER socket
    std::string log;                      // one line: what came and what was done
  };
  // One frame an agent's DEALER sent (after the routing id). A hello is answered with the
  // agent's desired push when its version is above the hello's applied_version, else with
  // `uptodate`; an ack is recorded; anything else is only logged. `curve_key`: the sender's
  // CURVE public key as the ZAP handler authenticated it (Z85; empty without CURVE), recorded.
  AgentAnswer OnAgentFrame(std::string_view routing_id, std::string_view frame, int64_t now_ms,
                           std::string_view curve_key = {});

  struct ControlAnswer {
    proto::Status status;                // not ok: the error reply
    nlohmann::json result;               // ok: the result
    std::optional<Publication> publish;  // a push to publish (already saved)
    std::string log;                     // "" when not worth a line (polling)
  };
  // One request of the control socket: ping, push, agents, acks.
  ControlAnswer OnControlRequest(const proto::Request& request, int64_t now_ms);

  // The beacon to publish now.
  Publication Beacon(int64_t now_ms) const;

  // Limits on what agents and control clients may send.
  static proto::DecodeLimits AgentLimits();
  static proto::DecodeLimits ControlLimits();

 private:
  AgentAnswer OnHello(const Hello& hello, std::string_view routing_id, int64_t now_ms,
                      std::string_view curve_key);
  AgentAnswer OnAck(Ack ack, int64_t now_ms, std::string_view curve_key);
  ControlAnswer Push(const nlohmann::json& args, int64_t now_ms);
  ControlAnswer Agents(const nlohmann::json& args, int64_t now_ms) const;
  ControlAnswer Acks(const nlohmann::json& args) const;
  nlohmann::json AgentToJson(const AgentRecord& agent) const;
  proto::Status Save(const PersistentState& next);

  const std::string id_;
  PersistentState state_;
  StateDir* const state_dir_;
  std::map<std::string, AgentRecord> agents_;
};

// The text of an agent's routing id or id for a log line: printable bytes as they are, others
// as \xNN.
std::string PrintableId(std::string_view bytes);

}  // namespace lb::cli
