// What lb-agent, lb-bridge and lb-controller share in main(): the command line of a daemon
// (--config PATH, --check, --help, --version) and the signals an operator sends it.
//
// DESIGN of the signals: SIGTERM, SIGINT and SIGHUP are blocked in main() before any other
// thread exists (DaemonSignals), so every thread (and every child, which resets its mask before
// exec) inherits the mask and never sees them; one thread (SignalThread) takes them with
// sigtimedwait and runs the daemon's actions there. Nothing runs in a signal handler.
//   SIGTERM, SIGINT  stop: logged, STOPPING=1 to systemd, then the daemon's stop action.
//   SIGHUP           never stops anything: RELOADING=1, the daemon's reload action (re-read
//                    what can change without a restart, and say what it did), READY=1.
// SIGPIPE is ignored: a closed socket is an error return.
#pragma once

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
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

// Raises the soft descriptor limit to the hard one, and logs it when it did: every connection a
// daemon holds costs a descriptor, and the default soft limit of 1024 is the first thing a
// thousand clients (or agents) run into. Returns the soft limit in force afterwards; SIZE_MAX
// when there is none, 0 when it cannot be read. Callers size their connection caps from it.
std::size_t RaiseDescriptorLimit();

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call first in main(), before any
// thread starts: a SIGHUP during start-up is then kept for the SignalThread instead of killing
// the daemon) and ignores SIGPIPE.
class DaemonSignals {
 public:
  DaemonSignals();
  // Waits up to `timeout` for one of the three; returns it, or 0 when none came.
  int Wait(std::chrono::milliseconds timeout) const;

 private:
  sigset_t set_;
};

// What the SignalThread runs, on its own thread. Each may be empty.
struct SignalActions {
  // SIGTERM or SIGINT, once (after "received Terminated" is logged and STOPPING=1 sent); the
  // thread ends after it.
  std::function<void()> stop;
  // Each SIGHUP, between RELOADING=1 and READY=1; returns what it did, for systemd's STATUS=.
  std::function<std::string()> reload;
  // About once a second while no signal comes (a watchdog ping, lb-bridge).
  std::function<void()> tick;
};

class SignalThread {
 public:
  SignalThread(const DaemonSignals& signals, SignalActions actions);
  // When the daemon ends on its own first (a socket it could not bind), wakes the thread, which
  // ends without running `stop`, and joins it.
  ~SignalThread();
  SignalThread(const SignalThread&) = delete;
  SignalThread& operator=(const SignalThread&) = delete;

 private:
  const DaemonSignals& signals_;
  SignalActions actions_;
  std::atomic<bool> ending_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

}  // namespace lb::common
