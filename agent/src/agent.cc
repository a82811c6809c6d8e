#include "agent.h"

#include <unistd.h>

#include <iostream>
#include <thread>
#include <zmq.hpp>

#include "haproxy_parsers.h"
#include "sha256.h"

#ifndef LB_VERSION
#define LB_VERSION "dev"
#endif

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using Clock = std::chrono::steady_clock;

const char* const kCommands = "ping, info, status, validate, reload, get_config";

}  // namespace

Agent::Agent(const common::Settings& settings)
    : settings_(settings),
      started_(Clock::now()),
      store_(settings.haproxy.config_file_path, settings.agent.history_dir,
             settings.agent.history_keep),
      validator_(settings.haproxy) {
  using common::ReloadMethod;
  switch (settings.haproxy.reload_method) {
    case ReloadMethod::kManaged:
      supervisor_ = std::make_unique<Supervisor>(settings.haproxy);
      control_ = std::make_unique<MasterControl>(settings.haproxy, supervisor_.get());
      break;
    case ReloadMethod::kMaster:
      control_ = std::make_unique<MasterControl>(settings.haproxy, nullptr);
      break;
    case ReloadMethod::kSystemd:
    case ReloadMethod::kSysv:
      control_ = std::make_unique<ServiceControl>(settings.haproxy);
      break;
  }
  pipeline_ =
      std::make_unique<ReloadPipeline>(settings, store_, validator_, *control_, geteuid() == 0);
  pool_ = std::make_unique<WorkPool>(settings.agent.query_threads);
  reload_worker_ =
      std::make_unique<ReloadWorker>([this](const ReloadRequest& r) { return pipeline_->Apply(r); },
                                     [this] { return pipeline_->LiveSha256(); });
}

Agent::~Agent() {
  reload_worker_.reset();  // answers what is still queued (Run() already did if it ran)
  pool_.reset();
  if (supervisor_) supervisor_->Stop();
}

int Agent::Run(const std::atomic<bool>& stop) {
  int removed = store_.RemoveStaleTemps();
  if (removed > 0) {
    std::cerr << "lb-agent: removed " << removed << " temp file(s) left by an earlier run next to "
              << store_.live_path() << std::endl;
  }
  if (supervisor_) {
    proto::Status s = supervisor_->Start();
    if (!s.ok()) std::cerr << "lb-agent: haproxy not started: " << s.message() << std::endl;
  }
  if (store_.ReloadInterrupted()) {
    std::cerr << "lb-agent: the previous run stopped during a reload; reloading haproxy with "
              << store_.live_path() << std::endl;
    proto::Status s = pipeline_->FinishInterruptedReload();
    if (!s.ok()) std::cerr << "lb-agent: that reload failed: " << s.message() << std::endl;
  }
  zmq::context_t context;
  // Before any socket binds: the ZAP handler must be answering when the first client arrives.
  auto security = SocketSecurity::SetUp(context, settings_, [](const std::string& line) {
    std::cerr << "lb-agent: " << line << std::endl;
  });
  if (!security.ok()) {
    std::cerr << "lb-agent: " << security.status().message() << std::endl;
    return 1;
  }
  for (const auto& warning : (*security)->warnings()) {
    std::cerr << "lb-agent: " << warning << std::endl;
  }
  security_ = security->get();
  struct ClearOnReturn {
    const SocketSecurity*& pointer;
    ~ClearOnReturn() { pointer = nullptr; }
  } clear_security{security_};
  proto::DecodeLimits limits;
  // Room for the largest config plus the envelope of the message.
  limits.max_frame_bytes = settings_.agent.max_config_bytes + 64 * 1024;
  EventLoop events(context, settings_, *control_, [this] { return pipeline_->LiveSha256(); });
  if (proto::Status s = events.Bind(security_->Server("lb-agent-events")); !s.ok()) {
    std::cerr << "lb-agent: " << s.message() << std::endl;
    return 1;
  }
  CommandServer server(context, settings_.agent.command_endpoint, limits, *this);
  proto::Status bound = server.Bind(security_->Server("lb-agent-commands"));
  if (!bound.ok()) {
    std::cerr << "lb-agent: " << bound.message() << std::endl;
    return 1;
  }
  events_ = &events;
  events.Start();
  std::unique_ptr<FleetClient> fleet;
  if (settings_.fleet.enabled()) {
    // A push's reload takes the command's path (same worker, coalescing, events) with its
    // events marked source "fleet".
    auto submit = [this, events = &events](ReloadRequest request, ReplyFn reply) {
      events->ReloadStarted();
      reload_worker_->Submit(
          std::move(request),
          [events, reply = std::move(reply)](const proto::Status& status, const json& result) {
            events->ReloadFinished(status, result, "fleet");
            reply(status, result);
          });
    };
    fleet = std::make_unique<FleetClient>(
        context, settings_, std::move(submit),
        [this](const json& args) { return StatusCommand(args); },
        [this] { return pipeline_->LiveSha256(); });
    fleet->SetSocketSetup(security_->FleetClient());
    if (proto::Status s = fleet->Start(); !s.ok()) {
      std::cerr << "lb-agent: " << s.message() << std::endl;
      events.Stop();
      events_ = nullptr;
      return 1;
    }
    fleet_ = fleet.get();
  }
  std::cerr << "lb-agent " << LB_VERSION << ": listening on " << server.bound_endpoint()
            << ", events on " << events.bound_endpoint()
            << (security_->curve() ? " (CURVE)" : " (no CURVE)")
            << " (reload_method=" << common::ReloadMethodName(settings_.haproxy.reload_method)
            << ", config " << settings_.haproxy.config_file_path << ")" << std::endl;
  server.Run(stop);
  std::cerr << "lb-agent: stopping" << std::endl;
  // No new pushes; acks of reloads still queued are dropped (the controller hears the outcome
  // at the next hello). The client object stays until the query pool, which reads its Info(),
  // is gone.
  if (fleet) fleet->Stop();
  // Answer what is queued while the event loop still runs, then stop it.
  reload_worker_.reset();
  pool_.reset();
  events.Stop();
  events_ = nullptr;
  fleet_ = nullptr;
  return 0;
}

