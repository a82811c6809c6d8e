#include "command_line.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <functional>
#include <set>

#include "lb/common/endpoint.h"

namespace lb::cli {
namespace {

using proto::ErrorCode;
using proto::FleetTarget;
using proto::Result;
using proto::Status;

Status Usage(std::string message) { return Status(ErrorCode::kBadRequest, std::move(message)); }

// ---- value parsers ----

// A positive number of seconds: "30", "0.5", "2s". At most a day: a longer wait is a typo.
Result<std::chrono::milliseconds> ParseSeconds(std::string_view flag, std::string_view text) {
  std::string_view number = text;
  if (!number.empty() && number.back() == 's') number.remove_suffix(1);
  double seconds = 0;
  const char* end = number.data() + number.size();
  auto [ptr, ec] = std::from_chars(number.data(), end, seconds);
  if (number.empty() || ec != std::errc() || ptr != end || !std::isfinite(seconds) ||
      seconds <= 0 || seconds > 86400) {
    return Usage(std::string(flag) +
                 " wants a number of seconds above 0 and at most 86400, not \"" +
                 std::string(text) + "\"");
  }
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000)));
}

Result<uint64_t> ParseCount(std::string_view flag, std::string_view text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value == 0) {
    return Usage(std::string(flag) + " wants a positive whole number, not \"" + std::string(text) +
                 "\"");
  }
  return value;
}

Result<std::string> ParseSha256(std::string_view text) {
  std::string sha;
  for (char c : text) sha.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  bool hex = sha.size() == 64;
  for (char c : sha) hex = hex && std::isxdigit(static_cast<unsigned char>(c));
  if (!hex) {
    return Usage(
        "--expect-sha256 wants the 64 hex digits of a sha256 (lbctl info shows the live "
        "one), not \"" +
        std::string(text) + "\"");
  }
  return sha;
}

Status CheckEndpoint(std::string_view flag, const std::string& endpoint) {
  if (endpoint.find("://") == std::string::npos) {
    return Usage(std::string(flag) + " wants a ZeroMQ endpoint such as tcp://127.0.0.1:5555 or " +
                 "ipc:///run/lb-agent/cmd.sock, not \"" + endpoint + "\"");
  }
  return Status::Ok();
}

// ---- the commands ----

using Positionals = std::vector<std::string>;

struct CommandRow {
  std::string_view words;  // "status", "fleet push"
  Command command;
  std::string_view synopsis;  // "status [BACKEND|'*']"
  std::string_view help;      // lines after the first are indented under it
  // Checks the positional arguments and what the command needs; stores them in *options.
  std::function<Status(const Positionals&, Options*)> finish;
};

Status AtMost(const std::string& command, const Positionals& positionals, size_t n,
              std::string_view what) {
  if (positionals.size() <= n) return Status::Ok();
  return Usage(command + " takes " + std::string(what) + "; unexpected \"" + positionals[n] + "\"");
}

// One FILE (or PATH), required and not empty.
std::function<Status(const Positionals&, Options*)> OneFile(std::string command,
                                                            std::string missing) {
  return [command, missing](const Positionals& p, Options* o) -> Status {
    if (p.empty()) return Usage(command + " needs " + missing);
    if (Status s = AtMost(command, p, 1, "one FILE"); !s.ok()) return s;
    if (p[0].empty()) return Usage(command + ": FILE must not be empty");
    o->file = p[0];
    return Status::Ok();
  };
}

Status NoArguments(const std::string& command, const Positionals& p) {
  return AtMost(command, p, 0, "no arguments");
}

Status NeedsControl(const std::string& command, const Options& o) {
  if (o.fleet.control_endpoint.empty()) return Usage(command + " needs --control ENDPOINT");
  return Status::Ok();
}

