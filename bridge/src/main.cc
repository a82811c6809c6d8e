// lb-bridge: the HTTP API of the 2015 lb-agent, served by asking lb-agent over ZeroMQ. main()
// only parses the command line, loads the settings and handles signals; http_api.h holds the
// routes, agent_client.h the agent connection, and event_stream.h / event_hub.h GET /events.
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
#include <zmq.hpp>

#include "agent_client.h"
#include "event_hub.h"
#include "event_stream.h"
#include "http_api.h"
#include "lb/common/settings.h"
#include "security.h"

#ifndef LB_VERSION
#define LB_VERSION "dev"
#endif

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
  std::string config_path = "/etc/lb-agent/lb-agent.cfg";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << "lb-bridge " << LB_VERSION << "\n";
      return 0;
    }
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else {
      std::cerr << "lb-bridge: unknown argument \"" << arg << "\"\n" << kUsage;
      return 2;
    }
  }
  auto loaded = lb::common::LoadSettings(config_path);
  if (!loaded.ok()) {
    std::cerr << "lb-bridge: " << loaded.status().message() << "\n";
    return 2;
  }
  const lb::common::Settings& settings = *loaded;
  const lb::common::SecuritySettings& security = settings.security;

  // Everything [security] names is read now: a missing or bad file stops the bridge here.
  lb::bridge::TokenSet tokens;
  if (!security.bridge_tokens_file.empty()) {
    auto loaded_tokens = lb::bridge::LoadTokensFile(security.bridge_tokens_file);
    if (!loaded_tokens.ok()) {
      std::cerr << "lb-bridge: " << loaded_tokens.status().message() << " (" << settings.path
                << ")\n";
      return 2;
    }
    tokens = std::move(loaded_tokens).value();
  }
  auto curve = lb::bridge::BridgeCurveKeys(security);
  if (!curve.ok()) {
    std::cerr << "lb-bridge: " << curve.status().message() << " (" << settings.path << ")\n";
    return 2;
  }
  auto made_server = lb::bridge::MakeHttpServer(security);
  if (!made_server.ok()) {
    std::cerr << "lb-bridge: " << made_server.status().message() << " (" << settings.path << ")\n";
    return 2;
  }
  std::unique_ptr<httplib::Server> server = std::move(made_server).value();
  const bool tls = !security.bridge_tls_cert.empty();
  if (!lb::bridge::IsLoopbackHost(settings.bridge.host) && tokens.empty()) {
    std::cerr << "lb-bridge: WARNING: listening on " << settings.bridge.host
              << ", reachable from other hosts, without bearer tokens: anyone who reaches this "
                 "port can replace the HAProxy configuration. Set [security] "
                 "bridge_tokens_file (SECURITY.md), or [lb-agent] host = 127.0.0.1\n";
  }

  // Signals are taken by one thread with sigwait; the mask is set before any other thread
  // (httplib's pool, libzmq's I/O threads) exists, so none of them ever sees SIGTERM or SIGINT.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  int code = 0;
  try {
    zmq::context_t context;
    lb::bridge::AgentClient agent(context, settings.agent.command_endpoint,
                                  settings.bridge.agent_timeout, lb::proto::DecodeLimits(), *curve);
    lb::bridge::EventHubOptions hub_options;
    hub_options.curve = *curve;
    auto hub = lb::bridge::EventHub::Start(context, settings.agent.event_endpoint, hub_options);
    if (!hub.ok()) {
      std::cerr << "lb-bridge: " << hub.status().message() << " (" << settings.path
                << ": [lb-agent] event_endpoint)" << std::endl;
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
      std::cerr << "lb-bridge: cannot listen on " << host << ":" << settings.bridge.port
                << (errno != 0 ? std::string(": ") + std::strerror(errno) : std::string()) << " ("
                << settings.path << ": [lb-agent] host, port)" << std::endl;
      return 1;
    }

    std::atomic<bool> stopping{false};
    std::mutex mutex;
    std::condition_variable listen_returned_cv;
    bool listen_returned = false;
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&signals, &sig);
      if (!stopping.exchange(true)) {
        std::cerr << "lb-bridge: received " << strsignal(sig) << ", stopping" << std::endl;
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
    std::cerr << "lb-bridge " << LB_VERSION << " listening on " << host << ":" << port
              << (tls ? " (HTTPS)" : "") << " -> agent " << settings.agent.command_endpoint
              << ", events " << settings.agent.event_endpoint
              << (tokens.empty() ? "" : ", bearer tokens: " + std::to_string(tokens.size()))
              << (curve->has_value() ? ", CURVE" : "") << std::endl;
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
        std::cerr << "lb-bridge: the HTTP server stopped unexpectedly" << std::endl;
        code = 1;
      }
    }
    waiter.join();
  } catch (const std::exception& e) {
    // zmq::context_t and std::thread are the only things here that throw: out of resources.
    std::cerr << "lb-bridge: " << e.what() << std::endl;
    return 1;
  }
  return code;
}
