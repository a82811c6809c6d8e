// Agent: wires settings, the HAProxy side (store, validator, control, supervisor, pipeline) and
// the transport (command socket, event publisher, fleet client), and routes each command to the
// thread that may run it: `ping` and malformed requests on the socket's thread, `reload` on the
// reload worker (a fleet push's reload too), everything that may block on haproxy on the query
// pool. This is the one place where transport and HAProxy control meet.
//
// DESIGN: the constructor builds the HAProxy side; Run() builds the transport into members and
// serves. Members are declared in dependency order (each may use those above it), so that their
// destruction, in the reverse order, is the shutdown: the command socket closes first (no new
// request), then the query pool (runs what is queued, which may read the fleet client's info),
// the fleet client (no new push), the reload worker (finishes the running reload and answers
// the queued ones, whose events still go out), the event loop, the CURVE handler, the ZeroMQ
// context, and last the HAProxy side (the Supervisor stops haproxy in managed mode when
// stop_haproxy_on_exit and the agent served; by default haproxy keeps running and the next
// agent adopts it) and the lock.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

#include "command_server.h"
#include "config_store.h"
#include "event_loop.h"
#include "fleet_client.h"
#include "haproxy_control.h"
#include "haproxy_parsers.h"
#include "lb/common/settings.h"
#include "lb/common/single_flight.h"
#include "metrics_recorder.h"
#include "reload_pipeline.h"
#include "reload_worker.h"
#include "socket_security.h"
#include "stats_source.h"
#include "supervisor.h"
#include "work_pool.h"

namespace zmq {
class context_t;
}

namespace lb::agent {

class Agent : public CommandHandler {
 public:
  // `settings` must outlive the agent.
  explicit Agent(const common::Settings& settings);
  ~Agent() override;

  // Takes the lock of the live config (one agent per config: ConfigStore::Lock) before anything
  // touches haproxy, cleans up after a killed predecessor, starts or adopts haproxy (managed
  // mode), binds the sockets, tells systemd READY=1 and serves until `stop` is set. Returns the
  // process exit code: 0 after `stop`; 1 when another agent holds the lock or a socket could not
  // be set up (the reason is logged). A start that fails never stops an haproxy, whatever
  // stop_haproxy_on_exit says. Call once.
  int Run(const std::atomic<bool>& stop);

  // SIGHUP (any thread, any time): re-reads the settings file and applies what can change
  // without a restart (log_level, the CURVE allow-list), and logs what it did and which changed
  // keys wait for a restart. Never touches haproxy or the sockets.
  // Returns the summary for systemd's STATUS=.
  std::string Reread();

  void Handle(proto::Request request, ReplyFn reply) override;

 private:
  // Builds the transport (context, security, events, workers, fleet client, command socket).
  proto::Status StartTransport();
  // A fleet push's reload: the command's path (SubmitReload) with its events marked "fleet".
  void SubmitFleetReload(const nlohmann::json& args, ReplyFn reply);
  proto::Result<nlohmann::json> StatusCommand(const nlohmann::json& args);
  // `show stat` from a worker, parsed, retried across a reload (through stats_read_).
  proto::Result<std::vector<StatRow>> ReadStats();
  nlohmann::json Info();
  // `metrics`: the counters of metrics_ with the gauges read now (lb/proto/metrics.h).
  nlohmann::json Metrics();
  proto::Result<nlohmann::json> GetConfig();
  proto::Result<nlohmann::json> History();
  // `rollback`: picks the kept config (config_history.h) and reloads it like `reload`.
  void Rollback(const nlohmann::json& args, ReplyFn reply);
  // A reload request from the command socket or a rollback: the reload worker, with its outcome
  // published as an event of `source` ("command", "fleet", "rollback").
  void SubmitReload(ReloadRequest request, ReplyFn reply, const std::string& source = "command");
  // Every reload answer goes through here: its event, and its outcome counted in metrics_.
  void ReloadAnswered(const proto::Status& status, const nlohmann::json& result,
                      const std::string& source);

  // The HAProxy side, built by the constructor.
  const common::Settings& settings_;
  const std::chrono::steady_clock::time_point started_;
  const std::chrono::system_clock::time_point started_wall_;
  MetricsRecorder metrics_;  // thread-safe; fed by the reload worker and the socket's thread
  // Held from Run() on, and released last: after the Supervisor has let go of haproxy.
  std::unique_ptr<common::ExclusiveLock> lock_;
  // What haproxy (haproxy -c, managed haproxy) gets as its environment: PATH and
  // [security] config_environment, nothing else of the agent's.
  const std::vector<std::string> haproxy_env_;
  ConfigStore store_;
  HaproxyValidator validator_;
  std::unique_ptr<Supervisor> supervisor_;  // managed mode only
  std::unique_ptr<HaproxyControl> control_;
  std::unique_ptr<ReloadPipeline> pipeline_;
  std::unique_ptr<StatsSource> stats_;  // control_, as the event loop reads it

  std::mutex reread_mu_;          // Reread() against StartTransport()
  bool transport_ready_ = false;  // guarded by reread_mu_

  // The transport and the workers, built by Run() in this order (see the DESIGN above).
  std::unique_ptr<zmq::context_t> context_;
  std::unique_ptr<SocketSecurity> security_;  // its ZAP handler answers before a socket binds
  std::unique_ptr<EventLoop> events_;
  std::unique_ptr<ReloadWorker> reload_worker_;  // publishes each outcome on events_
  std::unique_ptr<FleetClient> fleet_;  // null when [fleet] is off; submits to reload_worker_
  // Concurrent `status` commands share one read of haproxy that started after they arrived.
  std::unique_ptr<common::SingleFlight<proto::Result<std::vector<StatRow>>>> stats_read_;
  std::unique_ptr<WorkPool> pool_;  // info reads reload_worker_'s counters and fleet_
  std::unique_ptr<CommandServer> server_;
};

}  // namespace lb::agent
