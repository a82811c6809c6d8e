#include "controller_core.h"

#include <algorithm>
#include <cstdio>
#include <set>

namespace lb::controller {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::FleetTarget;
using proto::Result;
using proto::Status;

// Acks may carry a `status` result of thousands of servers.
constexpr size_t kMaxAgentFrameBytes = 16 * 1024 * 1024;
// A control request carries a whole config.
constexpr size_t kMaxControlFrameBytes = 64 * 1024 * 1024 + 64 * 1024;
// An agent ahead of the counter moves it, but only this far (2^53: what JSON readers can count
// exactly), so that one hello cannot push it out of range.
constexpr uint64_t kMaxVersion = uint64_t{1} << 53;

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out.empty() ? "-" : out;
}

std::string ShortSha(const std::string& sha) { return sha.empty() ? "-" : sha.substr(0, 12); }

bool Substantive(const std::string& outcome) { return outcome != proto::kAckIgnored; }
bool Applied(const std::string& outcome) {
  return outcome == proto::kAckApplied || outcome == proto::kAckUnchanged;
}

std::string V(uint64_t version) { return "v" + std::to_string(version); }

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
  limits.max_objects = 10000;  // a hello or an ack is a map of a few fields
  return limits;
}

proto::DecodeLimits ControllerCore::ControlLimits() {
  proto::DecodeLimits limits;
  limits.max_frame_bytes = kMaxControlFrameBytes;
  return limits;
}

ControllerCore::ControllerCore(std::string controller_id, PersistentState state, StateStore* store,
                               std::map<std::string, std::string> configured_keys, int64_t now_ms)
    : id_(std::move(controller_id)),
      state_(std::move(state)),
      store_(store),
      configured_keys_(std::move(configured_keys)),
      started_ms_(now_ms) {
  state_.controller_id = id_;
}

const StoredPush* ControllerCore::DesiredFor(std::string_view agent_id,
                                             const std::vector<std::string>& groups) const {
  const StoredPush* best = nullptr;
  for (const auto& [key, target] : state_.targets) {
    if (!target.desired || !proto::TargetMatches(target.desired->target, agent_id, groups)) {
      continue;
    }
    if (best == nullptr || target.desired->version > best->version) best = &*target.desired;
  }
  return best;
}

proto::FleetLiveness ControllerCore::Liveness(const AgentRecord& agent, int64_t now_ms) const {
  if (agent.hello_interval_ms <= 0) return proto::FleetLiveness::kUnknown;
  return now_ms - agent.last_seen_ms <= kLostAfterIntervals * agent.hello_interval_ms
             ? proto::FleetLiveness::kAlive
             : proto::FleetLiveness::kLost;
}

Status ControllerCore::Save(const PersistentState& next) {
  if (store_ == nullptr) return Status::Ok();
  return store_->Save(next);
}

namespace {

// `push` becomes the desired state of its target in `state`; a desired `all` push makes every
// older push of every target unreachable: they are dropped.
void MakeDesired(PersistentState& state, const StoredPush& push, DesiredBecause because) {
  TargetState& target = state.targets[proto::TargetKey(push.target)];
  target.desired = push;
  target.because = because;
  if (target.pending && target.pending->version <= push.version) {
    target.pending.reset();
    target.awaiting.clear();
  }
  if (push.target.kind != FleetTarget::Kind::kAll) return;
  for (auto it = state.targets.begin(); it != state.targets.end();) {
    TargetState& other = it->second;
    if (other.desired && other.desired->version < push.version) other.desired.reset();
    if (other.pending && other.pending->version < push.version) {
      other.pending.reset();
      other.awaiting.clear();
    }
    it = other.empty() ? state.targets.erase(it) : std::next(it);
  }
}

}  // namespace

