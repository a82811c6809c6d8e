#include "fleet_commands.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <ostream>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "fleet_rollout.h"
#include "lb/client/command_client.h"
#include "lb/common/endpoint.h"
#include "output.h"

namespace lb::cli {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::FleetTarget;
using proto::Status;
using Clock = std::chrono::steady_clock;

// How often acks (or, for --expect with waves, the agents) are asked for.
constexpr std::chrono::milliseconds kPollInterval{20};
// One control call never waits longer than this, so that a controller that restarts in the
// middle of a rollout is asked again rather than waited for until --timeout.
constexpr std::chrono::milliseconds kMaxCallTimeout{5000};
// Every call after the first is given at least this long, even when --timeout is closer: a
// call cut short by the deadline says nothing about the controller, and its failure must not
// read as "unreachable" (nor leave a finished rollout without its target-level push).
constexpr std::chrono::milliseconds kMinLaterCallTimeout{500};
// Without a terminal, a progress line at most this often (and only when something changed).
constexpr std::chrono::milliseconds kPlainProgressInterval{5000};
// Agent names listed in a wave's announcement before "+N more".
constexpr size_t kNamesPerWaveLine = 5;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What one control call came to.
struct ControllerReply {
  enum class Kind { kOk, kRefused, kUnreachable, kBadEndpoint };
  Kind kind = Kind::kOk;
  Status status;  // the refusal, or why there is no answer
  json result;
};

ControllerReply CallController(zmq::context_t& context, const std::string& endpoint,
                               const std::string& cmd, const json& args,
                               std::chrono::milliseconds timeout) {
  client::CommandClientOptions options;
  options.endpoint = endpoint;
  options.timeout = timeout;
  options.wording.peer = "the controller";
  options.wording.program = "lb-controller";
  options.wording.endpoint_setting = "control endpoint";
  options.wording.own_key.clear();  // the control socket has no CURVE: no key hints
  client::CommandClient controller(context, options);
  ControllerReply out;
  auto reply = controller.Call(cmd, args);
  if (reply.ok() && reply->status.ok()) {
    out.result = std::move(reply->result);
    return out;
  }
  if (reply.ok()) {
    out.kind = ControllerReply::Kind::kRefused;
    out.status = reply->status;
    return out;
  }
  // The client's message names the endpoint and what to check.
  out.status = reply.status();
  out.kind = out.status.code() == ErrorCode::kBadRequest ? ControllerReply::Kind::kBadEndpoint
                                                         : ControllerReply::Kind::kUnreachable;
  return out;
}

// How long each controller of a --control list is given to answer the leader's ping.
constexpr std::chrono::milliseconds kMaxLeaderPing{2000};

// --control lists every controller of an HA fleet (comma-separated): a standby answers every
// request with an error (it stands by, and who leads), so the one that answers `ping` leads.
// All are pinged at once, each within `timeout` (at most kMaxLeaderPing), and all are waited
// for: a controller that is down costs that much. A single endpoint is used as it is.
// kOk with *leader set, or kUnreachable naming why each did not answer.
ControllerReply FindLeader(zmq::context_t& context, const std::string& list,
                           std::chrono::milliseconds timeout, std::string* leader) {
  const std::vector<std::string> endpoints = common::SplitEndpoints(list);
  if (endpoints.size() <= 1) {
    *leader = list;
    return {};
  }
  std::vector<ControllerReply> replies(endpoints.size());
  std::vector<std::thread> pings;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    pings.emplace_back([&, i] {
      replies[i] = CallController(context, endpoints[i], "ping", json::object(),
                                  std::min(timeout, kMaxLeaderPing));
    });
  }
  for (auto& ping : pings) ping.join();
  std::string why;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    if (replies[i].kind == ControllerReply::Kind::kOk) {
      *leader = endpoints[i];
      return {};
    }
    why += "; " + replies[i].status.message();
  }
  ControllerReply none;
  none.kind = ControllerReply::Kind::kUnreachable;
  none.status =
      Status(ErrorCode::kUnavailable, "no controller of --control " + list +
                                          " answered ping: none leads now (is etcd reachable, is a "
                                          "controller running?)" +
                                          why);
  return none;
}

