// Every message of the fleet (proto/PROTOCOL.md, "Fleet"): what a controller publishes and
// answers (push, beacon, uptodate), what an agent sends (hello, ack), and what the controller's
// control socket carries (push, agents, acks, ping: requests and results). One struct, one
// Encode and one Parse per message, used by both ends: lb-agent, lb-controller and lbctl.
// No sockets, no clock, no I/O; the msgpack framing is codec.h's.
//
// Everything a peer sends is untrusted: the parsers check every field they use and return
// kBadRequest with a message naming the field, never throw. Agent ids and group names follow one
// rule, IsValidFleetName, wherever they appear (targets, hellos, acks, settings).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "lb/proto/status.h"

namespace lb::proto {

// ---- names, versions, targets ----

inline constexpr std::size_t kMaxFleetNameBytes = 255;
inline constexpr std::size_t kMaxFleetGroups = 1000;
// Agent ids and group names: 1 to 255 bytes, no '/' (they end topics), no control characters
// (they end up in log lines).
bool IsValidFleetName(std::string_view name);

// A version number: a JSON integer at or above 0, whether it arrived signed or unsigned (msgpack
// writers differ); nullopt for anything else.
std::optional<uint64_t> AsVersion(const nlohmann::json& value);

// Who a push is for.
struct FleetTarget {
  enum class Kind { kAll, kGroup, kAgent };
  Kind kind = Kind::kAll;
  std::string name;  // the group or agent id; empty for kAll

  static FleetTarget All() { return {Kind::kAll, ""}; }
  static FleetTarget Group(std::string name) { return {Kind::kGroup, std::move(name)}; }
  static FleetTarget Agent(std::string name) { return {Kind::kAgent, std::move(name)}; }

