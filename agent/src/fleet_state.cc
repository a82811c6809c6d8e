#include "fleet_state.h"

#include <algorithm>
#include <filesystem>
#include <random>

#include "lb/common/file.h"
#include "lb/proto/codec.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;
using std::chrono::milliseconds;

Status BadMessage(const std::string& why) { return Status(ErrorCode::kBadRequest, why); }

// A non-negative integer field (msgpack positive integers decode as unsigned; JSON built in
// code may hold them as signed).
Result<uint64_t> UnsignedField(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end()) return BadMessage(std::string("no \"") + key + "\"");
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer() && it->get<int64_t>() >= 0) {
    return static_cast<uint64_t>(it->get<int64_t>());
  }
  return BadMessage(std::string("\"") + key + "\" must be an unsigned integer, got " +
                    it->type_name());
}

Result<std::string> ControllerField(const json& body) {
  auto it = body.find("controller");
  if (it == body.end() || !it->is_string() || it->get<std::string>().empty()) {
    return BadMessage("\"controller\" must be a non-empty string");
  }
  return it->get<std::string>();
}

Result<FleetTarget> ParseTarget(const json& body) {
  auto it = body.find("target");
  if (it == body.end() || !it->is_object()) return BadMessage("\"target\" must be a map");
  auto kind = it->find("kind");
  if (kind == it->end() || !kind->is_string()) {
    return BadMessage("\"target.kind\" must be a string");
  }
  FleetTarget target;
  const std::string k = kind->get<std::string>();
  if (k == "all") {
    target.kind = FleetTarget::Kind::kAll;
    return target;
  }
  if (k == "group") {
    target.kind = FleetTarget::Kind::kGroup;
  } else if (k == "agent") {
    target.kind = FleetTarget::Kind::kAgent;
  } else {
    return BadMessage("\"target.kind\" must be all, group or agent, got \"" + k.substr(0, 32) +
                      "\"");
  }
  auto name = it->find("name");
  if (name == it->end() || !name->is_string() || name->get<std::string>().empty()) {
    return BadMessage("\"target.name\" must be a non-empty string for kind " + k);
  }
  target.name = name->get<std::string>();
  return target;
}

}  // namespace

std::string FleetTarget::ToString() const {
  switch (kind) {
    case Kind::kAll:
      return "all";
    case Kind::kGroup:
      return "group/" + name;
    case Kind::kAgent:
      return "agent/" + name;
  }
  return "?";
}

Result<FleetMessage> ParseFleetMessage(const json& body) {
  if (!body.is_object()) return BadMessage(std::string("not a map but ") + body.type_name());
  if (auto v = body.find("v"); v != body.end()) {
    if (!v->is_number_integer() || v->get<int64_t>() != proto::kProtocolVersion) {
      return BadMessage("unsupported protocol version " +
                        v->dump(-1, ' ', false, json::error_handler_t::replace));
    }
  }
  auto type = body.find("type");
  if (type == body.end() || !type->is_string()) return BadMessage("\"type\" must be a string");
  const std::string t = type->get<std::string>();
  if (t != "push" && t != "beacon" && t != "uptodate") {
    return BadMessage("unknown message type \"" + t.substr(0, 32) + "\"");
  }
  auto controller = ControllerField(body);
  if (!controller.ok()) return controller.status();
  if (t == "beacon" || t == "uptodate") {
    auto latest = UnsignedField(body, "latest");
    if (!latest.ok()) return latest.status();
    if (t == "beacon") return FleetMessage(FleetBeacon{*controller, *latest});
    return FleetMessage(FleetUptodate{*controller, *latest});
  }
  FleetPush push;
  push.controller = *controller;
  auto version = UnsignedField(body, "version");
  if (!version.ok()) return version.status();
  push.version = *version;
  auto target = ParseTarget(body);
  if (!target.ok()) return target.status();
  push.target = std::move(*target);
  if (auto cmd = body.find("cmd"); cmd != body.end() && cmd->is_string()) {
    push.cmd = cmd->get<std::string>();
  }
  if (auto args = body.find("args"); args != body.end() && !args->is_null()) push.args = *args;
  return FleetMessage(std::move(push));
}

