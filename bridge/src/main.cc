// lb-bridge: the HTTP API of the 2015 lb-agent, served by asking lb-agent over ZeroMQ. main()
// only parses the command line, loads the settings and handles signals; http_api.h holds the
// routes, lb/client/command_client.h the agent connection, and event_stream.h / event_hub.h
// GET /events.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>
#include <zmq.hpp>

#include "event_hub.h"
#include "event_stream.h"
#include "http_api.h"
#include "lb/client/command_client.h"
#include "lb/common/daemon.h"
#include "lb/common/ini.h"
#include "lb/common/log.h"
#include "lb/common/service_manager.h"
#include "lb/common/settings.h"
#include "lb/common/version.h"
#include "metrics.h"
#include "security.h"
#include "status_page.h"

namespace {

constexpr const char* kUsage =
    "usage: lb-bridge [--config PATH] [--check] [--help] [--version]\n"
    "\n"
    "Serves the HTTP API of the 2015 lb-agent (POST /reload, /reloadHaproxy, /getBackends) and\n"
    "GET /healthz, and forwards each request to lb-agent's command socket. GET /events streams\n"
    "lb-agent's events (its event_endpoint) as Server-Sent Events; GET / is a live status\n"
    "page in a browser; GET /metrics answers lb-agent's and lb-bridge's counters in the\n"
    "Prometheus text format.\n"
    "[security] adds bearer tokens, HTTPS and a CURVE key towards the agent (SECURITY.md).\n"
    "\n"
    "  --config PATH   settings file (default /etc/lb-agent/lb-agent.cfg; keys: etc/lb-agent.cfg)\n"
    "  --check         load and check the settings and every file of [security] the bridge\n"
    "                  reads (tokens, CURVE keys, TLS certificate and key), then exit (0 when\n"
    "                  all is well); binds nothing\n"
    "  --help          this text\n"
    "  --version       the version\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop it; SIGHUP re-reads log_level and the bearer tokens file, and\n"
    "never stops anything.\n"
    "Exit status: 0 after SIGTERM/SIGINT or a good --check; 1 when it cannot serve (port in\n"
    "use); 2 for a bad settings file or a bad file it names.\n";

using lb::common::LogError;
using lb::common::LogInfo;
using lb::common::LogWarning;

// SIGHUP: log_level and the tokens file, re-read; the listener, TLS and the agent connection
// stay as they are. Returns the summary for systemd's STATUS=.
std::string Reread(const lb::common::Settings& running, lb::bridge::TokenStore& tokens) {
  auto fresh = lb::common::LoadSettings(running.path);
  if (!fresh.ok()) {
    LogError() << "SIGHUP: " << running.path
               << " not applied, nothing changed: " << fresh.status().message();
    return "SIGHUP: settings not applied: " + fresh.status().message();
  }
  lb::common::SetLogLevel(fresh->log_level);
  lb::common::LogLine line(lb::common::LogLevel::kInfo);
  line << "SIGHUP: re-read " << running.path
       << "; the listener and the agent connection are left as they are";
  line.Field("log_level", lb::common::LogLevelName(fresh->log_level));
  std::string summary = "re-read " + running.path;
  const std::string& path = running.security.bridge_tokens_file;
  if (!path.empty()) {
    if (fresh->security.bridge_tokens_file != path) {
      line.Field("tokens", "unchanged: bridge_tokens_file names another file (a restart reads it)");
    } else if (auto loaded = lb::bridge::LoadTokensFile(path); loaded.ok()) {
      line.Field("tokens", loaded->size());
      summary += "; " + std::to_string(loaded->size()) + " bearer token(s)";
      tokens.Set(std::move(loaded).value());
    } else {
      // The tokens in use stay: a file being edited must not turn authentication off.
      line.Field("tokens", "previous " + std::to_string(tokens.Get()->size()) +
                               " kept: " + loaded.status().message());
      summary += "; tokens file refused, previous tokens kept";
    }
  }
  const std::string restart =
      lb::common::RestartNeeded(running.file_values, fresh->file_values, {"[lb-agent] log_level"});
  if (!restart.empty()) {
    line.Field("restart_needed", restart);
    summary += "; changed keys that need a restart: " + restart;
  }
  return summary;
}

// How many HTTP connections fit in the descriptor limit, raised to the hard one: kept idle
// connections cost a descriptor each (and nothing else). 256 stay for the agent connections
// (kRequestThreads), the event streams' ZeroMQ sockets and the files the bridge reads.
std::size_t HttpConnectionCap(std::size_t wanted) {
  constexpr std::size_t kReserve = 256;
  const std::size_t limit = lb::common::RaiseDescriptorLimit();
  if (limit == 0 || limit == SIZE_MAX) return wanted;
  const std::size_t usable = limit > 2 * kReserve ? limit - kReserve : kReserve;
  return std::min(wanted, usable);
}

}  // namespace

