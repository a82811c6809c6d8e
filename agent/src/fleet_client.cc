#include "fleet_client.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <vector>
#include <zmq.hpp>

#include "lb/common/endpoint.h"
#include "lb/common/log.h"
#include "lb/proto/codec.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;
using Clock = FleetState::Clock;
using std::chrono::milliseconds;

// ZeroMQ keeps both connections honest on this side: a ping every second, and a connection
// whose pong has not come within 3 s is dropped and dialled again (100 ms at first, backing off
// to 5 s). No heartbeat TTL is sent: it would make the controller arm a libzmq timer per ping
// and cancel it on the next message, a walk of every timer of its I/O thread (libzmq's
// cancel_timer is linear), so that N agents cost the controller O(N^2) per second; the
// controller finds dead peers with TCP keepalive instead (controller.cc).
constexpr int kHeartbeatIvlMs = 1000;
constexpr int kHeartbeatTimeoutMs = 3000;
constexpr int kReconnectIvlMs = 100;
constexpr int kReconnectIvlMaxMs = 5000;
// Acks and hellos waiting for the controller; beyond this they are dropped (and logged).
constexpr int kDealerSndHwm = 1000;
// Room for the largest config plus the push's envelope.
constexpr std::size_t kEnvelopeBytes = 1024 * 1024;
// Messages read per socket per wake-up, so that a flood on one socket cannot starve the others.
constexpr int kBurst = 256;
// Frames kept of a message with too many (the rest are read and discarded).
constexpr std::size_t kMaxFrames = 4;

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

void Log(const std::string& line) { common::Log(common::LogLevel::kInfo, "fleet" + line); }

// One line, bounded: haproxy's complaints span lines.
std::string OneLine(const std::string& text, std::size_t max = 300) {
  std::string out;
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      if (!out.empty() && out.back() != ' ') out += "; ";
    } else {
      out += c;
    }
    if (out.size() >= max) return out + "...";
  }
  return out;
}

std::string Printable(std::string_view bytes, std::size_t max = 64) {
  std::string out;
  for (char c : bytes.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return bytes.size() > max ? out + "..." : out;
}

proto::DecodeLimits FrameLimits(std::size_t max_frame_bytes) {
  proto::DecodeLimits limits;
  limits.max_frame_bytes = max_frame_bytes;
  limits.max_objects = 10000;  // a push or a beacon is a map of a few fields
  return limits;
}

// Receives one whole message (all its frames); false when none is waiting.
bool RecvMessage(zmq::socket_t& socket, std::vector<zmq::message_t>* frames,
                 std::size_t* frame_count) {
  frames->clear();
  zmq::message_t first;
  if (!socket.recv(first, zmq::recv_flags::dontwait)) return false;
  bool more = first.more();
  frames->push_back(std::move(first));
  *frame_count = 1;
  while (more) {
    // The frames of one message arrive together: this never waits.
    zmq::message_t next;
    if (!socket.recv(next, zmq::recv_flags::none)) break;
    more = next.more();
    ++*frame_count;
    if (frames->size() < kMaxFrames) frames->push_back(std::move(next));
  }
  return true;
}

std::string_view View(const zmq::message_t& m) {
  return std::string_view(static_cast<const char*>(m.data()), m.size());
}

proto::FleetError ErrorOf(const Status& status) {
  return {std::string(proto::ErrorCodeName(status.code())), status.message()};
}

std::string Groups(const std::vector<std::string>& groups) {
  std::string out;
  for (const auto& g : groups) out += (out.empty() ? "" : ",") + g;
  return out.empty() ? "-" : out;
}

}  // namespace

struct FleetClient::Sockets {
  explicit Sockets(zmq::context_t& ctx)
      : sub(ctx, zmq::socket_type::sub), dealer(ctx, zmq::socket_type::dealer) {}
  ~Sockets() {
    if (monitor) zmq_socket_monitor(dealer.handle(), nullptr, 0);
  }
  zmq::socket_t sub;
  zmq::socket_t dealer;
  // Receives the DEALER's connection events; null when the monitor could not be set up (then
  // hello is said when the sockets are created instead).
  std::unique_ptr<zmq::socket_t> monitor;
};