Result<StoredPush> ControllerCore::RecordPush(const FleetTarget& target, const std::string& cmd,
                                              json args, int64_t now_ms, bool always,
                                              std::set<std::string> awaiting) {
  PersistentState next = state_;
  StoredPush push;
  push.version = next.latest + 1;
  push.target = target;
  push.cmd = cmd;
  push.ts_ms = now_ms;
  // Pushes with the same args share them: a staged rollout stores one push per agent.
  for (const auto& [key, stored] : next.targets) {
    for (const auto* candidate : {&stored.desired, &stored.pending}) {
      if (*candidate && (*candidate)->args && *(*candidate)->args == args) {
        push.args = (*candidate)->args;
      }
    }
  }
  if (!push.args) push.args = std::make_shared<const json>(std::move(args));
  next.latest = push.version;
  if (cmd == "reload") {
    if (always || awaiting.empty()) {
      MakeDesired(next, push, DesiredBecause::kOperator);
    } else {
      TargetState& pending_target = next.targets[proto::TargetKey(target)];
      pending_target.pending = push;
      pending_target.awaiting = std::move(awaiting);
    }
  }
  if (Status saved = Save(next); !saved.ok()) {
    return Status(ErrorCode::kInternal, "cannot record version " + std::to_string(push.version) +
                                            ", nothing was pushed: " + saved.message());
  }
  state_ = std::move(next);
  return push;
}

std::string ControllerCore::Decide(const std::string& key, bool applied, int64_t now_ms) {
  (void)now_ms;
  PersistentState next = state_;
  TargetState& target = next.targets[key];
  if (!target.pending) return "";
  const StoredPush push = *target.pending;
  std::string log = "push " + V(push.version) + " to " + key + ": ";
  if (applied) {
    MakeDesired(next, push, DesiredBecause::kApplied);
    log += "applied by an agent; it is now the desired state of " + key;
  } else {
    target.rejected_version = push.version;
    target.pending.reset();
    target.awaiting.clear();
    log += "no agent applied it (every agent it waited for refused it or went silent); " + key +
           (target.desired ? " keeps " + V(target.desired->version) : " has no desired state") +
           ", agents that say hello later do not get it";
  }
  if (Status saved = Save(next); !saved.ok()) {
    return log + "; but saving the state failed (" + saved.message() + "), decided again later";
  }
  state_ = std::move(next);
  return log;
}

std::string ControllerCore::OnPendingAnswer(const proto::FleetAck& ack, int64_t now_ms) {
  for (const auto& [key, target] : state_.targets) {
    if (!target.pending || target.pending->version != ack.version) continue;
    if (Applied(ack.outcome)) return Decide(key, true, now_ms);
    if (target.awaiting.count(ack.agent) == 0) return "";
    PersistentState next = state_;
    next.targets[key].awaiting.erase(ack.agent);
    if (next.targets[key].awaiting.empty()) return Decide(key, false, now_ms);
    if (Status saved = Save(next); saved.ok()) state_ = std::move(next);
    return "";
  }
  return "";
}

