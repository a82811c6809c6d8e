// lbctl's command line: what the operator asked for, parsed and checked before anything touches
// a socket. Pure: no I/O, no globals; the environment comes in as a value.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fleet_protocol.h"
#include "lb/client/describe.h"
#include "lb/proto/status.h"

namespace lb::cli {

// The exit codes scripts rely on (also in UsageText()).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;      // the agent answered with an error
inline constexpr int kExitUsage = 2;        // bad arguments, unreadable FILE
inline constexpr int kExitUnreachable = 3;  // no (usable) answer within --timeout
// `fleet push` only: 4 some agents refused the push, 5 some had not answered at --timeout
// (fleet_rollout.h: kExitPartialFailure, kExitRolloutTimeout).

enum class Command {
  kHelp,
  kVersion,
  kStatus,
  kReload,
  kValidate,
  kInfo,
  kGetConfig,
  kPing,
  kWatch,
  kFleetServe,   // lbctl fleet serve: the fleet controller, in the foreground
  kFleetPush,    // lbctl fleet push FILE: a rollout through the controller's control socket
  kFleetAgents,  // lbctl fleet agents: the agents the controller knows
  kKeygen,       // lbctl keygen PATH: a CURVE key pair in PATH and PATH_secret
};

// What lbctl reads from its environment. main() fills it; tests build it by hand.
struct Environment {
  std::string agent_endpoint;   // LBCTL_AGENT; empty when unset
  std::string events_endpoint;  // LBCTL_EVENTS; empty when unset
  std::string curve_key;        // LBCTL_CURVE_KEY; empty when unset
  std::string server_key;       // LBCTL_SERVER_KEY; empty when unset
  bool no_color = false;        // NO_COLOR set to a non-empty value (https://no-color.org)
  bool stdout_is_terminal = false;
  bool stderr_is_terminal = false;  // fleet push draws a live progress line there
};

// `lbctl fleet ...` (proto/PROTOCOL.md, "Fleet" and "Controller control socket").
struct FleetOptions {
  // serve: where the controller binds its PUB (pushes, beacons) and ROUTER (agents) sockets,
  // where it keeps its state, its id (empty: the host name) and how often it sends a beacon.
  std::string pub_endpoint;
  std::string router_endpoint;
  std::string state_dir;
  std::string id;
  std::chrono::milliseconds beacon_interval{1000};
  // serve binds it; push and agents connect to it. Required: there is no default controller.
  std::string control_endpoint;
  // push: exactly one of --all, --group G, --agent ID.
  std::optional<FleetTarget> target;
  std::optional<uint64_t> expect;  // wait for this many agents' answers, whoever they are
  uint64_t canary = 0;             // 0: no canary wave
  uint64_t batch = 0;              // 0: no limit on agents reloading at once
  bool stop_on_failure = false;
  // serve: CURVE on the PUB and ROUTER sockets (Options::curve_key is the controller's own
  // secret certificate): the allow-list of agents' public keys, a file or a directory.
  std::string clients;
  // serve without CURVE: bind PUB/ROUTER to non-loopback endpoints anyway (with a warning).
  bool allow_insecure = false;
};

struct Options {
  // Where the agent's ROUTER (commands) and PUB (events) sockets are. Precedence: flag, then
  // environment, then these defaults (lb-agent.cfg's defaults).
  std::string agent_endpoint = "tcp://127.0.0.1:5555";
  std::string events_endpoint = "tcp://127.0.0.1:5556";
  // The whole budget of one command, connection included (fleet push: the whole rollout).
  // Not used by `watch` and `fleet serve`.
  std::chrono::milliseconds timeout{30000};
  bool json = false;
  bool no_color = false;
  // CURVE (SECURITY.md), for the commands that talk to the agent: lbctl's own secret
  // certificate and the agent's public certificate (flag, then LBCTL_CURVE_KEY /
  // LBCTL_SERVER_KEY); both or neither. Files, read by Run(), not here. `fleet serve
  // --curve-key` names the controller's own secret certificate (no environment).
  std::string curve_key;
  std::string server_key;

  Command command = Command::kHelp;
  std::string backend;            // status: empty = the agent's default_backend, "*" = all
  std::string file;               // reload, validate: a path, or "-" for stdin; keygen: PATH
  std::string expect_sha256;      // reload: lower-case hex, or empty
  bool force = false;             // reload, validate
  std::string topic_prefix;       // watch: "" = every topic
  std::optional<uint64_t> count;  // watch: stop after this many events
  std::optional<std::chrono::milliseconds> for_ms;  // watch: stop after this long
  FleetOptions fleet;                               // fleet serve, push, agents
};

// Parses argv[1..] (without the program name). Global options may appear before or after the
// command; `--` ends the options. On a usage error the Status is kBadRequest with a one-line
// message naming the offending argument (without the "lbctl: " prefix); the caller exits with
// kExitUsage.
proto::Result<Options> ParseCommandLine(const std::vector<std::string>& args,
                                        const Environment& env);

// Colour only for a terminal, and only when neither NO_COLOR nor --no-color asks otherwise.
bool UseColor(const Options& options, const Environment& env);

// The text of `lbctl help`: commands, options, exit codes.
std::string_view UsageText();

// "30 s", "0.5 s": how a duration is shown in messages (lb/client/describe.h).
using client::DescribeSeconds;

}  // namespace lb::cli
