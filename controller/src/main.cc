// lb-controller: the fleet controller (proto/PROTOCOL.md, "Fleet"). main() only parses the
// command line, loads the settings and handles signals; controller.h serves.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>
#include <zmq.hpp>

#include "controller.h"
#include "etcd_store.h"
#include "lb/common/daemon.h"
#include "lb/common/ini.h"
#include "lb/common/log.h"
#include "lb/common/service_manager.h"
#include "settings.h"

namespace {

constexpr const char* kUsage =
    "usage: lb-controller [--config PATH] [--check] [--help] [--version]\n"
    "\n"
    "Pushes HAProxy configs to a fleet of lb-agents over ZeroMQ and collects their answers\n"
    "(proto/PROTOCOL.md, \"Fleet\"); `lbctl fleet push|agents` talk to its control socket.\n"
    "\n"
    "  --config PATH   settings file (default /etc/lb-controller/lb-controller.cfg; keys:\n"
    "                  etc/lb-controller.cfg)\n"
    "  --check         check the settings file, the endpoint rules and the key files it names,\n"
    "                  then exit (0 when all is well); binds and locks nothing\n"
    "  --help          this text\n"
    "  --version       the version\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop it; SIGHUP re-reads log_level and the CURVE allow-list\n"
    "(curve_clients), and never stops anything.\n"
    "Exit status: 0 after SIGTERM/SIGINT or a good --check; 1 when it cannot serve (endpoint\n"
    "in use, state dir locked or unreadable); 2 for a bad settings file or key file; 75 when,\n"
    "with [store] etcd_endpoints, it led and may no longer (its lease may have expired): start\n"
    "it again, it stands by.\n";

// SIGHUP: log_level and the allow-list, re-read; the sockets and the state stay as they are.
// Returns the summary for systemd's STATUS=.
std::string Reread(const lb::controller::ControllerSettings& running,
                   lb::controller::Controller& controller) {
  auto fresh = lb::controller::LoadControllerSettings(running.path);
  if (!fresh.ok()) {
    lb::common::LogError() << "SIGHUP: " << running.path
                           << " not applied, nothing changed: " << fresh.status().message();
    return "SIGHUP: settings not applied: " + fresh.status().message();
  }
  lb::common::SetLogLevel(fresh->log_level);
  lb::common::LogLine line(lb::common::LogLevel::kInfo);
  line << "SIGHUP: re-read " << running.path << "; the sockets and the state are left as they are";
  line.Field("log_level", lb::common::LogLevelName(fresh->log_level));
  std::string summary = "re-read " + running.path;
  if (controller.zap() != nullptr) {
    if (fresh->curve_clients != running.curve_clients) {
      line.Field("allow_list", "unchanged: curve_clients names another file (a restart reads it)");
    } else if (auto keys = controller.ReloadAllowList(); keys.ok()) {
      line.Field("allow_list", std::to_string(*keys) + " agent key(s)");
    } else {
      line.Field("allow_list", "previous kept: " + keys.status().message());
    }
  }
  const std::string restart = lb::common::RestartNeeded(running.file_values, fresh->file_values,
                                                        {"[controller] log_level"});
  if (!restart.empty()) {
    line.Field("restart_needed", restart);
    summary += "; changed keys that need a restart: " + restart;
  }
  return summary;
}

// The leader that may no longer lead exits with this (EX_TEMPFAIL): its service manager
// starts it again, as a standby.
constexpr int kExitDeposed = 75;

// [store] etcd_endpoints: the etcd client and store, and the campaign (a standby waits here).
// kBadRequest for unusable settings; kUnavailable when `stop` came first.
// Meanwhile the control socket answers that this controller stands by, and who leads.
lb::proto::Result<std::unique_ptr<lb::controller::EtcdStore>> Lead(
    const lb::controller::ControllerSettings& settings, lb::controller::Controller& controller,
    const std::atomic<bool>& stop) {
  auto client = lb::controller::EtcdClient::Create(lb::controller::EtcdClientOptions(settings));
  if (!client.ok()) return client.status();
  lb::controller::EtcdStoreOptions store_options;
  store_options.prefix = settings.etcd_prefix;
  store_options.lease_ttl_s = settings.lease_ttl_s;
  auto store =
      std::make_unique<lb::controller::EtcdStore>(std::move(*client), store_options, settings.id);
  lb::common::LogInfo() << "controller " << settings.id << ": campaigning for leadership on "
                        << store->Describe() << " (lease " << settings.lease_ttl_s << " s)";
  if (lb::proto::Status bound = controller.BindControl(); !bound.ok()) return bound;
  // Ready for systemd (Type=notify) as a standby: it may wait for leadership for days.
  lb::common::NotifyReady("standby: campaigning for leadership; control " +
                          controller.control_endpoint());
  std::string why = "it is campaigning for leadership";
  auto epoch = store->Campaign(
      stop,
      [&why](const std::string& line) {
        lb::common::LogInfo() << line;
        constexpr std::string_view kPrefix = "standby: ";
        why = line.rfind(kPrefix, 0) == 0 ? line.substr(kPrefix.size()) : line;
      },
      [&](std::chrono::milliseconds wait) { controller.ServeStandby(wait, why); });
  if (!epoch.ok()) return epoch.status();
  lb::common::LogInfo() << "controller " << settings.id << " leads with epoch " << *epoch;
  return store;
}

}  // namespace

