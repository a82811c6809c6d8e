// lb-agent: the control plane next to one HAProxy. main() only parses the command line, loads
// the settings and handles signals; agent.h wires everything else.
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <string>
#include <variant>

#include "agent.h"
#include "config_lint.h"
#include "lb/common/daemon.h"
#include "lb/common/log.h"
#include "lb/common/settings.h"

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
  if (args.check) {
    std::cout << args.config_path << ": ok\n";
    return 0;
  }
  if (std::string warning = lb::agent::RunningAsRootWarning(geteuid()); !warning.empty()) {
    lb::common::LogWarning() << warning;
  }
  const lb::common::StopSignals signals;  // before any other thread exists
  std::atomic<bool> stop{false};
  const lb::common::StopOnSignal waiter(signals, stop);
  lb::agent::Agent agent(*settings);
  return agent.Run(stop);
}