json FleetHello(const std::string& agent_id, const std::vector<std::string>& groups,
                const std::string& sha256, uint64_t applied_version, uint64_t synced_version) {
  return json{{"v", proto::kProtocolVersion},
              {"type", "hello"},
              {"agent", agent_id},
              {"groups", groups},
              {"sha256", sha256},
              {"applied_version", applied_version},
              {"synced_version", synced_version}};
}

json FleetAckMessage(const std::string& agent_id, const FleetAck& ack) {
  json body = {{"v", proto::kProtocolVersion}, {"type", "ack"},          {"agent", agent_id},
               {"version", ack.version},       {"outcome", ack.outcome}, {"sha256", ack.sha256},
               {"total_ms", ack.total_ms}};
  if (!ack.error.ok()) {
    body["error"] = {{"code", proto::ErrorCodeName(ack.error.code())},
                     {"message", ack.error.message()}};
  }
  if (!ack.result.is_null()) body["result"] = ack.result;
  return body;
}

Result<FleetPersisted> LoadFleetState(const std::string& path) {
  // {"v", "applied_version", "controller"}: a few dozen bytes.
  auto text = common::ReadSmallFileIfExists(path, 64 * 1024);
  if (!text.ok()) return text.status();
  if (!text->has_value()) return FleetPersisted{};
  json doc = json::parse(**text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status(ErrorCode::kInternal, path + ": not a JSON object");
  }
  auto version = UnsignedField(doc, "applied_version");
  if (!version.ok()) return Status(ErrorCode::kInternal, path + ": " + version.status().message());
  FleetPersisted out;
  out.applied_version = *version;
  if (auto c = doc.find("controller"); c != doc.end()) {
    if (!c->is_string()) {
      return Status(ErrorCode::kInternal, path + ": \"controller\" must be a string");
    }
    out.controller = c->get<std::string>();
  }
  return out;
}

Status SaveFleetState(const std::string& path, const FleetPersisted& state) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) return common::OsError("create directory", parent.string(), ec.value());
  }
  json doc = {
      {"v", 1}, {"applied_version", state.applied_version}, {"controller", state.controller}};
  return common::WriteFileAtomically(path, doc.dump() + "\n");
}

FleetState::JitterFn FleetState::RandomJitter() {
  return [] {
    thread_local std::mt19937 rng{std::random_device{}()};
    return milliseconds(std::uniform_int_distribution<int>(0, 500)(rng));
  };
}

FleetState::FleetState(std::string agent_id, std::vector<std::string> groups,
                       milliseconds beacon_timeout, JitterFn jitter)
    : agent_id_(std::move(agent_id)),
      groups_(std::move(groups)),
      beacon_timeout_(beacon_timeout),
      jitter_(jitter ? std::move(jitter) : RandomJitter()) {}

void FleetState::Restore(const FleetPersisted& persisted) {
  followed_ = persisted.controller;
  followed_beacon_.reset();
  applied_version_ = synced_version_ = completed_version_ = persisted.applied_version;
}

FleetPersisted FleetState::ToPersisted() const { return {completed_version_, followed_}; }

bool FleetState::Matches(const FleetTarget& target) const {
  switch (target.kind) {
    case FleetTarget::Kind::kAll:
      return true;
    case FleetTarget::Kind::kGroup:
      return std::find(groups_.begin(), groups_.end(), target.name) != groups_.end();
    case FleetTarget::Kind::kAgent:
      return target.name == agent_id_;
  }
  return false;
}

bool FleetState::FollowedAlive(TimePoint now) const {
  return followed_beacon_ && now - *followed_beacon_ < beacon_timeout_;
}

