// Agent: wires settings, the HAProxy side (store, validator, control, supervisor, pipeline) and
// the transport (command socket, event publisher, fleet client), and routes each command to the
// thread that may run it: `ping` and malformed requests on the socket's thread, `reload` on the
// reload worker (a fleet push's reload too), everything that may block on haproxy on the query
// pool.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

#include "command_server.h"
#include "config_store.h"
#include "event_loop.h"
#include "fleet_client.h"
#include "haproxy_control.h"
#include "lb/common/settings.h"
#include "reload_pipeline.h"
#include "reload_worker.h"
#include "socket_security.h"
#include "supervisor.h"

namespace lb::agent {

class Agent : public CommandHandler {
 public:
  // `settings` must outlive the agent.
  explicit Agent(const common::Settings& settings);
  ~Agent() override;

  // Starts haproxy (managed mode), binds the command socket and serves until `stop` is set.
  // Returns the process exit code.
  int Run(const std::atomic<bool>& stop);

  void Handle(proto::Request request, ReplyFn reply) override;

 private:
  proto::Result<nlohmann::json> StatusCommand(const nlohmann::json& args);
  nlohmann::json Info();
  proto::Result<nlohmann::json> GetConfig();

  const common::Settings& settings_;
  const std::chrono::steady_clock::time_point started_;
  ConfigStore store_;
  HaproxyValidator validator_;
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<HaproxyControl> control_;
  std::unique_ptr<ReloadPipeline> pipeline_;
  std::unique_ptr<ReloadWorker> reload_worker_;
  std::unique_ptr<WorkPool> pool_;
  EventLoop* events_ = nullptr;               // lives in Run(), for as long as requests are handled
  FleetClient* fleet_ = nullptr;              // likewise; null when [fleet] is off
  const SocketSecurity* security_ = nullptr;  // likewise
};

}  // namespace lb::agent
