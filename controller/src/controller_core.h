// ControllerCore: every decision of lb-controller, without a socket (proto/PROTOCOL.md, "Fleet"
// and its "Controller control socket"). Controller (controller.h) feeds it frames and the time,
// and sends what it returns; tests call it directly with their own clock.
//
// DESIGN: one version counter for every push; a push gets the next version and is saved to the
// StateStore before anything is published, so no agent ever sees a version that a restarted
// controller could hand out again. Per target, a reload push is first pending: it becomes the
// target's desired state (what agents that say hello get) when an agent acks it applied or
// unchanged, and is rejected when every agent it waits for refused it or went silent: a config
// every agent refused never reaches agents that join later. `desired = always`, or a push that
// no known agent matches (allowed only with allow_no_match), is desired at once: the operator
// said so. An agent's desired state is the newest desired push among the targets it matches (an
// `all` push that becomes desired makes every older one unreachable, and they are dropped).
// While a newer push for it is pending, a hello is answered with an `uptodate` whose `latest`
// stays below the pending version, so that the agent asks again once it is decided.
//
// Agents are known from their hellos and acks (id, groups, live sha256, versions, the acks of
// the last versions, liveness); that table lives in memory only, since agents say hello again
// when a controller comes back, and periodically (their hello_interval_ms) as a liveness
// signal: an agent silent for 3 of its intervals is lost, and pushes do not wait for it. With
// CURVE, an agent id is pinned to the public key of its first message (kept in the state), or
// to the key configured for it; a message under that id with another key is refused and counted
// on the id. Everything from agents and control clients is checked; a malformed message yields
// a log line and nothing else. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lb/proto/codec.h"
#include "lb/proto/fleet.h"
#include "lb/proto/status.h"
#include "state_store.h"

namespace lb::controller {

// A message for the PUB socket.
struct Publication {
  std::string topic;
  nlohmann::json body;
};

struct AgentRecord {
  std::string id;
  std::vector<std::string> groups;
  std::string sha256;             // from the last hello or ack that named one
  uint64_t applied_version = 0;   // the newest version it says it processed
  uint64_t synced_version = 0;    // from its last hello
  int64_t first_seen_ms = 0;      // 0: never accepted (only refused messages under this id)
  int64_t last_seen_ms = 0;       // last hello or ack
  int64_t last_hello_ms = 0;      // 0: acked without a hello (this controller restarted since)
  int64_t hello_interval_ms = 0;  // 0: it does not say hello periodically
  std::map<uint64_t, proto::FleetAckRecord> acks;  // by version; the newest kMaxAcksPerAgent
  std::string curve_key;          // the CURVE public key of its messages ("" without CURVE)
  uint64_t refused_messages = 0;  // refused: another key than the pinned one
  std::string refused_key;        // the last such key

  bool accepted() const { return first_seen_ms != 0; }
};

class ControllerCore {
 public:
  static constexpr size_t kMaxAcksPerAgent = 256;
  // An agent silent for this many of its hello intervals is lost.
  static constexpr int kLostAfterIntervals = 3;
  // After a start, agents a pending push waits for but that this controller has not heard from
  // yet are given this long before they stop counting.
  static constexpr int64_t kUnheardAgentGraceMs = 30000;

  // `state` is what the store's Load returned. `store` may be null (in memory only, for tests);
  // otherwise it must outlive the core, and every change to the state is saved to it before it
  // takes effect. `configured_keys`: agent id -> CURVE public key ([security] agent_keys),
  // which wins over a key first seen. `now_ms`: when the controller started.
  ControllerCore(std::string controller_id, PersistentState state, StateStore* store,
                 std::map<std::string, std::string> configured_keys = {}, int64_t now_ms = 0);

  const std::string& id() const { return id_; }
  // The fencing epoch put in every push, beacon and uptodate (StateStore::epoch(); 0: none).
  // Set before the first message.
  void SetEpoch(uint64_t epoch) { epoch_ = epoch; }
  uint64_t epoch() const { return epoch_; }
  uint64_t latest() const { return state_.latest; }
  const PersistentState& state() const { return state_; }
  const std::map<std::string, AgentRecord>& agents() const { return agents_; }

  // The newest desired push meant for the agent `agent_id` in `groups`; null when none is.
  const StoredPush* DesiredFor(std::string_view agent_id,
                               const std::vector<std::string>& groups) const;
  proto::FleetLiveness Liveness(const AgentRecord& agent, int64_t now_ms) const;

  // Gives the push the next version and records it (see the DESIGN): a `reload` is pending for
  // its target, waiting for the agents `awaiting`, or desired at once with `always` or when
  // nobody is awaited; a `status` push is only counted. Saved before returning. kInternal (the
  // store's error) leaves everything as it was.
  proto::Result<StoredPush> RecordPush(const proto::FleetTarget& target, const std::string& cmd,
                                       nlohmann::json args, int64_t now_ms, bool always = false,
                                       std::set<std::string> awaiting = {});

  struct AgentAnswer {
    std::optional<nlohmann::json> reply;  // for the agent, on the ROUTER socket
    std::string log;                      // one line: what came and what was done
  };
  // One frame an agent's DEALER sent (after the routing id). A hello is answered with the
  // agent's desired push when its version is above the hello's applied_version, else with
  // `uptodate`; an ack is recorded (and may decide a pending push); anything else is only
  // logged. `curve_key`: the sender's CURVE public key as the ZAP handler authenticated it
  // (Z85; empty without CURVE): checked against the id's pinned key.
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

  // Called on every beacon: decides pending pushes whose awaited agents went silent. Returns the
  // log lines of what it decided.
  std::vector<std::string> Tick(int64_t now_ms);

  // The beacon to publish now.
  Publication Beacon(int64_t now_ms) const;

  // Limits on what agents and control clients may send.
  static proto::DecodeLimits AgentLimits();
  static proto::DecodeLimits ControlLimits();

 private:
  AgentAnswer OnHello(const proto::FleetHello& hello, std::string_view routing_id, int64_t now_ms);
  AgentAnswer OnAck(proto::FleetAck ack, int64_t now_ms);
  // Checks `curve_key` against the id's pinned key (pinning a first one); "" when accepted,
  // else the refusal for the log.
  std::string CheckKey(const std::string& agent_id, std::string_view curve_key, int64_t now_ms);
  ControlAnswer Push(const nlohmann::json& args, int64_t now_ms);
  ControlAnswer Agents(const nlohmann::json& args, int64_t now_ms) const;
  ControlAnswer Acks(const nlohmann::json& args) const;
  proto::FleetAgentInfo AgentInfo(const AgentRecord& agent, int64_t now_ms) const;
  // The `latest` of an uptodate for this agent: below any pending push it has not processed.
  uint64_t UptodateLatest(std::string_view agent_id, const std::vector<std::string>& groups,
                          uint64_t applied_version) const;
  // A pending push got an answer from `agent`: promoted, rejected or still waiting. Returns a
  // log line when it was decided ("" otherwise).
  std::string OnPendingAnswer(const proto::FleetAck& ack, int64_t now_ms);
  std::string Decide(const std::string& key, bool applied, int64_t now_ms);
  proto::Status Save(const PersistentState& next);

  const std::string id_;
  PersistentState state_;
  StateStore* const store_;
  const std::map<std::string, std::string> configured_keys_;
  const int64_t started_ms_;
  uint64_t epoch_ = 0;
  std::map<std::string, AgentRecord> agents_;
};

// The text of an agent's routing id or id for a log line: printable bytes as they are, others
// as \xNN.
std::string PrintableId(std::string_view bytes);

}  // namespace lb::controller