// What a push's processing reports back to the socket thread. Only the envelope of the push
// travels: its config stays with the reload.
struct FleetClient::Completion {
  std::string controller;
  uint64_t version = 0;
  std::string target;
  std::string cmd;
  bool via_router = false;
  Status status;
  json result;
  std::string sha256;
  int64_t total_ms = 0;
};

FleetClient::FleetClient(zmq::context_t& context, const common::Settings& settings,
                         SubmitReloadFn submit, StatusFn status,
                         std::function<std::string()> live_sha256, FleetState::JitterFn jitter)
    : context_(context),
      settings_(settings),
      submit_(std::move(submit)),
      status_(std::move(status)),
      live_sha256_(std::move(live_sha256)),
      max_message_bytes_(settings.agent.max_config_bytes + kEnvelopeBytes),
      decode_limits_(FrameLimits(max_message_bytes_)),
      state_(settings.agent.agent_id, settings.fleet.groups, settings.fleet.beacon_timeout,
             std::move(jitter), settings.fleet.hello_interval),
      mailbox_(std::make_shared<Mailbox>()) {}

FleetClient::~FleetClient() { Stop(); }

Status FleetClient::OpenSockets() {
  static std::atomic<uint64_t> monitors{0};
  const common::FleetSettings& fleet = settings_.fleet;
  auto sockets = std::make_unique<Sockets>(context_);
  std::string step = "set up the sockets";
  try {
    for (zmq::socket_t* s : {&sockets->sub, &sockets->dealer}) {
      s->set(zmq::sockopt::linger, 0);
      s->set(zmq::sockopt::heartbeat_ivl, kHeartbeatIvlMs);
      s->set(zmq::sockopt::heartbeat_timeout, kHeartbeatTimeoutMs);
      s->set(zmq::sockopt::reconnect_ivl, kReconnectIvlMs);
      s->set(zmq::sockopt::reconnect_ivl_max, kReconnectIvlMaxMs);
      if (secure_) secure_(*s);
    }
    // No maxmsgsize on the SUB: an oversized message would drop the connection.
    sockets->sub.set(zmq::sockopt::subscribe, "fleet/all");
    for (const auto& g : fleet.groups) {
      sockets->sub.set(zmq::sockopt::subscribe, "fleet/group/" + g);
    }
    sockets->sub.set(zmq::sockopt::subscribe, "fleet/agent/" + settings_.agent.agent_id);
    sockets->sub.set(zmq::sockopt::subscribe, "fleet/beacon");
    // Every controller of an HA fleet: only the leader binds, so only its PUB is heard and
    // only its ROUTER completes a connection.
    step = "connect the SUB socket to controller_pub";
    for (const auto& endpoint : common::SplitEndpoints(fleet.controller_pub)) {
      sockets->sub.connect(endpoint);
    }

    // No routing id of its own: the controller answers each hello on the connection it came
    // on, and an id the agent chose could be taken over by another agent posing under it.
    sockets->dealer.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(max_message_bytes_));
    sockets->dealer.set(zmq::sockopt::sndhwm, kDealerSndHwm);
    // The monitor is connected before the DEALER so that its first connection is not missed.
    std::string address = "inproc://lb-agent-fleet-monitor-" + std::to_string(++monitors);
    if (zmq_socket_monitor(sockets->dealer.handle(), address.c_str(),
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) == 0) {
      auto pair = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
      pair->set(zmq::sockopt::linger, 0);
      pair->connect(address);
      sockets->monitor = std::move(pair);
    } else {
      Log(": cannot monitor the ROUTER connection (" + std::string(zmq_strerror(zmq_errno())) +
          "); hello is only said when the sockets are created");
    }
    step = "connect the DEALER socket to controller_router";
    const std::vector<std::string> routers = common::SplitEndpoints(fleet.controller_router);
    // With one controller, acks wait in the queue for a reconnection (ZeroMQ's default); with
    // several, a message queued for a standby's connection would never be read.
    if (routers.size() > 1) sockets->dealer.set(zmq::sockopt::immediate, true);
    for (const auto& endpoint : routers) {
      sockets->dealer.connect(endpoint);
    }
  } catch (const zmq::error_t& e) {
    return Status(ErrorCode::kInternal, "fleet: cannot " + step + " (pub " + fleet.controller_pub +
                                            ", router " + fleet.controller_router +
                                            "): " + e.what());
  }
  sockets_ = std::move(sockets);
  return Status::Ok();
}

