#include "fleet_controller_core.h"

#include <algorithm>
#include <cstdio>
#include <set>

namespace lb::cli {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;

// Acks may carry a `status` result of thousands of servers.
constexpr size_t kMaxAgentFrameBytes = 16 * 1024 * 1024;
// A control request carries a whole config.
constexpr size_t kMaxControlFrameBytes = 64 * 1024 * 1024 + 64 * 1024;
constexpr size_t kMaxAckVersionsPerRequest = 100000;

Status Bad(std::string message) { return Status(ErrorCode::kBadRequest, std::move(message)); }

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out.empty() ? "-" : out;
}

std::string ShortSha(const std::string& sha) { return sha.empty() ? "-" : sha.substr(0, 12); }

bool Substantive(const std::string& outcome) { return outcome != "ignored"; }

json AckToJson(const AckRecord& record) {
  const Ack& ack = record.ack;
  json out = {{"agent", ack.agent},       {"version", ack.version},
              {"outcome", ack.outcome},   {"sha256", ack.sha256},
              {"total_ms", ack.total_ms}, {"received_ms", record.received_ms}};
  if (!ack.error.is_null()) out["error"] = ack.error;
  if (!ack.result.is_null()) out["result"] = ack.result;
  return out;
}

// The checked args of a push request: {"target", "cmd"?, "args"}.
struct PushRequest {
  FleetTarget target;
  std::string cmd = "reload";
  json args = json::object();
};

Result<PushRequest> ParsePushRequest(const json& args) {
  PushRequest push;
  auto target = TargetFromJson(args.contains("target") ? args["target"] : json());
  if (!target.ok()) return target.status();
  push.target = *target;
  auto cmd = proto::StringArg(args, "cmd", "reload");
  if (!cmd.ok()) return cmd.status();
  push.cmd = *cmd;
  if (push.cmd != "reload" && push.cmd != "status") {
    return Bad("\"cmd\" must be reload or status, not \"" + push.cmd + "\"");
  }
  if (args.contains("args") && !args["args"].is_null()) {
    if (!args["args"].is_object()) return Bad("\"args\" must be a map");
    push.args = args["args"];
  }
  if (push.cmd == "reload") {
    auto config = push.args.find("config");
    if (config == push.args.end() || !config->is_string()) {
      return Bad("a reload push needs args.config, the whole HAProxy config as a string");
    }
    if (auto force = push.args.find("force"); force != push.args.end() && !force->is_boolean()) {
      return Bad("args.force must be a boolean");
    }
    for (const auto& [key, value] : push.args.items()) {
      if (key != "config" && key != "force") {
        return Bad("a reload push takes args config and force, not \"" + key + "\"");
      }
    }
  }
  return push;
}

}  // namespace

