#include "event_loop.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <zmq.hpp>

#include "haproxy_parsers.h"
#include "lb/common/log.h"
#include "lb/proto/codec.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A failed reload makes the 2.6 master refuse connections for about two seconds.
constexpr int64_t kQuietAfterReloadMs = 3000;
// Consecutive failed polls before haproxy is reported down (one may be a passing hiccup).
constexpr int kFailedPollsForDown = 2;

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json StateJson(const std::optional<ServerState>& s) {
  if (!s) return nullptr;
  return s->status;
}

// Opens the log listener: a unix datagram socket path, or udp@host:port.
Result<int> OpenLogListener(const std::string& spec) {
  if (spec.rfind("udp@", 0) == 0) {
    std::string hostport = spec.substr(4);
    std::size_t colon = hostport.rfind(':');
    if (colon == std::string::npos) {
      return Status(ErrorCode::kInternal, "log_listener " + spec + ": expected udp@host:port");
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(hostport.substr(0, colon).c_str(), hostport.substr(colon + 1).c_str(),
                         &hints, &res);
    if (rc != 0)
      return Status(ErrorCode::kInternal, "log_listener " + spec + ": " + gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
      std::string err = strerror(errno);
      freeaddrinfo(res);
      if (fd >= 0) close(fd);
      return Status(ErrorCode::kInternal, "log_listener " + spec + ": " + err);
    }
    freeaddrinfo(res);
    return fd;
  }
  sockaddr_un addr{};
  if (spec.size() >= sizeof addr.sun_path) {
    return Status(ErrorCode::kInternal, "log_listener path too long: " + spec);
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, spec.c_str(), spec.size() + 1);
  unlink(spec.c_str());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::string err = strerror(errno);
    if (fd >= 0) close(fd);
    return Status(ErrorCode::kInternal, "log_listener " + spec + ": " + err);
  }
  return fd;
}

}  // namespace

struct EventLoop::Sockets {
  explicit Sockets(zmq::context_t& ctx) : pub(ctx, zmq::socket_type::pub) {}
  ~Sockets() {
    if (log >= 0) close(log);
  }
  zmq::socket_t pub;
  int log = -1;
};

EventLoop::EventLoop(zmq::context_t& context, const common::Settings& settings, StatsSource& stats,
                     std::function<std::string()> live_sha256)
    : context_(context),
      settings_(settings),
      stats_(stats),
      live_sha256_(std::move(live_sha256)),
      epoch_ms_(NowMs()),
      published_{{"server", 0}, {"haproxy", 0}, {"reload", 0}, {"heartbeat", 0}} {}

EventLoop::~EventLoop() { Stop(); }

Status EventLoop::Bind(const common::SocketSetup& secure) {
  try {
    sockets_ = std::make_unique<Sockets>(context_);
    sockets_->pub.set(zmq::sockopt::linger, 0);
    sockets_->pub.set(zmq::sockopt::sndhwm, settings_.agent.event_hwm);
    if (secure) secure(sockets_->pub);
    sockets_->pub.bind(settings_.agent.event_endpoint);
    bound_ = sockets_->pub.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status(ErrorCode::kInternal,
                  "cannot bind event socket " + settings_.agent.event_endpoint + ": " + e.what());
  }
  if (!settings_.agent.log_listener.empty()) {
    auto fd = OpenLogListener(settings_.agent.log_listener);
    if (!fd.ok()) return fd.status();
    sockets_->log = *fd;
  }
  return Status::Ok();
}

void EventLoop::Start() { thread_ = std::thread(&EventLoop::Run, this); }

void EventLoop::Stop() {
  if (stopping_.exchange(true)) return;
  answers_.Wake();
  if (thread_.joinable()) thread_.join();
  if (!settings_.agent.log_listener.empty() && settings_.agent.log_listener[0] == '/') {
    unlink(settings_.agent.log_listener.c_str());
  }
}

void EventLoop::ReloadStarted() { reloads_running_++; }

bool EventLoop::ReloadAnswerPending() { return applied_pending_.load() > 0; }