// The exit code and the stderr text for a call that did not succeed.
int ReportFailedCall(const ControllerReply& reply, bool as_json, std::ostream& out,
                     std::ostream& err) {
  if (reply.kind == ControllerReply::Kind::kRefused) {
    if (as_json) {
      json error = {{"code", proto::ErrorCodeName(reply.status.code())},
                    {"message", reply.status.message()}};
      if (!reply.status.details().is_null()) error["details"] = reply.status.details();
      out << DumpJson(json{{"error", error}}, 2) << "\n";
    }
    err << FormatRefusal(reply.status);
    return kExitRefused;
  }
  err << "lbctl: " << reply.status.message() << "\n";
  return reply.kind == ControllerReply::Kind::kBadEndpoint ? kExitUsage : kExitUnreachable;
}

// The live progress line on stderr: redrawn in place on a terminal; otherwise a plain line
// now and then, when something changed.
class ProgressLine {
 public:
  ProgressLine(std::ostream& err, bool terminal) : err_(err), terminal_(terminal) {}

  void Update(const Tally& tally) {
    const std::string text = FormatProgress(tally);
    if (terminal_) {
      if (text == shown_) return;
      err_ << "\r\033[K" << text << std::flush;
      shown_ = text;
      return;
    }
    const Clock::time_point now = Clock::now();
    if (text == printed_ || now - last_printed_ < kPlainProgressInterval) return;
    err_ << text << "\n" << std::flush;
    printed_ = text;
    last_printed_ = now;
  }

  // A line of its own (a wave starting), above the live line.
  void Note(const std::string& line) {
    Clear();
    err_ << line << "\n" << std::flush;
  }

  // Removes the live line, before the final report.
  void Clear() {
    if (terminal_ && !shown_.empty()) err_ << "\r\033[K" << std::flush;
    shown_.clear();
  }

 private:
  std::ostream& err_;
  const bool terminal_;
  std::string shown_;
  std::string printed_;
  Clock::time_point last_printed_{};
};

std::string DescribeWave(size_t index, size_t count, const Wave& wave) {
  std::string names;
  for (size_t i = 0; i < wave.agents.size() && i < kNamesPerWaveLine; ++i) {
    names += (i == 0 ? "" : ", ") + OneLine(wave.agents[i]);
  }
  if (wave.agents.size() > kNamesPerWaveLine) {
    names += " +" + std::to_string(wave.agents.size() - kNamesPerWaveLine) + " more";
  }
  return "wave " + std::to_string(index + 1) + " of " + std::to_string(count) +
         (wave.canary ? " (canary)" : "") + ": " + names;
}

// One `fleet push`, from the first control call to the report.
class Rollout {
 public:
  Rollout(const Options& options, const Environment& env, std::string config, std::ostream& out,
          std::ostream& err, const std::function<bool()>& stop_requested)
      : options_(options),
        config_(std::move(config)),
        out_(out),
        err_(err),
        stop_requested_(stop_requested),
        deadline_(Clock::now() + options.timeout),
        progress_(options.fleet.expect),
        line_(err, env.stderr_is_terminal) {
    report_.target = *options.fleet.target;
    report_.staged = options.fleet.canary > 0 || options.fleet.batch > 0;
    report_.desired_always = options.fleet.desired_always;
  }

  int Execute() {
    const bool finished = report_.staged ? Staged() : Single();
    if (!finished && report_.versions.empty() &&
        (report_.stopped == "refused" || report_.stopped == "unreachable" ||
         report_.stopped == "bad_endpoint")) {
      return early_exit_;  // nothing was pushed: the error said it all
    }
    return Finish();
  }