  bool operator==(const FleetTarget&) const = default;
};

// "all", "group/web", "agent/a1": how a target is named in logs, tables and the state file.
std::string TargetKey(const FleetTarget& target);
// The inverse of TargetKey; nullopt for a key that names no target.
std::optional<FleetTarget> TargetFromKey(std::string_view key);
// "fleet/all", "fleet/group/web", "fleet/agent/a1": the PUB topic of its pushes.
std::string TargetTopic(const FleetTarget& target);
inline constexpr std::string_view kBeaconTopic = "fleet/beacon";
// {"kind": "all"} or {"kind": "group"|"agent", "name": N}.
nlohmann::json EncodeTarget(const FleetTarget& target);
Result<FleetTarget> ParseTarget(const nlohmann::json& value);
// Whether a push for `target` is meant for the agent `agent_id` in `groups`.
bool TargetMatches(const FleetTarget& target, std::string_view agent_id,
                   const std::vector<std::string>& groups);

// ---- controller -> agents (PUB, and the answer to a hello on the ROUTER) ----
//
// `epoch` (push, beacon, uptodate): the fencing token of a controller that leads through an
// election (lb-controller with [store] etcd_endpoints: its leader key's etcd revision, higher
// for every new leader). Absent or 0: a controller without election (its state dir). An agent
// keeps the highest epoch it has seen and refuses any message with a lower one.

// {"v": 1, "type": "push", "controller", "version", "target", "cmd", "args", "epoch"?}.
struct FleetPush {
  std::string controller;
  uint64_t version = 0;
  FleetTarget target;
  // "" when the message has none (or not a string): the agent refuses it when it processes it,
  // so that a push with a usable envelope can still be acked.
  std::string cmd;
  nlohmann::json args = nlohmann::json::object();  // as sent: checked when processed
  uint64_t epoch = 0;
};
nlohmann::json EncodePush(const FleetPush& push);
Result<FleetPush> ParsePush(const nlohmann::json& message);

// {"v": 1, "type": "beacon", "controller", "latest", "ts_ms", "epoch"?}.
struct FleetBeacon {
  std::string controller;
  uint64_t latest = 0;
  int64_t ts_ms = 0;
  uint64_t epoch = 0;
};
nlohmann::json EncodeBeacon(const FleetBeacon& beacon);
Result<FleetBeacon> ParseBeacon(const nlohmann::json& message);

// {"v": 1, "type": "uptodate", "controller", "latest", "epoch"?}: the answer to a hello when the
// agent has its desired state.
struct FleetUptodate {
  std::string controller;
  uint64_t latest = 0;
  uint64_t epoch = 0;
};
nlohmann::json EncodeUptodate(const FleetUptodate& uptodate);
Result<FleetUptodate> ParseUptodate(const nlohmann::json& message);

using ControllerMessage = std::variant<FleetPush, FleetBeacon, FleetUptodate>;
// A push, beacon or uptodate of protocol version 1 with a non-empty "controller".
Result<ControllerMessage> ParseControllerMessage(const nlohmann::json& message);

// ---- agent -> controller (DEALER to the controller's ROUTER) ----

// {"v": 1, "type": "hello", "agent", "groups", "sha256", "applied_version", "synced_version",
//  "completed_version"?, "hello_interval_ms"?}.
struct FleetHello {
  std::string agent;
  std::vector<std::string> groups;
  std::string sha256;            // "" when the agent did not say
  uint64_t applied_version = 0;  // missing means 0: a new agent
  uint64_t synced_version = 0;
  // The newest push whose processing ended (applied_version counts one still running); nullopt
  // when the agent does not say.
  std::optional<uint64_t> completed_version;
  // How often the agent says hello while nothing happens (its liveness signal); 0: it does not
  // say (an agent older than the periodic hello).
  int64_t hello_interval_ms = 0;
};
nlohmann::json EncodeHello(const FleetHello& hello);
Result<FleetHello> ParseHello(const nlohmann::json& message);

struct FleetError {
  std::string code;  // an ErrorCodeName
  std::string message;
  bool operator==(const FleetError&) const = default;
};
// The outcomes of an ack.
inline constexpr std::string_view kAckApplied = "applied";
inline constexpr std::string_view kAckUnchanged = "unchanged";
inline constexpr std::string_view kAckRefused = "refused";
inline constexpr std::string_view kAckIgnored = "ignored";

// {"v": 1, "type": "ack", "agent", "version", "outcome", "error"?, "sha256", "total_ms",
//  "result"?}.
struct FleetAck {
  std::string agent;
  uint64_t version = 0;
  std::string outcome;  // applied, unchanged, refused, ignored
  std::optional<FleetError> error;
  std::string sha256;     // the live config after; "" when absent
  int64_t total_ms = -1;  // -1 when absent
  nlohmann::json result;  // the command's result, or null
};
nlohmann::json EncodeAck(const FleetAck& ack);
Result<FleetAck> ParseAck(const nlohmann::json& message);

using AgentMessage = std::variant<FleetHello, FleetAck>;
// A hello or ack of protocol version 1.
Result<AgentMessage> ParseAgentMessage(const nlohmann::json& message);

// ---- the controller's control socket (the command envelope of codec.h) ----
// Each request is the `args` of a command; each result its `result`.

// `push`: {"target", "cmd"?, "args", "desired"?, "allow_no_match"?}.
struct FleetPushRequest {
  FleetTarget target;
  std::string cmd = "reload";  // reload or status
  // reload: {"config": <text>, "force"?: bool}, nothing else; status: the status args.
  nlohmann::json args = nlohmann::json::object();
  // A reload push becomes its target's desired state (what agents that say hello later get)
  // once an agent applied it (or had it already): a config every agent refused never does.
  // `always`: at once, whatever the agents answer (the operator's call).
  enum class Desired { kOnApply, kAlways };
  Desired desired = Desired::kOnApply;
  // A push that matches no agent the controller knows is refused (a misspelt group) unless
  // this is set: the push is then recorded for agents that say hello later.
  bool allow_no_match = false;
};
nlohmann::json EncodePushRequest(const FleetPushRequest& request);
Result<FleetPushRequest> ParsePushRequest(const nlohmann::json& args);

// {"version", "target", "topic", "matching", "lost", "latest"}.
struct FleetPushResult {
  uint64_t version = 0;
  FleetTarget target;
  std::string topic;
  std::vector<std::string> matching;  // the known agents it matches that are alive (or unknown)
  std::vector<std::string> lost;      // the known agents it matches that went silent
  uint64_t latest = 0;
};
nlohmann::json EncodePushResult(const FleetPushResult& result);
Result<FleetPushResult> ParsePushResult(const nlohmann::json& result);

// `agents`: {"target"?}: only the agents it matches.
struct FleetAgentsRequest {
  std::optional<FleetTarget> target;
};
nlohmann::json EncodeAgentsRequest(const FleetAgentsRequest& request);
Result<FleetAgentsRequest> ParseAgentsRequest(const nlohmann::json& args);

// One ack as the controller recorded it.
struct FleetAckRecord {
  FleetAck ack;
  int64_t received_ms = 0;
};
// {"agent", "version", "outcome", "error"?, "sha256", "total_ms", "received_ms", "result"?}.
nlohmann::json EncodeAckRecord(const FleetAckRecord& record);
Result<FleetAckRecord> ParseAckRecord(const nlohmann::json& value);

// Whether an agent is heard from: alive (a message within 3 of its hello intervals), lost
// (silent longer), unknown (it does not say hello periodically: an older agent).
enum class FleetLiveness { kAlive, kLost, kUnknown };
std::string_view LivenessName(FleetLiveness liveness);

struct FleetAgentInfo {
  std::string agent;
  std::vector<std::string> groups;
  std::string sha256;
  uint64_t applied_version = 0;
  uint64_t synced_version = 0;
  uint64_t desired_version = 0;  // 0: no desired state
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;
  int64_t last_hello_ms = 0;  // 0: acked without a hello since this controller started
  FleetLiveness liveness = FleetLiveness::kUnknown;
  int64_t hello_interval_ms = 0;
  std::optional<FleetAckRecord> last_ack;  // without its result
  std::string curve_key;                   // "" without CURVE
  // Messages refused under this id because they came with another CURVE key than the one the
  // id is pinned to, and the last such key.
  uint64_t refused_messages = 0;
  std::string refused_key;
};
nlohmann::json EncodeAgentInfo(const FleetAgentInfo& info);
Result<FleetAgentInfo> ParseAgentInfo(const nlohmann::json& value);

// What a target's pushes came to.
struct FleetTargetInfo {
  FleetTarget target;
  uint64_t desired_version = 0;  // what agents that say hello get; 0: nothing
  // Why it is the desired state: "applied" (an agent applied it or had it), "operator" (pushed
  // with desired = always); "" without one.
  std::string desired_because;
  uint64_t pending_version = 0;   // a newer reload no agent has applied yet; 0: none
  uint64_t rejected_version = 0;  // the newest reload every agent refused; 0: none
};
nlohmann::json EncodeTargetInfo(const FleetTargetInfo& info);
Result<FleetTargetInfo> ParseTargetInfo(const nlohmann::json& value);

// {"controller", "latest", "now_ms", "agents": [...], "targets": [...]}.
struct FleetAgentsResult {
  std::string controller;
  uint64_t latest = 0;
  int64_t now_ms = 0;
  std::vector<FleetAgentInfo> agents;  // sorted by id
  std::vector<FleetTargetInfo> targets;
};
nlohmann::json EncodeAgentsResult(const FleetAgentsResult& result);
Result<FleetAgentsResult> ParseAgentsResult(const nlohmann::json& result);

// `acks`: {"versions": [...]}.
inline constexpr std::size_t kMaxAckVersionsPerRequest = 100000;
struct FleetAcksRequest {
  std::vector<uint64_t> versions;
};
nlohmann::json EncodeAcksRequest(const FleetAcksRequest& request);
Result<FleetAcksRequest> ParseAcksRequest(const nlohmann::json& args);

// {"latest", "acks": [...]}: every known agent's ack of each version asked for.
struct FleetAcksResult {
  uint64_t latest = 0;
  std::vector<FleetAckRecord> acks;
};
nlohmann::json EncodeAcksResult(const FleetAcksResult& result);
Result<FleetAcksResult> ParseAcksResult(const nlohmann::json& result);

// `ping`: {"controller", "latest"}.
struct FleetPingResult {
  std::string controller;
  uint64_t latest = 0;
};
nlohmann::json EncodePingResult(const FleetPingResult& result);
Result<FleetPingResult> ParsePingResult(const nlohmann::json& result);

}  // namespace lb::proto