Status FleetClient::Start() {
  const common::FleetSettings& fleet = settings_.fleet;
  auto loaded = LoadFleetState(fleet.state_file);
  if (loaded.ok()) {
    state_.Restore(*loaded);
    saved_ = *loaded;
    if (loaded->last_ack && loaded->last_ack->version == loaded->applied_version) {
      recovered_ack_ = loaded->last_ack;
    }
  } else {
    Log(": state file ignored, starting from version 0: " + loaded.status().message());
  }
  if (Status s = OpenSockets(); !s.ok()) return s;
  auto now = Clock::now();
  state_.OnSocketsCreated(now);
  if (!sockets_->monitor) state_.OnConnected(now);
  UpdateSnapshot();
  status_pool_ = std::make_unique<WorkPool>(1);
  Log(": agent " + settings_.agent.agent_id + " (groups " + Groups(fleet.groups) +
      ") connecting to " + fleet.controller_pub + " and " + fleet.controller_router +
      "; applied v" + std::to_string(state_.applied_version()) +
      (state_.controller().empty() ? "" : " from " + state_.controller()));
  thread_ = std::thread(&FleetClient::Run, this);
  return Status::Ok();
}

void FleetClient::Stop() {
  if (stopping_.exchange(true)) return;
  mailbox_->Wake();
  if (thread_.joinable()) thread_.join();
  sockets_.reset();
  status_pool_.reset();  // runs a queued status command; its ack goes nowhere
}

json FleetClient::Info() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  auto now = Clock::now();
  json ago = nullptr;
  bool connected = false;
  if (snapshot_.last_beacon) {
    auto ms = std::chrono::duration_cast<milliseconds>(now - *snapshot_.last_beacon);
    ago = ms.count();
    connected = ms < settings_.fleet.beacon_timeout;
  }
  return json{{"enabled", true},
              {"agent_id", settings_.agent.agent_id},
              {"controller", snapshot_.controller},
              {"applied_version", snapshot_.applied_version},
              {"synced_version", snapshot_.synced_version},
              {"epoch", snapshot_.epoch},
              {"connected", connected},
              {"last_beacon_ms_ago", ago},
              {"groups", settings_.fleet.groups},
              {"controller_pub", settings_.fleet.controller_pub},
              {"controller_router", settings_.fleet.controller_router}};
}

void FleetClient::UpdateSnapshot() {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_.controller = state_.controller();
  snapshot_.applied_version = state_.applied_version();
  snapshot_.synced_version = state_.synced_version();
  snapshot_.epoch = state_.epoch();
  snapshot_.last_beacon = state_.last_beacon();
}