void EventLoop::ReloadFinished(const Status& status, const json& result,
                               const std::string& source) {
  json event = {{"source", source}};
  if (status.ok()) {
    event["outcome"] = result.value("outcome", "applied");
    event["applied_via"] = result.value("applied_via", "reload");
    event["sha256"] = result.value("sha256", "");
    event["previous_sha256"] = result.value("previous_sha256", "");
    event["total_ms"] = result.value("total_ms", 0);
  } else {
    std::string code(proto::ErrorCodeName(status.code()));
    bool rolled_back = status.details().is_object() && status.details().value("rolled_back", false);
    event["outcome"] = rolled_back ? "rolled_back" : code;
    event["error"] = {{"code", code}, {"message", status.message()}};
    // The live config afterwards: unchanged by every failure but a failed rollback.
    event["sha256"] = live_sha256_();
  }
  // Counted before the reload stops counting as running: a poll in between still knows.
  const bool applied = status.ok() && result.value("outcome", "") == "applied";
  if (applied) ++applied_pending_;
  last_reload_end_ms_ = NowMs();
  if (reloads_running_ > 0) reloads_running_--;
  const std::string why =
      result.is_object() && result.value("applied_via", "") == "runtime" ? "runtime" : "reload";
  answers_.Push(ReloadAnswer{std::move(event), applied, why});
}

std::map<std::string, uint64_t> EventLoop::published() const {
  std::lock_guard<std::mutex> lock(published_mu_);
  return published_;
}

void EventLoop::Publish(const std::string& topic, const std::string& type, json body,
                        bool advance_seq) {
  body["v"] = proto::kProtocolVersion;
  body["agent"] = settings_.agent.agent_id;
  body["epoch"] = epoch_ms_;
  body["seq"] = advance_seq ? ++seq_ : seq_.load();
  body["topic_seq"] = ++topic_seq_[topic];
  body["ts_ms"] = NowMs();
  body["type"] = type;
  std::string payload = proto::EncodeMsgpack(body);
  try {
    // dontwait: a full queue drops the event for that subscriber instead of blocking the loop.
    sockets_->pub.send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    sockets_->pub.send(zmq::buffer(payload), zmq::send_flags::dontwait);
    std::lock_guard<std::mutex> lock(published_mu_);
    ++published_[type];
  } catch (const zmq::error_t& e) {
    common::LogWarning() << "event not published: " << e.what();
  }
}

void EventLoop::PublishServer(const ServerChange& c, const std::string& why,
                              const std::string& source) {
  const ServerState& now = c.current ? *c.current : *c.previous;
  json body = {
      {"backend", c.backend},
      {"server", c.server},
      {"change", c.change},
      {"previous", StateJson(c.previous)},
      {"status", StateJson(c.current)},
      {"check_status", now.check_status},
      {"last_chk", now.last_chk},
      {"weight", now.weight},
      {"address", now.address},
      {"previous_address", c.previous ? json(c.previous->address) : json(nullptr)},
      {"why", why.empty() ? json(now.last_chk.empty() ? nullptr : json(now.last_chk)) : json(why)},
      {"source", source}};
  Publish("server/" + c.backend + "/" + c.server, "server", std::move(body));
}

void EventLoop::Poll(bool after_reload) {
  auto csv = stats_.ShowStat("-1 4 -1");
  auto rows =
      csv.ok() ? ParseCompleteShowStat(*csv) : proto::Result<std::vector<StatRow>>(csv.status());
  if (!rows.ok()) {
    const bool reload_noise =
        reloads_running_ > 0 || NowMs() - last_reload_end_ms_ < kQuietAfterReloadMs;
    if (!reload_noise) ++failed_polls_;
    if (haproxy_up_ && failed_polls_ >= kFailedPollsForDown) {
      haproxy_up_ = false;
      haproxy_pid_ = 0;
      Publish("haproxy", "haproxy", {{"state", "down"}, {"message", rows.status().message()}});
    }
    return;
  }
  failed_polls_ = 0;
  if (!haproxy_up_) {
    haproxy_up_ = true;
    haproxy_pid_ = stats_.WorkerPid();
    Publish("haproxy", "haproxy",
            {{"state", "up"}, {"pid", haproxy_pid_}, {"message", "haproxy answers again"}});
  } else if (haproxy_pid_ == 0 || after_reload) {
    haproxy_pid_ = stats_.WorkerPid();
  }
  // While an apply runs, its changes wait for the poll that its answer triggers, which knows
  // what caused them (why "reload" or "runtime").
  if (!after_reload && have_baseline_ && (reloads_running_ > 0 || ReloadAnswerPending())) return;
  ServerMap now = ServersFromStats(*rows);
  if (have_baseline_) {
    for (const auto& change : DiffServers(servers_, now)) {
      // What an apply changes: servers added or removed, their address, weight, maintenance
      // (health changes are the checks' doing, with their own reason).
      const auto maint = [](const std::optional<ServerState>& s) {
        return s && s->status.rfind("MAINT", 0) == 0;
      };
      const bool applied =
          change.change != "status" || maint(change.previous) || maint(change.current);
      PublishServer(change, applied && after_reload ? apply_why_ : "", "poll");
    }
  }
  servers_ = std::move(now);
  have_baseline_ = true;
}

