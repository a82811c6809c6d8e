#include "fleet_controller.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ostream>
#include <vector>
#include <zmq.hpp>

#include "fleet_controller_core.h"
#include "fleet_state_file.h"
#include "lb/common/endpoint.h"
#include "lb/proto/codec.h"
#include "output.h"

namespace lb::cli {
namespace {

using proto::ErrorCode;
using proto::Status;
using SteadyClock = std::chrono::steady_clock;

// The longest the loop waits before looking at stop_requested again.
constexpr std::chrono::milliseconds kMaxWait{100};
// Messages handled per socket per wake-up, so that beacons stay on time under a flood.
constexpr int kMaxMessagesPerWake = 200;
// A message with more frames than this is not one of ours; the rest is read and dropped.
constexpr size_t kMaxFrames = 4;
// ZeroMQ heartbeats on the agents' connections, so that a dead agent's pipe goes away.
constexpr int kHeartbeatIvlMs = 1000;
constexpr int kHeartbeatTimeoutMs = 5000;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// All frames of the next message (at most kMaxFrames kept), or none when nothing is waiting.
std::vector<zmq::message_t> ReceiveMessage(zmq::socket_t& socket, size_t* frame_count) {
  std::vector<zmq::message_t> frames;
  *frame_count = 0;
  while (true) {
    zmq::message_t frame;
    if (!socket.recv(frame, zmq::recv_flags::dontwait)) break;
    ++*frame_count;
    const bool more = frame.more();
    if (frames.size() < kMaxFrames) frames.push_back(std::move(frame));
    if (!more) break;
  }
  return frames;
}

Status BindError(const std::string& what, const std::string& endpoint, const zmq::error_t& e) {
  const ErrorCode code = e.num() == EINVAL || e.num() == EPROTONOSUPPORT ? ErrorCode::kBadRequest
                                                                         : ErrorCode::kInternal;
  return Status(code, "cannot bind the " + what + " socket on \"" + endpoint + "\": " + e.what());
}

}  // namespace

std::string DefaultControllerId() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "lb-controller";
  return host;
}

FleetController::FleetController(zmq::context_t& context, ServeOptions options, std::ostream& log)
    : context_(context), options_(std::move(options)), log_(log) {}

FleetController::~FleetController() = default;

void FleetController::Log(const std::string& line) {
  std::lock_guard lock(log_mutex_);
  log_ << FormatTimestamp(NowMs()) << " " << line << std::endl;
}

Status FleetController::CheckEndpoints() {
  if (!common::IsLocalEndpoint(options_.control_endpoint)) {
    return Status(ErrorCode::kBadRequest,
                  "refusing to bind the control socket on \"" + options_.control_endpoint +
                      "\": it has no authentication, and whoever reaches it can push a config to "
                      "every agent. Bind it to ipc://PATH or tcp://127.0.0.1:PORT and run lbctl "
                      "fleet push/agents on this host (through ssh from elsewhere)");
  }
  if (options_.curve_key.empty() != options_.clients.empty()) {
    return Status(ErrorCode::kBadRequest,
                  "CURVE needs both the controller's certificate (--curve-key) and the agents' "
                  "keys (--clients)");
  }
  if (!options_.curve_key.empty()) return Status::Ok();
  for (const auto& [what, endpoint] :
       {std::pair<std::string, std::string>{"pub", options_.pub_endpoint},
        std::pair<std::string, std::string>{"router", options_.router_endpoint}}) {
    if (common::IsLocalEndpoint(endpoint)) continue;
    const std::string risk = what == "pub" ? "read every config pushed"
                                           : "pose as an agent (and read its desired config)";
    if (!options_.allow_insecure) {
      return Status(ErrorCode::kBadRequest,
                    "refusing to bind the " + what + " socket on \"" + endpoint +
                        "\" without CURVE: anyone who reaches it could " + risk +
                        ". Give --curve-key and --clients (SECURITY.md), bind to 127.0.0.1 or "
                        "ipc://, or pass --allow-insecure");
    }
    Log("WARNING: the " + what + " socket " + endpoint +
        " is reachable from other hosts WITHOUT authentication (--allow-insecure): anyone who "
        "reaches it can " +
        risk);
  }
  return Status::Ok();
}

