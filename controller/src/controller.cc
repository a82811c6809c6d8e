#include "controller.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>
#include <zmq.hpp>

#include "controller_core.h"
#include "lb/common/allow_list.h"
#include "lb/common/endpoint.h"
#include "lb/common/log.h"
#include "lb/common/service_manager.h"
#include "lb/proto/codec.h"
#include "state_dir.h"

namespace lb::controller {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;
using SteadyClock = std::chrono::steady_clock;

// The longest the loop waits before looking at the stop flag again.
constexpr std::chrono::milliseconds kMaxWait{100};
// Messages handled per socket per wake-up, so that beacons stay on time under a flood.
constexpr int kMaxMessagesPerWake = 200;
// A message with more frames than this is not one of ours; the rest is read and dropped.
constexpr size_t kMaxFrames = 4;
// A dead agent's connection goes away through the kernel's timers, about 25 s after it stopped
// answering: an idle one (ROUTER) through TCP keepalive, first probe after 10 s of silence,
// then every 5 s, dropped after 3 unanswered; one with data in flight (PUB sends a beacon every
// beacon_interval, so it is never idle and keepalive never starts) through TCP_USER_TIMEOUT
// (ZMQ_TCP_MAXRT): data unacknowledged for 25 s. Without it that connection would retransmit
// for the kernel's tcp_retries2, about 15 minutes, holding its queue. Not through
// ZeroMQ heartbeats: each heartbeat arms a libzmq timer that the answer cancels, and libzmq's
// cancel_timer walks every timer of the I/O thread, so N agents cost O(N^2) per second: at 5,000
// agents the controller's I/O thread was saturated and they could not all connect. (Agents
// ping the controller and time out on their side; a ping is answered without a timer here.)
constexpr int kKeepaliveIdleS = 10;
constexpr int kKeepaliveIntervalS = 5;
constexpr int kKeepaliveProbes = 3;
constexpr int kUnacknowledgedMs = 25000;

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

EtcdOptions EtcdClientOptions(const ControllerSettings& settings) {
  EtcdOptions options;
  options.endpoints = settings.etcd_endpoints;
  options.timeout = settings.etcd_timeout;
  options.ca_file = settings.etcd_ca_file;
  options.cert_file = settings.etcd_cert_file;
  options.key_file = settings.etcd_key_file;
  return options;
}

Result<std::vector<std::string>> CheckSettings(const ControllerSettings& settings) {
  std::vector<std::string> warnings;
  if (!common::IsLocalEndpoint(settings.control_endpoint)) {
    return Status(ErrorCode::kBadRequest,
                  "refusing to bind the control socket on \"" + settings.control_endpoint +
                      "\": it has no authentication, and whoever reaches it can push a config to "
                      "every agent. Bind it to ipc://PATH or tcp://127.0.0.1:PORT and run lbctl "
                      "fleet push/agents on this host (through ssh from elsewhere)");
  }
  if (settings.ha()) {
    auto client = EtcdClient::Create(EtcdClientOptions(settings));  // checks; connects nowhere
    if (!client.ok()) {
      return Status(ErrorCode::kBadRequest, "[store] " + client.status().message());
    }
    for (const auto& url : settings.etcd_endpoints) {
      auto endpoint = ParseEtcdEndpoint(url);
      const std::string& host = endpoint->host;
      if (!endpoint->tls && host != "localhost" && host != "::1" && host.rfind("127.", 0) != 0) {
        warnings.push_back("[store] etcd_endpoints: " + url +
                           " is plaintext beyond loopback: whoever is on the path reads every "
                           "config and can change what the fleet runs. Use https:// with "
                           "etcd_ca_file, etcd_cert_file and etcd_key_file");
      }
    }
  }
  if (settings.curve()) {
    auto own = common::ReadCertificate(settings.curve_secret_key, /*need_secret=*/true);
    if (!own.ok()) {
      return Status(ErrorCode::kBadRequest,
                    "[security] curve_secret_key: " + own.status().message());
    }
    auto clients = common::ReadAllowList(settings.curve_clients);
    if (!clients.ok()) {
      return Status(ErrorCode::kBadRequest,
                    "[security] curve_clients: " + clients.status().message());
    }
    if (!settings.agent_keys.empty()) {
      auto keys = ReadAgentKeys(settings.agent_keys);
      if (!keys.ok()) {
        return Status(ErrorCode::kBadRequest, "[security] agent_keys: " + keys.status().message());
      }
    }
    return warnings;
  }
  for (const auto& [what, endpoint] :
       {std::pair<std::string, std::string>{"pub", settings.pub_endpoint},
        std::pair<std::string, std::string>{"router", settings.router_endpoint}}) {
    if (common::IsLocalEndpoint(endpoint)) continue;
    const std::string risk = what == "pub" ? "read every config pushed"
                                           : "pose as an agent (and read its desired config)";
    if (!settings.allow_insecure) {
      return Status(ErrorCode::kBadRequest,
                    "refusing to bind the " + what + " socket on \"" + endpoint +
                        "\" without CURVE: anyone who reaches it could " + risk +
                        ". Set [security] curve_secret_key and curve_clients (SECURITY.md), bind "
                        "to 127.0.0.1 or ipc://, or set [security] allow_insecure = yes");
    }
    warnings.push_back("WARNING: the " + what + " socket " + endpoint +
                       " is reachable from other hosts WITHOUT authentication (allow_insecure = "
                       "yes): anyone who reaches it can " +
                       risk);
  }
  return warnings;
}

Controller::Controller(zmq::context_t& context, const ControllerSettings& settings)
    : context_(context), settings_(settings) {}

Controller::~Controller() = default;

Status Controller::Bind(int socket_type, const std::string& what, const std::string& endpoint,
                        std::unique_ptr<zmq::socket_t>* socket, std::string* bound) {
  const auto type = static_cast<zmq::socket_type>(socket_type);
  try {
    auto s = std::make_unique<zmq::socket_t>(context_, type);
    s->set(zmq::sockopt::linger, 0);
    if (type == zmq::socket_type::router) {
      s->set(zmq::sockopt::router_mandatory, true);
      s->set(
          zmq::sockopt::maxmsgsize,
          static_cast<int64_t>(what == "control" ? ControllerCore::ControlLimits().max_frame_bytes
                                                 : ControllerCore::AgentLimits().max_frame_bytes));
    }
    if (zap_ && what != "control") common::MakeCurveServer(*s, own_, *zap_, "fleet");
    if (what == "router") s->set(zmq::sockopt::router_handover, true);
    if (what != "control") {
      s->set(zmq::sockopt::tcp_keepalive, 1);
      s->set(zmq::sockopt::tcp_keepalive_idle, kKeepaliveIdleS);
      s->set(zmq::sockopt::tcp_keepalive_intvl, kKeepaliveIntervalS);
      s->set(zmq::sockopt::tcp_keepalive_cnt, kKeepaliveProbes);
      s->set(zmq::sockopt::tcp_maxrt, kUnacknowledgedMs);
    }
    s->bind(endpoint);
    *bound = s->get(zmq::sockopt::last_endpoint);
    *socket = std::move(s);
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    return BindError(what, endpoint, e);
  }
}

Status Controller::BindControl() {
  auto warnings = CheckSettings(settings_);
  if (!warnings.ok()) return warnings.status();
  return Bind(static_cast<int>(zmq::socket_type::router), "control", settings_.control_endpoint,
              &control_, &control_bound_);
}

Status Controller::Open(std::unique_ptr<StateStore> store) {
  auto warnings = CheckSettings(settings_);
  if (!warnings.ok()) return warnings.status();
  for (const auto& warning : *warnings) common::LogWarning() << warning;
  std::map<std::string, std::string> agent_keys;
  if (settings_.curve()) {
    auto own = common::ReadCertificate(settings_.curve_secret_key, /*need_secret=*/true);
    if (!own.ok()) {
      return Status(ErrorCode::kBadRequest,
                    "[security] curve_secret_key: " + own.status().message());
    }
    own_ = *own;
    if (!settings_.agent_keys.empty()) {
      auto keys = ReadAgentKeys(settings_.agent_keys);
      if (!keys.ok()) {
        return Status(ErrorCode::kBadRequest, "[security] agent_keys: " + keys.status().message());
      }
      agent_keys = std::move(*keys);
    }
    // Before any server socket binds: a handshake without a ZAP handler fails.
    auto zap =
        common::ZapHandler::Start(context_, settings_.curve_clients,
                                  [](const std::string& line) { common::LogInfo() << line; });
    if (!zap.ok()) {
      return Status(ErrorCode::kBadRequest, "[security] curve_clients: " + zap.status().message());
    }
    zap_ = std::move(*zap);
  }
  if (store == nullptr) {
    auto dir = StateDir::Open(settings_.state_dir);
    if (!dir.ok()) return dir.status();
    store = std::move(*dir);
  }
  auto state = store->Load();
  if (!state.ok()) return state.status();
  store_ = std::move(store);
  const std::string previous_id = state->controller_id;
  const size_t targets = state->targets.size();
  const uint64_t latest = state->latest;
  core_ = std::make_unique<ControllerCore>(settings_.id, std::move(*state), store_.get(),
                                           std::move(agent_keys), NowMs());
  core_->SetEpoch(store_->epoch());

  if (Status s = Bind(static_cast<int>(zmq::socket_type::pub), "pub", settings_.pub_endpoint, &pub_,
                      &pub_bound_);
      !s.ok()) {
    return s;
  }
  if (Status s = Bind(static_cast<int>(zmq::socket_type::router), "router",
                      settings_.router_endpoint, &router_, &router_bound_);
      !s.ok()) {
    return s;
  }
  if (control_ == nullptr) {
    if (Status s = Bind(static_cast<int>(zmq::socket_type::router), "control",
                        settings_.control_endpoint, &control_, &control_bound_);
        !s.ok()) {
      return s;
    }
  }
  if (!previous_id.empty() && previous_id != settings_.id) {
    common::LogWarning() << "note: the state in " << store_->Describe()
                         << " was saved by controller \"" << PrintableId(previous_id)
                         << "\", not \"" << PrintableId(settings_.id)
                         << "\": agents that follow the other one refuse this one's pushes "
                            "while it is alive";
  }
  common::LogInfo() << "controller " << PrintableId(settings_.id) << " serving: pub " << pub_bound_
                    << ", router " << router_bound_ << ", control " << control_bound_
                    << (zap_ ? "; CURVE on (public key " + own_.public_key + ", agents' keys in " +
                                   settings_.curve_clients + ")"
                             : std::string("; CURVE off"))
                    << "; " << store_->Describe() << ": latest version " << latest << ", "
                    << targets << " target" << (targets == 1 ? "" : "s")
                    << (store_->epoch() != 0
                            ? "; leading with epoch " + std::to_string(store_->epoch())
                            : std::string());
  return Status::Ok();
}

bool Controller::StillLeads() {
  if (!deposed_ && store_->Deposed().empty()) return true;
  deposed_ = true;  // Run() returns at its next turn
  return false;
}

void Controller::Publish(const std::string& topic, const std::string& body) {
  // Checked at each send, not only at each turn of Run(): the lease can run out between two.
  if (!StillLeads()) return;
  // PUB never blocks: above the high-water mark libzmq drops, and agents recover by hello.
  pub_->send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
  pub_->send(zmq::buffer(body), zmq::send_flags::dontwait);
}

void Controller::ServeAgents(int64_t now_ms) {
  for (int i = 0; i < kMaxMessagesPerWake; ++i) {
    size_t count = 0;
    std::vector<zmq::message_t> frames = ReceiveMessage(*router_, &count);
    if (count == 0) return;
    const std::string routing_id = frames[0].to_string();
    if (count != 2) {
      common::LogWarning() << "ignored a message of " << count << " frames from routing id "
                           << PrintableId(routing_id) << " (an agent sends one msgpack frame)";
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
    if (!answer.log.empty()) common::LogInfo() << answer.log;
    if (!answer.reply) continue;
    if (!StillLeads()) return;  // a deposed leader answers no hello either
    const std::string body = proto::EncodeMsgpack(*answer.reply);
    try {
      if (!router_->send(zmq::buffer(routing_id),
                         zmq::send_flags::sndmore | zmq::send_flags::dontwait) ||
          !router_->send(zmq::buffer(body), zmq::send_flags::dontwait)) {
        common::LogWarning() << "could not answer " << PrintableId(routing_id)
                             << ": its queue is full; it will say hello again";
      }
    } catch (const zmq::error_t& e) {
      common::LogWarning() << "could not answer " << PrintableId(routing_id) << ": " << e.what()
                           << " (it disconnected)";
    }
  }
}

void Controller::ServeControlWith(
    const std::function<std::string(const proto::DecodedRequest&)>& answer) {
  for (int i = 0; i < kMaxMessagesPerWake; ++i) {
    size_t count = 0;
    std::vector<zmq::message_t> frames = ReceiveMessage(*control_, &count);
    if (count == 0) return;
    // REQ clients send [id, "", request]; DEALER clients may leave the delimiter out.
    const bool delimited = count == 3 && frames[1].size() == 0;
    if (count != 2 && !delimited) {
      common::LogWarning() << "ignored a control message of " << count << " frames";
      continue;
    }
    const zmq::message_t& frame = frames[delimited ? 2 : 1];
    proto::DecodedRequest decoded =
        proto::DecodeRequest(frame.to_string_view(), ControllerCore::ControlLimits());
    std::string reply;
    if (!decoded.status.ok()) {
      common::LogWarning() << "refused an unreadable control request: " << decoded.status.message();
      reply = proto::EncodeErrorReply(decoded.request.id, decoded.status);
    } else {
      reply = answer(decoded);
    }
    try {
      control_->send(frames[0], zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      if (delimited) {
        control_->send(zmq::message_t(), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      }
      control_->send(zmq::buffer(reply), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      common::LogWarning() << "could not answer a control client: " << e.what();
    }
  }
}

void Controller::ServeControl(int64_t now_ms) {
  ServeControlWith([&](const proto::DecodedRequest& decoded) {
    ControllerCore::ControlAnswer answer = core_->OnControlRequest(decoded.request, now_ms);
    if (!answer.log.empty()) common::LogInfo() << answer.log;
    if (answer.publish) {
      Publish(answer.publish->topic, proto::EncodeMsgpack(answer.publish->body));
    }
    return answer.status.ok() ? proto::EncodeOkReply(decoded.request.id, answer.result)
                              : proto::EncodeErrorReply(decoded.request.id, answer.status);
  });
}

void Controller::ServeStandby(std::chrono::milliseconds wait, const std::string& why) {
  const Status standby(ErrorCode::kUnavailable,
                       "controller " + PrintableId(settings_.id) + " stands by: " + why +
                           "; give lbctl every controller's control endpoint (--control "
                           "A,B,...) and it finds the leader");
  const SteadyClock::time_point until = SteadyClock::now() + wait;
  common::ServiceWatchdog();  // a standby is alive too (WatchdogSec in the unit)
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    if (left.count() <= 0) return;
    zmq::pollitem_t item = {control_->handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, left);
      if (item.revents & ZMQ_POLLIN) {
        ServeControlWith([&](const proto::DecodedRequest& decoded) {
          return proto::EncodeErrorReply(decoded.request.id, standby);
        });
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) common::LogWarning() << "standby control socket: " << e.what();
    }
  }
}

Status Controller::Run(const std::atomic<bool>& stop) {
  if (!core_ || !pub_ || !router_ || !control_) {
    return Status(ErrorCode::kInternal, "Controller::Run before a successful Open");
  }
  SteadyClock::time_point next_beacon = SteadyClock::now();
  while (!stop) {
    common::ServiceWatchdog();  // this loop turns at least every 100 ms while it serves
    // Before anything is published: a controller whose lease may have expired is not the
    // leader any more, and its successor's epoch fences whatever it would still send.
    if (!StillLeads()) {
      return Status(ErrorCode::kUnavailable, "controller " + PrintableId(settings_.id) +
                                                 " stops: it no longer leads (" +
                                                 store_->Deposed() + ")");
    }
    const SteadyClock::time_point now = SteadyClock::now();
    if (now >= next_beacon) {
      try {
        for (const auto& line : core_->Tick(NowMs())) common::LogInfo() << line;
        Publication beacon = core_->Beacon(NowMs());
        Publish(beacon.topic, proto::EncodeMsgpack(beacon.body));
      } catch (const zmq::error_t& e) {
        common::LogWarning() << "could not publish a beacon: " << e.what();
      }
      next_beacon += settings_.beacon_interval;
      if (next_beacon <= now) next_beacon = now + settings_.beacon_interval;
    }
    const auto wait = std::clamp(
        std::chrono::duration_cast<std::chrono::milliseconds>(next_beacon - SteadyClock::now()),
        std::chrono::milliseconds(0), kMaxWait);
    zmq::pollitem_t items[] = {{router_->handle(), 0, ZMQ_POLLIN, 0},
                               {control_->handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, wait);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      return Status(ErrorCode::kInternal,
                    std::string("polling the controller's sockets: ") + e.what());
    }
    try {
      if (items[0].revents & ZMQ_POLLIN) ServeAgents(NowMs());
      if (items[1].revents & ZMQ_POLLIN) ServeControl(NowMs());
    } catch (const std::exception& e) {
      // A bug or a ZeroMQ failure on one message must not take the fleet's controller down.
      common::LogError() << "error while serving: " << e.what();
    }
  }
  common::LogInfo() << "controller " << PrintableId(settings_.id) << " stopping";
  return Status::Ok();
}

}  // namespace lb::controller
