#include "fleet_rollout.h"

#include <algorithm>
#include <sstream>

#include "output.h"

namespace lb::cli {
namespace {

using nlohmann::json;

size_t DisplayWidth(std::string_view text) {
  size_t width = 0;
  for (unsigned char c : text) width += (c & 0xC0) != 0x80;
  return width;
}

std::string ErrorText(const std::optional<proto::FleetError>& error) {
  if (!error) return "-";
  if (error->message.empty()) return OneLine(error->code);
  return OneLine(error->code) + ": " + OneLine(error->message);
}

json ErrorJson(const std::optional<proto::FleetError>& error) {
  if (!error) return nullptr;
  return {{"code", error->code}, {"message", error->message}};
}

}  // namespace

std::vector<Wave> PlanWaves(const std::vector<std::string>& agents, uint64_t canary,
                            uint64_t batch) {
  std::vector<Wave> waves;
  const size_t canaries = static_cast<size_t>(std::min<uint64_t>(canary, agents.size()));
  auto cut = [&](size_t begin, size_t end, bool is_canary) {
    const size_t step = batch == 0 ? end - begin : static_cast<size_t>(batch);
    for (size_t i = begin; i < end; i += step) {
      Wave wave;
      wave.canary = is_canary;
      wave.agents.assign(agents.begin() + static_cast<std::ptrdiff_t>(i),
                         agents.begin() + static_cast<std::ptrdiff_t>(std::min(end, i + step)));
      waves.push_back(std::move(wave));
    }
  };
  cut(0, canaries, true);
  cut(canaries, agents.size(), false);
  return waves;
}

std::string_view OutcomeName(AgentOutcome outcome) {
  switch (outcome) {
    case AgentOutcome::kPending:
      return "pending";
    case AgentOutcome::kApplied:
      return "applied";
    case AgentOutcome::kUnchanged:
      return "unchanged";
    case AgentOutcome::kRefused:
      return "refused";
    case AgentOutcome::kIgnored:
      return "ignored";
    case AgentOutcome::kSkipped:
      return "skipped";
    case AgentOutcome::kLost:
      return "lost";
  }
  return "pending";
}

AgentProgress& RolloutProgress::Listed(const std::string& agent) {
  auto [it, inserted] = index_.emplace(agent, agents_.size());
  if (inserted) {
    AgentProgress progress;
    progress.agent = agent;
    agents_.push_back(std::move(progress));
  }
  return agents_[it->second];
}

void RolloutProgress::AddAgent(const std::string& agent) { Listed(agent); }

void RolloutProgress::Pushed(const std::string& agent, uint64_t version, bool lost) {
  AgentProgress& progress = Listed(agent);
  progress.version = version;
  progress.outcome = lost ? AgentOutcome::kLost : AgentOutcome::kPending;
  progress.error.reset();
  progress.total_ms = -1;
  progress.ignored_since_ms.reset();
}

void RolloutProgress::OpenVersion(uint64_t version) { open_versions_.insert(version); }

void RolloutProgress::Observe(const proto::FleetAck& ack, int64_t now_ms) {
  const bool open = open_versions_.count(ack.version) != 0;
  if (index_.count(ack.agent) == 0 && !open) return;
  AgentProgress& progress = Listed(ack.agent);
  const bool waiting =
      progress.outcome == AgentOutcome::kPending || progress.outcome == AgentOutcome::kLost;
  if (progress.version == 0 && open && waiting) progress.version = ack.version;
  if (progress.version != ack.version || !waiting) return;

  progress.error = ack.error;
  progress.total_ms = ack.total_ms;
  if (ack.outcome == proto::kAckApplied) {
    progress.outcome = AgentOutcome::kApplied;
  } else if (ack.outcome == proto::kAckUnchanged) {
    progress.outcome = AgentOutcome::kUnchanged;
  } else if (ack.outcome == proto::kAckRefused) {
    progress.outcome = AgentOutcome::kRefused;
  } else if (ack.outcome == proto::kAckIgnored) {
    if (!progress.ignored_since_ms) progress.ignored_since_ms = now_ms;
    if (!progress.error) {
      progress.error =
          proto::FleetError{"ignored", "the agent had already processed version " +
                                           std::to_string(ack.version) + " or a newer one"};
    }
  }
}

void RolloutProgress::Settle(int64_t now_ms) {
  for (AgentProgress& progress : agents_) {
    if ((progress.outcome == AgentOutcome::kPending || progress.outcome == AgentOutcome::kLost) &&
        progress.ignored_since_ms && now_ms - *progress.ignored_since_ms >= kIgnoredGraceMs) {
      progress.outcome = AgentOutcome::kIgnored;
    }
  }
}

void RolloutProgress::SkipUnpushed() {
  for (AgentProgress& progress : agents_) {
    if (progress.version == 0 && progress.outcome == AgentOutcome::kPending) {
      progress.outcome = AgentOutcome::kSkipped;
    }
  }
}

bool RolloutProgress::AllAnswered(const std::vector<std::string>& agents) const {
  for (const auto& agent : agents) {
    auto it = index_.find(agent);
    if (it == index_.end() || agents_[it->second].outcome == AgentOutcome::kPending) return false;
  }
  return true;
}

bool RolloutProgress::AnyFailed(const std::vector<std::string>& agents) const {
  for (const auto& agent : agents) {
    auto it = index_.find(agent);
    if (it == index_.end()) continue;
    const AgentOutcome outcome = agents_[it->second].outcome;
    if (outcome == AgentOutcome::kRefused || outcome == AgentOutcome::kIgnored) return true;
  }
  return false;
}

Tally RolloutProgress::Count() const {
  Tally tally;
  for (const AgentProgress& progress : agents_) {
    switch (progress.outcome) {
      case AgentOutcome::kPending:
        ++tally.pending;
        break;
      case AgentOutcome::kApplied:
        ++tally.applied;
        break;
      case AgentOutcome::kUnchanged:
        ++tally.unchanged;
        break;
      case AgentOutcome::kRefused:
      case AgentOutcome::kIgnored:
        ++tally.failed;
        break;
      case AgentOutcome::kSkipped:
        ++tally.skipped;
        break;
      case AgentOutcome::kLost:
        ++tally.lost;
        break;
    }
  }
  tally.total = agents_.size();
  if (expect_ && *expect_ > tally.total) {
    // Agents not heard of yet, but expected.
    tally.pending += static_cast<size_t>(*expect_ - tally.total);
    tally.total = static_cast<size_t>(*expect_);
  }
  return tally;
}

size_t RolloutProgress::Answered() const {
  size_t answered = 0;
  for (const AgentProgress& progress : agents_) {
    answered += progress.outcome != AgentOutcome::kPending &&
                progress.outcome != AgentOutcome::kSkipped &&
                progress.outcome != AgentOutcome::kLost;
  }
  return answered;
}

void RolloutProgress::DropPending() {
  std::vector<AgentProgress> kept;
  index_.clear();
  for (AgentProgress& progress : agents_) {
    if (progress.outcome == AgentOutcome::kPending) continue;
    index_[progress.agent] = kept.size();
    kept.push_back(std::move(progress));
  }
  agents_ = std::move(kept);
}

std::vector<uint64_t> RolloutProgress::WantedVersions() const {
  std::set<uint64_t> versions = open_versions_;
  for (const AgentProgress& progress : agents_) {
    if ((progress.outcome == AgentOutcome::kPending || progress.outcome == AgentOutcome::kLost) &&
        progress.version != 0) {
      versions.insert(progress.version);
    }
  }
  return {versions.begin(), versions.end()};
}

int RolloutExitCode(const Tally& tally) {
  if (tally.failed > 0) return kExitPartialFailure;
  if (tally.pending > 0 || tally.skipped > 0 || tally.lost > 0) return kExitRolloutTimeout;
  return 0;
}

std::string FormatProgress(const Tally& tally) {
  std::string text = "applied " + std::to_string(tally.applied) + " / unchanged " +
                     std::to_string(tally.unchanged) + " / failed " + std::to_string(tally.failed) +
                     " / pending " + std::to_string(tally.pending);
  if (tally.skipped > 0) text += " / skipped " + std::to_string(tally.skipped);
  if (tally.lost > 0) text += " / lost " + std::to_string(tally.lost);
  return text + " of " + std::to_string(tally.total);
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], DisplayWidth(row[c]));
  }
  std::ostringstream out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(widths[c] - DisplayWidth(row[c]) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
  return out.str();
}