Status FleetController::Open() {
  if (Status s = CheckEndpoints(); !s.ok()) return s;
  if (!options_.curve_key.empty()) {
    auto own = common::ReadCertificate(options_.curve_key, /*need_secret=*/true);
    if (!own.ok()) return Status(ErrorCode::kBadRequest, "--curve-key: " + own.status().message());
    own_ = *own;
    // Before any server socket binds: a handshake without a ZAP handler fails.
    auto zap = common::ZapHandler::Start(context_, options_.clients,
                                         [this](const std::string& line) { Log(line); });
    if (!zap.ok()) return Status(ErrorCode::kBadRequest, "--clients: " + zap.status().message());
    zap_ = std::move(*zap);
  }
  auto dir = StateDir::Open(options_.state_dir);
  if (!dir.ok()) return dir.status();
  auto state = (*dir)->Load();
  if (!state.ok()) return state.status();
  state_dir_ = std::move(*dir);
  const std::string previous_id = state->controller_id;
  const size_t pushes = state->pushes.size();
  const uint64_t latest = state->latest;
  core_ = std::make_unique<ControllerCore>(options_.id, std::move(*state), state_dir_.get());

  auto bind = [&](zmq::socket_type type, const std::string& what, const std::string& endpoint,
                  std::unique_ptr<zmq::socket_t>* socket, std::string* bound) -> Status {
    try {
      auto s = std::make_unique<zmq::socket_t>(context_, type);
      s->set(zmq::sockopt::linger, 0);
      if (type == zmq::socket_type::router) {
        s->set(zmq::sockopt::router_mandatory, true);
        s->set(zmq::sockopt::maxmsgsize,
               static_cast<int64_t>(what == "control"
                                        ? ControllerCore::ControlLimits().max_frame_bytes
                                        : ControllerCore::AgentLimits().max_frame_bytes));
      }
      if (zap_ && what != "control") common::MakeCurveServer(*s, own_, *zap_, "fleet");
      if (what == "router") {
        s->set(zmq::sockopt::router_handover, true);
        s->set(zmq::sockopt::heartbeat_ivl, kHeartbeatIvlMs);
        s->set(zmq::sockopt::heartbeat_timeout, kHeartbeatTimeoutMs);
      }
      s->bind(endpoint);
      *bound = s->get(zmq::sockopt::last_endpoint);
      *socket = std::move(s);
      return Status::Ok();
    } catch (const zmq::error_t& e) {
      return BindError(what, endpoint, e);
    }
  };
  if (Status s = bind(zmq::socket_type::pub, "pub", options_.pub_endpoint, &pub_, &pub_bound_);
      !s.ok()) {
    return s;
  }
  if (Status s = bind(zmq::socket_type::router, "router", options_.router_endpoint, &router_,
                      &router_bound_);
      !s.ok()) {
    return s;
  }
  if (Status s = bind(zmq::socket_type::router, "control", options_.control_endpoint, &control_,
                      &control_bound_);
      !s.ok()) {
    return s;
  }
  if (!previous_id.empty() && previous_id != options_.id) {
    Log("note: the state in " + state_dir_->state_file() + " was saved by controller \"" +
        PrintableId(previous_id) + "\", not \"" + PrintableId(options_.id) +
        "\": agents that follow the other one refuse this one's pushes while it is alive");
  }
  Log("controller " + PrintableId(options_.id) + " serving: pub " + pub_bound_ + ", router " +
      router_bound_ + ", control " + control_bound_ +
      (zap_ ? "; CURVE on (public key " + own_.public_key + ", agents' keys in " +
                  options_.clients + ")"
            : "; CURVE off") +
      "; state " + state_dir_->state_file() + ": latest version " + std::to_string(latest) + ", " +
      std::to_string(pushes) + " target" + (pushes == 1 ? "" : "s") + " with a desired state");
  return Status::Ok();
}

void FleetController::Publish(const std::string& topic, const std::string& body) {
  // PUB never blocks: above the high-water mark libzmq drops, and agents recover by hello.
  pub_->send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
  pub_->send(zmq::buffer(body), zmq::send_flags::dontwait);
}

