#include "command_line.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>

namespace lb::cli {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

constexpr std::string_view kUsage =
    "usage: lbctl [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Drives lb-agent, the control plane next to HAProxy, over its ZeroMQ sockets.\n"
    "\n"
    "Commands:\n"
    "  status [BACKEND|'*']      servers of BACKEND (default: the agent's default_backend;\n"
    "                            '*': every backend) as a table\n"
    "  reload FILE               check FILE (- for stdin) and make it the live HAProxy config\n"
    "      --expect-sha256 SHA     only if the live config's sha256 is SHA (else: conflict)\n"
    "      --force                 even if default_backend is missing or has no server\n"
    "  validate FILE [--force]   run every check of a reload on FILE; change nothing\n"
    "  info                      the agent, haproxy, the live config and the last reload\n"
    "  get-config                print the live config exactly as it is on disk:\n"
    "                            lbctl get-config > haproxy.cfg\n"
    "  ping                      check that the agent answers\n"
    "  watch [TOPIC-PREFIX]      print the agent's events, one line each, until Ctrl-C;\n"
    "                            prefixes: server/, server/BACKEND/, reload, haproxy, heartbeat;\n"
    "                            lost events are reported on stderr\n"
    "      --count N               exit after N events\n"
    "      --for SECONDS           exit after SECONDS\n"
    "  keygen PATH               write a new CURVE key pair (SECURITY.md): PATH, the public\n"
    "                            certificate to hand to the other side, and PATH_secret\n"
    "                            (mode 0600); never overwrites a file\n"
    "  help                      this text\n"
    "\n"
    "Fleet (one controller pushes configs to many agents; proto/PROTOCOL.md, \"Fleet\"):\n"
    "  fleet serve --pub ENDPOINT --router ENDPOINT --control ENDPOINT --state-dir DIR\n"
    "      [--id NAME] [--beacon-interval SECONDS]\n"
    "      [--curve-key FILE --clients FILE|DIR | --allow-insecure]\n"
    "                            run the controller in the foreground until SIGINT/SIGTERM;\n"
    "                            one log line per action on stderr. --id defaults to the host\n"
    "                            name; DIR keeps the version counter and the desired states\n"
    "      --curve-key FILE        the controller's secret certificate (lbctl keygen): PUB and\n"
    "                              ROUTER become CURVE servers; agents pin the public half\n"
    "                              ([fleet] controller_public_key)\n"
    "      --clients FILE|DIR      the agents' public keys it accepts (one per line, or\n"
    "                              certificates); re-read when it changes\n"
    "      --allow-insecure        without CURVE, bind PUB/ROUTER to non-loopback endpoints\n"
    "                              anyway (anyone who reaches them can pose as an agent)\n"
    "                            --control must be local (ipc://, 127.0.0.1, [::1]): it has\n"
    "                            no authentication\n"
    "  fleet push FILE (--all | --group G | --agent ID) --control ENDPOINT\n"
    "                            roll FILE out through the controller and wait for the agents:\n"
    "                            a progress line on stderr, then a table per agent (or --json)\n"
    "      --expect N              wait for N agents' answers (default: the agents the\n"
    "                              controller knows that match)\n"
    "      --canary N              first push to N agents; go on only if all of them applied\n"
    "      --batch K               at most K agents reloading at a time\n"
    "      --stop-on-failure       with --canary/--batch: no further wave after a failure\n"
    "      --force                 even if default_backend is missing or has no server\n"
    "  fleet agents --control ENDPOINT\n"
    "                            the agents the controller knows: groups, config, versions\n"
    "\n"
    "Options (before or after the command):\n"
    "  --agent ENDPOINT    the agent's command socket (default tcp://127.0.0.1:5555;\n"
    "                      environment: LBCTL_AGENT); fleet push --agent ID: the target\n"
    "  --events ENDPOINT   the agent's event socket, for watch (default tcp://127.0.0.1:5556;\n"
    "                      environment: LBCTL_EVENTS)\n"
    "  --curve-key FILE    lbctl's own secret certificate (lbctl keygen; its public half\n"
    "                      must be in the agent's curve_clients), for an agent with CURVE\n"
    "                      on (environment: LBCTL_CURVE_KEY); needs --server-key\n"
    "  --server-key FILE   the agent's public certificate (environment: LBCTL_SERVER_KEY)\n"
    "  --timeout SECONDS   how long a command waits for the agent, connection included\n"
    "                      (default 30); fleet push: the whole rollout\n"
    "  --json              print the agent's result as one JSON object; a refusal as\n"
    "                      {\"error\": {...}}; watch: one compact object per event and line;\n"
    "                      fleet push: the per-agent results; fleet agents: the list;\n"
    "                      keygen: the key and the files\n"
    "  --no-color          no colours (there are none either when NO_COLOR is set or stdout\n"
    "                      is not a terminal)\n"
    "  --help, --version\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  the agent refused the command; its error code and message are on stderr\n"
    "     (invalid_config, conflict, reload_failed, haproxy_unavailable, ...)\n"
    "  2  usage error: unknown command or option, bad value, unreadable FILE or key file,\n"
    "     keygen: PATH exists\n"
    "  3  no answer from the agent within --timeout (not running, wrong endpoint, stuck),\n"
    "     or the agent refused the connection (CURVE: lbctl's key is not in its\n"
    "     curve_clients, a wrong --server-key, or CURVE on one side only); fleet: from the\n"
    "     controller\n"
    "  4  fleet push: some agents refused the config (or ignored the push)\n"
    "  5  fleet push: some agents had not answered at --timeout (or were not reached)\n"
    "  fleet push exits 1 when the controller refused the request; fleet serve exits 0\n"
    "  after SIGINT/SIGTERM and 1 when it cannot start (endpoint in use, state dir locked\n"
    "  or unreadable)\n"
    "\n"
    "The wire protocol behind every command: proto/PROTOCOL.md.\n";

// Which command takes which options: a command-specific option given to another command is a
// usage error rather than silently ignored.
enum class Takes { kNothing, kValue };
struct CommandOption {
  Takes takes;
  std::vector<Command> commands;
  std::string_view commands_text;
  // Fleet commands that take it too, named after the rest so that the message for the other
  // commands keeps its wording.
  std::string_view also_text = "";
};

const std::map<std::string, CommandOption, std::less<>>& CommandOptions() {
  static const auto* options = new std::map<std::string, CommandOption, std::less<>>{
      {"--expect-sha256", {Takes::kValue, {Command::kReload}, "reload"}},
      {"--force",
       {Takes::kNothing,
        {Command::kReload, Command::kValidate, Command::kFleetPush},
        "reload and validate",
        "fleet push"}},
      {"--count", {Takes::kValue, {Command::kWatch}, "watch"}},
      {"--for", {Takes::kValue, {Command::kWatch}, "watch"}},
      {"--pub", {Takes::kValue, {Command::kFleetServe}, "fleet serve"}},
      {"--router", {Takes::kValue, {Command::kFleetServe}, "fleet serve"}},
      {"--state-dir", {Takes::kValue, {Command::kFleetServe}, "fleet serve"}},
      {"--id", {Takes::kValue, {Command::kFleetServe}, "fleet serve"}},
      {"--beacon-interval", {Takes::kValue, {Command::kFleetServe}, "fleet serve"}},
      {"--control",
       {Takes::kValue,
        {Command::kFleetServe, Command::kFleetPush, Command::kFleetAgents},
        "fleet serve, push and agents"}},
      {"--all", {Takes::kNothing, {Command::kFleetPush}, "fleet push"}},
      {"--group", {Takes::kValue, {Command::kFleetPush}, "fleet push"}},
      {"--expect", {Takes::kValue, {Command::kFleetPush}, "fleet push"}},
      {"--canary", {Takes::kValue, {Command::kFleetPush}, "fleet push"}},
      {"--batch", {Takes::kValue, {Command::kFleetPush}, "fleet push"}},
      {"--stop-on-failure", {Takes::kNothing, {Command::kFleetPush}, "fleet push"}},
      {"--curve-key",
       {Takes::kValue,
        {Command::kStatus, Command::kReload, Command::kValidate, Command::kInfo,
         Command::kGetConfig, Command::kPing, Command::kWatch, Command::kFleetServe},
        "the commands that talk to the agent",
        "fleet serve"}},
      {"--server-key",
       {Takes::kValue,
        {Command::kStatus, Command::kReload, Command::kValidate, Command::kInfo,
         Command::kGetConfig, Command::kPing, Command::kWatch},
        "the commands that talk to the agent"}},
      {"--clients", {Takes::kValue, {Command::kFleetServe}, "fleet serve"}},
      {"--allow-insecure", {Takes::kNothing, {Command::kFleetServe}, "fleet serve"}},
  };
  return *options;
}

const std::map<std::string, Command, std::less<>>& CommandNames() {
  static const auto* names = new std::map<std::string, Command, std::less<>>{
      {"status", Command::kStatus},
      {"reload", Command::kReload},
      {"validate", Command::kValidate},
      {"info", Command::kInfo},
      {"get-config", Command::kGetConfig},
      {"get_config", Command::kGetConfig},
      {"ping", Command::kPing},
      {"watch", Command::kWatch},
      {"keygen", Command::kKeygen},
      {"help", Command::kHelp},
  };
  return *names;
}

// The words after `fleet`.
const std::map<std::string, Command, std::less<>>& FleetCommandNames() {
  static const auto* names = new std::map<std::string, Command, std::less<>>{
      {"serve", Command::kFleetServe},
      {"push", Command::kFleetPush},
      {"agents", Command::kFleetAgents},
      {"help", Command::kHelp},
  };
  return *names;
}

bool IsFleetCommand(Command command) {
  return command == Command::kFleetServe || command == Command::kFleetPush ||
         command == Command::kFleetAgents;
}

// The commands that open a socket to the agent (and take --curve-key/--server-key).
bool TalksToAgent(Command command) {
  switch (command) {
    case Command::kStatus:
    case Command::kReload:
    case Command::kValidate:
    case Command::kInfo:
    case Command::kGetConfig:
    case Command::kPing:
    case Command::kWatch:
      return true;
    default:
      return false;
  }
}

Status Usage(std::string message) { return Status(ErrorCode::kBadRequest, std::move(message)); }

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
  auto ms = static_cast<int64_t>(std::ceil(seconds * 1000));
  return std::chrono::milliseconds(ms);
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

}  // namespace

