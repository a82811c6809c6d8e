// The pure half of `lbctl fleet push`: how a rollout is cut into waves, how acks become
// per-agent outcomes and counts, which exit code the counts give, and how it all is shown.
// No sockets, no clock (times come in as unix milliseconds).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lb/proto/fleet.h"

namespace lb::cli {

using proto::FleetTarget;

// Exit codes of `lbctl fleet push` beyond command_line.h's 0-3 (also in UsageText()).
inline constexpr int kExitPartialFailure = 4;  // some agents refused (or ignored) the push
inline constexpr int kExitRolloutTimeout = 5;  // some agents had not answered at --timeout

// A group of agents pushed to at once; the next wave starts when every agent of this one
// answered.
struct Wave {
  std::vector<std::string> agents;
  bool canary = false;  // the rollout goes on only if every agent of it applied or is unchanged

  bool operator==(const Wave&) const = default;
};

// Cuts `agents` (in the given order) into waves: first the first `canary` of them, then the
// rest; each part in waves of at most `batch` agents. 0 means "no canary" / "no limit".
// Examples, agents a..j: canary 2, batch 3 -> [a b]c [c d e] [f g h] [i j];
// canary 0, batch 0 -> [a..j]; canary 3, batch 2 -> [a b]c [c]c [d e] ... .
std::vector<Wave> PlanWaves(const std::vector<std::string>& agents, uint64_t canary,
                            uint64_t batch);

enum class AgentOutcome {
  kPending,    // pushed (or about to be) and not answered yet
  kApplied,    // reloaded with the pushed config
  kUnchanged,  // already had it: no reload
  kRefused,    // said no (invalid config, failed reload, another controller): a failure
  kIgnored,    // only ever said "ignored" (it had processed a newer version): a failure
  kSkipped,    // never pushed to: the rollout stopped before its wave
  kLost,       // silent for 3 of its hello intervals when pushed to: not waited for (an answer
               // that still comes in before the end counts)
};
std::string_view OutcomeName(AgentOutcome outcome);

struct AgentProgress {
  std::string agent;
  uint64_t version = 0;  // the push meant for it; 0 while it has not been pushed
  AgentOutcome outcome = AgentOutcome::kPending;
  std::optional<proto::FleetError> error;  // from its ack
  int64_t total_ms = -1;
  std::optional<int64_t> ignored_since_ms;  // when an "ignored" ack was first seen
};

struct Tally {
  size_t applied = 0;
  size_t unchanged = 0;
  size_t failed = 0;  // refused + ignored
  size_t pending = 0;
  size_t skipped = 0;
  size_t lost = 0;
  size_t total = 0;

  bool operator==(const Tally&) const = default;
};

// Follows the agents of one `fleet push` from the acks the controller collected.
class RolloutProgress {
 public:
  // An agent that acks only "ignored" is given this long to send its real answer (an agent
  // may be reloading a push it got by hello while the same push arrives again on PUB).
  static constexpr int64_t kIgnoredGraceMs = 2000;

  // With `expect` (--expect N), at least N agents are counted, whoever they are: Count()'s
  // total is never below N.
  explicit RolloutProgress(std::optional<uint64_t> expect = std::nullopt) : expect_(expect) {}

  // Lists `agent` as pending, not pushed yet (no effect when already listed).
  void AddAgent(const std::string& agent);
  // `version` was pushed for `agent` (listed when new). `lost`: the controller says it went
  // silent: it is not waited for.
  void Pushed(const std::string& agent, uint64_t version, bool lost = false);
  // Acks of `version` count for every agent, listed or not (a push to a whole target).
  void OpenVersion(uint64_t version);
  // One ack of the controller's `acks` result. Only acks of the version meant for that agent
  // (or of an open version) count; the first applied/unchanged/refused one is final.
  void Observe(const proto::FleetAck& ack, int64_t now_ms);
  // Turns "ignored" answers older than kIgnoredGraceMs into kIgnored.
  void Settle(int64_t now_ms);
  // Every listed agent not pushed yet becomes kSkipped.
  void SkipUnpushed();

  // Whether every one of `agents` has a final outcome (lost counts as one).
  bool AllAnswered(const std::vector<std::string>& agents) const;
  // Whether any of `agents` failed (refused or ignored).
  bool AnyFailed(const std::vector<std::string>& agents) const;
  // total: the listed agents, or --expect N when that is more (the difference is pending).
  Tally Count() const;
  // How many agents have a final answer (applied, unchanged, refused, ignored).
  size_t Answered() const;
  // Forgets the agents still pending: with --expect N, once N answered, the others were not
  // waited for.
  void DropPending();
  // The versions whose acks are still wanted (pushed to a pending agent, or open).
  std::vector<uint64_t> WantedVersions() const;
  // In the order they were listed.
  const std::vector<AgentProgress>& agents() const { return agents_; }

 private:
  AgentProgress& Listed(const std::string& agent);

  std::optional<uint64_t> expect_;
  std::vector<AgentProgress> agents_;
  std::map<std::string, size_t> index_;
  std::set<uint64_t> open_versions_;
};

// 0 when every agent applied or was unchanged; kExitPartialFailure when any failed (even if
// others are still pending); kExitRolloutTimeout when none failed but some are pending, were
// skipped or are lost.
int RolloutExitCode(const Tally& tally);

// "applied 37 / unchanged 2 / failed 1 / pending 10 of 50" (" / skipped N" and " / lost N"
// before " of" when there are some).
std::string FormatProgress(const Tally& tally);

// Everything `lbctl fleet push` reports at the end.
struct RolloutReport {
  FleetTarget target;
  bool staged = false;                    // --canary or --batch
  std::vector<uint64_t> versions;         // every version pushed, in order
  std::optional<uint64_t> final_version;  // the target-level push recorded last, if any
  bool desired_always = false;            // --desired-always: final_version is desired at once
  std::string stopped;  // "", canary_failed, failure, timeout, interrupted, unreachable, refused
  std::vector<AgentProgress> agents;
  Tally tally;
  int exit_code = 0;
};

// The per-agent table (AGENT, OUTCOME, VERSION, MS, ERROR), then one summary line and, when
// the rollout stopped early, why and what it means for the agents not reached.
std::string FormatRolloutReport(const RolloutReport& report);
// {"target", "staged", "versions", "final_version", "stopped", "counts", "agents": [{"agent",
//  "outcome", "version", "total_ms", "error"}], "exit_code"}.
nlohmann::json RolloutReportToJson(const RolloutReport& report);

// The `agents` result of the control socket: a line naming the controller and its latest
// version, one line per target saying which version is its desired state and why (applied by an
// agent, or the operator's) and what is pending or was rejected, then a table: AGENT, STATE
// (alive, lost, unknown), GROUPS, SHA256 (12 digits), APPLIED, DESIRED, LAST SEEN (ago, from
// the result's now_ms), and with CURVE the agent's key and the messages refused under its id.
std::string FormatAgents(const proto::FleetAgentsResult& result);

// Rows as an aligned table: columns at least two spaces apart, no trailing blanks.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

}  // namespace lb::cli