const std::vector<CommandRow>& Commands() {
  static const auto* rows = new std::vector<CommandRow>{
      {"status", Command::kStatus, "status [BACKEND|'*']",
       "servers of BACKEND (default: the agent's default_backend;\n'*': every backend) as a table",
       [](const Positionals& p, Options* o) -> Status {
         if (Status s = AtMost("status", p, 1, "at most one BACKEND"); !s.ok()) return s;
         if (!p.empty() && p[0].empty()) return Usage("status: BACKEND must not be empty");
         if (!p.empty()) o->backend = p[0];
         return Status::Ok();
       }},
      {"reload", Command::kReload, "reload FILE",
       "check FILE (- for stdin) and make it the live HAProxy config",
       OneFile("reload", "a FILE (- for stdin)")},
      {"validate", Command::kValidate, "validate FILE",
       "run every check of a reload on FILE; change nothing",
       OneFile("validate", "a FILE (- for stdin)")},
      {"info", Command::kInfo, "info", "the agent, haproxy, the live config and the last reload",
       [](const Positionals& p, Options*) { return NoArguments("info", p); }},
      {"get-config", Command::kGetConfig, "get-config",
       "print the live config exactly as it is on disk:\nlbctl get-config > haproxy.cfg",
       [](const Positionals& p, Options*) { return NoArguments("get-config", p); }},
      {"history", Command::kHistory, "history",
       "the configs the agent kept (history_dir), newest first:\nN, time, outcome, sha256; the "
       "live one marked",
       [](const Positionals& p, Options*) { return NoArguments("history", p); }},
      {"rollback", Command::kRollback, "rollback [N]",
       "reload kept config N of `lbctl history` (an ordinary\nreload: same checks, verified, "
       "rolled back on failure);\nwithout N the newest one that was live before the live "
       "config",
       [](const Positionals& p, Options* o) -> Status {
         if (Status s = AtMost("rollback", p, 1, "at most one N"); !s.ok()) return s;
         if (p.empty()) return Status::Ok();
         uint64_t n = 0;
         const char* end = p[0].data() + p[0].size();
         auto [ptr, ec] = std::from_chars(p[0].data(), end, n);
         if (p[0].empty() || ec != std::errc() || ptr != end || n > 100000) {
           return Usage(
               "rollback wants N, an entry number of `lbctl history` (0, 1, 2, ...), "
               "not \"" +
               p[0] + "\"");
         }
         o->rollback_n = n;
         return Status::Ok();
       }},
      {"ping", Command::kPing, "ping", "check that the agent answers",
       [](const Positionals& p, Options*) { return NoArguments("ping", p); }},
      {"watch", Command::kWatch, "watch [TOPIC-PREFIX]",
       "print the agent's events, one line each, until Ctrl-C;\nprefixes: server/, "
       "server/BACKEND/, reload, haproxy, heartbeat;\non stderr: lost events, an agent gone "
       "silent (no heartbeat)\nor back, and an agent restart (a new epoch)",
       [](const Positionals& p, Options* o) -> Status {
         if (Status s = AtMost("watch", p, 1, "at most one TOPIC-PREFIX"); !s.ok()) return s;
         if (!p.empty()) o->topic_prefix = p[0];
         return Status::Ok();
       }},
      {"keygen", Command::kKeygen, "keygen PATH",
       "write a new CURVE key pair (SECURITY.md): PATH, the public\ncertificate to hand to the "
       "other side, and PATH_secret\n(mode 0600); never overwrites a file",
       [](const Positionals& p, Options* o) -> Status {
         if (p.empty())
           return Usage("keygen needs a PATH: it writes PATH (public) and PATH_secret");
         if (Status s = AtMost("keygen", p, 1, "one PATH"); !s.ok()) return s;
         if (p[0].empty()) return Usage("keygen: PATH must not be empty");
         o->file = p[0];
         return Status::Ok();
       }},
      {"help", Command::kHelp, "help", "this text",
       [](const Positionals&, Options*) { return Status::Ok(); }},
      {"fleet push", Command::kFleetPush, "fleet push FILE (--all | --group G | --agent-id ID)",
       "roll FILE out through lb-controller and wait for the agents:\na progress line on "
       "stderr, then a table per agent (or --json)",
       [](const Positionals& p, Options* o) -> Status {
         if (Status s = OneFile("fleet push", "a FILE (- for stdin)")(p, o); !s.ok()) return s;
         if (!o->fleet.target) {
           return Usage("fleet push needs a target: --all, --group G or --agent-id ID");
         }
         if (Status s = NeedsControl("fleet push", *o); !s.ok()) return s;
         if (o->fleet.stop_on_failure && o->fleet.canary == 0 && o->fleet.batch == 0) {
           return Usage(
               "--stop-on-failure needs --canary or --batch (a single push reaches every agent "
               "at once)");
         }
         return Status::Ok();
       }},
      {"fleet agents", Command::kFleetAgents, "fleet agents",
       "the agents lb-controller knows: groups, config, versions,\nliveness; and what each "
       "target's pushes came to",
       [](const Positionals& p, Options* o) -> Status {
         if (Status s = NoArguments("fleet agents", p); !s.ok()) return s;
         return NeedsControl("fleet agents", *o);
       }},
  };
  return *rows;
}