void FleetClient::Run() {
  while (!stopping_) {
    auto now = Clock::now();
    if (state_.ConnectionDead(now)) Reconnect(now);
    if (sockets_ && state_.HelloDue(now)) SendHello(state_.PeriodicHelloOnly(now));

    auto next = state_.DeadAt();
    if (auto due = state_.NextHelloAt(now)) next = std::min(next, *due);
    long timeout = std::chrono::duration_cast<milliseconds>(next - Clock::now()).count();
    timeout = std::clamp<long>(timeout, 0, 1000);
    std::vector<zmq::pollitem_t> items = {{nullptr, mailbox_->fd(), ZMQ_POLLIN, 0}};
    if (sockets_) {
      items.push_back({sockets_->sub.handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({sockets_->dealer.handle(), 0, ZMQ_POLLIN, 0});
      if (sockets_->monitor) items.push_back({sockets_->monitor->handle(), 0, ZMQ_POLLIN, 0});
    }
    try {
      zmq::poll(items.data(), items.size(), milliseconds(timeout));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) Log(": poll failed: " + std::string(e.what()));
      continue;
    }
    if (items[0].revents & ZMQ_POLLIN) {
      std::deque<Completion> done = mailbox_->TakeAll();
      for (auto& d : done) Complete(std::move(d));
    }
    if (stopping_) break;
    if (items.size() > 1) {
      // Connection events first: a hello scheduled by one goes out before anything else.
      if (items.size() > 3 && (items[3].revents & ZMQ_POLLIN)) ReadMonitor();
      if (items[2].revents & ZMQ_POLLIN) ReadDealer();
      if (items[1].revents & ZMQ_POLLIN) ReadSub();
    }
    UpdateSnapshot();
  }
}

void FleetClient::Reconnect(FleetState::TimePoint now) {
  const common::FleetSettings& fleet = settings_.fleet;
  if (beacons_flowing_ || !outage_logged_) {
    Log(": no beacon from " + fleet.controller_pub + " for " +
        std::to_string(fleet.beacon_timeout.count()) + " ms; reconnecting to it and to " +
        fleet.controller_router);
    outage_logged_ = true;
  }
  beacons_flowing_ = false;
  sockets_.reset();
  if (Status s = OpenSockets(); !s.ok()) common::LogError() << s.message();
  state_.OnSocketsCreated(now);
  if (sockets_ && !sockets_->monitor) state_.OnConnected(now);
}

void FleetClient::ReadMonitor() {
  for (int i = 0; i < kBurst; ++i) {
    std::vector<zmq::message_t> frames;
    std::size_t count = 0;
    try {
      if (!RecvMessage(*sockets_->monitor, &frames, &count)) return;
    } catch (const zmq::error_t& e) {
      Log(": monitor receive failed: " + std::string(e.what()));
      return;
    }
    if (frames.empty() || frames[0].size() < 6) continue;
    uint16_t event;
    std::memcpy(&event, frames[0].data(), sizeof event);
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      state_.OnConnected(Clock::now());
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
      Log(": connection to " + settings_.fleet.controller_router + " lost; ZeroMQ dials again");
    }
  }
}

bool FleetClient::Receive(zmq::socket_t& socket, const std::string& endpoint,
                          std::vector<zmq::message_t>* frames, std::size_t* count) {
  try {
    return RecvMessage(socket, frames, count);
  } catch (const zmq::error_t& e) {
    Log(": receive on " + endpoint + " failed: " + e.what());
    return false;
  }
}

void FleetClient::ReadSub() {
  for (int i = 0; i < kBurst && sockets_; ++i) {
    std::vector<zmq::message_t> frames;
    std::size_t count = 0;
    if (!Receive(sockets_->sub, settings_.fleet.controller_pub, &frames, &count)) return;
    const std::string topic = Printable(View(frames[0]));
    if (count != 2) {
      Log(": dropped a message on topic " + topic + ": " + std::to_string(count) +
          " frames, expected [topic, body]");
      continue;
    }
    if (frames[1].size() > max_message_bytes_) {
      Log(": dropped a " + std::to_string(frames[1].size()) + "-byte message on topic " + topic +
          ": above max_config_bytes + 1 MiB (" + std::to_string(max_message_bytes_) + ")");
      continue;
    }
    auto body = proto::DecodeMsgpack(View(frames[1]), decode_limits_);
    auto message = body.ok() ? proto::ParseControllerMessage(*body)
                             : proto::Result<proto::ControllerMessage>(body.status());
    if (!message.ok()) {
      Log(": dropped a malformed message on topic " + topic + ": " + message.status().message());
      continue;
    }
    if (auto* push = std::get_if<FleetPush>(&*message)) {
      HandlePush(*push, /*via_router=*/false);
    } else if (auto* beacon = std::get_if<FleetBeacon>(&*message)) {
      auto verdict = state_.OnBeacon(*beacon, Clock::now());
      LogSwitch(verdict.admission);
      if (!verdict.admission.accepted) {
        if (verdict.report_conflict) {
          Log(": beacon refused: " + verdict.admission.error);
          SendConflictAck(0, verdict.admission.error);
        }
        continue;
      }
      if (!beacons_flowing_) {
        Log(": beacons from " + beacon->controller + " on " + settings_.fleet.controller_pub +
            " (latest v" + std::to_string(beacon->latest) + ", applied v" +
            std::to_string(state_.applied_version()) + ")");
        beacons_flowing_ = true;
        outage_logged_ = false;
      }
    } else {
      Log(": dropped an uptodate on topic " + topic + ": it only answers a hello");
    }
  }
}

