// The fleet messages: every field is read through the few helpers below, so that each rule
// (what a version is, what a name is, what a missing field means) is written once.
#include "lb/proto/fleet.h"

#include "lb/proto/codec.h"

namespace lb::proto {
namespace {

using nlohmann::json;

Status Bad(std::string message) { return Status(ErrorCode::kBadRequest, std::move(message)); }

// A value quoted in an error message: bounded, and safe whatever bytes it holds.
std::string Quote(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  return text.size() > 64 ? text.substr(0, 61) + "..." : text;
}

std::string Key(const char* key) { return std::string("\"") + key + "\""; }

const json* Find(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

// An unsigned integer field; missing or null yields `fallback`, or an error without one.
Result<uint64_t> VersionField(const json& object, const char* key,
                              std::optional<uint64_t> fallback) {
  const json* value = Find(object, key);
  if (value == nullptr) {
    if (fallback) return *fallback;
    return Bad(Key(key) + " is missing");
  }
  if (auto version = AsVersion(*value)) return *version;
  return Bad(Key(key) + " must be a whole number at or above 0, got " + Quote(*value));
}

// A string field; missing or null yields `fallback`, or an error without one.
Result<std::string> StringField(const json& object, const char* key,
                                std::optional<std::string> fallback) {
  const json* value = Find(object, key);
  if (value == nullptr) {
    if (fallback) return *fallback;
    return Bad(Key(key) + " is missing");
  }
  if (!value->is_string()) return Bad(Key(key) + " must be a string, got " + value->type_name());
  return value->get<std::string>();
}

// An integer field (a float is cut to an integer); missing or null yields `fallback`.
Result<int64_t> IntField(const json& object, const char* key, int64_t fallback) {
  const json* value = Find(object, key);
  if (value == nullptr) return fallback;
  if (value->is_number_unsigned()) {
    const uint64_t v = value->get<uint64_t>();
    return v > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v);
  }
  if (value->is_number_integer()) return value->get<int64_t>();
  if (value->is_number_float()) {
    const double d = value->get<double>();
    if (d > -9.2e18 && d < 9.2e18) return static_cast<int64_t>(d);
  }
  return Bad(Key(key) + " must be a number, got " + Quote(*value));
}

Result<bool> BoolField(const json& object, const char* key, bool fallback) {
  const json* value = Find(object, key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) return Bad(Key(key) + " must be true or false, got " + Quote(*value));
  return value->get<bool>();
}

Result<std::string> NameField(const json& object, const char* key) {
  auto name = StringField(object, key, std::nullopt);
  if (!name.ok()) return name.status();
  if (!IsValidFleetName(*name)) {
    return Bad(Key(key) + " must be 1 to 255 bytes without '/' or control characters, got " +
               Quote(*name));
  }
  return name;
}

// A list of names (groups, agent ids), at most `max`.
Result<std::vector<std::string>> NameListField(const json& object, const char* key,
                                               std::size_t max) {
  std::vector<std::string> names;
  const json* list = Find(object, key);
  if (list == nullptr) return names;
  if (!list->is_array() || list->size() > max) {
    return Bad(Key(key) + " must be a list of at most " + std::to_string(max) + " names");
  }
  for (const auto& name : *list) {
    if (!name.is_string() || !IsValidFleetName(name.get_ref<const std::string&>())) {
      return Bad(Key(key) + " holds something that is not a name: " + Quote(name));
    }
    names.push_back(name.get<std::string>());
  }
  return names;
}

// The envelope of every fleet message: a map, "v" 1 when present, the expected "type".
Status CheckEnvelope(const json& message, std::string_view type) {
  if (!message.is_object()) return Bad(std::string("not a map but ") + message.type_name());
  if (const json* v = Find(message, "v");
      v != nullptr && !(v->is_number_integer() && v->get<int64_t>() == kProtocolVersion)) {
    return Bad("unsupported protocol version " + Quote(*v));
  }
  auto found = StringField(message, "type", std::nullopt);
  if (!found.ok()) return found.status();
  if (*found != type)
    return Bad("\"type\" is \"" + *found + "\", not \"" + std::string(type) + "\"");
  return Status::Ok();
}

Result<std::string> MessageType(const json& message) {
  if (!message.is_object()) return Bad(std::string("not a map but ") + message.type_name());
  if (const json* v = Find(message, "v");
      v != nullptr && !(v->is_number_integer() && v->get<int64_t>() == kProtocolVersion)) {
    return Bad("unsupported protocol version " + Quote(*v));
  }
  return StringField(message, "type", std::nullopt);
}

Result<std::string> ControllerField(const json& message) {
  auto controller = StringField(message, "controller", std::nullopt);
  if (!controller.ok() || controller->empty())
    return Bad("\"controller\" must be a non-empty string");
  return controller;
}

// `parse(message)` as the alternative of a message variant.
template <typename Variant, typename Parse>
Result<Variant> ParseAs(Parse parse, const json& message) {
  auto parsed = parse(message);
  if (!parsed.ok()) return parsed.status();
  return Variant(std::move(*parsed));
}

json Message(std::string_view type) { return {{"v", kProtocolVersion}, {"type", type}}; }

json Names(const std::vector<std::string>& names) { return names; }

// Assigns *out from a Result or returns its status from the enclosing function.
#define LB_ASSIGN(out, expr)                          \
  do {                                                \
    auto lb_result_ = (expr);                         \
    if (!lb_result_.ok()) return lb_result_.status(); \
    out = std::move(*lb_result_);                     \
  } while (false)

}  // namespace

// ---- names, versions, targets ----

bool IsValidFleetName(std::string_view name) {
  if (name.empty() || name.size() > kMaxFleetNameBytes) return false;
  for (unsigned char c : name) {
    if (c == '/' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

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

std::optional<FleetTarget> TargetFromKey(std::string_view key) {
  if (key == "all") return FleetTarget::All();
  for (auto [prefix, kind] : {std::pair{std::string_view("group/"), FleetTarget::Kind::kGroup},
                              std::pair{std::string_view("agent/"), FleetTarget::Kind::kAgent}}) {
    if (key.substr(0, prefix.size()) != prefix) continue;
    std::string_view name = key.substr(prefix.size());
    if (!IsValidFleetName(name)) return std::nullopt;
    return FleetTarget{kind, std::string(name)};
  }
  return std::nullopt;
}

std::string TargetTopic(const FleetTarget& target) { return "fleet/" + TargetKey(target); }

json EncodeTarget(const FleetTarget& target) {
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

Result<FleetTarget> ParseTarget(const json& value) {
  if (!value.is_object()) return Bad("\"target\" must be a map such as {\"kind\": \"all\"}");
  auto kind = StringField(value, "kind", std::nullopt);
  if (!kind.ok()) return Bad("\"target\" needs a string \"kind\": all, group or agent");
  if (*kind == "all") return FleetTarget::All();
  if (*kind != "group" && *kind != "agent") {
    return Bad("target kind " + Quote(*kind) + " is none of all, group, agent");
  }
  auto name = NameField(value, "name");
  if (!name.ok()) {
    return Bad("a " + *kind +
               " target needs a \"name\" of 1 to 255 bytes without '/' or control "
               "characters");
  }
  return *kind == "group" ? FleetTarget::Group(std::move(*name))
                          : FleetTarget::Agent(std::move(*name));
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

// ---- controller -> agents ----

json EncodePush(const FleetPush& push) {
  json message = Message("push");
  message["controller"] = push.controller;
  message["version"] = push.version;
  message["target"] = EncodeTarget(push.target);
  message["cmd"] = push.cmd;
  message["args"] = push.args;
  if (push.epoch != 0) message["epoch"] = push.epoch;
  return message;
}

Result<FleetPush> ParsePush(const json& message) {
  if (Status s = CheckEnvelope(message, "push"); !s.ok()) return s;
  FleetPush push;
  LB_ASSIGN(push.controller, ControllerField(message));
  LB_ASSIGN(push.version, VersionField(message, "version", std::nullopt));
  const json* target = Find(message, "target");
  if (target == nullptr) return Bad("\"target\" is missing");
  LB_ASSIGN(push.target, ParseTarget(*target));
  if (const json* cmd = Find(message, "cmd"); cmd != nullptr && cmd->is_string()) {
    push.cmd = cmd->get<std::string>();
  }
  if (const json* args = Find(message, "args")) push.args = *args;
  LB_ASSIGN(push.epoch, VersionField(message, "epoch", uint64_t{0}));
  return push;
}

json EncodeBeacon(const FleetBeacon& beacon) {
  json message = Message("beacon");
  message["controller"] = beacon.controller;
  message["latest"] = beacon.latest;
  message["ts_ms"] = beacon.ts_ms;
  if (beacon.epoch != 0) message["epoch"] = beacon.epoch;
  return message;
}

Result<FleetBeacon> ParseBeacon(const json& message) {
  if (Status s = CheckEnvelope(message, "beacon"); !s.ok()) return s;
  FleetBeacon beacon;
  LB_ASSIGN(beacon.controller, ControllerField(message));
  LB_ASSIGN(beacon.latest, VersionField(message, "latest", std::nullopt));
  LB_ASSIGN(beacon.ts_ms, IntField(message, "ts_ms", 0));
  LB_ASSIGN(beacon.epoch, VersionField(message, "epoch", uint64_t{0}));
  return beacon;
}

json EncodeUptodate(const FleetUptodate& uptodate) {
  json message = Message("uptodate");
  message["controller"] = uptodate.controller;
  message["latest"] = uptodate.latest;
  if (uptodate.epoch != 0) message["epoch"] = uptodate.epoch;
  return message;
}

Result<FleetUptodate> ParseUptodate(const json& message) {
  if (Status s = CheckEnvelope(message, "uptodate"); !s.ok()) return s;
  FleetUptodate uptodate;
  LB_ASSIGN(uptodate.controller, ControllerField(message));
  LB_ASSIGN(uptodate.latest, VersionField(message, "latest", std::nullopt));
  LB_ASSIGN(uptodate.epoch, VersionField(message, "epoch", uint64_t{0}));
  return uptodate;
}

Result<ControllerMessage> ParseControllerMessage(const json& message) {
  auto type = MessageType(message);
  if (!type.ok()) return type.status();
  if (*type == "push") return ParseAs<ControllerMessage>(ParsePush, message);
  if (*type == "beacon") return ParseAs<ControllerMessage>(ParseBeacon, message);
  if (*type == "uptodate") return ParseAs<ControllerMessage>(ParseUptodate, message);
  return Bad("unknown message type " + Quote(*type) +
             "; a controller sends push, beacon, uptodate");
}

// ---- agent -> controller ----

json EncodeHello(const FleetHello& hello) {
  json message = Message("hello");
  message["agent"] = hello.agent;
  message["groups"] = Names(hello.groups);
  message["sha256"] = hello.sha256;
  message["applied_version"] = hello.applied_version;
  message["synced_version"] = hello.synced_version;
  if (hello.completed_version) message["completed_version"] = *hello.completed_version;
  if (hello.hello_interval_ms > 0) message["hello_interval_ms"] = hello.hello_interval_ms;
  return message;
}

Result<FleetHello> ParseHello(const json& message) {
  if (Status s = CheckEnvelope(message, "hello"); !s.ok()) return s;
  FleetHello hello;
  LB_ASSIGN(hello.agent, NameField(message, "agent"));
  LB_ASSIGN(hello.groups, NameListField(message, "groups", kMaxFleetGroups));
  LB_ASSIGN(hello.sha256, StringField(message, "sha256", ""));
  LB_ASSIGN(hello.applied_version, VersionField(message, "applied_version", 0));
  LB_ASSIGN(hello.synced_version, VersionField(message, "synced_version", 0));
  if (Find(message, "completed_version") != nullptr) {
    LB_ASSIGN(hello.completed_version, VersionField(message, "completed_version", std::nullopt));
  }
  LB_ASSIGN(hello.hello_interval_ms, IntField(message, "hello_interval_ms", 0));
  if (hello.hello_interval_ms < 0) hello.hello_interval_ms = 0;
  return hello;
}

namespace {

// The fields of an ack (in an agent's message and in the controller's records alike).
void EncodeAckFields(const FleetAck& ack, json* out) {
  json& o = *out;
  o["agent"] = ack.agent;
  o["version"] = ack.version;
  o["outcome"] = ack.outcome;
  if (ack.error) o["error"] = {{"code", ack.error->code}, {"message", ack.error->message}};
  o["sha256"] = ack.sha256;
  o["total_ms"] = ack.total_ms;
  if (!ack.result.is_null()) o["result"] = ack.result;
}

Result<FleetAck> ParseAckFields(const json& message) {
  FleetAck ack;
  LB_ASSIGN(ack.agent, NameField(message, "agent"));
  LB_ASSIGN(ack.version, VersionField(message, "version", std::nullopt));
  LB_ASSIGN(ack.outcome, StringField(message, "outcome", ""));
  if (ack.outcome != kAckApplied && ack.outcome != kAckUnchanged && ack.outcome != kAckRefused &&
      ack.outcome != kAckIgnored) {
    return Bad("\"outcome\" must be applied, unchanged, refused or ignored, not " +
               Quote(ack.outcome));
  }
  if (const json* error = Find(message, "error")) {
    if (!error->is_object()) return Bad("\"error\" must be a map {\"code\", \"message\"}");
    FleetError e;
    LB_ASSIGN(e.code, StringField(*error, "code", ""));
    LB_ASSIGN(e.message, StringField(*error, "message", ""));
    ack.error = std::move(e);
  }
  LB_ASSIGN(ack.sha256, StringField(message, "sha256", ""));
  LB_ASSIGN(ack.total_ms, IntField(message, "total_ms", -1));
  if (const json* result = Find(message, "result")) ack.result = *result;
  return ack;
}

}  // namespace

json EncodeAck(const FleetAck& ack) {
  json message = Message("ack");
  EncodeAckFields(ack, &message);
  return message;
}

Result<FleetAck> ParseAck(const json& message) {
  if (Status s = CheckEnvelope(message, "ack"); !s.ok()) return s;
  return ParseAckFields(message);
}

Result<AgentMessage> ParseAgentMessage(const json& message) {
  auto type = MessageType(message);
  if (!type.ok()) return type.status();
  if (*type == "hello") return ParseAs<AgentMessage>(ParseHello, message);
  if (*type == "ack") return ParseAs<AgentMessage>(ParseAck, message);
  return Bad("unknown message type " + Quote(*type) + "; an agent sends hello, ack");
}

// ---- control socket ----

json EncodePushRequest(const FleetPushRequest& request) {
  json args = {
      {"target", EncodeTarget(request.target)}, {"cmd", request.cmd}, {"args", request.args}};
  if (request.desired == FleetPushRequest::Desired::kAlways) args["desired"] = "always";
  if (request.allow_no_match) args["allow_no_match"] = true;
  return args;
}

Result<FleetPushRequest> ParsePushRequest(const json& args) {
  if (!args.is_object()) return Bad("the push request's args must be a map");
  FleetPushRequest request;
  const json* target = Find(args, "target");
  if (target == nullptr) return Bad("\"target\" is missing");
  LB_ASSIGN(request.target, ParseTarget(*target));
  LB_ASSIGN(request.cmd, StringField(args, "cmd", "reload"));
  if (request.cmd != "reload" && request.cmd != "status") {
    return Bad("\"cmd\" must be reload or status, not " + Quote(request.cmd));
  }
  if (const json* push_args = Find(args, "args")) {
    if (!push_args->is_object()) return Bad("\"args\" must be a map");
    request.args = *push_args;
  }
  if (request.cmd == "reload") {
    const json* config = Find(request.args, "config");
    if (config == nullptr || !config->is_string()) {
      return Bad("a reload push needs args.config, the whole HAProxy config as a string");
    }
    if (const json* force = Find(request.args, "force"); force != nullptr && !force->is_boolean()) {
      return Bad("args.force must be a boolean");
    }
    for (const auto& [key, value] : request.args.items()) {
      if (key != "config" && key != "force") {
        return Bad("a reload push takes args config and force, not " + Quote(key));
      }
    }
  }
  auto desired = StringField(args, "desired", "on_apply");
  if (!desired.ok()) return desired.status();
  if (*desired == "always") {
    request.desired = FleetPushRequest::Desired::kAlways;
  } else if (*desired != "on_apply") {
    return Bad("\"desired\" must be on_apply or always, not " + Quote(*desired));
  }
  LB_ASSIGN(request.allow_no_match, BoolField(args, "allow_no_match", false));
  return request;
}

json EncodePushResult(const FleetPushResult& result) {
  return {{"version", result.version},  {"target", EncodeTarget(result.target)},
          {"topic", result.topic},      {"matching", Names(result.matching)},
          {"lost", Names(result.lost)}, {"latest", result.latest}};
}

Result<FleetPushResult> ParsePushResult(const json& value) {
  if (!value.is_object()) return Bad("the push result is not a map");
  FleetPushResult result;
  LB_ASSIGN(result.version, VersionField(value, "version", std::nullopt));
  const json* target = Find(value, "target");
  if (target == nullptr) return Bad("\"target\" is missing");
  LB_ASSIGN(result.target, ParseTarget(*target));
  LB_ASSIGN(result.topic, StringField(value, "topic", ""));
  LB_ASSIGN(result.matching, NameListField(value, "matching", SIZE_MAX));
  LB_ASSIGN(result.lost, NameListField(value, "lost", SIZE_MAX));
  LB_ASSIGN(result.latest, VersionField(value, "latest", 0));
  return result;
}

json EncodeAgentsRequest(const FleetAgentsRequest& request) {
  json args = json::object();
  if (request.target) args["target"] = EncodeTarget(*request.target);
  return args;
}

Result<FleetAgentsRequest> ParseAgentsRequest(const json& args) {
  FleetAgentsRequest request;
  if (!args.is_object()) return Bad("the agents request's args must be a map");
  if (const json* target = Find(args, "target")) {
    auto parsed = ParseTarget(*target);
    if (!parsed.ok()) return parsed.status();
    request.target = std::move(*parsed);
  }
  return request;
}

json EncodeAckRecord(const FleetAckRecord& record) {
  json out = json::object();
  EncodeAckFields(record.ack, &out);
  out["received_ms"] = record.received_ms;
  return out;
}

Result<FleetAckRecord> ParseAckRecord(const json& value) {
  if (!value.is_object()) return Bad("an ack record is not a map");
  FleetAckRecord record;
  LB_ASSIGN(record.ack, ParseAckFields(value));
  LB_ASSIGN(record.received_ms, IntField(value, "received_ms", 0));
  return record;
}

std::string_view LivenessName(FleetLiveness liveness) {
  switch (liveness) {
    case FleetLiveness::kAlive:
      return "alive";
    case FleetLiveness::kLost:
      return "lost";
    case FleetLiveness::kUnknown:
      return "unknown";
  }
  return "unknown";
}

json EncodeAgentInfo(const FleetAgentInfo& info) {
  json last_ack = nullptr;
  if (info.last_ack) last_ack = EncodeAckRecord(*info.last_ack);
  return {{"agent", info.agent},
          {"groups", Names(info.groups)},
          {"sha256", info.sha256},
          {"applied_version", info.applied_version},
          {"synced_version", info.synced_version},
          {"desired_version", info.desired_version},
          {"first_seen_ms", info.first_seen_ms},
          {"last_seen_ms", info.last_seen_ms},
          {"last_hello_ms", info.last_hello_ms},
          {"liveness", LivenessName(info.liveness)},
          {"hello_interval_ms", info.hello_interval_ms},
          {"last_ack", std::move(last_ack)},
          {"curve_key", info.curve_key},
          {"refused_messages", info.refused_messages},
          {"refused_key", info.refused_key}};
}

Result<FleetAgentInfo> ParseAgentInfo(const json& value) {
  if (!value.is_object()) return Bad("an agent entry is not a map");
  FleetAgentInfo info;
  LB_ASSIGN(info.agent, NameField(value, "agent"));
  LB_ASSIGN(info.groups, NameListField(value, "groups", kMaxFleetGroups));
  LB_ASSIGN(info.sha256, StringField(value, "sha256", ""));
  LB_ASSIGN(info.applied_version, VersionField(value, "applied_version", 0));
  LB_ASSIGN(info.synced_version, VersionField(value, "synced_version", 0));
  LB_ASSIGN(info.desired_version, VersionField(value, "desired_version", 0));
  LB_ASSIGN(info.first_seen_ms, IntField(value, "first_seen_ms", 0));
  LB_ASSIGN(info.last_seen_ms, IntField(value, "last_seen_ms", 0));
  LB_ASSIGN(info.last_hello_ms, IntField(value, "last_hello_ms", 0));
  auto liveness = StringField(value, "liveness", "unknown");
  if (!liveness.ok()) return liveness.status();
  info.liveness = *liveness == "alive"  ? FleetLiveness::kAlive
                  : *liveness == "lost" ? FleetLiveness::kLost
                                        : FleetLiveness::kUnknown;
  LB_ASSIGN(info.hello_interval_ms, IntField(value, "hello_interval_ms", 0));
  if (const json* last_ack = Find(value, "last_ack")) {
    auto record = ParseAckRecord(*last_ack);
    if (!record.ok()) return record.status();
    info.last_ack = std::move(*record);
  }
  LB_ASSIGN(info.curve_key, StringField(value, "curve_key", ""));
  LB_ASSIGN(info.refused_messages, VersionField(value, "refused_messages", 0));
  LB_ASSIGN(info.refused_key, StringField(value, "refused_key", ""));
  return info;
}

json EncodeTargetInfo(const FleetTargetInfo& info) {
  return {{"target", EncodeTarget(info.target)},     {"key", TargetKey(info.target)},
          {"desired_version", info.desired_version}, {"desired_because", info.desired_because},
          {"pending_version", info.pending_version}, {"rejected_version", info.rejected_version}};
}

Result<FleetTargetInfo> ParseTargetInfo(const json& value) {
  if (!value.is_object()) return Bad("a target entry is not a map");
  FleetTargetInfo info;
  const json* target = Find(value, "target");
  if (target == nullptr) return Bad("\"target\" is missing");
  LB_ASSIGN(info.target, ParseTarget(*target));
  LB_ASSIGN(info.desired_version, VersionField(value, "desired_version", 0));
  LB_ASSIGN(info.desired_because, StringField(value, "desired_because", ""));
  LB_ASSIGN(info.pending_version, VersionField(value, "pending_version", 0));
  LB_ASSIGN(info.rejected_version, VersionField(value, "rejected_version", 0));
  return info;
}

json EncodeAgentsResult(const FleetAgentsResult& result) {
  json agents = json::array();
  for (const auto& agent : result.agents) agents.push_back(EncodeAgentInfo(agent));
  json targets = json::array();
  for (const auto& target : result.targets) targets.push_back(EncodeTargetInfo(target));
  return {{"controller", result.controller},
          {"latest", result.latest},
          {"now_ms", result.now_ms},
          {"agents", std::move(agents)},
          {"targets", std::move(targets)}};
}

Result<FleetAgentsResult> ParseAgentsResult(const json& value) {
  if (!value.is_object()) return Bad("the agents result is not a map");
  FleetAgentsResult result;
  LB_ASSIGN(result.controller, StringField(value, "controller", ""));
  LB_ASSIGN(result.latest, VersionField(value, "latest", 0));
  LB_ASSIGN(result.now_ms, IntField(value, "now_ms", 0));
  for (const char* key : {"agents", "targets"}) {
    const json* list = Find(value, key);
    if (list == nullptr) continue;
    if (!list->is_array()) return Bad(Key(key) + " must be a list");
    for (const auto& entry : *list) {
      if (std::string_view(key) == "agents") {
        auto agent = ParseAgentInfo(entry);
        if (!agent.ok()) return agent.status();
        result.agents.push_back(std::move(*agent));
      } else {
        auto target = ParseTargetInfo(entry);
        if (!target.ok()) return target.status();
        result.targets.push_back(std::move(*target));
      }
    }
  }
  return result;
}

json EncodeAcksRequest(const FleetAcksRequest& request) { return {{"versions", request.versions}}; }

Result<FleetAcksRequest> ParseAcksRequest(const json& args) {
  const json* versions = args.is_object() ? Find(args, "versions") : nullptr;
  if (versions == nullptr || !versions->is_array() ||
      versions->size() > kMaxAckVersionsPerRequest) {
    return Bad("acks needs \"versions\", a list of at most 100000 push versions");
  }
  FleetAcksRequest request;
  for (const auto& v : *versions) {
    auto version = AsVersion(v);
    if (!version) return Bad("\"versions\" must hold whole numbers");
    request.versions.push_back(*version);
  }
  return request;
}

json EncodeAcksResult(const FleetAcksResult& result) {
  json acks = json::array();
  for (const auto& record : result.acks) acks.push_back(EncodeAckRecord(record));
  return {{"latest", result.latest}, {"acks", std::move(acks)}};
}

Result<FleetAcksResult> ParseAcksResult(const json& value) {
  if (!value.is_object()) return Bad("the acks result is not a map");
  FleetAcksResult result;
  LB_ASSIGN(result.latest, VersionField(value, "latest", 0));
  const json* acks = Find(value, "acks");
  if (acks == nullptr || !acks->is_array()) return Bad("\"acks\" must be a list");
  for (const auto& entry : *acks) {
    auto record = ParseAckRecord(entry);
    if (!record.ok()) return record.status();
    result.acks.push_back(std::move(*record));
  }
  return result;
}

json EncodePingResult(const FleetPingResult& result) {
  return {{"controller", result.controller}, {"latest", result.latest}};
}

Result<FleetPingResult> ParsePingResult(const json& value) {
  if (!value.is_object()) return Bad("the ping result is not a map");
  FleetPingResult result;
  LB_ASSIGN(result.controller, StringField(value, "controller", ""));
  LB_ASSIGN(result.latest, VersionField(value, "latest", 0));
  return result;
}

#undef LB_ASSIGN

}  // namespace lb::proto