std::string FormatRolloutReport(const RolloutReport& report) {
  std::ostringstream out;
  if (!report.agents.empty()) {
    std::vector<std::vector<std::string>> rows = {{"AGENT", "OUTCOME", "VERSION", "MS", "ERROR"}};
    for (const AgentProgress& a : report.agents) {
      rows.push_back({OneLine(a.agent), std::string(OutcomeName(a.outcome)),
                      a.version == 0 ? "-" : std::to_string(a.version),
                      a.total_ms < 0 ? "-" : std::to_string(a.total_ms), ErrorText(a.error)});
    }
    out << FormatTable(rows);
  }
  out << FormatProgress(report.tally) << "\n";
  const Tally& t = report.tally;
  const std::string target = proto::TargetKey(report.target);
  if (report.tally.total > report.agents.size()) {
    const size_t missing = report.tally.total - report.agents.size();
    out << Count(static_cast<int64_t>(missing), "more expected agent") << " never answered\n";
  }
  if (report.stopped == "canary_failed") {
    out << "stopped: a canary did not apply the config; the other agents of " << target
        << " keep their previous config\n";
  } else if (report.stopped == "failure") {
    out << "stopped at the first failure (--stop-on-failure); the agents not reached keep "
           "their previous config\n";
  } else if (report.stopped == "timeout") {
    out << "stopped at --timeout with " << Count(static_cast<int64_t>(t.pending), "agent")
        << " not answering";
    if (t.skipped > 0) out << " and " << t.skipped << " not reached";
    out << "\n";
  } else if (report.stopped == "interrupted") {
    out << "interrupted; the agents not reached keep their previous config\n";
  } else if (report.stopped == "unreachable") {
    out << "stopped: the controller no longer answers\n";
  } else if (report.stopped == "refused") {
    out << "stopped: the controller refused a push\n";
  }
  if (t.lost > 0) {
    out << Count(static_cast<int64_t>(t.lost), "agent")
        << " lost (silent for 3 of its hello intervals) when pushed to: not waited for; it gets "
           "its desired state when it says hello again\n";
  }
  if (report.final_version) {
    if (report.desired_always) {
      out << "version " << *report.final_version << " is the desired state of " << target
          << " (--desired-always): agents that join later get it\n";
    } else if (t.applied + t.unchanged > 0) {
      out << "version " << *report.final_version << " is the desired state of " << target
          << ": agents that join later get it\n";
    } else {
      out << "no agent applied version " << *report.final_version << ": the desired state of "
          << target << " stays what it was (lbctl fleet agents), unless an agent still applies "
          << "it\n";
    }
  } else if (report.staged) {
    out << "the desired state of " << target << " is unchanged\n";
  }
  return out.str();
}