void EventLoop::ReadLog() {
  char buf[65536];
  while (true) {
    ssize_t n = recv(sockets_->log, buf, sizeof buf, 0);
    if (n <= 0) return;
    std::string_view text(buf, static_cast<std::size_t>(n));
    auto change = ParseServerLogLine(text);
    if (!change) continue;
    const std::string key = change->backend + "/" + change->server;
    auto it = servers_.find(key);
    if (it == servers_.end()) continue;  // not seen by a poll yet: the poll will report it
    // The log says DOWN/UP/MAINT; show stat may say "DOWN 1/2" or "MAINT (via ...)". Publish
    // only a real change of the base state, and record it so the poll does not repeat it.
    const std::string& known = it->second.status;
    if (known.rfind(change->status, 0) == 0) continue;
    ServerChange c{change->backend, change->server, "status", it->second, it->second};
    c.current->status = change->status;
    // The log line tells the new state and why, not the check's code: that comes with the
    // next poll (which does not publish the state again).
    c.current->check_status.clear();
    if (!change->why.empty()) c.current->last_chk = change->why;
    it->second = *c.current;
    PublishServer(c, change->why, "log");
  }
}

void EventLoop::Heartbeat() {
  Publish("heartbeat", "heartbeat",
          {{"sha256", live_sha256_()},
           {"haproxy_pid", haproxy_up_ ? haproxy_pid_ : 0},
           {"interval_s", settings_.agent.heartbeat_interval.count() / 1000.0}},
          /*advance_seq=*/false);
}

void EventLoop::Run() {
  auto next_poll = Clock::now();
  auto next_heartbeat = Clock::now() + settings_.agent.heartbeat_interval;
  while (!stopping_) {
    auto now = Clock::now();
    if (now >= next_poll) {
      Poll(false);
      next_poll = now + settings_.agent.poll_interval;
    }
    if (now >= next_heartbeat) {
      Heartbeat();
      next_heartbeat = now + settings_.agent.heartbeat_interval;
    }
    auto wait = std::min(next_poll, next_heartbeat) - Clock::now();
    long timeout = std::max<long>(0, std::chrono::duration_cast<milliseconds>(wait).count());
    zmq::pollitem_t items[2] = {{nullptr, answers_.fd(), ZMQ_POLLIN, 0},
                                {nullptr, sockets_->log, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, sockets_->log >= 0 ? 2 : 1, milliseconds(timeout));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) common::LogError() << "event loop poll: " << e.what();
      continue;
    }
    if (sockets_->log >= 0 && (items[1].revents & ZMQ_POLLIN)) ReadLog();
    if (items[0].revents & ZMQ_POLLIN) {
      std::deque<ReloadAnswer> answers = answers_.TakeAll();
      bool poll_now = false;
      for (auto& answer : answers) {
        Publish("reload", "reload", std::move(answer.event));
        if (answer.applied) {
          poll_now = true;
          apply_why_ = answer.why;
          --applied_pending_;
        }
      }
      if (poll_now) {
        Poll(true);
        next_poll = Clock::now() + settings_.agent.poll_interval;
      }
    }
  }
}

}  // namespace lb::agent