std::vector<std::string> ControllerCore::Tick(int64_t now_ms) {
  std::vector<std::string> lines;
  std::vector<std::string> decide;
  PersistentState next = state_;
  bool changed = false;
  for (auto& [key, target] : next.targets) {
    if (!target.pending) continue;
    for (auto it = target.awaiting.begin(); it != target.awaiting.end();) {
      auto agent = agents_.find(*it);
      const bool unheard = agent == agents_.end() || !agent->second.accepted();
      const bool gone = unheard ? now_ms - started_ms_ > kUnheardAgentGraceMs
                                : Liveness(agent->second, now_ms) == proto::FleetLiveness::kLost;
      if (gone) {
        it = target.awaiting.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    if (target.awaiting.empty()) decide.push_back(key);
  }
  if (changed) {
    if (Status saved = Save(next); saved.ok()) state_ = std::move(next);
  }
  for (const auto& key : decide) {
    if (std::string line = Decide(key, false, now_ms); !line.empty()) lines.push_back(line);
  }
  return lines;
}

std::string ControllerCore::CheckKey(const std::string& agent_id, std::string_view curve_key,
                                     int64_t now_ms) {
  (void)now_ms;
  if (curve_key.empty()) return "";
  std::string pinned;
  std::string how;
  if (auto it = configured_keys_.find(agent_id); it != configured_keys_.end()) {
    pinned = it->second;
    how = "configured in [security] agent_keys";
  } else if (auto seen = state_.agent_keys.find(agent_id); seen != state_.agent_keys.end()) {
    pinned = seen->second;
    how = "the key of its first message";
  } else {
    PersistentState next = state_;
    next.agent_keys[agent_id] = std::string(curve_key);
    // A pin that cannot be saved is tried again with the id's next message.
    if (Status saved = Save(next); saved.ok()) state_ = std::move(next);
    return "";
  }
  if (pinned == curve_key) return "";
  AgentRecord& agent = agents_[agent_id];
  agent.id = agent_id;
  ++agent.refused_messages;
  agent.refused_key = std::string(curve_key);
  return "refused a message under agent id " + PrintableId(agent_id) + " with CURVE key " +
         std::string(curve_key) + ": that id is pinned to key " + pinned + " (" + how +
         "); another allow-listed host may be posing as it (to move the id to a new key, set it in "
         "[security] agent_keys)";
}

ControllerCore::AgentAnswer ControllerCore::OnAgentFrame(std::string_view routing_id,
                                                         std::string_view frame, int64_t now_ms,
                                                         std::string_view curve_key) {
  const std::string from = "routing id " + PrintableId(routing_id);
  auto decoded = proto::DecodeMsgpack(frame, AgentLimits());
  if (!decoded.ok()) {
    return {std::nullopt,
            "ignored an undecodable message from " + from + ": " + decoded.status().message()};
  }
  auto message = proto::ParseAgentMessage(*decoded);
  if (!message.ok()) {
    return {std::nullopt, "ignored a message from " + from + ": " + message.status().message()};
  }
  const std::string& agent_id =
      std::visit([](const auto& m) -> const std::string& { return m.agent; }, *message);
  if (std::string refused = CheckKey(agent_id, curve_key, now_ms); !refused.empty()) {
    return {std::nullopt, refused};
  }
  if (auto* hello = std::get_if<proto::FleetHello>(&*message)) {
    AgentAnswer answer = OnHello(*hello, routing_id, now_ms);
    agents_[hello->agent].curve_key = std::string(curve_key);
    return answer;
  }
  auto& ack = std::get<proto::FleetAck>(*message);
  const std::string id = ack.agent;
  AgentAnswer answer = OnAck(std::move(ack), now_ms);
  agents_[id].curve_key = std::string(curve_key);
  return answer;
}

uint64_t ControllerCore::UptodateLatest(std::string_view agent_id,
                                        const std::vector<std::string>& groups,
                                        uint64_t applied_version) const {
  uint64_t latest = state_.latest;
  for (const auto& [key, target] : state_.targets) {
    if (!target.pending || target.pending->version <= applied_version ||
        !proto::TargetMatches(target.pending->target, agent_id, groups)) {
      continue;
    }
    latest = std::min(latest, target.pending->version - 1);
  }
  return latest;
}

ControllerCore::AgentAnswer ControllerCore::OnHello(const proto::FleetHello& hello,
                                                    std::string_view routing_id, int64_t now_ms) {
  AgentRecord& agent = agents_[hello.agent];
  const bool known = agent.accepted();
  // A periodic hello that changes nothing is not worth a log line.
  const bool news = !known || agent.groups != hello.groups || agent.sha256 != hello.sha256 ||
                    agent.applied_version != hello.applied_version ||
                    agent.synced_version != hello.synced_version ||
                    Liveness(agent, now_ms) == proto::FleetLiveness::kLost;
  if (!known) {
    agent.id = hello.agent;
    agent.first_seen_ms = now_ms;
  }
  agent.groups = hello.groups;
  if (!hello.sha256.empty()) agent.sha256 = hello.sha256;
  agent.applied_version = hello.applied_version;
  agent.synced_version = hello.synced_version;
  agent.hello_interval_ms = hello.hello_interval_ms;
  agent.last_seen_ms = now_ms;
  agent.last_hello_ms = now_ms;

  (void)routing_id;  // agents leave it to ZeroMQ: not worth a log line
  std::string log = "hello from " + PrintableId(hello.agent);
  log += " (groups " + PrintableId(Join(hello.groups)) + ", applied " +
         std::to_string(hello.applied_version) + ", sha256 " + PrintableId(ShortSha(hello.sha256)) +
         "): ";

  // An agent ahead of the counter means this state is not the one its versions came from
  // (lost, or another controller's): continue above it, so that the next push is not ignored.
  bool notable = news;
  if (hello.applied_version > kMaxVersion) {
    log += "ignoring its implausible version " + std::to_string(hello.applied_version) + "; ";
    notable = true;
  } else if (hello.applied_version > state_.latest) {
    PersistentState next = state_;
    next.latest = hello.applied_version;
    notable = true;
    if (Status saved = Save(next); saved.ok()) {
      log += "its version is above this controller's latest " + std::to_string(state_.latest) +
             " (was the state lost?); versions continue from " + std::to_string(next.latest) + "; ";
      state_ = std::move(next);
    } else {
      log += "its version is above this controller's latest " + std::to_string(state_.latest) +
             " and saving the new counter failed: " + saved.message() + "; ";
    }
  }
  // A pending push it has processed (completed) without an applied ack this controller saw (it
  // restarted in between): the agent will not answer again; it counts as not applied.
  if (hello.completed_version) {
    for (const auto& [key, target] : state_.targets) {
      if (target.pending && target.pending->version <= *hello.completed_version &&
          target.awaiting.count(hello.agent) != 0) {
        proto::FleetAck answered;
        answered.agent = hello.agent;
        answered.version = target.pending->version;
        answered.outcome = std::string(proto::kAckIgnored);
        if (std::string decided = OnPendingAnswer(answered, now_ms); !decided.empty()) {
          log += decided + "; ";
          notable = true;
        }
        break;
      }
    }
  }

  const StoredPush* desired = DesiredFor(hello.agent, hello.groups);
  if (desired != nullptr && desired->version > hello.applied_version) {
    log += "sent push " + V(desired->version) + " (" + proto::TargetKey(desired->target) + ")";
    proto::FleetPush push{id_,
                          desired->version,
                          desired->target,
                          desired->cmd,
                          desired->args ? *desired->args : json::object(),
                          epoch_};
    return {proto::EncodePush(push), log};
  }
  // A pending push that waits for this agent, which has not even seen it (its SUB socket was
  // still reconnecting when the push was published, as right after a controller restart): the
  // hello gets it, so that a push broadcast before its agents listened is not stuck pending
  // until it times out. Agents that joined after the push wait for the decision (below).
  for (const auto& [key, target] : state_.targets) {
    if (!target.pending || target.awaiting.count(hello.agent) == 0 ||
        target.pending->version <= hello.applied_version ||
        target.pending->version <= hello.synced_version) {
      continue;
    }
    const StoredPush& pending = *target.pending;
    log += "sent pending push " + V(pending.version) + " (" + proto::TargetKey(pending.target) +
           "), which it had not seen";
    proto::FleetPush push{id_,
                          pending.version,
                          pending.target,
                          pending.cmd,
                          pending.args ? *pending.args : json::object(),
                          epoch_};
    return {proto::EncodePush(push), log};
  }
  const uint64_t latest = UptodateLatest(hello.agent, hello.groups, hello.applied_version);
  log += "uptodate (latest " + std::to_string(latest) + ")";
  if (latest < state_.latest) log += ", a newer push is pending";
  return {proto::EncodeUptodate({id_, latest, epoch_}), notable ? log : ""};
}

ControllerCore::AgentAnswer ControllerCore::OnAck(proto::FleetAck ack, int64_t now_ms) {
  AgentRecord& agent = agents_[ack.agent];
  std::string log = "ack from " + PrintableId(ack.agent);
  if (!agent.accepted()) {
    agent.id = ack.agent;
    agent.first_seen_ms = now_ms;
    log += " (no hello yet)";
  }
  agent.last_seen_ms = now_ms;
  log += ": " + V(ack.version) + " " + ack.outcome;
  if (ack.error) {
    log += " (" + PrintableId(ack.error->code) + ": " + PrintableId(ack.error->message) + ")";
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
  if (std::string decided = OnPendingAnswer(ack, now_ms); !decided.empty()) log += "; " + decided;
  const uint64_t version = ack.version;
  agent.acks[version] = proto::FleetAckRecord{std::move(ack), now_ms};
  while (agent.acks.size() > kMaxAcksPerAgent) agent.acks.erase(agent.acks.begin());
  return {std::nullopt, log};
}

ControllerCore::ControlAnswer ControllerCore::OnControlRequest(const proto::Request& request,
                                                               int64_t now_ms) {
  if (request.cmd == "ping") {
    return {Status::Ok(), proto::EncodePingResult({id_, state_.latest}), std::nullopt, ""};
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
  auto request = proto::ParsePushRequest(args);
  if (!request.ok()) {
    return {request.status(), nullptr, std::nullopt,
            "refused a push request: " + request.status().message()};
  }
  std::vector<std::string> matching;
  std::vector<std::string> lost;
  std::set<std::string> groups;
  size_t known = 0;
  for (const auto& [id, agent] : agents_) {
    if (!agent.accepted()) continue;
    ++known;
    groups.insert(agent.groups.begin(), agent.groups.end());
    if (!proto::TargetMatches(request->target, id, agent.groups)) continue;
    (Liveness(agent, now_ms) == proto::FleetLiveness::kLost ? lost : matching).push_back(id);
  }
  const std::string key = proto::TargetKey(request->target);
  if (matching.empty() && !request->allow_no_match) {
    std::string known_groups;
    for (const auto& g : groups) known_groups += (known_groups.empty() ? "" : ", ") + g;
    Status refused(ErrorCode::kBadRequest,
                   (lost.empty() ? "no agent the controller knows matches " + key
                                 : "only lost agents match " + key + " (" + Join(lost) + ")") +
                       " (it knows " + std::to_string(known) + " agent" + (known == 1 ? "" : "s") +
                       (known_groups.empty() ? "" : " in groups " + known_groups) +
                       "); nothing was pushed. Check the name, or allow_no_match (lbctl fleet "
                       "push --allow-no-match) records it for agents that say hello later");
    return {refused, nullptr, std::nullopt, "refused a push: " + refused.message()};
  }
  const bool always = request->desired == proto::FleetPushRequest::Desired::kAlways;
  auto push = RecordPush(request->target, request->cmd, std::move(request->args), now_ms, always,
                         std::set<std::string>(matching.begin(), matching.end()));
  if (!push.ok()) return {push.status(), nullptr, std::nullopt, push.status().message()};

  std::string log = "push " + V(push->version) + " to " + key + " (" + push->cmd;
  if (push->cmd == "reload") {
    log += ", " + std::to_string(push->args->at("config").get_ref<const std::string&>().size()) +
           " bytes";
  }
  log += "): " + std::to_string(matching.size()) + " known agent" +
         (matching.size() == 1 ? "" : "s") + " match";
  if (!lost.empty()) log += ", " + std::to_string(lost.size()) + " lost";
  if (push->cmd == "reload") {
    const auto& target = state_.targets.at(key);
    log += target.pending && target.pending->version == push->version
               ? "; desired once an agent applies it"
               : "; desired at once (" +
                     std::string(matching.empty() ? "no agent to wait for" : "desired = always") +
                     ")";
  }
  proto::FleetPushResult result{
      push->version,       push->target,    proto::TargetTopic(push->target),
      std::move(matching), std::move(lost), state_.latest};
  Publication publication{result.topic, proto::EncodePush({id_, push->version, push->target,
                                                           push->cmd, *push->args, epoch_})};
  return {Status::Ok(), proto::EncodePushResult(result), std::move(publication), log};
}

proto::FleetAgentInfo ControllerCore::AgentInfo(const AgentRecord& agent, int64_t now_ms) const {
  proto::FleetAgentInfo info;
  const StoredPush* desired = DesiredFor(agent.id, agent.groups);
  info.agent = agent.id;
  info.groups = agent.groups;
  info.sha256 = agent.sha256;
  info.applied_version = agent.applied_version;
  info.synced_version = agent.synced_version;
  info.desired_version = desired == nullptr ? 0 : desired->version;
  info.first_seen_ms = agent.first_seen_ms;
  info.last_seen_ms = agent.last_seen_ms;
  info.last_hello_ms = agent.last_hello_ms;
  info.liveness = Liveness(agent, now_ms);
  info.hello_interval_ms = agent.hello_interval_ms;
  if (!agent.acks.empty()) {
    info.last_ack = agent.acks.rbegin()->second;
    info.last_ack->ack.result = nullptr;
  }
  info.curve_key = agent.curve_key;
  info.refused_messages = agent.refused_messages;
  info.refused_key = agent.refused_key;
  return info;
}

ControllerCore::ControlAnswer ControllerCore::Agents(const json& args, int64_t now_ms) const {
  auto request = proto::ParseAgentsRequest(args);
  if (!request.ok()) return {request.status(), nullptr, std::nullopt, ""};
  proto::FleetAgentsResult result;
  result.controller = id_;
  result.latest = state_.latest;
  result.now_ms = now_ms;
  for (const auto& [id, agent] : agents_) {
    if (request->target && !proto::TargetMatches(*request->target, id, agent.groups)) continue;
    result.agents.push_back(AgentInfo(agent, now_ms));
  }
  for (const auto& [key, target] : state_.targets) {
    proto::FleetTargetInfo info;
    info.target = proto::TargetFromKey(key).value_or(FleetTarget::All());
    if (target.desired) {
      info.desired_version = target.desired->version;
      info.desired_because = std::string(DesiredBecauseName(target.because));
    }
    if (target.pending) info.pending_version = target.pending->version;
    info.rejected_version = target.rejected_version;
    result.targets.push_back(std::move(info));
  }
  return {Status::Ok(), proto::EncodeAgentsResult(result), std::nullopt, ""};
}

ControllerCore::ControlAnswer ControllerCore::Acks(const json& args) const {
  auto request = proto::ParseAcksRequest(args);
  if (!request.ok()) return {request.status(), nullptr, std::nullopt, ""};
  const std::set<uint64_t> versions(request->versions.begin(), request->versions.end());
  proto::FleetAcksResult result;
  result.latest = state_.latest;
  for (const auto& [id, agent] : agents_) {
    for (uint64_t v : versions) {
      auto it = agent.acks.find(v);
      if (it != agent.acks.end()) result.acks.push_back(it->second);
    }
  }
  return {Status::Ok(), proto::EncodeAcksResult(result), std::nullopt, ""};
}

Publication ControllerCore::Beacon(int64_t now_ms) const {
  return {std::string(proto::kBeaconTopic),
          proto::EncodeBeacon({id_, state_.latest, now_ms, epoch_})};
}

}  // namespace lb::controller
