#include "lbctl.h"

#include <chrono>
#include <istream>
#include <iterator>
#include <ostream>
#include <zmq.hpp>

#include "event_subscriber.h"
#include "events.h"
#include "fleet_commands.h"
#include "lb/client/command_client.h"
#include "lb/common/curve_socket.h"
#include "lb/common/file.h"
#include "lb/common/version.h"
#include "output.h"

namespace lb::cli {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;
using Clock = std::chrono::steady_clock;

// A FILE larger than this is refused before it is sent (the agent's own limit is lower).
constexpr std::size_t kMaxFileBytes = 200 * 1024 * 1024;
// How often `watch` looks at stop_requested and --for when no event arrives.
constexpr std::chrono::milliseconds kWatchTick{250};
// A SUB socket cannot tell "nobody there" from "nothing happened"; heartbeats can. After this
// long without even a heartbeat before the first event (default heartbeat_interval: 5 s),
// `watch` says so once; after the first event AgentLiveness watches the heartbeats.
constexpr std::chrono::milliseconds kSilenceWarning{15000};

// The text of FILE, or of `in` for "-". Errors name the file and the OS's reason.
Result<std::string> ReadInput(const std::string& path, std::istream& in) {
  if (path == "-") {
    std::string text(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>{});
    if (in.bad()) return Status(ErrorCode::kBadRequest, "cannot read the config from stdin");
    return text;
  }
  Result<std::string> text = common::ReadSmallFile(path, kMaxFileBytes);
  if (!text.ok()) return Status(ErrorCode::kBadRequest, text.status().message());
  return text;
}

// The command name on the wire and its args, from the parsed options.
struct WireRequest {
  std::string cmd;
  json args = json::object();
};

Result<WireRequest> BuildRequest(const Options& options, std::istream& in) {
  WireRequest request;
  switch (options.command) {
    case Command::kStatus:
      request.cmd = "status";
      if (!options.backend.empty()) request.args["backend"] = options.backend;
      break;
    case Command::kReload:
    case Command::kValidate: {
      request.cmd = options.command == Command::kReload ? "reload" : "validate";
      auto text = ReadInput(options.file, in);
      if (!text.ok()) return text.status();
      request.args["config"] = std::move(*text);
      if (options.force) request.args["force"] = true;
      if (!options.expect_sha256.empty()) request.args["expect_sha256"] = options.expect_sha256;
      break;
    }
    case Command::kInfo:
      request.cmd = "info";
      break;
    case Command::kGetConfig:
      request.cmd = "get_config";
      break;
    case Command::kHistory:
      request.cmd = "history";
      break;
    case Command::kRollback:
      request.cmd = "rollback";
      if (options.rollback_n) request.args["n"] = *options.rollback_n;
      if (options.force) request.args["force"] = true;
      if (!options.expect_sha256.empty()) request.args["expect_sha256"] = options.expect_sha256;
      break;
    case Command::kPing:
      request.cmd = "ping";
      break;
    default:
      return Status(ErrorCode::kInternal, "no request for this command");
  }
  return request;
}

// --curve-key/--server-key (or their environment variables), read; own.public_key empty when
// CURVE is off. A bad file is a usage error.
Result<common::CurveClientKeys> LoadKeys(const Options& options) {
  auto keys = common::LoadClientKeys({options.curve_key, options.server_key});
  if (!keys.ok()) {
    return Status(ErrorCode::kBadRequest,
                  "CURVE keys (--curve-key/--server-key): " + keys.status().message());
  }
  return keys;
}

const common::CurveClientKeys* KeysOrNull(const common::CurveClientKeys& keys) {
  return keys.own.public_key.empty() ? nullptr : &keys;
}

// The agent's command socket, as lbctl talks to it: the whole --timeout to connect (so that a
// script can wait for an agent that is starting), lbctl's words in the messages.
client::CommandClientOptions AgentClientOptions(const Options& options,
                                                const common::CurveClientKeys& keys) {
  client::CommandClientOptions client;
  client.endpoint = options.agent_endpoint;
  client.timeout = options.timeout;
  if (KeysOrNull(keys) != nullptr) client.curve = keys;
  return client;
}

int CallAndPrint(const Options& options, const Environment& env, std::istream& in,
                 std::ostream& out, std::ostream& err) {
  auto keys = LoadKeys(options);
  if (!keys.ok()) {
    err << "lbctl: " << keys.status().message() << "\n";
    return kExitUsage;
  }
  auto request = BuildRequest(options, in);
  if (!request.ok()) {
    err << "lbctl: " << request.status().message() << "\n";
    return kExitUsage;
  }
  zmq::context_t context;
  client::CommandClient agent(context, AgentClientOptions(options, *keys));
  const Clock::time_point start = Clock::now();
  auto reply = agent.Call(request->cmd, request->args);
  const double rtt_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (!reply.ok()) {
    err << "lbctl: " << Printable(reply.status().message()) << "\n";
    return reply.status().code() == ErrorCode::kBadRequest ? kExitUsage : kExitUnreachable;
  }
  if (!reply->status.ok()) {
    if (options.json) {
      json error = {{"code", proto::ErrorCodeName(reply->status.code())},
                    {"message", reply->status.message()}};
      if (!reply->status.details().is_null()) error["details"] = reply->status.details();
      out << DumpJson(json{{"error", error}}, 2) << "\n";
    }
    err << FormatRefusal(reply->status);
    return kExitRefused;
  }
  const json& result = reply->result;
  if (options.json) {
    out << DumpJson(result, 2) << "\n";
    return kExitOk;
  }
  switch (options.command) {
    case Command::kStatus:
      out << FormatStatus(result, UseColor(options, env));
      break;
    case Command::kReload:
      out << FormatReload(result);
      break;
    case Command::kValidate:
      out << FormatValidate(result);
      break;
    case Command::kInfo:
      out << FormatInfo(result);
      break;
    case Command::kHistory:
      out << FormatHistory(result);
      break;
    case Command::kRollback:
      out << FormatRollback(result);
      break;
    case Command::kPing:
      out << FormatPing(result, options.agent_endpoint, rtt_ms);
      break;
    case Command::kGetConfig: {
      // Exactly the file's bytes and nothing else: `lbctl get-config > x.cfg` round-trips.
      auto config = result.find("config");
      if (config == result.end() || !config->is_string()) {
        err << "lbctl: the agent's get_config result has no \"config\" text\n";
        return kExitUnreachable;
      }
      const std::string& text = config->get_ref<const std::string&>();
      out.write(text.data(), static_cast<std::streamsize>(text.size()));
      if (result.contains("exists") && result["exists"] == false) {
        err << "lbctl: " << Field(result, "path") << " does not exist yet (no config applied)\n";
      }
      break;
    }
    default:
      break;
  }
  return kExitOk;
}

int Watch(const Options& options, std::ostream& out, std::ostream& err,
          const std::function<bool()>& stop_requested) {
  auto keys = LoadKeys(options);
  if (!keys.ok()) {
    err << "lbctl: " << keys.status().message() << "\n";
    return kExitUsage;
  }
  zmq::context_t context;
  // Heartbeats tell a silent agent from a quiet one: with a topic prefix they are subscribed
  // too, for the liveness lines, and printed only when the prefix asks for them.
  const std::string& prefix = options.topic_prefix;
  std::vector<std::string> prefixes = {prefix};
  const bool extra_heartbeats = !prefix.empty() && std::string("heartbeat").rfind(prefix, 0) != 0;
  if (extra_heartbeats) prefixes.push_back("heartbeat");
  EventSubscriber subscriber(context, options.events_endpoint, prefixes, KeysOrNull(*keys));
  if (Status open = subscriber.Open(); !open.ok()) {
    err << "lbctl: " << open.message() << "\n";
    return open.code() == ErrorCode::kBadRequest ? kExitUsage : kExitUnreachable;
  }
  GapDetector gaps(prefix);
  AgentLiveness liveness(options.silence);
  const std::optional<Clock::time_point> deadline =
      options.for_ms ? std::optional(Clock::now() + *options.for_ms) : std::nullopt;
  const Clock::time_point started = Clock::now();
  bool heard_anything = false;
  bool warned_silence = false;
  uint64_t printed = 0;
  while (!stop_requested()) {
    std::chrono::milliseconds wait = kWatchTick;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now());
      if (left.count() <= 0) break;
      wait = std::min(wait, left);
    }
    auto next = subscriber.Next(wait);
    if (!next.ok()) {
      err << "lbctl: " << Printable(next.status().message()) << std::endl;
      if (next.status().code() == ErrorCode::kBadRequest) continue;  // one bad event
      return kExitUnreachable;
    }
    if (!next->has_value()) {
      if (std::optional<std::string> silent = liveness.Idle(Clock::now())) {
        err << "lbctl: " << *silent << std::endl;
      }
      const auto first_silence = options.silence.value_or(kSilenceWarning);
      if (!heard_anything && !warned_silence && Clock::now() - started >= first_silence) {
        err << "lbctl: no event from " << options.events_endpoint << " in "
            << DescribeSeconds(first_silence) << ", not even a heartbeat (";
        if (std::string trouble = subscriber.HandshakeTrouble(); !trouble.empty()) {
          err << trouble;
        } else {
          err << "is lb-agent running? is that its event_endpoint? if the agent uses CURVE, "
              << (KeysOrNull(*keys) != nullptr
                      ? "check --curve-key/--server-key and that this key is in its "
                        "curve_clients"
                      : "pass --curve-key and --server-key");
        }
        err << ")" << std::endl;
        warned_silence = true;
      }
      continue;
    }
    heard_anything = true;
    const Event& event = **next;
    for (const std::string& line : liveness.Observe(event.body, Clock::now())) {
      err << "lbctl: " << line << std::endl;
    }
    if (extra_heartbeats && event.topic == "heartbeat") continue;  // for liveness only
    if (const uint64_t lost = gaps.Observe(event.topic, event.body); lost > 0) {
      err << "lbctl: lost " << Count(static_cast<int64_t>(lost), "event");
      if (!prefix.empty()) err << " on " << OneLine(event.topic);
      err << std::endl;
    }
    out << FormatEventLine(event.topic, event.body, options.json) << "\n" << std::flush;
    if (!out) return kExitOk;  // stdout was closed: `lbctl watch | head -3`
    if (options.count && ++printed >= *options.count) break;
  }
  return kExitOk;
}

