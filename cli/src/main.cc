// lbctl: the operator's command-line client of lb-agent. main() only reads the environment and
// installs the signal handlers; lbctl.h holds the behaviour.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "command_line.h"
#include "lbctl.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;

void OnStopSignal(int) { g_stop = 1; }

// True once the reader of a stdout pipe has gone (`lbctl watch server/ | grep -m1 DOWN`), so
// that a watch with rare events ends then, not at its next event.
bool StdoutClosed() {
  pollfd p{STDOUT_FILENO, 0, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
}

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

}  // namespace

int main(int argc, char** argv) {
  // No SA_RESTART: a signal interrupts `watch`'s wait at once instead of at its next tick.
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  // A closed stdout (`lbctl watch | head`) shows up as a failed write, which ends the watch.
  signal(SIGPIPE, SIG_IGN);

  std::ios::sync_with_stdio(false);  // FILE "-" and get-config move whole configs

  lb::cli::Environment env;
  env.agent_endpoint = Env("LBCTL_AGENT");
  env.events_endpoint = Env("LBCTL_EVENTS");
  env.curve_key = Env("LBCTL_CURVE_KEY");
  env.server_key = Env("LBCTL_SERVER_KEY");
  env.no_color = !Env("NO_COLOR").empty();
  env.stdout_is_terminal = isatty(STDOUT_FILENO) == 1;
  env.stderr_is_terminal = isatty(STDERR_FILENO) == 1;

  std::vector<std::string> args(argv + 1, argv + argc);
  const int code = lb::cli::Run(args, env, std::cin, std::cout, std::cerr,
                                [] { return g_stop != 0 || StdoutClosed(); });
  std::cout.flush();
  return code;
}