void FleetClient::ReadDealer() {
  for (int i = 0; i < kBurst && sockets_; ++i) {
    std::vector<zmq::message_t> frames;
    std::size_t count = 0;
    if (!Receive(sockets_->dealer, settings_.fleet.controller_router, &frames, &count)) return;
    // One frame; tolerate a REQ-style empty delimiter in front of it.
    const zmq::message_t* frame = nullptr;
    if (count == 1) {
      frame = &frames[0];
    } else if (count == 2 && frames[0].size() == 0) {
      frame = &frames[1];
    } else {
      Log(": dropped a " + std::to_string(count) + "-frame message from " +
          settings_.fleet.controller_router + ": expected one frame");
      continue;
    }
    auto body = proto::DecodeMsgpack(View(*frame), decode_limits_);
    auto message = body.ok() ? proto::ParseControllerMessage(*body)
                             : proto::Result<proto::ControllerMessage>(body.status());
    if (!message.ok()) {
      Log(": dropped a malformed message from " + settings_.fleet.controller_router + ": " +
          message.status().message());
      continue;
    }
    if (auto* push = std::get_if<FleetPush>(&*message)) {
      HandlePush(*push, /*via_router=*/true);
    } else if (auto* uptodate = std::get_if<FleetUptodate>(&*message)) {
      const uint64_t synced_before = state_.synced_version();
      auto admission = state_.OnUptodate(*uptodate, Clock::now());
      LogSwitch(admission);
      const bool quiet = quiet_answer_ && state_.synced_version() == synced_before;
      quiet_answer_ = false;
      if (!admission.accepted) {
        Log(": uptodate ignored: " + admission.error);
      } else if (!quiet) {
        Log(": uptodate from " + uptodate->controller + ": latest v" +
            std::to_string(uptodate->latest) + ", applied v" +
            std::to_string(state_.applied_version()));
      }
    } else {
      Log(": dropped a beacon from " + settings_.fleet.controller_router +
          ": beacons come on the PUB socket");
    }
  }
}

void FleetClient::LogSwitch(const FleetState::Admission& admission) {
  if (admission.switched) {
    const std::string why = admission.epoch_raised ? "its epoch " + std::to_string(state_.epoch()) +
                                                         " is the highest seen: a new leader"
                                                   : admission.previous + " is silent";
    Log(": following controller " + state_.controller() + " instead of " + admission.previous +
        " (" + why + "); " +
        (admission.versions_reset
             ? "versions start again at 0"
             : "versions continue from v" + std::to_string(state_.applied_version())));
  } else if (admission.epoch_raised) {
    Log(": controller " + state_.controller() + " leads with epoch " +
        std::to_string(state_.epoch()));
  }
  if (admission.switched || admission.epoch_raised) SaveState();
}

