#include "fleet_protocol.h"

namespace lb::cli {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;

constexpr size_t kMaxNameBytes = 255;
constexpr size_t kMaxGroups = 1000;

Status Bad(std::string message) { return Status(ErrorCode::kBadRequest, std::move(message)); }

// An optional unsigned integer field: missing or null yields `fallback`.
Result<uint64_t> Version(const json& message, const char* key, std::optional<uint64_t> fallback) {
  auto it = message.find(key);
  if (it == message.end() || it->is_null()) {
    if (fallback) return *fallback;
    return Bad(std::string("\"") + key + "\" is missing");
  }
  if (auto version = AsVersion(*it)) return *version;
  return Bad(std::string("\"") + key + "\" must be a whole number at or above 0, got " +
             it->dump(-1, ' ', false, json::error_handler_t::replace));
}

Result<std::string> AgentId(const json& message) {
  auto it = message.find("agent");
  if (it == message.end() || !it->is_string()) return Bad("\"agent\" must be a string");
  const std::string& id = it->get_ref<const std::string&>();
  if (!IsValidFleetName(id)) {
    return Bad("\"agent\" must be 1 to 255 bytes without '/' or control characters");
  }
  return id;
}

// An optional string field: missing or null yields "".
Result<std::string> OptionalString(const json& message, const char* key) {
  auto it = message.find(key);
  if (it == message.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Bad(std::string("\"") + key + "\" must be a string");
  return it->get<std::string>();
}

}  // namespace

std::optional<uint64_t> AsVersion(const json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(value.get<int64_t>());
  }
  return std::nullopt;
}

std::string TargetKey(const FleetTarget& target) {
  switch (target.kind) {
    case FleetTarget::Kind::kAll:
      return "all";
    case FleetTarget::Kind::kGroup:
      return "group/" + target.name;
    case FleetTarget::Kind::kAgent:
      return "agent/" + target.name;
  }
  return "all";
}

std::string TargetTopic(const FleetTarget& target) { return "fleet/" + TargetKey(target); }

json TargetToJson(const FleetTarget& target) {
  switch (target.kind) {
    case FleetTarget::Kind::kAll:
      return {{"kind", "all"}};
    case FleetTarget::Kind::kGroup:
      return {{"kind", "group"}, {"name", target.name}};
    case FleetTarget::Kind::kAgent:
      return {{"kind", "agent"}, {"name", target.name}};
  }
  return {{"kind", "all"}};
}

Result<FleetTarget> TargetFromJson(const json& value) {
  if (!value.is_object()) return Bad("\"target\" must be a map such as {\"kind\": \"all\"}");
  auto kind = value.find("kind");
  if (kind == value.end() || !kind->is_string()) {
    return Bad("\"target\" needs a string \"kind\": all, group or agent");
  }
  const std::string& k = kind->get_ref<const std::string&>();
  if (k == "all") return FleetTarget::All();
  if (k != "group" && k != "agent") {
    return Bad("target kind \"" + k + "\" is none of all, group, agent");
  }
  auto name = value.find("name");
  if (name == value.end() || !name->is_string() ||
      !IsValidFleetName(name->get_ref<const std::string&>())) {
    return Bad("a " + k + " target needs a \"name\" of 1 to 255 bytes without '/'");
  }
  return k == "group" ? FleetTarget::Group(name->get<std::string>())
                      : FleetTarget::Agent(name->get<std::string>());
}

bool TargetMatches(const FleetTarget& target, std::string_view agent_id,
                   const std::vector<std::string>& groups) {
  switch (target.kind) {
    case FleetTarget::Kind::kAll:
      return true;
    case FleetTarget::Kind::kGroup:
      for (const auto& g : groups) {
        if (g == target.name) return true;
      }
      return false;
    case FleetTarget::Kind::kAgent:
      return target.name == agent_id;
  }
  return false;
}