 private:
  // The control call with what is left of --timeout, at most kMaxCallTimeout; the first call
  // keeps to --timeout exactly, later ones get at least kMinLaterCallTimeout.
  ControllerReply Call(const std::string& cmd, const json& args) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
    const auto at_least = calls_ == 0 ? std::chrono::milliseconds(1) : kMinLaterCallTimeout;
    ++calls_;
    return CallController(context_, options_.fleet.control_endpoint, cmd, args,
                          std::clamp(left, at_least, kMaxCallTimeout));
  }

  // Stops the rollout on a failed call; false.
  bool Failed(const ControllerReply& reply) {
    line_.Clear();
    early_exit_ = ReportFailedCall(reply, options_.json && report_.versions.empty(), out_, err_);
    report_.stopped = reply.kind == ControllerReply::Kind::kRefused       ? "refused"
                      : reply.kind == ControllerReply::Kind::kBadEndpoint ? "bad_endpoint"
                                                                          : "unreachable";
    return false;
  }

  // A result lbctl cannot read (another version of the controller?): the rollout stops.
  bool Unreadable(ControllerReply reply, const std::string& what, const Status& why) {
    reply.kind = ControllerReply::Kind::kUnreachable;
    reply.status =
        Status(ErrorCode::kInternal,
               "the controller's " + what + " result is not what lbctl expects: " + why.message());
    return Failed(reply);
  }

  // Pushes the config to `target`; its result, or nullopt after Failed(). `final`: the push to
  // the rollout's own target (the one that may become its desired state at once).
  std::optional<proto::FleetPushResult> Push(const FleetTarget& target, bool final) {
    proto::FleetPushRequest request;
    request.target = target;
    request.args = {{"config", config_}};
    if (options_.force) request.args["force"] = true;
    if (final && options_.fleet.desired_always) {
      request.desired = proto::FleetPushRequest::Desired::kAlways;
    }
    // With --expect N, the agents may not be known yet: they get it when they say hello.
    request.allow_no_match = options_.fleet.allow_no_match || options_.fleet.expect.has_value();
    ControllerReply reply = Call("push", proto::EncodePushRequest(request));
    if (reply.kind != ControllerReply::Kind::kOk) {
      Failed(reply);
      return std::nullopt;
    }
    auto result = proto::ParsePushResult(reply.result);
    if (!result.ok() || result->version == 0) {
      Unreadable(reply, "push",
                 result.ok() ? Status(ErrorCode::kInternal, "no version") : result.status());
      return std::nullopt;
    }
    report_.versions.push_back(result->version);
    return std::move(*result);
  }

  // Polls acks until `done`, --timeout or a stop request. False (with report_.stopped set)
  // when the rollout has to stop.
  bool Await(const std::function<bool()>& done) {
    std::optional<ControllerReply> last_failure;
    while (true) {
      if (done()) return true;
      if (stop_requested_()) {
        report_.stopped = "interrupted";
        return false;
      }
      if (Clock::now() >= deadline_) {
        if (last_failure) return Failed(*last_failure);
        report_.stopped = "timeout";
        return false;
      }
      ControllerReply reply = Call("acks", proto::EncodeAcksRequest({progress_.WantedVersions()}));
      if (reply.kind == ControllerReply::Kind::kRefused) return Failed(reply);
      if (reply.kind != ControllerReply::Kind::kOk) {
        last_failure = reply;  // a controller restarting: ask again until --timeout
      } else {
        last_failure.reset();
        auto acks = proto::ParseAcksResult(reply.result);
        if (!acks.ok()) return Unreadable(reply, "acks", acks.status());
        for (const auto& record : acks->acks) progress_.Observe(record.ack, NowMs());
      }
      progress_.Settle(NowMs());
      line_.Update(progress_.Count());
      if (done()) return true;
      const auto left = deadline_ - Clock::now();
      if (left > Clock::duration::zero()) {
        std::this_thread::sleep_for(std::min<Clock::duration>(kPollInterval, left));
      }
    }
  }

  // One push to the whole target.
  bool Single() {
    auto result = Push(report_.target, /*final=*/true);
    if (!result) return false;
    const uint64_t version = result->version;
    report_.final_version = version;
    progress_.OpenVersion(version);
    // The known agents that match are listed (so that those that never answer are named),
    // with --expect too; any other agent that acks this version is added. Lost agents are not
    // waited for.
    for (const auto& agent : result->matching) progress_.Pushed(agent, version);
    for (const auto& agent : result->lost) progress_.Pushed(agent, version, /*lost=*/true);
    const size_t matching = result->matching.size();
    std::string note = "pushed version " + std::to_string(version) + " to " +
                       proto::TargetKey(report_.target) + ": " +
                       Count(static_cast<int64_t>(matching), "known agent") + " match";
    if (!result->lost.empty()) {
      note += " (and " + std::to_string(result->lost.size()) + " lost, not waited for)";
    }
    if (options_.fleet.expect) {
      note += "; waiting for " + Count(static_cast<int64_t>(*options_.fleet.expect), "answer");
    } else if (matching == 0) {
      note += "; recorded for agents that say hello later (--allow-no-match)";
    }
    line_.Note(note);
    if (!options_.fleet.expect) return Await([&] { return progress_.Count().pending == 0; });
    const bool answered = Await([&] { return progress_.Answered() >= *options_.fleet.expect; });
    if (answered) progress_.DropPending();  // N answered: the others were not waited for
    return answered;
  }

  // The agents the controller knows that match the target, sorted; with --expect N, waits
  // until there are at least N.
  std::optional<std::vector<std::string>> KnownAgents() {
    bool announced = false;
    while (true) {
      ControllerReply reply = Call("agents", proto::EncodeAgentsRequest({report_.target}));
      if (reply.kind != ControllerReply::Kind::kOk) {
        Failed(reply);
        return std::nullopt;
      }
      auto known = proto::ParseAgentsResult(reply.result);
      if (!known.ok()) {
        Unreadable(reply, "agents", known.status());
        return std::nullopt;
      }
      std::vector<std::string> agents;
      for (const auto& agent : known->agents) {
        // Lost agents are not pushed to one by one; refused ids were never agents.
        if (agent.first_seen_ms != 0 && agent.liveness != proto::FleetLiveness::kLost) {
          agents.push_back(agent.agent);
        }
      }
      std::sort(agents.begin(), agents.end());
      const uint64_t wanted = options_.fleet.expect.value_or(0);
      if (agents.size() >= wanted) return agents;
      if (!announced) {
        line_.Note("waiting until the controller knows " + std::to_string(wanted) +
                   " matching agents (it knows " + std::to_string(agents.size()) + ")");
        announced = true;
      }
      for (const auto& agent : agents) progress_.AddAgent(agent);
      line_.Update(progress_.Count());
      if (stop_requested_() || Clock::now() >= deadline_) {
        report_.stopped = stop_requested_() ? "interrupted" : "timeout";
        return std::nullopt;
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }

  // Waves of agent-targeted pushes, then the target-level push.
  bool Staged() {
    auto agents = KnownAgents();
    if (!agents) {
      progress_.SkipUnpushed();
      return false;
    }
    for (const auto& agent : *agents) progress_.AddAgent(agent);
    const std::vector<Wave> waves = PlanWaves(*agents, options_.fleet.canary, options_.fleet.batch);
    if (waves.empty()) {
      if (!options_.fleet.allow_no_match) {
        line_.Clear();
        err_ << "lbctl: no agent the controller knows matches " << proto::TargetKey(report_.target)
             << " (lbctl fleet agents lists them); nothing was pushed. --allow-no-match records "
                "it for agents that say hello later\n";
        early_exit_ = kExitRefused;
        report_.stopped = "refused";
        return false;
      }
      line_.Note("no known agent matches " + proto::TargetKey(report_.target) +
                 "; recording the push for agents that say hello later (--allow-no-match)");
    }
    for (size_t i = 0; i < waves.size(); ++i) {
      const Wave& wave = waves[i];
      line_.Note(DescribeWave(i, waves.size(), wave));
      for (const auto& agent : wave.agents) {
        if (stop_requested_() || Clock::now() >= deadline_) {
          report_.stopped = stop_requested_() ? "interrupted" : "timeout";
          progress_.SkipUnpushed();
          return false;
        }
        auto result = Push(FleetTarget::Agent(agent), /*final=*/false);
        if (!result) {
          progress_.SkipUnpushed();
          return false;
        }
        progress_.Pushed(agent, report_.versions.back());
      }
      line_.Update(progress_.Count());
      if (!Await([&] { return progress_.AllAnswered(wave.agents); })) {
        progress_.SkipUnpushed();
        return false;
      }
      if (progress_.AnyFailed(wave.agents) && (wave.canary || options_.fleet.stop_on_failure)) {
        report_.stopped = wave.canary ? "canary_failed" : "failure";
        progress_.SkipUnpushed();
        return false;
      }
    }
    auto final_push = Push(report_.target, /*final=*/true);
    if (!final_push) return false;
    report_.final_version = report_.versions.back();
    return true;
  }

  int Finish() {
    line_.Clear();
    report_.agents = progress_.agents();
    report_.tally = progress_.Count();
    if (report_.stopped == "refused") {
      report_.exit_code = kExitRefused;
    } else if (report_.stopped == "unreachable" || report_.stopped == "bad_endpoint") {
      report_.exit_code = kExitUnreachable;
    } else {
      report_.exit_code = RolloutExitCode(report_.tally);
    }
    if (options_.json) {
      out_ << DumpJson(RolloutReportToJson(report_), 2) << "\n";
    } else {
      out_ << FormatRolloutReport(report_);
    }
    return report_.exit_code;
  }

  const Options& options_;
  const std::string config_;
  std::ostream& out_;
  std::ostream& err_;
  const std::function<bool()>& stop_requested_;
  const Clock::time_point deadline_;
  zmq::context_t context_;
  RolloutProgress progress_;
  RolloutReport report_;
  ProgressLine line_;
  int early_exit_ = kExitUnreachable;
  int calls_ = 0;
};

}  // namespace

