// lb-agent: the control plane next to one HAProxy. main() only parses the command line, loads
// the settings and handles signals; agent.h wires everything else.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "agent.h"
#include "config_lint.h"
#include "lb/common/settings.h"

#ifndef LB_VERSION
#define LB_VERSION "dev"
#endif

namespace {

constexpr const char* kUsage =
    "usage: lb-agent [--config PATH] [--check] [--help] [--version]\n"
    "\n"
    "Runs next to HAProxy: validates, writes and reloads its config, reports its servers.\n"
    "Commands arrive on a ZeroMQ socket (see proto/PROTOCOL.md); lb-bridge serves the HTTP API.\n"
    "\n"
    "  --config PATH   settings file (default /etc/lb-agent/lb-agent.cfg; keys: etc/lb-agent.cfg)\n"
    "  --check         load and check the settings file, then exit (0 when it is valid)\n"
    "  --help          this text\n"
    "  --version       the version\n";

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "/etc/lb-agent/lb-agent.cfg";
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << "lb-agent " << LB_VERSION << "\n";
      return 0;
    }
    if (arg == "--check") {
      check_only = true;
    } else if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else {
      std::cerr << "lb-agent: unknown argument \"" << arg << "\"\n" << kUsage;
      return 2;
    }
  }
  auto settings = lb::common::LoadSettings(config_path);
  if (!settings.ok()) {
    std::cerr << "lb-agent: " << settings.status().message() << "\n";
    return 2;
  }
  if (check_only) {
    std::cout << config_path << ": ok\n";
    return 0;
  }
  if (std::string warning = lb::agent::RunningAsRootWarning(geteuid()); !warning.empty()) {
    std::cerr << warning << std::endl;
  }

  // Signals are taken by one thread with sigwait; every other thread (and every child, which
  // resets its mask before exec) never sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::atomic<bool> stop{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::cerr << "lb-agent: received " << strsignal(sig) << std::endl;
    stop = true;
  });
  int code;
  {
    lb::agent::Agent agent(*settings);
    code = agent.Run(stop);
  }
  if (!stop) {
    // Run() returned on its own (bind failure): release the waiter thread.
    pthread_kill(waiter.native_handle(), SIGTERM);
  }
  waiter.join();
  return code;
}