json RolloutReportToJson(const RolloutReport& report) {
  json agents = json::array();
  for (const AgentProgress& a : report.agents) {
    agents.push_back({{"agent", a.agent},
                      {"outcome", OutcomeName(a.outcome)},
                      {"version", a.version == 0 ? json(nullptr) : json(a.version)},
                      {"total_ms", a.total_ms < 0 ? json(nullptr) : json(a.total_ms)},
                      {"error", ErrorJson(a.error)}});
  }
  const Tally& t = report.tally;
  return {{"target", proto::EncodeTarget(report.target)},
          {"staged", report.staged},
          {"versions", report.versions},
          {"final_version", report.final_version ? json(*report.final_version) : json(nullptr)},
          {"stopped", report.stopped.empty() ? json(nullptr) : json(report.stopped)},
          {"counts",
           {{"applied", t.applied},
            {"unchanged", t.unchanged},
            {"failed", t.failed},
            {"pending", t.pending},
            {"skipped", t.skipped},
            {"lost", t.lost},
            {"total", t.total}}},
          {"agents", std::move(agents)},
          {"exit_code", report.exit_code}};
}

std::string FormatAgents(const proto::FleetAgentsResult& result) {
  std::ostringstream out;
  out << "controller " << OneLine(result.controller) << ", latest version " << result.latest << ", "
      << Count(static_cast<int64_t>(result.agents.size()), "agent") << " known\n";
  for (const proto::FleetTargetInfo& target : result.targets) {
    out << "  " << OneLine(proto::TargetKey(target.target)) << ": ";
    if (target.desired_version == 0) {
      out << "no desired state";
    } else {
      out << "desired v" << target.desired_version
          << (target.desired_because == "operator" ? " (set by the operator)"
                                                   : " (applied by an agent)");
    }
    if (target.pending_version != 0) {
      out << "; v" << target.pending_version << " pending (desired once an agent applies it)";
    }
    if (target.rejected_version != 0) {
      out << "; v" << target.rejected_version << " refused by every agent, not handed out";
    }
    out << "\n";
  }
  if (result.agents.empty()) return out.str();
  // With CURVE, the key each agent connected with, and what was refused under its id.
  bool keys = false;
  for (const auto& agent : result.agents) {
    keys = keys || !agent.curve_key.empty() || agent.refused_messages > 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"AGENT", "STATE", "GROUPS", "SHA256", "APPLIED", "DESIRED", "LAST SEEN"}};
  if (keys) {
    rows[0].push_back("CURVE KEY");
    rows[0].push_back("REFUSED");
  }
  for (const auto& agent : result.agents) {
    std::string groups;
    for (const auto& g : agent.groups) groups += (groups.empty() ? "" : ",") + OneLine(g);
    std::string sha = agent.sha256.empty() ? "-" : OneLine(agent.sha256);
    if (sha.size() > 12) sha.resize(12);
    const std::string seen =
        agent.last_seen_ms <= 0 || result.now_ms <= 0
            ? "-"
            : FormatDuration(std::max<int64_t>(0, (result.now_ms - agent.last_seen_ms) / 1000)) +
                  " ago";
    const std::string state =
        agent.first_seen_ms == 0 ? "refused" : std::string(proto::LivenessName(agent.liveness));
    rows.push_back({OneLine(agent.agent), state, groups.empty() ? "-" : groups, sha,
                    std::to_string(agent.applied_version),
                    agent.desired_version == 0 ? "-" : std::to_string(agent.desired_version),
                    seen});
    if (keys) {
      rows.back().push_back(agent.curve_key.empty() ? "-" : agent.curve_key);
      rows.back().push_back(agent.refused_messages == 0 ? "-"
                                                        : std::to_string(agent.refused_messages) +
                                                              " (key " + agent.refused_key + ")");
    }
  }
  out << FormatTable(rows);
  return out.str();
}

}  // namespace lb::cli
