// lb-controller: the fleet controller (proto/PROTOCOL.md, "Fleet"). main() only parses the
// command line, loads the settings and handles signals; controller.h serves.
#include <atomic>
#include <iostream>
#include <string>
#include <variant>
#include <zmq.hpp>

#include "controller.h"
#include "lb/common/daemon.h"
#include "lb/common/log.h"
#include "settings.h"

namespace {

constexpr const char* kUsage =
    "usage: lb-controller [--config PATH] [--check] [--help] [--version]\n"
    "\n"
    "Pushes HAProxy configs to a fleet of lb-agents over ZeroMQ and collects their answers\n"
    "(proto/PROTOCOL.md, \"Fleet\"); `lbctl fleet push|agents` talk to its control socket.\n"
    "\n"
    "  --config PATH   settings file (default /etc/lb-controller/lb-controller.cfg; keys:\n"
    "                  etc/lb-controller.cfg)\n"
    "  --check         check the settings file, the endpoint rules and the key files it names,\n"
    "                  then exit (0 when all is well); binds and locks nothing\n"
    "  --help          this text\n"
    "  --version       the version\n"
    "\n"
    "Exit status: 0 after SIGTERM/SIGINT/SIGHUP or a good --check; 1 when it cannot serve\n"
    "(endpoint in use, state dir locked or unreadable); 2 for a bad settings file or key file.\n";

}  // namespace

int main(int argc, char** argv) {
  lb::common::SetLogProgram("lb-controller");
  auto parsed = lb::common::ParseDaemonArgs(
      argc, argv,
      {"lb-controller", kUsage, "/etc/lb-controller/lb-controller.cfg", /*takes_check=*/true});
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  const lb::common::DaemonArgs& args = std::get<lb::common::DaemonArgs>(parsed);
  auto settings = lb::controller::LoadControllerSettings(args.config_path);
  if (!settings.ok()) {
    lb::common::LogError() << settings.status().message();
    return 2;
  }
  if (args.check) {
    auto checked = lb::controller::CheckSettings(*settings);
    if (!checked.ok()) {
      lb::common::LogError() << checked.status().message() << " (" << args.config_path << ")";
      return 2;
    }
    for (const auto& warning : *checked) lb::common::LogWarning() << warning;
    std::cout << args.config_path << ": ok\n";
    return 0;
  }
  const lb::common::StopSignals signals;  // before any other thread exists
  std::atomic<bool> stop{false};
  const lb::common::StopOnSignal waiter(signals, stop);
  try {
    zmq::context_t context;
    lb::controller::Controller controller(context, *settings);
    if (lb::proto::Status open = controller.Open(); !open.ok()) {
      lb::common::LogError() << open.message() << " (" << args.config_path << ")";
      return open.code() == lb::proto::ErrorCode::kBadRequest ? 2 : 1;
    }
    if (lb::proto::Status run = controller.Run(stop); !run.ok()) {
      lb::common::LogError() << run.message();
      return 1;
    }
  } catch (const std::exception& e) {
    lb::common::LogError() << e.what();
    return 1;
  }
  return 0;
}
