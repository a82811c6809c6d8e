// EventLoop: the agent's event publisher (proto/PROTOCOL.md, "Events").
//
// DESIGN: one thread owns the PUB socket, the optional log-listener socket, the last known
// state of every server and the sequence numbers. It wakes on (a) its poll timer: `show stat`
// is read and only the differences are published; (b) a datagram on the log listener: a
// "Server b/s is DOWN" line is published at once (source "log") and recorded, so the next poll
// does not publish it again; (c) its eventfd, when another thread queued a reload outcome
// (published; an applied reload also triggers an immediate poll, whose added/removed servers
// carry why "reload"); (d) the heartbeat timer. Publishing never blocks: a subscriber that
// does not read loses events at the high-water mark and sees the gap in `seq`.
// Thread-safety: ReloadStarted, ReloadFinished, last_seq, epoch_ms, haproxy_up and published
// may be called from any thread; everything else belongs to the loop's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "lb/common/curve_socket.h"
#include "lb/common/mailbox.h"
#include "lb/common/settings.h"
#include "lb/proto/status.h"
#include "server_diff.h"
#include "stats_source.h"

namespace zmq {
class context_t;
}

namespace lb::agent {

class EventLoop {
 public:
  // `context`, `settings` and `stats` must outlive the loop. `live_sha256` names the live
  // config in heartbeats.
  EventLoop(zmq::context_t& context, const common::Settings& settings, StatsSource& stats,
            std::function<std::string()> live_sha256);
  ~EventLoop();

  // Binds the PUB socket, after `secure` (CURVE server options) when given, and the log
  // listener. Fails with a message naming the endpoint.
  proto::Status Bind(const common::SocketSetup& secure = {});
  std::string bound_endpoint() const { return bound_; }
  void Start();
  void Stop();

  // A reload is running: haproxy's master socket may refuse connections meanwhile, which must
  // not be reported as haproxy going away.
  void ReloadStarted();
  // A reload was answered (any outcome, including superseded). `source` is the event's
  // `source`: "command" (the command socket) or "fleet" (a controller's push).
  void ReloadFinished(const proto::Status& status, const nlohmann::json& result,
                      const std::string& source = "command");

  uint64_t last_seq() const { return seq_.load(); }
  // haproxy as the last "haproxy" event said: down once kFailedPollsForDown polls failed outside
  // a reload, up again at the first answer; up from the start. Any thread.
  bool haproxy_up() const { return haproxy_up_.load(); }
  // Messages sent on the PUB socket since start, by type ("server", "haproxy", "reload",
  // "heartbeat"; each present from the start, at 0). Any thread.
  std::map<std::string, uint64_t> published() const;
  int64_t epoch_ms() const { return epoch_ms_; }

 private:
  void Run();
  void Poll(bool after_reload);
  void ReadLog();
  // `advance_seq` false: the body carries the last event's seq (heartbeats); topic_seq
  // always advances.
  void Publish(const std::string& topic, const std::string& type, nlohmann::json body,
               bool advance_seq = true);
  void PublishServer(const ServerChange& change, const std::string& why, const std::string& source);
  void Heartbeat();
  // An applied reload's answer is queued and not yet published.
  bool ReloadAnswerPending();

  zmq::context_t& context_;
  const common::Settings& settings_;
  StatsSource& stats_;
  std::function<std::string()> live_sha256_;
  std::string bound_;
  const int64_t epoch_ms_;

  struct Sockets;
  std::unique_ptr<Sockets> sockets_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> seq_{0};
  std::atomic<int> reloads_running_{0};
  std::atomic<int64_t> last_reload_end_ms_{0};

  // Reload outcomes from other threads, and how many of those queued are applied reloads (each
  // triggers an immediate poll once published).
  struct ReloadAnswer {
    nlohmann::json event;
    bool applied = false;
    std::string why;  // an applied one's applied_via: "reload" or "runtime"
  };
  common::Mailbox<ReloadAnswer> answers_;
  std::atomic<int> applied_pending_{0};

  // Loop-thread state.
  // Why the changes the poll after an applied answer sees happened ("reload" or "runtime").
  std::string apply_why_ = "reload";
  ServerMap servers_;
  bool have_baseline_ = false;
  std::atomic<bool> haproxy_up_{true};  // written by the loop's thread only
  int failed_polls_ = 0;
  int64_t haproxy_pid_ = 0;
  std::map<std::string, uint64_t> topic_seq_;

  mutable std::mutex published_mu_;
  std::map<std::string, uint64_t> published_;  // guarded by published_mu_
};

}  // namespace lb::agent