bool IsValidFleetName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  for (unsigned char c : name) {
    if (c == '/' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

json MakePushMessage(std::string_view controller, uint64_t version, const FleetTarget& target,
                     std::string_view cmd, const json& args) {
  return {{"v", 1},
          {"type", "push"},
          {"controller", controller},
          {"version", version},
          {"target", TargetToJson(target)},
          {"cmd", cmd},
          {"args", args}};
}

json MakeBeaconMessage(std::string_view controller, uint64_t latest, int64_t ts_ms) {
  return {{"v", 1},
          {"type", "beacon"},
          {"controller", controller},
          {"latest", latest},
          {"ts_ms", ts_ms}};
}

json MakeUptodateMessage(std::string_view controller, uint64_t latest) {
  return {{"v", 1}, {"type", "uptodate"}, {"controller", controller}, {"latest", latest}};
}

Result<std::string> AgentMessageType(const json& message) {
  if (!message.is_object()) return Bad(std::string("not a map but ") + message.type_name());
  auto v = message.find("v");
  if (v != message.end() && !(v->is_number_integer() && v->get<int64_t>() == 1)) {
    return Bad("unsupported protocol version " +
               v->dump(-1, ' ', false, json::error_handler_t::replace));
  }
  auto type = message.find("type");
  if (type == message.end() || !type->is_string()) return Bad("no string \"type\"");
  return type->get<std::string>();
}

Result<Hello> ParseHello(const json& message) {
  Hello hello;
  auto agent = AgentId(message);
  if (!agent.ok()) return agent.status();
  hello.agent = std::move(*agent);
  if (auto groups = message.find("groups"); groups != message.end() && !groups->is_null()) {
    if (!groups->is_array() || groups->size() > kMaxGroups) {
      return Bad("\"groups\" must be a list of at most 1000 names");
    }
    for (const auto& g : *groups) {
      if (!g.is_string() || !IsValidFleetName(g.get_ref<const std::string&>())) {
        return Bad("\"groups\" holds something that is not a group name: " +
                   g.dump(-1, ' ', false, json::error_handler_t::replace));
      }
      hello.groups.push_back(g.get<std::string>());
    }
  }
  auto sha = OptionalString(message, "sha256");
  if (!sha.ok()) return sha.status();
  hello.sha256 = std::move(*sha);
  auto applied = Version(message, "applied_version", 0);
  if (!applied.ok()) return applied.status();
  hello.applied_version = *applied;
  auto synced = Version(message, "synced_version", 0);
  if (!synced.ok()) return synced.status();
  hello.synced_version = *synced;
  return hello;
}

Result<Ack> ParseAck(const json& message) {
  Ack ack;
  auto agent = AgentId(message);
  if (!agent.ok()) return agent.status();
  ack.agent = std::move(*agent);
  auto version = Version(message, "version", std::nullopt);
  if (!version.ok()) return version.status();
  ack.version = *version;
  auto outcome = OptionalString(message, "outcome");
  if (!outcome.ok()) return outcome.status();
  ack.outcome = std::move(*outcome);
  if (ack.outcome != "applied" && ack.outcome != "unchanged" && ack.outcome != "refused" &&
      ack.outcome != "ignored") {
    return Bad("\"outcome\" must be applied, unchanged, refused or ignored, not \"" + ack.outcome +
               "\"");
  }
  if (auto error = message.find("error"); error != message.end() && !error->is_null()) {
    if (!error->is_object()) return Bad("\"error\" must be a map {\"code\", \"message\"}");
    ack.error = *error;
  }
  auto sha = OptionalString(message, "sha256");
  if (!sha.ok()) return sha.status();
  ack.sha256 = std::move(*sha);
  if (auto ms = message.find("total_ms"); ms != message.end() && ms->is_number()) {
    ack.total_ms = ms->is_number_float()      ? static_cast<int64_t>(ms->get<double>())
                   : ms->is_number_unsigned() ? static_cast<int64_t>(ms->get<uint64_t>())
                                              : ms->get<int64_t>();
  }
  if (auto result = message.find("result"); result != message.end()) ack.result = *result;
  return ack;
}

}  // namespace lb::cli
