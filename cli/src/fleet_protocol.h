// The controller's side of the fleet messages (proto/PROTOCOL.md, "Fleet"): targets and their
// topics, the messages the controller sends (push, beacon, uptodate) and the checked forms of
// what agents send (hello, ack). Pure: no sockets, no clock, no I/O.
//
// Everything an agent sends is untrusted: the parsers check every field they use and return
// kBadRequest with a message naming the field, never throw.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lb/proto/status.h"

namespace lb::cli {

inline constexpr std::string_view kBeaconTopic = "fleet/beacon";

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
// "fleet/all", "fleet/group/web", "fleet/agent/a1".
std::string TargetTopic(const FleetTarget& target);
// {"kind": "all"} or {"kind": "group"|"agent", "name": N}.
nlohmann::json TargetToJson(const FleetTarget& target);
// The inverse of TargetToJson; kBadRequest naming what is wrong (unknown kind, missing name, a
// name that IsValidFleetName refuses).
proto::Result<FleetTarget> TargetFromJson(const nlohmann::json& value);
// Whether a push for `target` is meant for the agent `agent_id` in `groups`.
bool TargetMatches(const FleetTarget& target, std::string_view agent_id,
                   const std::vector<std::string>& groups);

// A version number: a JSON integer at or above 0, whether it arrived signed or unsigned (msgpack
// writers differ); nullopt for anything else.
std::optional<uint64_t> AsVersion(const nlohmann::json& value);

// Agent ids and group names are non-empty, at most 255 bytes, without '/' (they end topics)
// and without control characters (they end up in log lines).
bool IsValidFleetName(std::string_view name);

// {"v": 1, "type": "push", "controller", "version", "target", "cmd", "args"}.
nlohmann::json MakePushMessage(std::string_view controller, uint64_t version,
                               const FleetTarget& target, std::string_view cmd,
                               const nlohmann::json& args);
// {"v": 1, "type": "beacon", "controller", "latest", "ts_ms"}.
nlohmann::json MakeBeaconMessage(std::string_view controller, uint64_t latest, int64_t ts_ms);
// {"v": 1, "type": "uptodate", "controller", "latest"}.
nlohmann::json MakeUptodateMessage(std::string_view controller, uint64_t latest);

struct Hello {
  std::string agent;
  std::vector<std::string> groups;
  std::string sha256;            // "" when the agent did not say
  uint64_t applied_version = 0;  // missing means 0: a new agent
  uint64_t synced_version = 0;
};

struct Ack {
  std::string agent;
  uint64_t version = 0;
  std::string outcome;    // applied, unchanged, refused, ignored
  nlohmann::json error;   // {"code", "message"} or null
  std::string sha256;     // "" when absent
  int64_t total_ms = -1;  // -1 when absent
  nlohmann::json result;  // the command's result, or null
};

// The "type" of an agent message ("hello", "ack", ...), or kBadRequest when `message` is not a
// map of protocol version 1 with a string "type".
proto::Result<std::string> AgentMessageType(const nlohmann::json& message);
// Precondition: AgentMessageType(message) is "hello" / "ack". kBadRequest names the bad field.
proto::Result<Hello> ParseHello(const nlohmann::json& message);
proto::Result<Ack> ParseAck(const nlohmann::json& message);

}  // namespace lb::cli