// `lbctl keygen PATH`: a new key pair in PATH (public) and PATH_secret, never over a file.
int Keygen(const Options& options, std::ostream& out, std::ostream& err) {
  auto cert = common::GenerateCertificate();
  if (!cert.ok()) {
    err << "lbctl: keygen: " << cert.status().message() << "\n";
    return kExitUsage;
  }
  const std::string secret_path = options.file + "_secret";
  if (Status s = common::WriteCertificate(options.file, *cert, "lbctl keygen"); !s.ok()) {
    err << "lbctl: keygen: " << s.message() << "\n";
    return kExitUsage;
  }
  if (options.json) {
    out << DumpJson(json{{"public_key", cert->public_key},
                         {"public_file", options.file},
                         {"secret_file", secret_path}},
                    2)
        << "\n";
    return kExitOk;
  }
  out << "public key: " << cert->public_key << "\n"
      << "public certificate: " << options.file
      << " (give it to the other side: an allow-list, --server-key, controller_public_key)\n"
      << "secret certificate: " << secret_path << " (mode 0600; keep it here)\n";
  return kExitOk;
}

}  // namespace

int Run(const std::vector<std::string>& args, const Environment& env, std::istream& in,
        std::ostream& out, std::ostream& err, const std::function<bool()>& stop_requested) {
  try {
    auto options = ParseCommandLine(args, env);
    if (!options.ok()) {
      err << "lbctl: " << options.status().message() << "\n";
      return kExitUsage;
    }
    switch (options->command) {
      case Command::kHelp:
        out << UsageText();
        return kExitOk;
      case Command::kVersion:
        out << "lbctl " << common::Version() << "\n";
        return kExitOk;
      case Command::kWatch:
        return Watch(*options, out, err, stop_requested);
      case Command::kKeygen:
        return Keygen(*options, out, err);
      case Command::kFleetPush: {
        auto config = ReadInput(options->file, in);
        if (!config.ok()) {
          err << "lbctl: " << config.status().message() << "\n";
          return kExitUsage;
        }
        return RunFleetPush(*options, env, *config, out, err, stop_requested);
      }
      case Command::kFleetAgents:
        return RunFleetAgents(*options, out, err);
      default:
        return CallAndPrint(*options, env, in, out, err);
    }
  } catch (const zmq::error_t& e) {
    err << "lbctl: ZeroMQ failed: " << e.what() << "\n";
  } catch (const nlohmann::json::exception& e) {
    err << "lbctl: the agent's answer has an unexpected shape: " << e.what() << "\n";
  } catch (const std::exception& e) {
    err << "lbctl: " << e.what() << "\n";
  }
  return kExitUnreachable;
}

}  // namespace lb::cli
