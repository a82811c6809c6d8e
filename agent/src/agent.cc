#include "agent.h"

#include <unistd.h>

#include <algorithm>
#include <thread>
#include <zmq.hpp>

#include "config_history.h"
#include "haproxy_parsers.h"
#include "lb/common/daemon.h"
#include "lb/common/ini.h"
#include "lb/common/log.h"
#include "lb/common/service_manager.h"
#include "lb/common/sha256.h"
#include "lb/common/version.h"
#include "process.h"

namespace lb::agent {
namespace {

using common::LogError;
using common::LogInfo;
using common::LogWarning;
using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using Clock = std::chrono::steady_clock;

const char* const kCommands =
    "ping, info, metrics, status, validate, reload, get_config, history, rollback";

// The event loop's view of haproxy: `show stat` from a worker and the worker's pid.
class ControlStats : public StatsSource {
 public:
  explicit ControlStats(HaproxyControl& control) : control_(control) {}
  Result<std::string> ShowStat(const std::string& args) override {
    return control_.WorkerCommand("show stat " + args);
  }
  int64_t WorkerPid() override { return control_.Describe().value("pid", int64_t{0}); }

 private:
  HaproxyControl& control_;
};

}  // namespace

Agent::Agent(const common::Settings& settings)
    : settings_(settings),
      started_(Clock::now()),
      started_wall_(std::chrono::system_clock::now()),
      haproxy_env_(ChildEnvironment(settings.security.config_environment, environ)),
      store_(settings.haproxy.config_file_path, settings.agent.history_dir,
             settings.agent.history_keep),
      validator_(settings.haproxy, haproxy_env_) {
  using common::ReloadMethod;
  switch (settings.haproxy.reload_method) {
    case ReloadMethod::kManaged:
      supervisor_ = std::make_unique<Supervisor>(settings.haproxy, haproxy_env_);
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
  stats_ = std::make_unique<ControlStats>(*control_);
}

// The members go in the reverse order of their declaration: that is the shutdown (agent.h).
Agent::~Agent() = default;

int Agent::Run(const std::atomic<bool>& stop) {
  // Before anything touches haproxy: a second agent on the same config would adopt the first
  // one's haproxy, fail to bind the sockets and (stop_haproxy_on_exit) stop it on its way out.
  auto lock = store_.Lock();
  if (!lock.ok()) {
    if (lock.status().code() == ErrorCode::kConflict) {
      LogError() << "another lb-agent runs with the config " << store_.live_path() << " ("
                 << lock.status().message()
                 << "); one agent per config: this one exits and leaves that agent and its "
                    "haproxy alone";
    } else {
      LogError() << "cannot lock the config " << store_.live_path() << ": "
                 << lock.status().message();
    }
    return 1;
  }
  lock_ = std::move(*lock);
  int removed = store_.RemoveStaleTemps();
  if (removed > 0) {
    LogInfo() << "removed " << removed << " temp file(s) left by an earlier run next to "
              << store_.live_path();
  }
  store_.MarkInterrupted();
  std::string haproxy_state = "haproxy runs";
  if (supervisor_) {
    proto::Status s = supervisor_->Start();
    if (!s.ok()) {
      LogError() << "haproxy not started: " << s.message();
      haproxy_state = "haproxy not running: " + s.message();
    } else {
      haproxy_state = "haproxy master " + std::to_string(supervisor_->master_pid()) + " serves";
    }
  }
  if (store_.ReloadInterrupted()) {
    LogWarning() << "the previous run stopped during a reload; reloading haproxy with "
                 << store_.live_path();
    proto::Status s = pipeline_->FinishInterruptedReload();
    if (!s.ok()) LogError() << "that reload failed: " << s.message();
  }
  if (proto::Status s = StartTransport(); !s.ok()) {
    LogError() << s.message();
    // A failed start never stops haproxy: whatever serves keeps serving for the next agent.
    if (supervisor_) supervisor_->LeaveRunning();
    return 1;
  }
  {
    std::lock_guard<std::mutex> lock(reread_mu_);
    transport_ready_ = true;
  }
  LogInfo() << common::Version() << ": listening on " << server_->bound_endpoint() << ", events on "
            << events_->bound_endpoint() << (security_->curve() ? " (CURVE)" : " (no CURVE)")
            << " (reload_method=" << common::ReloadMethodName(settings_.haproxy.reload_method)
            << ", config " << settings_.haproxy.config_file_path << ")";
  common::NotifyReady("commands on " + server_->bound_endpoint() + "; " + haproxy_state);
  server_->Run(stop);
  common::NotifyStopping();
  LogInfo() << "stopping"
            << (supervisor_ == nullptr ? ""
                : settings_.haproxy.stop_haproxy_on_exit
                    ? " (and haproxy: stop_haproxy_on_exit = yes)"
                    : "; haproxy keeps serving for the next agent (stop_haproxy_on_exit = no)");
  // Acks of reloads still queued are dropped when the fleet client stops (the controller hears
  // the outcome at the next hello); the rest of the shutdown is ~Agent.
  return 0;
}

namespace {

// How many connections each of the two server sockets may hold, with the descriptor limit raised
// to the hard one: `wanted`, lowered when the limit would leave no reserve for what a reload
// opens (the config, its candidate and history, haproxy's sockets and pipes) and for ZeroMQ's
// own descriptors.
std::size_t ConnectionCap(std::size_t wanted) {
  constexpr std::size_t kReserve = 256;
  const std::size_t limit = common::RaiseDescriptorLimit();
  if (limit == 0 || limit == SIZE_MAX) return wanted;
  const std::size_t usable = limit > kReserve ? limit - kReserve : 0;
  const std::size_t fits = std::max<std::size_t>(1, usable / 2);
  if (wanted <= fits) return wanted;
  LogWarning() << "[lb-agent] max_connections = " << wanted << " does not fit the descriptor limit "
               << limit << " (two sockets, " << kReserve << " kept for reloads): using " << fits
               << "; raise LimitNOFILE";
  return fits;
}

}  // namespace

std::string Agent::Reread() {
  auto fresh = common::LoadSettings(settings_.path);
  if (!fresh.ok()) {
    LogError() << "SIGHUP: " << settings_.path
               << " not applied, nothing changed: " << fresh.status().message();
    return "SIGHUP: settings not applied: " + fresh.status().message();
  }
  common::SetLogLevel(fresh->log_level);
  common::LogLine line(common::LogLevel::kInfo);
  line << "SIGHUP: re-read " << settings_.path
       << "; haproxy, its config and the sockets are left as they are";
  line.Field("log_level", common::LogLevelName(fresh->log_level));
  std::string summary = "re-read " + settings_.path;
  {
    std::lock_guard<std::mutex> lock(reread_mu_);
    if (transport_ready_ && security_->curve()) {
      if (fresh->security.curve_clients != settings_.security.curve_clients) {
        line.Field("allow_list",
                   "unchanged: curve_clients names another file (a restart reads it)");
      } else if (auto keys = security_->ReloadAllowList(); keys.ok()) {
        line.Field("allow_list", std::to_string(*keys) + " client key(s)");
      } else {
        line.Field("allow_list", "previous kept: " + keys.status().message());
      }
    }
  }
  const std::string restart =
      common::RestartNeeded(settings_.file_values, fresh->file_values, {"[lb-agent] log_level"});
  if (!restart.empty()) {
    line.Field("restart_needed", restart);
    summary += "; changed keys that need a restart: " + restart;
  }
  return summary;
}

proto::Status Agent::StartTransport() {
  context_ = std::make_unique<zmq::context_t>();
  // Before any socket binds: the ZAP handler must be answering when the first client arrives.
  auto security = SocketSecurity::SetUp(
      *context_, settings_,
      [](const std::string& line) { common::Log(common::LogLevel::kInfo, line); },
      ConnectionCap(static_cast<std::size_t>(settings_.agent.max_connections)));
  if (!security.ok()) return security.status();
  security_ = std::move(*security);
  for (const auto& warning : security_->warnings()) LogWarning() << warning;

  events_ = std::make_unique<EventLoop>(*context_, settings_, *stats_,
                                        [this] { return pipeline_->LiveSha256(); });
  if (proto::Status s = events_->Bind(security_->Server("lb-agent-events")); !s.ok()) return s;
  reload_worker_ = std::make_unique<ReloadWorker>([this](const ReloadRequest& r) {
    const auto start = Clock::now();
    auto result = pipeline_->Apply(r);
    metrics_.ReloadTimed(Clock::now() - start);
    return result;
  });
  stats_read_ = std::make_unique<common::SingleFlight<proto::Result<std::vector<StatRow>>>>(
      [this] { return ReadStats(); });
  if (settings_.fleet.enabled()) {
    fleet_ = std::make_unique<FleetClient>(
        *context_, settings_,
        [this](const json& args, ReplyFn reply) { SubmitFleetReload(args, std::move(reply)); },
        [this](const json& args) { return StatusCommand(args); },
        [this] { return pipeline_->LiveSha256(); });
    fleet_->SetSocketSetup(security_->FleetClient());
  }
  pool_ = std::make_unique<WorkPool>(settings_.agent.query_threads);

  proto::DecodeLimits limits;
  // Room for the largest config plus the envelope of the message.
  limits.max_frame_bytes = settings_.agent.max_config_bytes + 64 * 1024;
  // A request is a map of a few arguments: 10,000 values is far above any real one, and keeps
  // a frame of millions of one-byte values from costing memory and time (issue 14).
  limits.max_objects = 10000;
  server_ =
      std::make_unique<CommandServer>(*context_, settings_.agent.command_endpoint, limits, *this);
  if (proto::Status s = server_->Bind(security_->Server("lb-agent-commands")); !s.ok()) return s;
  events_->Start();
  if (fleet_) {
    if (proto::Status s = fleet_->Start(); !s.ok()) return s;
  }
  return proto::Status::Ok();
}

void Agent::SubmitFleetReload(const json& args, ReplyFn reply) {
  auto request = ReloadRequestFromArgs(args);
  if (!request.ok()) {
    reply(request.status(), nullptr);
    return;
  }
  SubmitReload(std::move(*request), std::move(reply), "fleet");
}

void Agent::SubmitReload(ReloadRequest request, ReplyFn reply, const std::string& source) {
  // Every reload outcome is also an event.
  events_->ReloadStarted();
  reload_worker_->Submit(std::move(request), [this, source, reply = std::move(reply)](
                                                 const proto::Status& status, const json& result) {
    ReloadAnswered(status, result, source);
    reply(status, result);
  });
}

void Agent::ReloadAnswered(const proto::Status& status, const json& result,
                           const std::string& source) {
  events_->ReloadFinished(status, result, source);
  metrics_.ReloadAnswered(status, result, source);
}

void Agent::Rollback(const json& args, ReplyFn reply) {
  const std::string live_sha = pipeline_->LiveSha256();
  std::vector<KeptConfig> kept = ListKeptConfigs(store_, live_sha);
  auto chosen = ChooseRollback(kept, args);
  if (!chosen.ok()) {
    reply(chosen.status(), nullptr);
    return;
  }
  const KeptConfig& target = kept[*chosen];
  auto text = store_.ReadEntry(target.entry);
  if (!text.ok()) {
    reply(text.status(), nullptr);
    return;
  }
  // An ordinary reload of that text: the reload's own args (expect_sha256, force, apply_via)
  // apply, and so do every check and the config path policy.
  json reload_args = json::object();
  for (const char* key : {"expect_sha256", "force", "apply_via"}) {
    if (auto it = args.find(key); it != args.end()) reload_args[key] = *it;
  }
  reload_args["config"] = std::move(*text);
  auto request = ReloadRequestFromArgs(std::move(reload_args));
  if (!request.ok()) {
    reply(request.status(), nullptr);
    return;
  }
  json rollback_to = {{"n", *chosen},
                      {"id", target.entry.id},
                      {"sha256", target.sha256},
                      {"time_unix_ms", target.entry.time_unix_us / 1000},
                      {"outcome", target.entry.outcome}};
  LogInfo() << "rollback to history entry " << *chosen << " (" << target.entry.id << ", "
            << target.entry.outcome << ", sha256 " << target.sha256 << ")";
  SubmitReload(
      std::move(*request),
      [reply = std::move(reply), rollback_to](const proto::Status& status, const json& result) {
        if (!status.ok()) {
          json details = status.details().is_object() ? status.details() : json::object();
          details["rollback_to"] = rollback_to;
          reply(proto::Status(status.code(), status.message(), details), nullptr);
          return;
        }
        json out = result;
        out["rollback_to"] = rollback_to;
        reply(status, out);
      },
      "rollback");
}

Result<json> Agent::History() {
  const std::string live_sha = pipeline_->LiveSha256();
  return HistoryResult(store_, ListKeptConfigs(store_, live_sha), live_sha);
}

void Agent::Handle(proto::Request request, ReplyFn reply) {
  const std::string& cmd = request.cmd;
  if (cmd == "ping") {
    reply(proto::Status::Ok(), json{{"pong", true}, {"version", common::Version()}});
    return;
  }
  if (cmd == "reload") {
    auto parsed = ReloadRequestFromArgs(std::move(request.args));
    if (!parsed.ok()) {
      // A refused reload is a reload outcome too: an event.
      events_->ReloadStarted();
      ReloadAnswered(parsed.status(), nullptr, "command");
      reply(parsed.status(), nullptr);
      return;
    }
    SubmitReload(std::move(*parsed), std::move(reply));
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
  } else if (cmd == "metrics") {
    pool_->Submit([this, answer] { answer(Metrics()); });
  } else if (cmd == "get_config") {
    pool_->Submit([this, answer] { answer(GetConfig()); });
  } else if (cmd == "history") {
    pool_->Submit([this, answer] { answer(History()); });
  } else if (cmd == "rollback") {
    // The kept file is read on the pool, then reloaded on the reload worker like `reload`.
    pool_->Submit([this, args = std::move(request.args), reply] { Rollback(args, reply); });
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
  // (The shared read starts after this command arrived: see single_flight.h.)
  const uint64_t seq = events_->last_seq();
  std::shared_ptr<const proto::Result<std::vector<StatRow>>> rows = stats_read_->Get();
  if (!rows->ok()) return rows->status();
  auto backends = BackendsFromStats(**rows, *backend);
  if (!backends.ok()) return backends.status();
  // Packed straight from the typed rows: for 1,000 servers, building the JSON tree and packing
  // it cost more than reading haproxy.
  return proto::PreEncoded(proto::EncodeStatusResult(*backends, seq, events_->epoch_ms()));
}

proto::Result<std::vector<StatRow>> Agent::ReadStats() {
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
  return rows;
}

json Agent::Info() {
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count();
  auto counters = reload_worker_->counters();
  auto applies = pipeline_->counters();
  return json{
      {"agent",
       {{"version", common::Version()},
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
      {"security", security_->Info()},
  };
}

json Agent::Metrics() {
  proto::AgentMetrics m;
  metrics_.Snapshot(&m);
  // Up or down as the event stream says it (a master re-executing for a reload refuses
  // connections for a moment: not a scrape of haproxy_up 0); old workers when the master
  // answers now.
  m.haproxy_up = events_->haproxy_up();
  const json haproxy = control_->Describe();
  if (auto old = haproxy.find("old_workers"); old != haproxy.end() && old->is_number_integer()) {
    m.old_workers = old->get<int64_t>();
  }
  m.config_sha256 = pipeline_->LiveSha256();
  m.events_published = events_->published();
  m.event_seq = events_->last_seq();
  m.event_epoch_ms = events_->epoch_ms();
  if (fleet_ != nullptr) {
    const json fleet = fleet_->Info();
    m.fleet_enabled = true;
    m.fleet_applied_version = fleet.value("applied_version", uint64_t{0});
    m.fleet_synced_version = fleet.value("synced_version", uint64_t{0});
    m.controller_connected = fleet.value("connected", false);
  }
  m.start_time_seconds = std::chrono::duration<double>(started_wall_.time_since_epoch()).count();
  return proto::ToJson(m);
}

Result<json> Agent::GetConfig() {
  auto live = store_.ReadLive();
  if (!live.ok()) return live.status();
  return json{{"path", store_.live_path()},
              {"exists", live->exists},
              {"config", live->text},
              {"sha256", live->exists ? common::Sha256Hex(live->text) : ""}};
}

}  // namespace lb::agent