int RunFleetPush(const Options& options, const Environment& env, const std::string& config,
                 std::ostream& out, std::ostream& err,
                 const std::function<bool()>& stop_requested) {
  try {
    Options resolved = options;
    {
      zmq::context_t context;
      ControllerReply found = FindLeader(context, options.fleet.control_endpoint, options.timeout,
                                         &resolved.fleet.control_endpoint);
      if (found.kind != ControllerReply::Kind::kOk) {
        return ReportFailedCall(found, options.json, out, err);
      }
    }
    Rollout rollout(resolved, env, config, out, err, stop_requested);
    return rollout.Execute();
  } catch (const std::exception& e) {
    err << "lbctl: fleet push failed: " << e.what() << "\n";
    return kExitUnreachable;
  }
}

int RunFleetAgents(const Options& options, std::ostream& out, std::ostream& err) {
  try {
    zmq::context_t context;
    std::string leader;
    ControllerReply reply =
        FindLeader(context, options.fleet.control_endpoint, options.timeout, &leader);
    if (reply.kind == ControllerReply::Kind::kOk) {
      reply = CallController(context, leader, "agents", json::object(), options.timeout);
    }
    if (reply.kind != ControllerReply::Kind::kOk) {
      return ReportFailedCall(reply, options.json, out, err);
    }
    auto agents = proto::ParseAgentsResult(reply.result);
    if (!agents.ok()) {
      err << "lbctl: the controller's agents result is not what lbctl expects: "
          << agents.status().message() << "\n";
      return kExitUnreachable;
    }
    if (options.json) {
      out << DumpJson(reply.result, 2) << "\n";
    } else {
      out << FormatAgents(*agents);
    }
    return kExitOk;
  } catch (const std::exception& e) {
    err << "lbctl: fleet agents failed: " << e.what() << "\n";
    return kExitUnreachable;
  }
}

}  // namespace lb::cli