FleetState::Admission FleetState::Admit(const std::string& controller, TimePoint now) {
  Admission a;
  if (followed_.empty() || controller == followed_) {
    followed_ = controller;
    a.accepted = true;
    return a;
  }
  if (FollowedAlive(now)) {
    auto ago = std::chrono::duration_cast<milliseconds>(now - *followed_beacon_).count();
    a.error = "this agent follows controller " + followed_ + " (last beacon " +
              std::to_string(ago) + " ms ago); refusing controller " + controller;
    return a;
  }
  // The followed controller is silent: the new one takes over, with its own version counter.
  a.accepted = true;
  a.switched = true;
  a.previous = followed_;
  followed_ = controller;
  followed_beacon_.reset();
  applied_version_ = synced_version_ = completed_version_ = 0;
  return a;
}

FleetState::PushVerdict FleetState::OnPush(const FleetPush& push, bool via_router, TimePoint now) {
  if (via_router) hello_sent_.reset();
  PushVerdict v;
  if (!Matches(push.target)) return v;
  v.admission = Admit(push.controller, now);
  if (!v.admission.accepted) {
    v.action = PushAction::kConflict;
  } else if (push.version <= applied_version_) {
    v.action = PushAction::kIgnore;
  } else {
    v.action = PushAction::kProcess;
    applied_version_ = push.version;
    synced_version_ = std::max(synced_version_, push.version);
  }
  return v;
}

void FleetState::PushCompleted(const std::string& controller, uint64_t version) {
  if (controller == followed_) completed_version_ = std::max(completed_version_, version);
}

FleetState::BeaconVerdict FleetState::OnBeacon(const FleetBeacon& beacon, TimePoint now) {
  last_beacon_ = now;
  BeaconVerdict v;
  v.admission = Admit(beacon.controller, now);
  if (!v.admission.accepted) {
    if (conflict_reported_ != beacon.controller || now - conflict_reported_at_ >= beacon_timeout_) {
      conflict_reported_ = beacon.controller;
      conflict_reported_at_ = now;
      v.report_conflict = true;
    }
    return v;
  }
  followed_beacon_ = now;
  if (beacon.latest > synced_version_ && !HelloOutstanding(now) && !hello_due_) {
    ScheduleHello(now + jitter_());
    v.resync = true;
  }
  return v;
}

FleetState::Admission FleetState::OnUptodate(const FleetUptodate& uptodate, TimePoint now) {
  hello_sent_.reset();
  Admission a = Admit(uptodate.controller, now);
  if (a.accepted) synced_version_ = std::max(synced_version_, uptodate.latest);
  return a;
}

void FleetState::OnConnected(TimePoint now) {
  ++connections_;
  hello_sent_.reset();
  ScheduleHello(connections_ == 1 ? now : now + jitter_());
}

void FleetState::OnSocketsCreated(TimePoint now) {
  sockets_since_ = now;
  hello_due_.reset();
  hello_sent_.reset();
}

void FleetState::ScheduleHello(TimePoint at) {
  if (!hello_due_ || at < *hello_due_) hello_due_ = at;
}

void FleetState::HelloSent(TimePoint now) {
  hello_due_.reset();
  hello_sent_ = now;
}

bool FleetState::HelloOutstanding(TimePoint now) const {
  return hello_sent_ && now - *hello_sent_ < beacon_timeout_;
}

bool FleetState::Connected(TimePoint now) const {
  return last_beacon_ && now - *last_beacon_ < beacon_timeout_;
}

FleetState::TimePoint FleetState::DeadAt() const {
  TimePoint since = sockets_since_;
  if (last_beacon_ && *last_beacon_ > since) since = *last_beacon_;
  return since + beacon_timeout_;
}

bool FleetState::ConnectionDead(TimePoint now) const { return now >= DeadAt(); }

}  // namespace lb::agent