std::string PrintableId(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c < 0x20 || c >= 0x7f || c == '\\') {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

proto::DecodeLimits ControllerCore::AgentLimits() {
  proto::DecodeLimits limits;
  limits.max_frame_bytes = kMaxAgentFrameBytes;
  return limits;
}

proto::DecodeLimits ControllerCore::ControlLimits() {
  proto::DecodeLimits limits;
  limits.max_frame_bytes = kMaxControlFrameBytes;
  return limits;
}

ControllerCore::ControllerCore(std::string controller_id, PersistentState state,
                               StateDir* state_dir)
    : id_(std::move(controller_id)), state_(std::move(state)), state_dir_(state_dir) {
  state_.controller_id = id_;
}

const StoredPush* ControllerCore::DesiredFor(std::string_view agent_id,
                                             const std::vector<std::string>& groups) const {
  const StoredPush* best = nullptr;
  for (const auto& [key, push] : state_.pushes) {
    if (!TargetMatches(push.target, agent_id, groups)) continue;
    if (best == nullptr || push.version > best->version) best = &push;
  }
  return best;
}

Status ControllerCore::Save(const PersistentState& next) {
  if (state_dir_ == nullptr) return Status::Ok();
  return state_dir_->Save(next);
}

Result<StoredPush> ControllerCore::RecordPush(const FleetTarget& target, const std::string& cmd,
                                              json args, int64_t now_ms) {
  PersistentState next = state_;
  StoredPush push;
  push.version = next.latest + 1;
  push.target = target;
  push.cmd = cmd;
  push.ts_ms = now_ms;
  // Pushes with the same args share them: a staged rollout stores one push per agent.
  for (const auto& [key, stored] : next.pushes) {
    if (stored.args && *stored.args == args) {
      push.args = stored.args;
      break;
    }
  }
  if (!push.args) push.args = std::make_shared<const json>(std::move(args));
  next.latest = push.version;
  if (cmd == "reload") {
    // Nothing older than an `all` push can be anyone's desired state again.
    if (target.kind == FleetTarget::Kind::kAll) next.pushes.clear();
    next.pushes[TargetKey(target)] = push;
  }
  if (Status saved = Save(next); !saved.ok()) {
    return Status(ErrorCode::kInternal, "cannot record version " + std::to_string(push.version) +
                                            ", nothing was pushed: " + saved.message());
  }
  state_ = std::move(next);
  return push;
}

namespace {

// Records the key an agent's message came with; a note for the log when it changed (an agent
// with a new key pair, or another host posing under its id with a key that is allowed too).
std::string NoteCurveKey(AgentRecord& agent, std::string_view curve_key) {
  if (curve_key.empty() || agent.curve_key == curve_key) return "";
  std::string note;
  if (!agent.curve_key.empty()) {
    note = " (CURVE key changed from " + agent.curve_key + " to " + std::string(curve_key) + ")";
  }
  agent.curve_key = std::string(curve_key);
  return note;
}

}  // namespace

ControllerCore::AgentAnswer ControllerCore::OnAgentFrame(std::string_view routing_id,
                                                         std::string_view frame, int64_t now_ms,
                                                         std::string_view curve_key) {
  const std::string from = "routing id " + PrintableId(routing_id);
  auto message = proto::DecodeMsgpack(frame, AgentLimits());
  if (!message.ok()) {
    return {std::nullopt,
            "ignored an undecodable message from " + from + ": " + message.status().message()};
  }
  auto type = AgentMessageType(*message);
  if (!type.ok()) {
    return {std::nullopt, "ignored a message from " + from + ": " + type.status().message()};
  }
  if (*type == "hello") {
    auto hello = ParseHello(*message);
    if (!hello.ok()) {
      return {std::nullopt,
              "ignored a malformed hello from " + from + ": " + hello.status().message()};
    }
    return OnHello(*hello, routing_id, now_ms, curve_key);
  }
  if (*type == "ack") {
    auto ack = ParseAck(*message);
    if (!ack.ok()) {
      return {std::nullopt, "ignored a malformed ack from " + from + ": " + ack.status().message()};
    }
    return OnAck(std::move(*ack), now_ms, curve_key);
  }
  return {std::nullopt, "ignored a message of type \"" + PrintableId(*type) + "\" from " + from};
}

ControllerCore::AgentAnswer ControllerCore::OnHello(const Hello& hello, std::string_view routing_id,
                                                    int64_t now_ms, std::string_view curve_key) {
  AgentRecord& agent = agents_[hello.agent];
  const bool known = agent.first_seen_ms != 0;
  if (!known) {
    agent.id = hello.agent;
    agent.first_seen_ms = now_ms;
  }
  agent.groups = hello.groups;
  if (!hello.sha256.empty()) agent.sha256 = hello.sha256;
  agent.applied_version = hello.applied_version;
  agent.synced_version = hello.synced_version;
  agent.last_seen_ms = now_ms;
  agent.last_hello_ms = now_ms;

  std::string log = "hello from " + PrintableId(hello.agent);
  if (routing_id != hello.agent) log += " (routing id " + PrintableId(routing_id) + ")";
  log += NoteCurveKey(agent, curve_key);
  log += " (groups " + PrintableId(Join(hello.groups)) + ", applied " +
         std::to_string(hello.applied_version) + ", sha256 " + PrintableId(ShortSha(hello.sha256)) +
         "): ";

  // An agent ahead of the counter means this state dir is not the one its versions came from
  // (lost, or another controller's): continue above it, so that the next push is not ignored.
  // Bounded, so that one hello cannot push the counter out of range (2^53: what JSON readers
  // can count exactly).
  constexpr uint64_t kMaxVersion = uint64_t{1} << 53;
  if (hello.applied_version > kMaxVersion) {
    log += "ignoring its implausible version " + std::to_string(hello.applied_version) + "; ";
  } else if (hello.applied_version > state_.latest) {
    PersistentState next = state_;
    next.latest = hello.applied_version;
    if (Status saved = Save(next); saved.ok()) {
      log += "its version is above this controller's latest " + std::to_string(state_.latest) +
             " (was the state dir lost?); versions continue from " + std::to_string(next.latest) +
             "; ";
      state_ = std::move(next);
    } else {
      log += "its version is above this controller's latest " + std::to_string(state_.latest) +
             " and saving the new counter failed: " + saved.message() + "; ";
    }
  }

  const StoredPush* desired = DesiredFor(hello.agent, hello.groups);
  if (desired != nullptr && desired->version > hello.applied_version) {
    log +=
        "sent push v" + std::to_string(desired->version) + " (" + TargetKey(desired->target) + ")";
    return {MakePushMessage(id_, desired->version, desired->target, desired->cmd,
                            desired->args ? *desired->args : json::object()),
            log};
  }
  log += "uptodate (latest " + std::to_string(state_.latest) + ")";
  return {MakeUptodateMessage(id_, state_.latest), log};
}

ControllerCore::AgentAnswer ControllerCore::OnAck(Ack ack, int64_t now_ms,
                                                  std::string_view curve_key) {
  AgentRecord& agent = agents_[ack.agent];
  std::string log = "ack from " + PrintableId(ack.agent);
  if (agent.first_seen_ms == 0) {
    agent.id = ack.agent;
    agent.first_seen_ms = now_ms;
    log += " (no hello yet)";
  }
  log += NoteCurveKey(agent, curve_key);
  agent.last_seen_ms = now_ms;
  log += ": v" + std::to_string(ack.version) + " " + ack.outcome;
  if (ack.error.is_object()) {
    log += " (" + PrintableId(ack.error.value("code", std::string("?"))) + ": " +
           PrintableId(ack.error.value("message", std::string())) + ")";
  }
  if (!ack.sha256.empty()) log += ", sha256 " + PrintableId(ShortSha(ack.sha256));
  if (ack.total_ms >= 0) log += ", " + std::to_string(ack.total_ms) + " ms";

  if (Substantive(ack.outcome)) {
    agent.applied_version = std::max(agent.applied_version, ack.version);
    if (!ack.sha256.empty()) agent.sha256 = ack.sha256;
  }
  auto existing = agent.acks.find(ack.version);
  if (existing != agent.acks.end() && Substantive(existing->second.ack.outcome) &&
      !Substantive(ack.outcome)) {
    // A duplicate of a push it already processed: the first answer is the one that counts.
    log += " (kept its earlier " + existing->second.ack.outcome + ")";
    return {std::nullopt, log};
  }
  const uint64_t version = ack.version;
  agent.acks[version] = AckRecord{std::move(ack), now_ms};
  while (agent.acks.size() > kMaxAcksPerAgent) agent.acks.erase(agent.acks.begin());
  return {std::nullopt, log};
}

ControllerCore::ControlAnswer ControllerCore::OnControlRequest(const proto::Request& request,
                                                               int64_t now_ms) {
  if (request.cmd == "ping") {
    return {Status::Ok(), {{"controller", id_}, {"latest", state_.latest}}, std::nullopt, ""};
  }
  if (request.cmd == "push") return Push(request.args, now_ms);
  if (request.cmd == "agents") return Agents(request.args, now_ms);
  if (request.cmd == "acks") return Acks(request.args);
  return {
      Status(ErrorCode::kUnknownCommand, "unknown control command \"" + PrintableId(request.cmd) +
                                             "\"; the controller knows ping, push, agents, acks"),
      nullptr, std::nullopt, ""};
}

ControllerCore::ControlAnswer ControllerCore::Push(const json& args, int64_t now_ms) {
  auto request = ParsePushRequest(args);
  if (!request.ok()) {
    return {request.status(), nullptr, std::nullopt,
            "refused a push request: " + request.status().message()};
  }
  auto push = RecordPush(request->target, request->cmd, std::move(request->args), now_ms);
  if (!push.ok()) return {push.status(), nullptr, std::nullopt, push.status().message()};

  json matching = json::array();
  for (const auto& [id, agent] : agents_) {
    if (TargetMatches(push->target, id, agent.groups)) matching.push_back(id);
  }
  const std::string topic = TargetTopic(push->target);
  std::string log = "push v" + std::to_string(push->version) + " to " + TargetKey(push->target) +
                    " (" + push->cmd;
  if (push->cmd == "reload") {
    log += ", " + std::to_string(push->args->at("config").get_ref<const std::string&>().size()) +
           " bytes";
  }
  log += "): " + std::to_string(matching.size()) + " known agent" +
         (matching.size() == 1 ? "" : "s") + " match";
  json result = {{"version", push->version},
                 {"target", TargetToJson(push->target)},
                 {"topic", topic},
                 {"matching", std::move(matching)},
                 {"latest", state_.latest}};
  Publication publication{
      topic, MakePushMessage(id_, push->version, push->target, push->cmd, *push->args)};
  return {Status::Ok(), std::move(result), std::move(publication), log};
}

json ControllerCore::AgentToJson(const AgentRecord& agent) const {
  const StoredPush* desired = DesiredFor(agent.id, agent.groups);
  json last_ack = nullptr;
  if (!agent.acks.empty()) last_ack = AckToJson(agent.acks.rbegin()->second);
  if (last_ack.is_object()) last_ack.erase("result");
  return {{"agent", agent.id},
          {"groups", agent.groups},
          {"sha256", agent.sha256},
          {"applied_version", agent.applied_version},
          {"synced_version", agent.synced_version},
          {"desired_version", desired == nullptr ? 0 : desired->version},
          {"first_seen_ms", agent.first_seen_ms},
          {"last_seen_ms", agent.last_seen_ms},
          {"last_hello_ms", agent.last_hello_ms},
          {"last_ack", std::move(last_ack)},
          {"curve_key", agent.curve_key}};
}

ControllerCore::ControlAnswer ControllerCore::Agents(const json& args, int64_t now_ms) const {
  std::optional<FleetTarget> filter;
  if (args.contains("target") && !args["target"].is_null()) {
    auto target = TargetFromJson(args["target"]);
    if (!target.ok()) return {target.status(), nullptr, std::nullopt, ""};
    filter = *target;
  }
  json agents = json::array();
  for (const auto& [id, agent] : agents_) {
    if (filter && !TargetMatches(*filter, id, agent.groups)) continue;
    agents.push_back(AgentToJson(agent));
  }
  return {Status::Ok(),
          {{"controller", id_},
           {"latest", state_.latest},
           {"now_ms", now_ms},
           {"agents", std::move(agents)}},
          std::nullopt,
          ""};
}

ControllerCore::ControlAnswer ControllerCore::Acks(const json& args) const {
  auto versions_arg = args.find("versions");
  if (versions_arg == args.end() || !versions_arg->is_array() ||
      versions_arg->size() > kMaxAckVersionsPerRequest) {
    return {Bad("acks needs \"versions\", a list of at most 100000 push versions"), nullptr,
            std::nullopt, ""};
  }
  std::set<uint64_t> versions;
  for (const auto& v : *versions_arg) {
    auto version = AsVersion(v);
    if (!version) return {Bad("\"versions\" must hold whole numbers"), nullptr, std::nullopt, ""};
    versions.insert(*version);
  }
  json acks = json::array();
  for (const auto& [id, agent] : agents_) {
    for (uint64_t v : versions) {
      auto it = agent.acks.find(v);
      if (it != agent.acks.end()) acks.push_back(AckToJson(it->second));
    }
  }
  return {Status::Ok(), {{"latest", state_.latest}, {"acks", std::move(acks)}}, std::nullopt, ""};
}

Publication ControllerCore::Beacon(int64_t now_ms) const {
  return {std::string(kBeaconTopic), MakeBeaconMessage(id_, state_.latest, now_ms)};
}

}  // namespace lb::cli