void FleetClient::HandlePush(const FleetPush& push, bool via_router) {
  auto verdict = state_.OnPush(push, via_router, Clock::now());
  const std::string what = " push v" + std::to_string(push.version) + " from " + push.controller +
                           " target " + proto::TargetKey(push.target);
  const std::string via = via_router ? " (hello answer)" : "";
  switch (verdict.action) {
    case FleetState::PushAction::kNotForUs:
      // Topics are prefixes (fleet/group/web also carries fleet/group/web2): silent, unless the
      // controller answered this agent's own hello with it.
      if (via_router) Log(what + ": not for this agent; ignored" + via);
      return;
    case FleetState::PushAction::kConflict:
      Log(what + ": refused (conflict: " + verdict.admission.error + ")" + via);
      SendConflictAck(push.version, verdict.admission.error);
      return;
    case FleetState::PushAction::kIgnore: {
      Log(what + ": ignored (at or below applied v" + std::to_string(state_.applied_version()) +
          ")" + via);
      proto::FleetAck ack;
      ack.version = push.version;
      ack.outcome = "ignored";
      ack.sha256 = live_sha256_();
      SendAck(ack);
      return;
    }
    case FleetState::PushAction::kInFlight:
      Log(what + ": being applied; its ack follows" + via);
      return;
    case FleetState::PushAction::kProcess:
      LogSwitch(verdict.admission);
      Process(push, via_router);
      return;
  }
}

void FleetClient::Process(const FleetPush& push, bool via_router) {
  Completion envelope;
  envelope.controller = push.controller;
  envelope.version = push.version;
  envelope.target = proto::TargetKey(push.target);
  envelope.cmd = push.cmd;
  envelope.via_router = via_router;
  const auto start = Clock::now();
  auto refuse = [&](Status status) {
    Completion done = envelope;
    done.status = std::move(status);
    done.sha256 = live_sha256_();
    done.total_ms = MsSince(start);
    Complete(std::move(done));
  };
  if (push.cmd != "reload" && push.cmd != "status") {
    refuse(Status(ErrorCode::kUnknownCommand,
                  push.cmd.empty() ? "the push has no \"cmd\" (a string)"
                                   : "unknown push cmd \"" + Printable(push.cmd, 32) +
                                         "\"; known: reload, status"));
    return;
  }
  if (!push.args.is_object()) {
    refuse(Status(ErrorCode::kBadRequest,
                  std::string("the push's \"args\" must be a map, got ") + push.args.type_name()));
    return;
  }
  // The callbacks may run after this client is gone (at shutdown): they hold the mailbox
  // weakly and copies of what they call.
  std::weak_ptr<Mailbox> weak = mailbox_;
  auto report = [weak, envelope, start, live_sha256 = live_sha256_](const Status& status,
                                                                    const json& result) {
    auto mailbox = weak.lock();
    if (!mailbox) return;
    Completion done = envelope;
    done.status = status;
    done.result = result;
    done.sha256 = live_sha256();
    done.total_ms = MsSince(start);
    mailbox->Push(std::move(done));
  };
  if (push.cmd == "status") {
    status_pool_->Submit([report, status = status_, args = push.args] {
      auto result = status(args);
      if (result.ok()) {
        report(Status::Ok(), *result);
      } else {
        report(result.status(), nullptr);
      }
    });
    return;
  }
  submit_(push.args, report);
}

void FleetClient::Complete(Completion done) {
  proto::FleetAck ack;
  ack.version = done.version;
  ack.sha256 = done.sha256;
  ack.total_ms = done.total_ms;
  std::string outcome_text;
  if (done.status.ok()) {
    ack.outcome = "applied";
    if (done.cmd == "reload" && done.result.is_object() &&
        done.result.value("outcome", "") == "unchanged") {
      ack.outcome = "unchanged";
    }
    ack.result = done.result.is_null() ? json::object() : done.result;
    outcome_text = ack.outcome;
  } else {
    ack.outcome = "refused";
    ack.error = ErrorOf(done.status);
    outcome_text = "refused (" + std::string(proto::ErrorCodeName(done.status.code())) + ": " +
                   OneLine(done.status.message()) + ")";
  }
  // On disk before the controller hears of it, the ack with it: killed in between, the agent
  // sends it again after its restart (SendHello).
  ack.agent = settings_.agent.agent_id;
  state_.PushCompleted(done.controller, done.version);
  SaveState(&ack);
  SendAck(ack);
  std::string notes;
  if (done.cmd == "status") notes += done.cmd;
  if (done.via_router) notes += std::string(notes.empty() ? "" : ", ") + "hello answer";
  Log(" push v" + std::to_string(done.version) + " from " + done.controller + " target " +
      done.target + ": " + outcome_text + " " + std::to_string(done.total_ms) + " ms" +
      (notes.empty() ? "" : " (" + notes + ")"));
}