// `get_config` is accepted for the wire name.
const CommandRow* FindCommand(std::string_view words) {
  if (words == "get_config") words = "get-config";
  for (const auto& row : Commands()) {
    if (row.words == words) return &row;
  }
  return nullptr;
}

// ---- the options ----

// The commands that open a socket to the agent (and take --curve-key/--server-key).
const std::set<Command> kTalksToAgent = {Command::kStatus,   Command::kInfo,      Command::kReload,
                                         Command::kValidate, Command::kGetConfig, Command::kHistory,
                                         Command::kRollback, Command::kPing,      Command::kWatch};

struct OptionRow {
  std::string_view name;        // "--timeout"
  std::string_view value_name;  // "SECONDS"; "" for a switch
  // The commands that take it; empty: every command (a global option).
  std::set<Command> commands;
  std::string_view commands_text;  // how the error names them: "reload and validate"
  std::string_view help;
  // Stores the value (a switch gets ""); a bad value is the usage error.
  std::function<Status(const std::string& value, Options*)> store;
  // Other commands that take it, named after the rest: "(and of fleet push)".
  std::string_view also_text = "";
};

std::function<Status(const std::string&, Options*)> Set(bool Options::*field) {
  return [field](const std::string&, Options* o) {
    o->*field = true;
    return Status::Ok();
  };
}

std::function<Status(const std::string&, Options*)> SetFleet(bool FleetOptions::*field) {
  return [field](const std::string&, Options* o) {
    o->fleet.*field = true;
    return Status::Ok();
  };
}

// --all, --group G, --agent-id ID: exactly one.
std::function<Status(const std::string&, Options*)> SetTarget(std::string flag,
                                                              FleetTarget::Kind kind) {
  return [flag, kind](const std::string& value, Options* o) -> Status {
    if (o->fleet.target) {
      return Usage("fleet push takes one target: --all, --group G or --agent-id ID; " + flag +
                   " comes after " + proto::TargetKey(*o->fleet.target));
    }
    if (kind != FleetTarget::Kind::kAll && !proto::IsValidFleetName(value)) {
      return Usage(flag + " wants a name of 1 to 255 bytes without '/', not \"" + value + "\"");
    }
    o->fleet.target = FleetTarget{kind, value};
    return Status::Ok();
  };
}

std::function<Status(const std::string&, Options*)> SetCount(std::string flag,
                                                             uint64_t FleetOptions::*field) {
  return [flag, field](const std::string& value, Options* o) -> Status {
    auto count = ParseCount(flag, value);
    if (!count.ok()) return count.status();
    o->fleet.*field = *count;
    return Status::Ok();
  };
}

std::function<Status(const std::string&, Options*)> SetKeyFile(std::string flag,
                                                               std::string Options::*field) {
  return [flag, field](const std::string& value, Options* o) -> Status {
    if (value.empty()) return Usage(flag + " must not be empty");
    o->*field = value;
    return Status::Ok();
  };
}