int main(int argc, char** argv) {
  // First, before any thread exists: every thread inherits the mask, and a signal during
  // start-up waits for the signal thread.
  const lb::common::DaemonSignals signals;
  lb::common::InitServiceManager();
  lb::common::SetLogProgram("lb-bridge");
  auto parsed = lb::common::ParseDaemonArgs(
      argc, argv, {"lb-bridge", kUsage, "/etc/lb-agent/lb-agent.cfg", /*takes_check=*/true});
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  const lb::common::DaemonArgs& args = std::get<lb::common::DaemonArgs>(parsed);
  auto loaded = lb::common::LoadSettings(args.config_path);
  if (!loaded.ok()) {
    LogError() << loaded.status().message();
    return 2;
  }
  const lb::common::Settings& settings = *loaded;
  const lb::common::SecuritySettings& security = settings.security;
  lb::common::SetLogLevel(settings.log_level);

  // Everything [security] names is read now: a missing or bad file stops the bridge here.
  lb::bridge::TokenSet tokens;
  if (!security.bridge_tokens_file.empty()) {
    auto loaded_tokens = lb::bridge::LoadTokensFile(security.bridge_tokens_file);
    if (!loaded_tokens.ok()) {
      LogError() << loaded_tokens.status().message() << " (" << settings.path << ")";
      return 2;
    }
    tokens = std::move(loaded_tokens).value();
  }
  auto curve = lb::bridge::BridgeCurveKeys(security);
  if (!curve.ok()) {
    LogError() << curve.status().message() << " (" << settings.path << ")";
    return 2;
  }
  auto made_server = lb::bridge::MakeHttpServer(security);
  if (!made_server.ok()) {
    LogError() << made_server.status().message() << " (" << settings.path << ")";
    return 2;
  }
  if (args.check) {
    std::cout << args.config_path << ": ok\n";
    return 0;
  }
  std::unique_ptr<lb::bridge::HttpServer> server = std::move(made_server).value();
  server->options().max_connections = HttpConnectionCap(server->options().max_connections);
  const bool tls = !security.bridge_tls_cert.empty();
  if (!lb::bridge::IsLoopbackHost(settings.bridge.host) && tokens.empty()) {
    LogWarning() << "WARNING: listening on " << settings.bridge.host
                 << ", reachable from other hosts, without bearer tokens: anyone who reaches this "
                    "port can replace the HAProxy configuration. Set [security] "
                    "bridge_tokens_file (SECURITY.md), or [lb-agent] host = 127.0.0.1";
  }
  const std::size_t token_count = tokens.size();
  auto token_store = std::make_shared<lb::bridge::TokenStore>(std::move(tokens));

  int code = 0;
  try {
    zmq::context_t context;
    lb::client::CommandClient agent(context, lb::bridge::AgentClientOptions(settings, *curve));
    lb::bridge::EventHubOptions hub_options;
    hub_options.curve = *curve;
    auto hub = lb::bridge::EventHub::Start(context, settings.agent.event_endpoint, hub_options);
    if (!hub.ok()) {
      LogError() << hub.status().message() << " (" << settings.path
                 << ": [lb-agent] event_endpoint)";
      return 1;
    }
    std::unique_ptr<lb::bridge::EventHub> events = std::move(hub).value();
    lb::bridge::RequestMetrics request_metrics;
    lb::bridge::InstallHttpApi(*server, agent, settings, token_store, &request_metrics);
    lb::bridge::InstallEventStream(*server, *events);
    lb::bridge::InstallStatusPage(*server, agent);
    lb::bridge::InstallMetrics(*server, agent, *events, request_metrics);

    const std::string& host = settings.bridge.host;
    errno = 0;
    int port = settings.bridge.port;
    if (port == 0) {
      port = server->bind_to_any_port(host);  // the port is printed below, for tests
    } else if (!server->bind_to_port(host, port)) {
      port = -1;
    }
    if (port < 0) {
      LogError() << "cannot listen on " << host << ":" << settings.bridge.port
                 << (errno != 0 ? std::string(": ") + std::strerror(errno) : std::string()) << " ("
                 << settings.path << ": [lb-agent] host, port)";
      return 1;
    }

    std::atomic<bool> stopping{false};
    std::mutex mutex;
    std::condition_variable listen_returned_cv;
    bool listen_returned = false;
    lb::common::SignalActions actions;
    actions.stop = [&] {
      stopping = true;
      // A signal that arrives before listen_after_bind() has started is answered by stopping
      // again until listening has ended. The hub is stopped after the server, so that the event
      // streams it ends are not followed by another request on their connection.
      std::unique_lock lock(mutex);
      while (!listen_returned) {
        server->stop();
        events->Stop();
        listen_returned_cv.wait_for(lock, std::chrono::milliseconds(50));
      }
    };
    actions.reload = [&settings, &token_store] { return Reread(settings, *token_store); };
    actions.tick = [&server] {
      if (server->is_running()) lb::common::ServiceWatchdog();
    };
    std::optional<lb::common::SignalThread> signal_thread;
    signal_thread.emplace(signals, std::move(actions));
    LogInfo() << lb::common::Version() << " listening on " << host << ":" << port
              << (tls ? " (HTTPS)" : "") << " -> agent " << settings.agent.command_endpoint
              << ", events " << settings.agent.event_endpoint
              << (token_count == 0 ? "" : ", bearer tokens: " + std::to_string(token_count))
              << (curve->has_value() ? ", CURVE" : "");
    // Bound: connections wait in the backlog until listen_after_bind() accepts them.
    lb::common::NotifyReady("listening on " + host + ":" + std::to_string(port));
    bool served = server->listen_after_bind();
    {
      std::lock_guard lock(mutex);
      listen_returned = true;
    }
    listen_returned_cv.notify_all();
    signal_thread.reset();  // joins it; it ends without stopping when no signal came
    if (!stopping && !served) {
      LogError() << "the HTTP server stopped unexpectedly";
      code = 1;
    }
  } catch (const std::exception& e) {
    // zmq::context_t and std::thread are the only things here that throw: out of resources.
    LogError() << e.what();
    return 1;
  }
  return code;
}