void FleetClient::SendHello(bool periodic) {
  const std::string sha256 = live_sha256_();
  proto::FleetHello hello;
  hello.agent = settings_.agent.agent_id;
  hello.groups = settings_.fleet.groups;
  hello.sha256 = sha256;
  hello.applied_version = state_.applied_version();
  hello.synced_version = state_.synced_version();
  hello.completed_version = state_.completed_version();
  hello.hello_interval_ms = settings_.fleet.hello_interval.count();
  if (recovered_ack_) {
    // The ack of the last push processed before a restart, which may never have left: the
    // controller hears the outcome before the hello (one connection keeps their order), so a
    // push waiting for it is decided by what happened rather than counted as not applied.
    Log(": ack v" + std::to_string(recovered_ack_->version) + " (" + recovered_ack_->outcome +
        ") sent again: it was written before the restart and may not have reached " +
        settings_.fleet.controller_router);
    SendAck(*std::exchange(recovered_ack_, std::nullopt));
  }
  state_.HelloSent(Clock::now());
  quiet_answer_ = periodic;
  std::string payload = proto::EncodeMsgpack(proto::EncodeHello(hello));
  try {
    if (!sockets_->dealer.send(zmq::buffer(payload), zmq::send_flags::dontwait)) {
      Log(": hello dropped: the queue to " + settings_.fleet.controller_router + " is full");
      return;
    }
  } catch (const zmq::error_t& e) {
    Log(": hello not sent: " + std::string(e.what()));
    return;
  }
  if (periodic) return;  // the liveness signal: no line every hello_interval
  Log(": hello to " + settings_.fleet.controller_router + ": applied v" +
      std::to_string(state_.applied_version()) + ", synced v" +
      std::to_string(state_.synced_version()));
}

void FleetClient::SendAck(proto::FleetAck ack) {
  if (!sockets_) {
    Log(": ack v" + std::to_string(ack.version) + " dropped: no connection");
    return;
  }
  ack.agent = settings_.agent.agent_id;
  std::string payload = proto::EncodeMsgpack(proto::EncodeAck(ack));
  try {
    if (!sockets_->dealer.send(zmq::buffer(payload), zmq::send_flags::dontwait)) {
      Log(": ack v" + std::to_string(ack.version) + " dropped: the queue to " +
          settings_.fleet.controller_router + " is full");
    }
  } catch (const zmq::error_t& e) {
    Log(": ack v" + std::to_string(ack.version) + " not sent: " + e.what());
  }
}

void FleetClient::SendConflictAck(uint64_t version, const std::string& error) {
  proto::FleetAck ack;
  ack.version = version;
  ack.outcome = "refused";
  ack.error = ErrorOf(Status(ErrorCode::kConflict, error));
  ack.sha256 = live_sha256_();
  SendAck(ack);
}

void FleetClient::SaveState(const proto::FleetAck* ack) {
  FleetPersisted now = state_.ToPersisted();
  // The ack kept is the one of the version the file records.
  if (ack != nullptr && ack->version == now.applied_version) {
    now.last_ack = *ack;
  } else if (saved_ && saved_->last_ack && saved_->last_ack->version == now.applied_version) {
    now.last_ack = saved_->last_ack;
  }
  if (saved_ && saved_->applied_version == now.applied_version &&
      saved_->controller == now.controller && saved_->epoch == now.epoch && ack == nullptr) {
    return;
  }
  if (Status s = SaveFleetState(settings_.fleet.state_file, now); !s.ok()) {
    Log(": state not saved: " + s.message());
    return;
  }
  saved_ = now;
}

}  // namespace lb::agent