std::string_view UsageText() { return kUsage; }

bool UseColor(const Options& options, const Environment& env) {
  return env.stdout_is_terminal && !env.no_color && !options.no_color && !options.json;
}

Result<Options> ParseCommandLine(const std::vector<std::string>& args, const Environment& env) {
  Options options;
  if (!env.agent_endpoint.empty()) options.agent_endpoint = env.agent_endpoint;
  if (!env.events_endpoint.empty()) options.events_endpoint = env.events_endpoint;

  std::optional<Command> command;
  bool fleet_word = false;  // `fleet` seen; the next word names the fleet command
  // --agent is the agent's endpoint, except for `fleet push`, where it names the target agent:
  // it is interpreted once the command is known.
  std::optional<std::string> agent_flag;
  std::vector<std::string> positionals;
  // Command options are checked once the command is known (they may come before it).
  std::vector<std::pair<std::string, std::string>> command_options;
  bool help = false;
  bool version = false;
  bool options_ended = false;

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool is_option = !options_ended && arg.size() > 1 && arg[0] == '-';
    if (!is_option) {
      if (!command && !fleet_word && arg == "fleet") {
        fleet_word = true;
      } else if (!command && fleet_word) {
        auto it = FleetCommandNames().find(arg);
        if (it == FleetCommandNames().end()) {
          return Usage("unknown fleet command \"" + arg + "\"; expected serve, push or agents");
        }
        command = it->second;
      } else if (!command) {
        auto it = CommandNames().find(arg);
        if (it == CommandNames().end()) {
          return Usage("unknown command \"" + arg + "\" (lbctl help lists them)");
        }
        command = it->second;
      } else {
        positionals.push_back(arg);
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
    auto value = [&]() -> Result<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) return Usage(name + " needs a value");
      return args[++i];
    };
    auto flag = [&](bool* target) -> Status {
      if (inline_value) return Usage(name + " takes no value");
      *target = true;
      return Status::Ok();
    };

    Status status;
    if (name == "--help" || name == "-h") {
      status = flag(&help);
    } else if (name == "--version") {
      status = flag(&version);
    } else if (name == "--json") {
      status = flag(&options.json);
    } else if (name == "--no-color" || name == "--no-colour") {
      status = flag(&options.no_color);
    } else if (name == "--agent" || name == "--events" || name == "--timeout") {
      auto v = value();
      if (!v.ok()) return v.status();
      if (name == "--timeout") {
        auto timeout = ParseSeconds(name, *v);
        if (!timeout.ok()) return timeout.status();
        options.timeout = *timeout;
      } else if (name == "--agent") {
        agent_flag = *v;
      } else {
        status = CheckEndpoint(name, *v);
        (name == "--agent" ? options.agent_endpoint : options.events_endpoint) = *v;
      }
    } else if (auto it = CommandOptions().find(name); it != CommandOptions().end()) {
      if (it->second.takes == Takes::kValue) {
        auto v = value();
        if (!v.ok()) return v.status();
        command_options.emplace_back(name, *v);
      } else {
        if (inline_value) return Usage(name + " takes no value");
        command_options.emplace_back(name, "");
      }
    } else {
      return Usage("unknown option \"" + arg + "\" (lbctl help lists them)");
    }
    if (!status.ok()) return status;
  }

  if (help || (command && *command == Command::kHelp)) {
    options.command = Command::kHelp;
    return options;
  }
  if (version) {
    options.command = Command::kVersion;
    return options;
  }
  if (!command && fleet_word) return Usage("fleet needs a command: serve, push or agents");
  if (!command) return Usage("no command given (lbctl help lists them)");
  options.command = *command;
  const bool fleet = IsFleetCommand(options.command);

  if (agent_flag && options.command == Command::kFleetPush) {
    command_options.emplace_back("--agent", *agent_flag);
  } else if (agent_flag) {
    if (Status s = CheckEndpoint("--agent", *agent_flag); !s.ok()) return s;
    options.agent_endpoint = *agent_flag;
  }
  // Environment endpoints are checked only now, so that a bad LBCTL_AGENT never blocks help
  // (nor the fleet commands and keygen, which do not talk to an agent).
  if (TalksToAgent(options.command)) {
    if (Status s = CheckEndpoint("LBCTL_AGENT/--agent", options.agent_endpoint); !s.ok()) {
      return s;
    }
    if (Status s = CheckEndpoint("LBCTL_EVENTS/--events", options.events_endpoint); !s.ok()) {
      return s;
    }
  }

  // `fleet push` takes exactly one target.
  auto set_target = [&](const std::string& flag, FleetTarget target) -> Status {
    if (options.fleet.target) {
      return Usage("fleet push takes one target: --all, --group G or --agent ID; " + flag +
                   " comes after " + TargetKey(*options.fleet.target));
    }
    if (target.kind != FleetTarget::Kind::kAll && !IsValidFleetName(target.name)) {
      return Usage(flag + " wants a name of 1 to 255 bytes without '/', not \"" + target.name +
                   "\"");
    }
    options.fleet.target = std::move(target);
    return Status::Ok();
  };
  for (const auto& [name, text] : command_options) {
    if (name == "--agent") {  // only here for fleet push
      if (Status s = set_target(name, FleetTarget::Agent(text)); !s.ok()) return s;
      continue;
    }
    const CommandOption& spec = CommandOptions().find(name)->second;
    bool allowed = false;
    for (Command c : spec.commands) allowed = allowed || c == options.command;
    if (!allowed) {
      std::string also;
      if (!spec.also_text.empty()) also = " (and of " + std::string(spec.also_text) + ")";
      return Usage(name + " is an option of " + std::string(spec.commands_text) + " only" + also);
    }
    Status status;
    if (name == "--pub" || name == "--router" || name == "--control") {
      status = CheckEndpoint(name, text);
      (name == "--pub"      ? options.fleet.pub_endpoint
       : name == "--router" ? options.fleet.router_endpoint
                            : options.fleet.control_endpoint) = text;
    } else if (name == "--state-dir") {
      if (text.empty()) return Usage("--state-dir must not be empty");
      options.fleet.state_dir = text;
    } else if (name == "--id") {
      if (!IsValidFleetName(text)) {
        return Usage("--id wants a name of 1 to 255 bytes without '/', not \"" + text + "\"");
      }
      options.fleet.id = text;
    } else if (name == "--beacon-interval") {
      auto interval = ParseSeconds(name, text);
      if (!interval.ok()) return interval.status();
      options.fleet.beacon_interval = *interval;
    } else if (name == "--all") {
      status = set_target(name, FleetTarget::All());
    } else if (name == "--group") {
      status = set_target(name, FleetTarget::Group(text));
    } else if (name == "--expect" || name == "--canary" || name == "--batch") {
      auto count = ParseCount(name, text);
      if (!count.ok()) return count.status();
      if (name == "--expect") options.fleet.expect = *count;
      if (name == "--canary") options.fleet.canary = *count;
      if (name == "--batch") options.fleet.batch = *count;
    } else if (name == "--stop-on-failure") {
      options.fleet.stop_on_failure = true;
    } else if (name == "--curve-key" || name == "--server-key" || name == "--clients") {
      if (text.empty()) return Usage(name + " must not be empty");
      (name == "--curve-key"    ? options.curve_key
       : name == "--server-key" ? options.server_key
                                : options.fleet.clients) = text;
    } else if (name == "--allow-insecure") {
      options.fleet.allow_insecure = true;
    }
    if (!status.ok()) return status;
    if (name == "--force") {
      options.force = true;
    } else if (name == "--expect-sha256") {
      auto sha = ParseSha256(text);
      if (!sha.ok()) return sha.status();
      options.expect_sha256 = *sha;
    } else if (name == "--count") {
      auto count = ParseCount(name, text);
      if (!count.ok()) return count.status();
      options.count = *count;
    } else if (name == "--for") {
      auto for_ms = ParseSeconds(name, text);
      if (!for_ms.ok()) return for_ms.status();
      options.for_ms = *for_ms;
    }
  }

  const std::string command_name = [&] {
    for (const auto& [n, c] : FleetCommandNames()) {
      if (fleet && c == options.command) return "fleet " + n;
    }
    for (const auto& [n, c] : CommandNames()) {
      if (c == options.command) return n;
    }
    return std::string("?");
  }();
  auto require = [&](std::string_view flag, const std::string& value) -> Status {
    if (!value.empty()) return Status::Ok();
    return Usage(command_name + " needs " + std::string(flag));
  };
  auto at_most = [&](size_t n, std::string_view what) -> Status {
    if (positionals.size() <= n) return Status::Ok();
    return Usage(command_name + " takes " + std::string(what) + "; unexpected \"" + positionals[n] +
                 "\"");
  };
  // CURVE keys: flag, then environment, each on its own; both or neither.
  if (TalksToAgent(options.command)) {
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

  switch (options.command) {
    case Command::kStatus:
      if (Status s = at_most(1, "at most one BACKEND"); !s.ok()) return s;
      if (!positionals.empty()) {
        if (positionals[0].empty()) return Usage("status: BACKEND must not be empty");
        options.backend = positionals[0];
      }
      break;
    case Command::kReload:
    case Command::kValidate:
      if (positionals.empty()) return Usage(command_name + " needs a FILE (- for stdin)");
      if (Status s = at_most(1, "one FILE"); !s.ok()) return s;
      if (positionals[0].empty()) return Usage(command_name + ": FILE must not be empty");
      options.file = positionals[0];
      break;
    case Command::kWatch:
      if (Status s = at_most(1, "at most one TOPIC-PREFIX"); !s.ok()) return s;
      if (!positionals.empty()) options.topic_prefix = positionals[0];
      break;
    case Command::kFleetServe:
      if (Status s = at_most(0, "no arguments"); !s.ok()) return s;
      if (Status s = require("--pub ENDPOINT", options.fleet.pub_endpoint); !s.ok()) return s;
      if (Status s = require("--router ENDPOINT", options.fleet.router_endpoint); !s.ok()) {
        return s;
      }
      if (Status s = require("--control ENDPOINT", options.fleet.control_endpoint); !s.ok()) {
        return s;
      }
      if (Status s = require("--state-dir DIR", options.fleet.state_dir); !s.ok()) return s;
      if (!options.curve_key.empty() && options.fleet.clients.empty()) {
        return Usage(
            "fleet serve --curve-key needs --clients FILE|DIR: the agents' public keys it "
            "accepts");
      }
      if (options.curve_key.empty() && !options.fleet.clients.empty()) {
        return Usage(
            "fleet serve --clients needs --curve-key FILE: the controller's secret certificate");
      }
      if (!options.curve_key.empty() && options.fleet.allow_insecure) {
        return Usage(
            "fleet serve: --allow-insecure is for serving without CURVE; --curve-key turns it "
            "on");
      }
      break;
    case Command::kKeygen:
      if (positionals.empty()) {
        return Usage("keygen needs a PATH: it writes PATH (public) and PATH_secret");
      }
      if (Status s = at_most(1, "one PATH"); !s.ok()) return s;
      if (positionals[0].empty()) return Usage("keygen: PATH must not be empty");
      options.file = positionals[0];
      break;
    case Command::kFleetPush:
      if (positionals.empty()) return Usage("fleet push needs a FILE (- for stdin)");
      if (Status s = at_most(1, "one FILE"); !s.ok()) return s;
      if (positionals[0].empty()) return Usage("fleet push: FILE must not be empty");
      options.file = positionals[0];
      if (!options.fleet.target) {
        return Usage("fleet push needs a target: --all, --group G or --agent ID");
      }
      if (Status s = require("--control ENDPOINT", options.fleet.control_endpoint); !s.ok()) {
        return s;
      }
      if (options.fleet.stop_on_failure && options.fleet.canary == 0 && options.fleet.batch == 0) {
        return Usage(
            "--stop-on-failure needs --canary or --batch (a single push reaches every agent at "
            "once)");
      }
      break;
    case Command::kFleetAgents:
      if (Status s = at_most(0, "no arguments"); !s.ok()) return s;
      if (Status s = require("--control ENDPOINT", options.fleet.control_endpoint); !s.ok()) {
        return s;
      }
      break;
    default:
      if (Status s = at_most(0, "no arguments"); !s.ok()) return s;
      break;
  }
  return options;
}

}  // namespace lb::cli