const std::vector<OptionRow>& OptionRows() {
  static const std::set<Command> kFleetPush = {Command::kFleetPush};
  static const std::set<Command> kFleet = {Command::kFleetPush, Command::kFleetAgents};
  static const auto* rows = new std::vector<OptionRow>{
      // Global options.
      {"--agent",
       "ENDPOINT",
       {},
       "",
       "the agent's command socket (default tcp://127.0.0.1:5555;\nenvironment: LBCTL_AGENT)",
       [](const std::string& v, Options* o) -> Status {
         if (Status s = CheckEndpoint("--agent", v); !s.ok()) return s;
         o->agent_endpoint = v;
         return Status::Ok();
       }},
      {"--events",
       "ENDPOINT",
       {},
       "",
       "the agent's event socket, for watch (default tcp://127.0.0.1:5556;\nenvironment: "
       "LBCTL_EVENTS)",
       [](const std::string& v, Options* o) -> Status {
         if (Status s = CheckEndpoint("--events", v); !s.ok()) return s;
         o->events_endpoint = v;
         return Status::Ok();
       }},
      {"--curve-key", "FILE", kTalksToAgent, "the commands that talk to the agent",
       "lbctl's own secret certificate (lbctl keygen; its public half\nmust be in the agent's "
       "curve_clients), for an agent with CURVE\non (environment: LBCTL_CURVE_KEY); needs "
       "--server-key",
       SetKeyFile("--curve-key", &Options::curve_key)},
      {"--server-key", "FILE", kTalksToAgent, "the commands that talk to the agent",
       "the agent's public certificate (environment: LBCTL_SERVER_KEY)",
       SetKeyFile("--server-key", &Options::server_key)},
      {"--timeout",
       "SECONDS",
       {},
       "",
       "how long a command waits for the agent, connection included\n(default 30); fleet push: "
       "the whole rollout",
       [](const std::string& v, Options* o) -> Status {
         auto timeout = ParseSeconds("--timeout", v);
         if (!timeout.ok()) return timeout.status();
         o->timeout = *timeout;
         return Status::Ok();
       }},
      {"--json",
       "",
       {},
       "",
       "print the agent's result as one JSON object; a refusal as\n{\"error\": {...}}; watch: "
       "one compact object per event and line;\nfleet push: the per-agent results; fleet agents: "
       "the list;\nkeygen: the key and the files",
       Set(&Options::json)},
      {"--no-color",
       "",
       {},
       "",
       "no colours (there are none either when NO_COLOR is set or stdout\nis not a terminal)",
       Set(&Options::no_color)},
      // Options of some commands.
      {"--expect-sha256",
       "SHA",
       {Command::kReload, Command::kRollback},
       "reload and rollback",
       "only if the live config's sha256 is SHA (else: conflict)",
       [](const std::string& v, Options* o) -> Status {
         auto sha = ParseSha256(v);
         if (!sha.ok()) return sha.status();
         o->expect_sha256 = *sha;
         return Status::Ok();
       }},
      {"--force",
       "",
       {Command::kReload, Command::kValidate, Command::kRollback, Command::kFleetPush},
       "reload, validate and rollback",
       "even if default_backend is missing or has no server",
       Set(&Options::force),
       "fleet push"},
      {"--count",
       "N",
       {Command::kWatch},
       "watch",
       "exit after N events",
       [](const std::string& v, Options* o) -> Status {
         auto count = ParseCount("--count", v);
         if (!count.ok()) return count.status();
         o->count = *count;
         return Status::Ok();
       }},
      {"--for",
       "SECONDS",
       {Command::kWatch},
       "watch",
       "exit after SECONDS",
       [](const std::string& v, Options* o) -> Status {
         auto for_ms = ParseSeconds("--for", v);
         if (!for_ms.ok()) return for_ms.status();
         o->for_ms = *for_ms;
         return Status::Ok();
       }},
      {"--silence",
       "SECONDS",
       {Command::kWatch},
       "watch",
       "say \"agent silent\" after SECONDS without an event (default:\nthree of the heartbeat "
       "intervals the agent announces)",
       [](const std::string& v, Options* o) -> Status {
         auto silence = ParseSeconds("--silence", v);
         if (!silence.ok()) return silence.status();
         o->silence = *silence;
         return Status::Ok();
       }},
      {"--control", "ENDPOINT", kFleet, "fleet push and agents",
       "lb-controller's control socket ([controller] control);\nHA: every controller's, "
       "comma-separated (the leader answers)",
       [](const std::string& v, Options* o) -> Status {
         const std::vector<std::string> endpoints = common::SplitEndpoints(v);
         if (endpoints.empty()) return CheckEndpoint("--control", v);
         for (const auto& endpoint : endpoints) {
           if (Status s = CheckEndpoint("--control", endpoint); !s.ok()) return s;
         }
         o->fleet.control_endpoint = v;
         return Status::Ok();
       }},
      {"--all", "", kFleetPush, "fleet push", "the target: every agent",
       SetTarget("--all", FleetTarget::Kind::kAll)},
      {"--group", "G", kFleetPush, "fleet push", "the target: the agents in group G",
       SetTarget("--group", FleetTarget::Kind::kGroup)},
      {"--agent-id", "ID", kFleetPush, "fleet push", "the target: the agent whose agent_id is ID",
       SetTarget("--agent-id", FleetTarget::Kind::kAgent)},
      {"--expect", "N", kFleetPush, "fleet push",
       "wait for N agents' answers (default: the agents the\ncontroller knows that match)",
       [](const std::string& v, Options* o) -> Status {
         auto count = ParseCount("--expect", v);
         if (!count.ok()) return count.status();
         o->fleet.expect = *count;
         return Status::Ok();
       }},
      {"--canary", "N", kFleetPush, "fleet push",
       "first push to N agents; go on only if all of them applied",
       SetCount("--canary", &FleetOptions::canary)},
      {"--batch", "K", kFleetPush, "fleet push", "at most K agents reloading at a time",
       SetCount("--batch", &FleetOptions::batch)},
      {"--stop-on-failure", "", kFleetPush, "fleet push",
       "with --canary/--batch: no further wave after a failure",
       SetFleet(&FleetOptions::stop_on_failure)},
      {"--allow-no-match", "", kFleetPush, "fleet push",
       "record the push even when no known agent matches the target\n(for agents that say "
       "hello later); otherwise that is an error",
       SetFleet(&FleetOptions::allow_no_match)},
      {"--desired-always", "", kFleetPush, "fleet push",
       "make FILE the target's desired state at once, even if every\nagent refuses it (by "
       "default it becomes the desired state once\nan agent applied it)",
       SetFleet(&FleetOptions::desired_always)},
  };
  return *rows;
}

