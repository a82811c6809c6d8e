// lb-agent: the control plane next to one HAProxy. main() only parses the command line, loads
// the settings and handles signals; agent.h wires everything else.
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <string>
#include <variant>
#include <vector>

#include "agent.h"
#include "config_lint.h"
#include "lb/common/daemon.h"
#include "lb/common/log.h"
#include "lb/common/service_manager.h"
#include "lb/common/settings.h"

namespace {

constexpr const char* kUsage =
    "usage: lb-agent [--config PATH] [--check] [--help] [--version]\n"
    "\n"
    "Runs next to HAProxy: validates, writes and reloads its config, reports its servers.\n"
    "Commands arrive on a ZeroMQ socket (see proto/PROTOCOL.md); lb-bridge serves the HTTP API.\n"
    "\n"
    "  --config PATH   settings file (default /etc/lb-agent/lb-agent.cfg; keys: etc/lb-agent.cfg)\n"
    "  --check         load and check the settings file (and the files lb-bridge reads from\n"
    "                  it: bridge_tokens_file must exist and not be readable by others), then\n"
    "                  exit (0 when all is well)\n"
    "  --help          this text\n"
    "  --version       the version\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop the agent (haproxy keeps serving unless stop_haproxy_on_exit);\n"
    "SIGHUP re-reads log_level and the CURVE allow-list, and never stops anything.\n"
    "Exit status: 0 after SIGTERM/SIGINT or a good --check; 1 when it cannot serve (another\n"
    "agent holds the config's lock, a socket cannot be bound); 2 for a bad settings file.\n";

}  // namespace

int main(int argc, char** argv) {
  // First: a SIGHUP or SIGTERM during start-up waits for the signal thread instead of killing
  // the agent with haproxy half adopted; and no thread exists yet to inherit another mask.
  const lb::common::DaemonSignals signals;
  lb::common::InitServiceManager();
  lb::common::SetLogProgram("lb-agent");
  // Every buffer of 1 MiB or more (a config, a frame, haproxy's answers) gets its own mapping,
  // returned to the system when freed. glibc's default raises that threshold after the first
  // large free, after which a 16 MB config stays in the heap for good (issue 14: RSS must fall
  // back after a burst of large reloads).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  auto parsed = lb::common::ParseDaemonArgs(
      argc, argv, {"lb-agent", kUsage, "/etc/lb-agent/lb-agent.cfg", /*takes_check=*/true});
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  const lb::common::DaemonArgs& args = std::get<lb::common::DaemonArgs>(parsed);
  auto settings = lb::common::LoadSettings(args.config_path);
  if (!settings.ok()) {
    lb::common::LogError() << settings.status().message();
    return 2;
  }
  lb::common::SetLogLevel(settings->log_level);
  if (args.check) {
    // What lb-bridge reads from the same file is checked too (it refuses to start without it).
    std::vector<std::string> problems = lb::common::CheckBridgeFiles(*settings);
    for (const auto& problem : problems) lb::common::LogError() << problem;
    if (!problems.empty()) return 2;
    std::cout << args.config_path << ": ok\n";
    return 0;
  }
  if (std::string warning = lb::agent::RunningAsRootWarning(geteuid()); !warning.empty()) {
    lb::common::LogWarning() << warning;
  }
  std::atomic<bool> stop{false};
  lb::agent::Agent agent(*settings);
  // Declared after the agent: it ends (and no SIGHUP reaches Reread) before the agent goes.
  lb::common::SignalActions actions;
  actions.stop = [&stop] { stop = true; };
  actions.reload = [&agent] { return agent.Reread(); };
  const lb::common::SignalThread signal_thread(signals, std::move(actions));
  return agent.Run(stop);
}