void Agent::Handle(proto::Request request, ReplyFn reply) {
  const std::string& cmd = request.cmd;
  if (cmd == "ping") {
    reply(proto::Status::Ok(), json{{"pong", true}, {"version", LB_VERSION}});
    return;
  }
  if (cmd == "reload") {
    // Every reload outcome is also an event.
    events_->ReloadStarted();
    ReplyFn publish_and_reply = [events = events_, reply](const proto::Status& status,
                                                          const json& result) {
      events->ReloadFinished(status, result);
      reply(status, result);
    };
    auto parsed = ReloadRequestFromArgs(request.args);
    if (!parsed.ok()) {
      publish_and_reply(parsed.status(), nullptr);
      return;
    }
    reload_worker_->Submit(std::move(*parsed), std::move(publish_and_reply));
    return;
  }
  auto answer = [reply](const Result<json>& result) {
    if (result.ok()) {
      reply(proto::Status::Ok(), *result);
    } else {
      reply(result.status(), nullptr);
    }
  };
  if (cmd == "status") {
    pool_->Submit([this, args = std::move(request.args), answer] { answer(StatusCommand(args)); });
  } else if (cmd == "info") {
    pool_->Submit([this, answer] { answer(Info()); });
  } else if (cmd == "get_config") {
    pool_->Submit([this, answer] { answer(GetConfig()); });
  } else if (cmd == "validate") {
    pool_->Submit([this, args = std::move(request.args), answer] {
      auto parsed = ReloadRequestFromArgs(args);
      answer(parsed.ok() ? pipeline_->Validate(*parsed) : Result<json>(parsed.status()));
    });
  } else {
    reply(proto::Status(ErrorCode::kUnknownCommand,
                        "unknown command \"" + cmd.substr(0, 64) + "\"; known: " + kCommands),
          nullptr);
  }
}

Result<json> Agent::StatusCommand(const json& args) {
  auto backend = proto::StringArg(args, "backend", settings_.haproxy.default_backend);
  if (!backend.ok()) return backend.status();
  if (backend->empty()) {
    return proto::Status(ErrorCode::kBadRequest, "argument \"backend\" must not be empty");
  }
  // The event seq is read before the state: every change after this snapshot has a higher seq.
  const uint64_t seq = events_->last_seq();
  // A worker that stops during a reload can cut its answer short or reset the connection: the
  // new worker answers a moment later, so try a few times before calling haproxy unavailable.
  // A master that is alive but refuses connections is re-executing itself for a reload (longer
  // on a busy machine): in managed mode, keep trying for up to 2 s while it lives.
  proto::Result<std::vector<StatRow>> rows = proto::Status(ErrorCode::kInternal, "not read");
  const auto give_up = Clock::now() + std::chrono::milliseconds(2000);
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto csv = control_->WorkerCommand("show stat");
    rows =
        csv.ok() ? ParseCompleteShowStat(*csv) : proto::Result<std::vector<StatRow>>(csv.status());
    if (rows.ok() || rows.status().code() != ErrorCode::kHaproxyUnavailable) break;
    const bool master_alive = supervisor_ != nullptr && supervisor_->Running();
    if (attempt >= 2 && !(master_alive && Clock::now() < give_up)) break;
  }
  if (!rows.ok()) return rows.status();
  auto backends = BackendsFromStats(*rows, *backend);
  if (!backends.ok()) return backends.status();
  json list = json::array();
  for (const auto& b : *backends) list.push_back(proto::ToJson(b));
  return json{{"backends", std::move(list)}, {"seq", seq}, {"epoch", events_->epoch_ms()}};
}

json Agent::Info() {
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count();
  auto counters = reload_worker_->counters();
  auto applies = pipeline_->counters();
  return json{
      {"agent",
       {{"version", LB_VERSION},
        {"pid", getpid()},
        {"uptime_s", uptime},
        {"reload_method", common::ReloadMethodName(settings_.haproxy.reload_method)},
        {"command_endpoint", settings_.agent.command_endpoint},
        {"default_backend", settings_.haproxy.default_backend},
        {"reload_runs", counters.applied_calls},
        {"reloads_superseded", counters.superseded},
        {"applies_runtime", applies.runtime},
        {"applies_reload", applies.reload}}},
      {"haproxy", control_->Describe()},
      {"config", {{"path", store_.live_path()}, {"sha256", pipeline_->LiveSha256()}}},
      {"last_reload", pipeline_->LastReload()},
      {"events",
       {{"endpoint", settings_.agent.event_endpoint},
        {"agent_id", settings_.agent.agent_id},
        {"seq", events_->last_seq()},
        {"epoch", events_->epoch_ms()},
        {"log_listener", settings_.agent.log_listener}}},
      {"fleet", fleet_ != nullptr ? fleet_->Info() : json{{"enabled", false}}},
      {"security", security_ != nullptr ? security_->Info() : json{{"curve", false}}},
  };
}

Result<json> Agent::GetConfig() {
  auto live = store_.ReadLive();
  if (!live.ok()) return live.status();
  return json{{"path", store_.live_path()},
              {"exists", live->exists},
              {"config", live->text},
              {"sha256", live->exists ? Sha256Hex(live->text) : ""}};
}

}  // namespace lb::agent