const OptionRow* FindOption(std::string_view name) {
  if (name == "--no-colour") name = "--no-color";
  for (const auto& row : OptionRows()) {
    if (row.name == name) return &row;
  }
  return nullptr;
}

// ---- the usage text, from the rows ----

// "  <left padded to width><first help line>\n" then the other help lines under it.
void AppendEntry(std::string* out, std::string_view indent, std::string_view left, size_t width,
                 std::string_view help) {
  std::string line = std::string(indent) + std::string(left);
  const std::string pad(indent.size() + width, ' ');
  if (line.size() + 1 > pad.size()) {
    *out += line + "\n";
    line = pad;
  } else {
    line.resize(pad.size(), ' ');
  }
  size_t start = 0;
  while (start <= help.size()) {
    const size_t end = help.find('\n', start);
    *out += line + std::string(help.substr(start, end - start)) + "\n";
    if (end == std::string_view::npos) break;
    start = end + 1;
    line = pad;
  }
}

std::string OptionLeft(const OptionRow& row) {
  return std::string(row.name) + (row.value_name.empty() ? "" : " " + std::string(row.value_name));
}

std::string BuildUsage() {
  std::string out =
      "usage: lbctl [OPTIONS] COMMAND [ARGS]\n"
      "\n"
      "Drives lb-agent, the control plane next to HAProxy, over its ZeroMQ sockets, and\n"
      "lb-controller, which pushes configs to a fleet of them.\n"
      "\n"
      "Commands:\n";
  for (const auto& command : Commands()) {
    if (command.words == "fleet push") {
      out += "\nFleet (through lb-controller's control socket; proto/PROTOCOL.md, \"Fleet\"):\n";
    }
    AppendEntry(&out, "  ", command.synopsis, 26, command.help);
    for (const auto& option : OptionRows()) {
      if (option.commands.count(command.command) == 0 ||
          (!option.commands.empty() && option.commands == kTalksToAgent)) {
        continue;
      }
      AppendEntry(&out, "      ", OptionLeft(option), 24, option.help);
    }
  }
  out +=
      "  (lbctl fleet serve is gone: the controller is its own daemon, lb-controller --config\n"
      "  FILE; etc/lb-controller.cfg and README, \"Fleet\")\n"
      "\nOptions (before or after the command):\n";
  for (const auto& option : OptionRows()) {
    if (option.commands.empty() || option.commands == kTalksToAgent) {
      AppendEntry(&out, "  ", OptionLeft(option), 20, option.help);
    }
  }
  out +=
      "  --help, --version\n"
      "\n"
      "Exit status:\n"
      "  0  success\n"
      "  1  the agent refused the command; its error code and message are on stderr\n"
      "     (invalid_config, conflict, reload_failed, haproxy_unavailable, ...); fleet: the\n"
      "     controller refused the request (no agent matches the target, ...)\n"
      "  2  usage error: unknown command or option, bad value, unreadable FILE or key file,\n"
      "     keygen: PATH exists\n"
      "  3  no answer from the agent within --timeout (not running, wrong endpoint, stuck),\n"
      "     or the agent refused the connection (CURVE: lbctl's key is not in its\n"
      "     curve_clients, a wrong --server-key, or CURVE on one side only); fleet: from the\n"
      "     controller\n"
      "  4  fleet push: some agents refused the config (or ignored the push)\n"
      "  5  fleet push: some agents had not answered at --timeout (or were not reached: lost)\n"
      "\n"
      "The wire protocol behind every command: proto/PROTOCOL.md.\n";
  return out;
}

}  // namespace

