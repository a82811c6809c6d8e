// lbctl's command line: what the operator asked for, parsed and checked before anything touches
// a socket. Pure: no I/O, no globals; the environment comes in as a value.
//
// DESIGN: two tables in command_line.cc, one row per command (its words, synopsis, help and the
// check of its arguments) and one row per option (its name, value, the commands that take it,
// its help and how it is stored). The parser, the "is an option of ... only" errors and
// UsageText() all read those rows: an option is known in one place.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lb/client/describe.h"
#include "lb/proto/fleet.h"
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
  kHistory,   // lbctl history: the configs the agent kept
  kRollback,  // lbctl rollback [N]: reload a kept config
  kPing,
  kWatch,
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

// `lbctl fleet push|agents`, clients of lb-controller's control socket (proto/PROTOCOL.md,
// "Controller control socket").
struct FleetOptions {
  // The controller's control socket. Required: there is no default controller.
  std::string control_endpoint;
  // push: exactly one of --all, --group G, --agent-id ID.
  std::optional<proto::FleetTarget> target;
  std::optional<uint64_t> expect;  // wait for this many agents' answers, whoever they are
  uint64_t canary = 0;             // 0: no canary wave
  uint64_t batch = 0;              // 0: no limit on agents reloading at once
  bool stop_on_failure = false;
  // push: record the push even when no known agent matches (for agents that say hello later).
  bool allow_no_match = false;
  // push: the config is the target's desired state at once, even if every agent refuses it.
  bool desired_always = false;
};

struct Options {
  // Where the agent's ROUTER (commands) and PUB (events) sockets are. Precedence: flag, then
  // environment, then these defaults (lb-agent.cfg's defaults).
  std::string agent_endpoint = "tcp://127.0.0.1:5555";
  std::string events_endpoint = "tcp://127.0.0.1:5556";
  // The whole budget of one command, connection included (fleet push: the whole rollout).
  // Not used by `watch`.
  std::chrono::milliseconds timeout{30000};
  bool json = false;
  bool no_color = false;
  // CURVE (SECURITY.md), for the commands that talk to the agent: lbctl's own secret
  // certificate and the agent's public certificate (flag, then LBCTL_CURVE_KEY /
  // LBCTL_SERVER_KEY); both or neither. Files, read by Run(), not here.
  std::string curve_key;
  std::string server_key;

  Command command = Command::kHelp;
  std::string backend;            // status: empty = the agent's default_backend, "*" = all
  std::string file;               // reload, validate: a path, or "-" for stdin; keygen: PATH
  std::string expect_sha256;      // reload, rollback: lower-case hex, or empty
  bool force = false;             // reload, validate, rollback
  std::string topic_prefix;       // watch: "" = every topic
  std::optional<uint64_t> count;  // watch: stop after this many events
  std::optional<std::chrono::milliseconds> for_ms;  // watch: stop after this long
  // watch: "agent silent" after this long without an event (default: 3 heartbeat intervals).
  std::optional<std::chrono::milliseconds> silence;
  std::optional<uint64_t> rollback_n;  // rollback: the entry of `history`; none: the default
  FleetOptions fleet;                  // fleet push, agents
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
std::string UsageText();

// "30 s", "0.5 s": how a duration is shown in messages (lb/client/describe.h).
using client::DescribeSeconds;

}  // namespace lb::cli
