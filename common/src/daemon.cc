#include "lb/common/daemon.h"

#include <pthread.h>

#include <cstring>
#include <iostream>

#include "lb/common/log.h"
#include "lb/common/version.h"

namespace lb::common {

std::variant<DaemonArgs, int> ParseDaemonArgs(int argc, char** argv, const DaemonInfo& info) {
  DaemonArgs args;
  args.config_path = info.default_config;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << info.usage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << info.program << " " << Version() << "\n";
      return 0;
    }
    if (arg == "--check" && info.takes_check) {
      args.check = true;
    } else if (arg == "--config" && i + 1 < argc) {
      args.config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      args.config_path = arg.substr(9);
    } else {
      LogError() << "unknown argument \"" << arg << "\"";
      std::cerr << info.usage;
      return 2;
    }
  }
  return args;
}

StopSignals::StopSignals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGTERM);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int StopSignals::Wait() const {
  int sig = 0;
  sigwait(&set_, &sig);
  return sig;
}

StopOnSignal::StopOnSignal(const StopSignals& signals, std::atomic<bool>& stop) : stop_(stop) {
  thread_ = std::thread([this, &signals] {
    const int sig = signals.Wait();
    if (!signalled_.exchange(true)) {
      LogInfo() << "received " << strsignal(sig);
      stop_ = true;
    }
  });
}

StopOnSignal::~StopOnSignal() {
  if (!signalled_.exchange(true)) {
    // The daemon ended on its own (a socket it could not bind): wake the waiting thread.
    pthread_kill(thread_.native_handle(), SIGTERM);
  }
  thread_.join();
}

}  // namespace lb::common
