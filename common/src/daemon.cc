#include "lb/common/daemon.h"

#include <pthread.h>
#include <sys/resource.h>
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iostream>

#include "lb/common/log.h"
#include "lb/common/service_manager.h"
#include "lb/common/version.h"

namespace lb::common {

std::size_t RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    const rlim_t before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) == 0) {
      LogInfo() << "file descriptor limit raised from " << before << " to the hard limit "
                << limit.rlim_cur;
    } else {
      limit.rlim_cur = before;
    }
  }
  if (limit.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
  return static_cast<std::size_t>(limit.rlim_cur);
}

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

DaemonSignals::DaemonSignals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGTERM);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int DaemonSignals::Wait(std::chrono::milliseconds timeout) const {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  const timespec ts{static_cast<time_t>(seconds.count()),
                    static_cast<long>((timeout - seconds).count() * 1000000)};
  const int sig = sigtimedwait(&set_, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

SignalThread::SignalThread(const DaemonSignals& signals, SignalActions actions)
    : signals_(signals), actions_(std::move(actions)) {
  thread_ = std::thread([this] {
    while (true) {
      const int sig = signals_.Wait(std::chrono::milliseconds(1000));
      if (ending_) break;
      if (sig == 0) {
        if (actions_.tick) actions_.tick();
        continue;
      }
      if (sig == SIGHUP) {
        LogInfo() << "received " << strsignal(sig) << ": re-reading the settings (SIGHUP never "
                  << "stops anything)";
        NotifyReloading();
        NotifyReady(actions_.reload ? actions_.reload() : "");
        continue;
      }
      LogInfo() << "received " << strsignal(sig) << ", stopping";
      NotifyStopping();
      if (actions_.stop) actions_.stop();
      break;
    }
    finished_ = true;
  });
}

SignalThread::~SignalThread() {
  ending_ = true;
  // Wakes the thread at once rather than at its next second; it ends without acting.
  if (!finished_) pthread_kill(thread_.native_handle(), SIGHUP);
  thread_.join();
}

}  // namespace lb::common