std::string UsageText() {
  static const std::string* text = new std::string(BuildUsage());
  return *text;
}

bool UseColor(const Options& options, const Environment& env) {
  return env.stdout_is_terminal && !env.no_color && !options.no_color && !options.json;
}

Result<Options> ParseCommandLine(const std::vector<std::string>& args, const Environment& env) {
  Options options;
  if (!env.agent_endpoint.empty()) options.agent_endpoint = env.agent_endpoint;
  if (!env.events_endpoint.empty()) options.events_endpoint = env.events_endpoint;

  std::string words;  // the command's words so far: "", "fleet", "fleet push"
  const CommandRow* command = nullptr;
  Positionals positionals;
  // Options are stored once the command is known: they may come before it.
  std::vector<std::pair<const OptionRow*, std::string>> given;
  bool help = false;
  bool version = false;
  bool options_ended = false;

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool is_option = !options_ended && arg.size() > 1 && arg[0] == '-';
    if (!is_option) {
      if (command != nullptr) {
        positionals.push_back(arg);
      } else if (words.empty() && arg == "fleet") {
        words = "fleet";
      } else if (words == "fleet") {
        if (arg == "serve") {
          return Usage(
              "fleet serve is gone: the controller is its own daemon now, lb-controller --config "
              "FILE (keys: etc/lb-controller.cfg; README, \"Fleet\")");
        }
        if (arg == "help") {
          help = true;
          command = FindCommand("help");
          continue;
        }
        command = FindCommand("fleet " + arg);
        if (command == nullptr) {
          return Usage("unknown fleet command \"" + arg + "\"; expected push or agents");
        }
      } else {
        command = FindCommand(arg);
        if (command == nullptr) {
          return Usage("unknown command \"" + arg + "\" (lbctl help lists them)");
        }
      }
      continue;
    }
    if (arg == "--") {
      options_ended = true;
      continue;
    }
    // --name=value or --name value.
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (auto eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    if (name == "--help" || name == "-h" || name == "--version") {
      if (inline_value) return Usage(name + " takes no value");
      (name == "--version" ? version : help) = true;
      continue;
    }
    const OptionRow* row = FindOption(name);
    if (row == nullptr) return Usage("unknown option \"" + arg + "\" (lbctl help lists them)");
    if (row->value_name.empty()) {
      if (inline_value) return Usage(name + " takes no value");
      given.emplace_back(row, "");
    } else if (inline_value) {
      given.emplace_back(row, *inline_value);
    } else if (i + 1 < args.size()) {
      given.emplace_back(row, args[++i]);
    } else {
      return Usage(name + " needs a value");
    }
  }

  if (help || (command != nullptr && command->command == Command::kHelp)) {
    options.command = Command::kHelp;
    return options;
  }
  if (version) {
    options.command = Command::kVersion;
    return options;
  }
  if (command == nullptr && words == "fleet") return Usage("fleet needs a command: push or agents");
  if (command == nullptr) return Usage("no command given (lbctl help lists them)");
  options.command = command->command;
  const bool fleet =
      options.command == Command::kFleetPush || options.command == Command::kFleetAgents;

  for (const auto& [row, value] : given) {
    if (!row->commands.empty() && row->commands.count(options.command) == 0) {
      return Usage(std::string(row->name) + " is an option of " + std::string(row->commands_text) +
                   " only" +
                   (row->also_text.empty() ? "" : " (and of " + std::string(row->also_text) + ")"));
    }
    if (fleet && row->name == "--agent") {
      return Usage(
          "--agent is the agent's command endpoint, which fleet commands do not use; fleet "
          "push targets one agent with --agent-id ID");
    }
    if (Status s = row->store(value, &options); !s.ok()) return s;
  }
  // Environment endpoints are checked only now, so that a bad LBCTL_AGENT never blocks help
  // (nor the fleet commands and keygen, which do not talk to an agent).
  const bool agent_flag = std::any_of(given.begin(), given.end(),
                                      [](const auto& g) { return g.first->name == "--agent"; });
  if (kTalksToAgent.count(options.command) != 0) {
    if (!agent_flag) {
      if (Status s = CheckEndpoint("LBCTL_AGENT/--agent", options.agent_endpoint); !s.ok()) {
        return s;
      }
    }
    if (Status s = CheckEndpoint("LBCTL_EVENTS/--events", options.events_endpoint); !s.ok()) {
      return s;
    }
    // CURVE keys: flag, then environment, each on its own; both or neither.
    const bool curve_flag = !options.curve_key.empty();
    const bool server_flag = !options.server_key.empty();
    if (!curve_flag) options.curve_key = env.curve_key;
    if (!server_flag) options.server_key = env.server_key;
    const std::string curve_name = curve_flag ? "--curve-key" : "LBCTL_CURVE_KEY";
    const std::string server_name = server_flag ? "--server-key" : "LBCTL_SERVER_KEY";
    if (!options.curve_key.empty() && options.server_key.empty()) {
      return Usage(curve_name +
                   " (lbctl's own secret certificate) needs --server-key FILE or "
                   "LBCTL_SERVER_KEY: the agent's public certificate");
    }
    if (options.curve_key.empty() && !options.server_key.empty()) {
      return Usage(server_name +
                   " (the agent's public certificate) needs --curve-key FILE or "
                   "LBCTL_CURVE_KEY: lbctl's own secret certificate");
    }
  }
  if (Status s = command->finish(positionals, &options); !s.ok()) return s;
  return options;
}

}  // namespace lb::cli