int main(int argc, char** argv) {
  const lb::common::DaemonSignals signals;  // first, before any other thread exists
  lb::common::InitServiceManager();
  lb::common::SetLogProgram("lb-controller");
  auto parsed = lb::common::ParseDaemonArgs(
      argc, argv,
      {"lb-controller", kUsage, "/etc/lb-controller/lb-controller.cfg", /*takes_check=*/true});
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  const lb::common::DaemonArgs& args = std::get<lb::common::DaemonArgs>(parsed);
  auto settings = lb::controller::LoadControllerSettings(args.config_path);
  if (!settings.ok()) {
    lb::common::LogError() << settings.status().message();
    return 2;
  }
  lb::common::SetLogLevel(settings->log_level);
  if (args.check) {
    auto checked = lb::controller::CheckSettings(*settings);
    if (!checked.ok()) {
      lb::common::LogError() << checked.status().message() << " (" << args.config_path << ")";
      return 2;
    }
    for (const auto& warning : *checked) lb::common::LogWarning() << warning;
    std::cout << args.config_path << ": ok\n";
    return 0;
  }
  // Each agent holds two connections (PUB and ROUTER), each a descriptor: the default soft limit
  // of 1024 would stop a fleet at about 400 agents.
  if (const std::size_t limit = lb::common::RaiseDescriptorLimit(); limit > 0 && limit < SIZE_MAX) {
    lb::common::LogInfo() << "descriptor limit " << limit << ": room for about "
                          << (limit > 256 ? (limit - 256) / 2 : 0) << " agents";
  }
  std::atomic<bool> stop{false};
  try {
    zmq::context_t context;
    lb::controller::Controller controller(context, *settings);
    // Before Open: a standby waits there for leadership, and SIGTERM must end the wait.
    lb::common::SignalActions actions;
    actions.stop = [&stop] { stop = true; };
    actions.reload = [&] { return Reread(*settings, controller); };
    const lb::common::SignalThread signal_thread(signals, std::move(actions));
    lb::controller::EtcdStore* etcd = nullptr;
    std::unique_ptr<lb::controller::StateStore> store;
    if (settings->ha()) {
      auto led = Lead(*settings, controller, stop);
      if (!led.ok()) {
        if (stop) return 0;
        lb::common::LogError() << led.status().message() << " (" << args.config_path << ")";
        return led.status().code() == lb::proto::ErrorCode::kBadRequest ? 2 : 1;
      }
      etcd = led->get();
      store = std::move(*led);
    }
    if (lb::proto::Status open = controller.Open(std::move(store)); !open.ok()) {
      lb::common::LogError() << open.message() << " (" << args.config_path << ")";
      return open.code() == lb::proto::ErrorCode::kBadRequest ? 2 : 1;
    }
    lb::common::NotifyReady("pub " + controller.pub_endpoint() + ", router " +
                            controller.router_endpoint() + ", control " +
                            controller.control_endpoint());
    lb::proto::Status run = controller.Run(stop);
    if (controller.deposed()) {
      lb::common::LogError() << run.message() << "; exiting so that it starts again as a standby";
      return kExitDeposed;
    }
    if (!run.ok()) {
      lb::common::LogError() << run.message();
      return 1;
    }
    // A clean stop hands the leadership over at once instead of after the lease's TTL.
    if (etcd != nullptr) etcd->Resign();
  } catch (const std::exception& e) {
    lb::common::LogError() << e.what();
    return 1;
  }
  return 0;
}
