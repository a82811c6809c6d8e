// What lb-agent, lb-bridge and lb-controller share in main(): the command line of a daemon
// (--config PATH, --check, --help, --version) and the way signals stop it.
//
// DESIGN of the signals: SIGTERM, SIGINT and SIGHUP are blocked in main() before any other
// thread exists, so every thread (and every child, which resets its mask before exec) inherits
// the mask and never sees them; one thread takes them with sigwait and asks the daemon to stop.
// Nothing runs in a signal handler. SIGPIPE is ignored: a closed socket is an error return.
#pragma once

#include <signal.h>

#include <atomic>
#include <string>
#include <string_view>
#include <thread>
#include <variant>

namespace lb::common {

struct DaemonInfo {
  std::string_view program;  // "lb-agent"
  std::string_view usage;    // the --help text
  std::string default_config;
  bool takes_check = true;  // --check: load and check the settings file, then exit
};

struct DaemonArgs {
  std::string config_path;
  bool check = false;
};

// Parses argv. An int is the exit code to return at once: 0 after --help or --version (printed
// on stdout), 2 after a usage error (the error, then the usage, on stderr).
std::variant<DaemonArgs, int> ParseDaemonArgs(int argc, char** argv, const DaemonInfo& info);

// Blocks the stop signals in the calling thread (call in main() before any thread starts) and
// ignores SIGPIPE.
class StopSignals {
 public:
  StopSignals();
  // Waits for a stop signal; returns it.
  int Wait() const;

 private:
  sigset_t set_;
};

// A thread that waits for a stop signal, logs it ("received Terminated") and sets `stop`. When
// the daemon ends on its own first, the destructor wakes the thread and joins it.
class StopOnSignal {
 public:
  StopOnSignal(const StopSignals& signals, std::atomic<bool>& stop);
  ~StopOnSignal();
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;

 private:
  std::atomic<bool>& stop_;
  std::atomic<bool> signalled_{false};
  std::thread thread_;
};

}  // namespace lb::common