void FleetController::ServeAgents(int64_t now_ms) {
  for (int i = 0; i < kMaxMessagesPerWake; ++i) {
    size_t count = 0;
    std::vector<zmq::message_t> frames = ReceiveMessage(*router_, &count);
    if (count == 0) return;
    const std::string routing_id = frames[0].to_string();
    if (count != 2) {
      Log("ignored a message of " + std::to_string(count) + " frames from routing id " +
          PrintableId(routing_id) + " (an agent sends one msgpack frame)");
      continue;
    }
    // With CURVE, the ZAP handler set the connection's user id to the client's Z85 key.
    std::string_view curve_key;
    if (zap_) {
      const char* user_id = zmq_msg_gets(frames[1].handle(), "User-Id");
      if (user_id != nullptr) curve_key = user_id;
    }
    ControllerCore::AgentAnswer answer =
        core_->OnAgentFrame(routing_id, frames[1].to_string_view(), now_ms, curve_key);
    if (!answer.log.empty()) Log(answer.log);
    if (!answer.reply) continue;
    const std::string body = proto::EncodeMsgpack(*answer.reply);
    try {
      if (!router_->send(zmq::buffer(routing_id),
                         zmq::send_flags::sndmore | zmq::send_flags::dontwait) ||
          !router_->send(zmq::buffer(body), zmq::send_flags::dontwait)) {
        Log("could not answer " + PrintableId(routing_id) +
            ": its queue is full; it will say hello again");
      }
    } catch (const zmq::error_t& e) {
      Log("could not answer " + PrintableId(routing_id) + ": " + e.what() + " (it disconnected)");
    }
  }
}

void FleetController::ServeControl(int64_t now_ms) {
  for (int i = 0; i < kMaxMessagesPerWake; ++i) {
    size_t count = 0;
    std::vector<zmq::message_t> frames = ReceiveMessage(*control_, &count);
    if (count == 0) return;
    // REQ clients send [id, "", request]; DEALER clients may leave the delimiter out.
    const bool delimited = count == 3 && frames[1].size() == 0;
    if (count != 2 && !delimited) {
      Log("ignored a control message of " + std::to_string(count) + " frames");
      continue;
    }
    const zmq::message_t& frame = frames[delimited ? 2 : 1];
    proto::DecodedRequest decoded =
        proto::DecodeRequest(frame.to_string_view(), ControllerCore::ControlLimits());
    std::string reply;
    if (!decoded.status.ok()) {
      Log("refused an unreadable control request: " + decoded.status.message());
      reply = proto::EncodeErrorReply(decoded.request.id, decoded.status);
    } else {
      ControllerCore::ControlAnswer answer = core_->OnControlRequest(decoded.request, now_ms);
      if (!answer.log.empty()) Log(answer.log);
      if (answer.publish) {
        Publish(answer.publish->topic, proto::EncodeMsgpack(answer.publish->body));
      }
      reply = answer.status.ok() ? proto::EncodeOkReply(decoded.request.id, answer.result)
                                 : proto::EncodeErrorReply(decoded.request.id, answer.status);
    }
    try {
      control_->send(frames[0], zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      if (delimited) {
        control_->send(zmq::message_t(), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      }
      control_->send(zmq::buffer(reply), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      Log(std::string("could not answer a control client: ") + e.what());
    }
  }
}

Status FleetController::Run(const std::function<bool()>& stop_requested) {
  if (!core_ || !pub_ || !router_ || !control_) {
    return Status(ErrorCode::kInternal, "FleetController::Run before a successful Open");
  }
  SteadyClock::time_point next_beacon = SteadyClock::now();
  while (!stop_requested()) {
    const SteadyClock::time_point now = SteadyClock::now();
    if (now >= next_beacon) {
      try {
        Publication beacon = core_->Beacon(NowMs());
        Publish(beacon.topic, proto::EncodeMsgpack(beacon.body));
      } catch (const zmq::error_t& e) {
        Log(std::string("could not publish a beacon: ") + e.what());
      }
      next_beacon += options_.beacon_interval;
      if (next_beacon <= now) next_beacon = now + options_.beacon_interval;
    }
    const auto wait = std::clamp(
        std::chrono::duration_cast<std::chrono::milliseconds>(next_beacon - SteadyClock::now()),
        std::chrono::milliseconds(0), kMaxWait);
    zmq::pollitem_t items[] = {{router_->handle(), 0, ZMQ_POLLIN, 0},
                               {control_->handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, wait);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal: look at stop_requested
      return Status(ErrorCode::kInternal,
                    std::string("polling the controller's sockets: ") + e.what());
    }
    try {
      if (items[0].revents & ZMQ_POLLIN) ServeAgents(NowMs());
      if (items[1].revents & ZMQ_POLLIN) ServeControl(NowMs());
    } catch (const std::exception& e) {
      // A bug or a ZeroMQ failure on one message must not take the fleet's controller down.
      Log(std::string("error while serving: ") + e.what());
    }
  }
  Log("controller " + PrintableId(options_.id) + " stopping");
  return Status::Ok();
}

}  // namespace lb::cli
