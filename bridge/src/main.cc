// lb-bridge: the HTTP API of the 2015 lb-agent, served by asking lb-agent over ZeroMQ. main()
// only parses the command line, loads the settings and handles signals; http_api.h holds the
// routes, lb/client/command_client.h the agent connection, and event_stream.h / event_hub.h
// GET /events.
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <zmq.hpp>

#include "event_hub.h"
#include "event_stream.h"
#include "http_api.h"
#include "lb/client/command_client.h"
#include "lb/common/daemon.h"
#include "lb/common/log.h"
#include "lb/common/settings.h"
#include "lb/common/version.h"
#include "security.h"

namespace {

constexpr const char* kUsage =
    "usage: lb-bridge [--config PATH] [--help] [--version]\n"
    "\n"
    "Serves the HTTP API of the 2015 lb-agent (POST /reload, /reloadHaproxy, /getBackends) and\n"
    "GET /healthz, and forwards each request to lb-agent's command socket. GET /events streams\n"
    "lb-agent's events (its event_endpoint) as Server-Sent Events.\n"
    "[security] adds bearer tokens, HTTPS and a CURVE key towards the agent (SECURITY.md).\n"
    "\n"
    "  --config PATH   settings file (default /etc/lb-agent/lb-agent.cfg; keys: etc/lb-agent.cfg)\n"
    "  --help          this text\n"
    "  --version       the version\n";

}  // namespace

int main(int argc, char** argv) {
  using lb::common::LogError;
  using lb::common::LogInfo;
  using lb::common::LogWarning;
  lb::common::SetLogProgram("lb-bridge");
  auto parsed = lb::common::ParseDaemonArgs(
      argc, argv, {"lb-bridge", kUsage, "/etc/lb-agent/lb-agent.cfg", /*takes_check=*/false});
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  const std::string config_path = std::get<lb::common::DaemonArgs>(parsed).config_path;
  auto loaded = lb::common::LoadSettings(config_path);
  if (!loaded.ok()) {
    LogError() << loaded.status().message();
    return 2;
  }
  const lb::common::Settings& settings = *loaded;
  const lb::common::SecuritySettings& security = settings.security;

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
  std::unique_ptr<httplib::Server> server = std::move(made_server).value();
  const bool tls = !security.bridge_tls_cert.empty();
  if (!lb::bridge::IsLoopbackHost(settings.bridge.host) && tokens.empty()) {
    LogWarning() << "WARNING: listening on " << settings.bridge.host
                 << ", reachable from other hosts, without bearer tokens: anyone who reaches this "
                    "port can replace the HAProxy configuration. Set [security] "
                    "bridge_tokens_file (SECURITY.md), or [lb-agent] host = 127.0.0.1";
  }

  // Signals are taken by one thread with sigwait; the mask is set before any other thread
  // (httplib's pool, libzmq's I/O threads) exists, so none of them ever sees SIGTERM or SIGINT.
  const lb::common::StopSignals signals;

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
    lb::bridge::InstallHttpApi(*server, agent, settings, tokens);
    lb::bridge::InstallEventStream(*server, *events);

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
    std::thread waiter([&] {
      const int sig = signals.Wait();
      if (!stopping.exchange(true)) {
        LogInfo() << "received " << strsignal(sig) << ", stopping";
      }
      // httplib's stop() does nothing before listen_after_bind() has started, so a signal that
      // arrives that early is answered by stopping again until listening has ended. Called from
      // this thread, never from a signal handler. The hub is stopped after the server, so that
      // the event streams it ends are not followed by another request on their connection.
      std::unique_lock lock(mutex);
      while (!listen_returned) {
        server->stop();
        events->Stop();
        listen_returned_cv.wait_for(lock, std::chrono::milliseconds(50));
      }
    });
    LogInfo() << lb::common::Version() << " listening on " << host << ":" << port
              << (tls ? " (HTTPS)" : "") << " -> agent " << settings.agent.command_endpoint
              << ", events " << settings.agent.event_endpoint
              << (tokens.empty() ? "" : ", bearer tokens: " + std::to_string(tokens.size()))
              << (curve->has_value() ? ", CURVE" : "");
    bool served = server->listen_after_bind();
    {
      std::lock_guard lock(mutex);
      listen_returned = true;
    }
    listen_returned_cv.notify_all();
    if (!stopping.exchange(true)) {
      // listen_after_bind() returned on its own: release the waiter thread.
      pthread_kill(waiter.native_handle(), SIGTERM);
      if (!served) {
        LogError() << "the HTTP server stopped unexpectedly";
        code = 1;
      }
    }
    waiter.join();
  } catch (const std::exception& e) {
    // zmq::context_t and std::thread are the only things here that throw: out of resources.
    LogError() << e.what();
    return 1;
  }
  return code;
}
