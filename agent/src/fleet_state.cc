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

// A non-negative integer field of the state file.
Result<uint64_t> UnsignedField(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end()) return Status(ErrorCode::kInternal, std::string("no \"") + key + "\"");
  if (auto version = proto::AsVersion(*it)) return *version;
  return Status(ErrorCode::kInternal,
                std::string("\"") + key + "\" must be an unsigned integer, got " + it->type_name());
}

// An error message is cut to this in the state file, which is read with a 64 KiB limit.
constexpr std::size_t kMaxPersistedErrorBytes = 2048;

}  // namespace

Result<FleetPersisted> LoadFleetState(const std::string& path) {
  // {"v", "applied_version", "controller", "last_ack"}: well under 4 KiB.
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
  if (doc.contains("epoch")) {
    auto epoch = UnsignedField(doc, "epoch");
    if (!epoch.ok()) return Status(ErrorCode::kInternal, path + ": " + epoch.status().message());
    out.epoch = *epoch;
  }
  if (auto a = doc.find("last_ack"); a != doc.end() && !a->is_null()) {
    auto ack = proto::ParseAck(*a);
    if (!ack.ok()) {
      return Status(ErrorCode::kInternal, path + ": \"last_ack\": " + ack.status().message());
    }
    out.last_ack = std::move(*ack);
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
  if (state.epoch != 0) doc["epoch"] = state.epoch;
  if (state.last_ack) {
    proto::FleetAck ack = *state.last_ack;
    ack.result = nullptr;  // the reload's details stay in the agent's history
    if (ack.error && ack.error->message.size() > kMaxPersistedErrorBytes) {
      ack.error->message.resize(kMaxPersistedErrorBytes);
      ack.error->message += "...";
    }
    doc["last_ack"] = proto::EncodeAck(ack);
  }
  return common::WriteFileAtomically(path, doc.dump() + "\n");
}

FleetState::JitterFn FleetState::RandomJitter() {
  return [] {
    thread_local std::mt19937 rng{std::random_device{}()};
    return milliseconds(std::uniform_int_distribution<int>(0, 500)(rng));
  };
}

FleetState::FleetState(std::string agent_id, std::vector<std::string> groups,
                       milliseconds beacon_timeout, JitterFn jitter, milliseconds hello_interval)
    : agent_id_(std::move(agent_id)),
      groups_(std::move(groups)),
      beacon_timeout_(beacon_timeout),
      hello_interval_(hello_interval),
      jitter_(jitter ? std::move(jitter) : RandomJitter()) {}

void FleetState::Restore(const FleetPersisted& persisted) {
  followed_ = persisted.controller;
  followed_beacon_.reset();
  applied_version_ = synced_version_ = completed_version_ = persisted.applied_version;
  epoch_ = persisted.epoch;
  epoch_controller_.clear();
}

FleetPersisted FleetState::ToPersisted() const {
  return {completed_version_, followed_, epoch_, std::nullopt};
}

bool FleetState::Matches(const FleetTarget& target) const {
  return proto::TargetMatches(target, agent_id_, groups_);
}

bool FleetState::FollowedAlive(TimePoint now) const {
  return followed_beacon_ && now - *followed_beacon_ < beacon_timeout_;
}

FleetState::Admission FleetState::Admit(const std::string& controller, uint64_t epoch,
                                        TimePoint now) {
  Admission a;
  if (epoch < epoch_) {
    a.fenced = true;
    a.error = "controller " + controller + " has epoch " + std::to_string(epoch) +
              ", below epoch " + std::to_string(epoch_) +
              (epoch_controller_.empty() ? "" : " of controller " + epoch_controller_) +
              " that this agent already saw: a newer leader was elected; refusing it";
    return a;
  }
  if (epoch > epoch_) {
    // A newer leader: followed at once. Elected controllers share one version counter.
    const bool shared_counter = epoch_ != 0;
    epoch_ = epoch;
    epoch_controller_ = controller;
    a.accepted = true;
    a.epoch_raised = true;
    if (!followed_.empty() && controller != followed_) {
      a.switched = true;
      a.previous = followed_;
      followed_beacon_.reset();
      if (!shared_counter) {
        a.versions_reset = true;
        applied_version_ = synced_version_ = completed_version_ = 0;
        in_flight_.clear();  // the previous counter's: the new one's version 1 is another push
      }
    }
    followed_ = controller;
    return a;
  }
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
  a.versions_reset = true;
  a.previous = followed_;
  followed_ = controller;
  followed_beacon_.reset();
  applied_version_ = synced_version_ = completed_version_ = 0;
  in_flight_.clear();
  return a;
}

FleetState::PushVerdict FleetState::OnPush(const FleetPush& push, bool via_router, TimePoint now) {
  if (via_router) hello_sent_.reset();
  PushVerdict v;
  if (!Matches(push.target)) return v;
  v.admission = Admit(push.controller, push.epoch, now);
  if (!v.admission.accepted) {
    v.action = PushAction::kConflict;
  } else if (in_flight_.count(push.version) != 0) {
    v.action = PushAction::kInFlight;
  } else if (push.version <= applied_version_) {
    v.action = PushAction::kIgnore;
  } else {
    v.action = PushAction::kProcess;
    in_flight_.insert(push.version);
    applied_version_ = push.version;
    synced_version_ = std::max(synced_version_, push.version);
  }
  return v;
}

void FleetState::PushCompleted(const std::string& controller, uint64_t version) {
  in_flight_.erase(version);
  if (controller == followed_) completed_version_ = std::max(completed_version_, version);
}

FleetState::BeaconVerdict FleetState::OnBeacon(const FleetBeacon& beacon, TimePoint now) {
  last_beacon_ = now;
  BeaconVerdict v;
  v.admission = Admit(beacon.controller, beacon.epoch, now);
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
  Admission a = Admit(uptodate.controller, uptodate.epoch, now);
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
  last_hello_ = now;
}

bool FleetState::PeriodicHelloOnly(TimePoint now) const {
  return !(hello_due_ && now >= *hello_due_) && HelloDue(now);
}

bool FleetState::HelloDue(TimePoint now) const {
  if (hello_due_ && now >= *hello_due_) return true;
  return hello_interval_.count() > 0 && last_hello_ && Connected(now) && !HelloOutstanding(now) &&
         now >= *last_hello_ + hello_interval_;
}

std::optional<FleetState::TimePoint> FleetState::NextHelloAt(TimePoint now) const {
  std::optional<TimePoint> next = hello_due_;
  if (hello_interval_.count() > 0 && last_hello_ && Connected(now)) {
    TimePoint periodic = *last_hello_ + hello_interval_;
    // An outstanding hello holds the periodic one back until it is answered or expires.
    if (hello_sent_) periodic = std::max(periodic, *hello_sent_ + beacon_timeout_);
    if (!next || periodic < *next) next = periodic;
  }
  return next;
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
