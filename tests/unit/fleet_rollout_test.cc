// The pure half of `lbctl fleet push` (fleet_rollout.h): wave planning, per-agent outcomes,
// counts, exit codes and reports; and the fleet part of lbctl's command line. Against the real
// lb-controller: controller_test.cc.
#include "fleet_rollout.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "command_line.h"
#include "lbctl.h"
#include "lbctl_run.h"

namespace lb::cli {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1795516262123;

// ---- rollout planning and counting ----

std::vector<std::string> Names(size_t n) {
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) names.push_back(std::string(1, static_cast<char>('a' + i)));
  return names;
}

TEST(FleetRolloutTest, PlansCanaryAndBatchWaves) {
  using W = Wave;
  EXPECT_EQ(PlanWaves(Names(4), 0, 0), (std::vector<W>{{{"a", "b", "c", "d"}, false}}));
  EXPECT_EQ(PlanWaves(Names(5), 0, 2),
            (std::vector<W>{{{"a", "b"}, false}, {{"c", "d"}, false}, {{"e"}, false}}));
  EXPECT_EQ(PlanWaves(Names(4), 1, 0), (std::vector<W>{{{"a"}, true}, {{"b", "c", "d"}, false}}));
  EXPECT_EQ(PlanWaves(Names(10), 2, 3), (std::vector<W>{{{"a", "b"}, true},
                                                        {{"c", "d", "e"}, false},
                                                        {{"f", "g", "h"}, false},
                                                        {{"i", "j"}, false}}));
  EXPECT_EQ(
      PlanWaves(Names(6), 3, 2),
      (std::vector<W>{{{"a", "b"}, true}, {{"c"}, true}, {{"d", "e"}, false}, {{"f"}, false}}));
  EXPECT_EQ(PlanWaves(Names(2), 5, 0), (std::vector<W>{{{"a", "b"}, true}}))
      << "a canary larger than the fleet is the whole fleet";
  EXPECT_TRUE(PlanWaves({}, 2, 2).empty());
}

proto::FleetAck AckFor(const std::string& agent, uint64_t version, const std::string& outcome) {
  proto::FleetAck ack{agent, version, outcome, std::nullopt, "", 12, nullptr};
  if (outcome == "refused") ack.error = proto::FleetError{"invalid_config", "bad"};
  return ack;
}

TEST(FleetRolloutTest, CountsOutcomesAndChoosesTheExitCode) {
  RolloutProgress all_applied;
  for (const auto& a : Names(3)) all_applied.Pushed(a, 7);
  EXPECT_EQ(all_applied.Count().pending, 3u);
  all_applied.Observe(AckFor("a", 7, "applied"), kNow);
  all_applied.Observe(AckFor("b", 7, "unchanged"), kNow);
  all_applied.Observe(AckFor("c", 6, "applied"), kNow);  // another version: not this push
  EXPECT_EQ(FormatProgress(all_applied.Count()),
            "applied 1 / unchanged 1 / failed 0 / pending 1 of 3");
  all_applied.Observe(AckFor("c", 7, "applied"), kNow);
  all_applied.Observe(AckFor("c", 7, "refused"), kNow);  // the first answer is final
  EXPECT_EQ(all_applied.Count(), (Tally{2, 1, 0, 0, 0, 0, 3}));
  EXPECT_EQ(RolloutExitCode(all_applied.Count()), 0);

  RolloutProgress one_refused;
  for (const auto& a : Names(3)) one_refused.Pushed(a, 7);
  one_refused.Observe(AckFor("a", 7, "applied"), kNow);
  one_refused.Observe(AckFor("b", 7, "refused"), kNow);
  one_refused.Observe(AckFor("c", 7, "applied"), kNow);
  EXPECT_EQ(RolloutExitCode(one_refused.Count()), kExitPartialFailure);
  EXPECT_EQ(one_refused.agents()[1].error->code, "invalid_config");
  EXPECT_TRUE(one_refused.AnyFailed({"b"}));
  EXPECT_FALSE(one_refused.AnyFailed({"a", "c"}));

  RolloutProgress timed_out;
  for (const auto& a : Names(3)) timed_out.Pushed(a, 7);
  timed_out.Observe(AckFor("a", 7, "applied"), kNow);
  EXPECT_EQ(timed_out.Count().pending, 2u);
  EXPECT_EQ(RolloutExitCode(timed_out.Count()), kExitRolloutTimeout);
  EXPECT_FALSE(timed_out.AllAnswered({"a", "b"}));
  EXPECT_TRUE(timed_out.AllAnswered({"a"}));
  timed_out.Observe(AckFor("b", 7, "refused"), kNow);
  EXPECT_EQ(RolloutExitCode(timed_out.Count()), kExitPartialFailure)
      << "a refusal outweighs the agents still pending";

  EXPECT_EQ(RolloutExitCode(Tally{2, 0, 0, 0, 1, 0, 3}), kExitRolloutTimeout) << "skipped";
  EXPECT_EQ(RolloutExitCode(Tally{}), 0) << "nothing to wait for";
}

TEST(FleetRolloutTest, IgnoredIsAFailureOnlyWithoutARealAnswerInTime) {
  RolloutProgress progress;
  progress.Pushed("a", 3);
  progress.Pushed("b", 4);
  progress.Observe(AckFor("a", 3, "ignored"), kNow);
  progress.Observe(AckFor("b", 4, "ignored"), kNow);
  progress.Observe(AckFor("b", 4, "applied"), kNow + 100);  // it was reloading the same push
  progress.Settle(kNow + RolloutProgress::kIgnoredGraceMs - 1);
  EXPECT_EQ(progress.agents()[0].outcome, AgentOutcome::kPending);
  EXPECT_EQ(progress.agents()[1].outcome, AgentOutcome::kApplied);
  progress.Settle(kNow + RolloutProgress::kIgnoredGraceMs);
  EXPECT_EQ(progress.agents()[0].outcome, AgentOutcome::kIgnored);
  EXPECT_EQ(RolloutExitCode(progress.Count()), kExitPartialFailure);
}

TEST(FleetRolloutTest, ExpectCountsWhoeverAnswersAnOpenVersion) {
  RolloutProgress progress(3);
  progress.OpenVersion(9);
  EXPECT_EQ(progress.Count(), (Tally{0, 0, 0, 3, 0, 0, 3}));
  EXPECT_EQ(progress.WantedVersions(), std::vector<uint64_t>{9});
  progress.Observe(AckFor("x", 9, "applied"), kNow);
  progress.Observe(AckFor("y", 8, "applied"), kNow);  // not this push
  progress.Observe(AckFor("z", 9, "unchanged"), kNow);
  EXPECT_EQ(progress.Count(), (Tally{1, 1, 0, 1, 0, 0, 3}));
  progress.Observe(AckFor("w", 9, "applied"), kNow);
  EXPECT_EQ(progress.Count(), (Tally{2, 1, 0, 0, 0, 0, 3}));
  EXPECT_EQ(RolloutExitCode(progress.Count()), 0);

  // Known agents are listed, so that those that never answer are named; once N answered, the
  // others were not waited for.
  RolloutProgress known(2);
  known.OpenVersion(4);
  for (const auto& a : Names(3)) known.Pushed(a, 4);
  EXPECT_EQ(known.Count(), (Tally{0, 0, 0, 3, 0, 0, 3}));
  known.Observe(AckFor("b", 4, "applied"), kNow);
  EXPECT_EQ(known.Answered(), 1u);
  EXPECT_EQ(known.Count(), (Tally{1, 0, 0, 2, 0, 0, 3})) << "a and c are named as pending";
  known.Observe(AckFor("c", 4, "applied"), kNow);
  EXPECT_EQ(known.Answered(), 2u);
  known.DropPending();
  EXPECT_EQ(known.Count(), (Tally{2, 0, 0, 0, 0, 0, 2}));
  ASSERT_EQ(known.agents().size(), 2u);
  EXPECT_EQ(known.agents()[0].agent, "b");
  EXPECT_TRUE(known.AllAnswered({"b", "c"}));
}

TEST(FleetRolloutTest, UnpushedAgentsAreSkippedWhenTheRolloutStops) {
  RolloutProgress progress;
  for (const auto& a : Names(4)) progress.AddAgent(a);
  progress.Pushed("a", 1);
  progress.Pushed("b", 2);
  progress.Observe(AckFor("a", 1, "refused"), kNow);
  progress.SkipUnpushed();
  EXPECT_EQ(progress.Count(), (Tally{0, 0, 1, 1, 2, 0, 4}));
  EXPECT_EQ(FormatProgress(progress.Count()),
            "applied 0 / unchanged 0 / failed 1 / pending 1 / skipped 2 of 4");
  EXPECT_EQ(progress.WantedVersions(), std::vector<uint64_t>{2});

  RolloutReport report;
  report.target = FleetTarget::Group("web");
  report.staged = true;
  report.stopped = "canary_failed";
  report.agents = progress.agents();
  report.tally = progress.Count();
  report.exit_code = RolloutExitCode(report.tally);
  const std::string text = FormatRolloutReport(report);
  EXPECT_NE(text.find("AGENT  OUTCOME  VERSION  MS  ERROR\n"), std::string::npos) << text;
  EXPECT_NE(text.find("a      refused  1        12  invalid_config: bad\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("c      skipped  -        -   -\n"), std::string::npos) << text;
  EXPECT_NE(text.find("the other agents of group/web keep their previous config"),
            std::string::npos);
  json as_json = RolloutReportToJson(report);
  EXPECT_EQ(as_json["counts"]["skipped"], 2);
  EXPECT_EQ(as_json["agents"][2]["version"], nullptr);
  EXPECT_EQ(as_json["stopped"], "canary_failed");
  EXPECT_EQ(as_json["exit_code"], kExitPartialFailure);
}

TEST(FleetRolloutTest, LostAgentsAreNotWaitedForButTheirAnswerStillCounts) {
  RolloutProgress progress;
  progress.Pushed("a", 5);
  progress.Pushed("b", 5, /*lost=*/true);
  progress.Pushed("c", 5, /*lost=*/true);
  EXPECT_EQ(progress.Count(), (Tally{0, 0, 0, 1, 0, 2, 3}));
  EXPECT_EQ(progress.WantedVersions(), std::vector<uint64_t>{5}) << "their acks are still read";
  progress.Observe(AckFor("a", 5, "applied"), kNow);
  EXPECT_EQ(progress.Count().pending, 0u) << "nothing left to wait for";
  EXPECT_TRUE(progress.AllAnswered({"a", "b", "c"}));
  EXPECT_EQ(RolloutExitCode(progress.Count()), kExitRolloutTimeout) << "not every agent got it";
  progress.Observe(AckFor("b", 5, "applied"), kNow);  // it came back in time
  EXPECT_EQ(progress.Count(), (Tally{2, 0, 0, 0, 0, 1, 3}));
  EXPECT_EQ(FormatProgress(progress.Count()),
            "applied 2 / unchanged 0 / failed 0 / pending 0 / lost 1 of 3");

  RolloutReport report;
  report.target = FleetTarget::All();
  report.final_version = 5;
  report.agents = progress.agents();
  report.tally = progress.Count();
  const std::string text = FormatRolloutReport(report);
  EXPECT_NE(text.find("c      lost     5"), std::string::npos) << text;
  EXPECT_NE(text.find("1 agent lost (silent for 3 of its hello intervals) when pushed to"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("version 5 is the desired state of all"), std::string::npos) << text;
  EXPECT_EQ(RolloutReportToJson(report)["counts"]["lost"], 1);

  // Nobody applied it: the report does not claim it became the desired state.
  RolloutReport refused;
  refused.target = FleetTarget::Group("web");
  refused.final_version = 6;
  refused.tally = Tally{0, 0, 2, 0, 0, 0, 2};
  EXPECT_NE(FormatRolloutReport(refused).find(
                "no agent applied version 6: the desired state of group/web stays what it was"),
            std::string::npos)
      << FormatRolloutReport(refused);
  refused.desired_always = true;
  EXPECT_NE(FormatRolloutReport(refused).find("version 6 is the desired state of group/web "
                                              "(--desired-always)"),
            std::string::npos);
}

TEST(FleetRolloutTest, AgentsTableShowsLivenessDesiredStatesAndRefusedKeys) {
  proto::FleetAgentsResult result;
  result.controller = "ctl-1";
  result.latest = 9;
  result.now_ms = 100000;
  result.targets.push_back({FleetTarget::All(), 4, "applied", 0, 0});
  result.targets.push_back({FleetTarget::Group("web"), 7, "operator", 9, 8});
  proto::FleetAgentInfo a1;
  a1.agent = "a1";
  a1.groups = {"web"};
  a1.sha256 = std::string(64, 'c');
  a1.applied_version = 7;
  a1.desired_version = 7;
  a1.first_seen_ms = 1;
  a1.last_seen_ms = 98000;
  a1.liveness = proto::FleetLiveness::kAlive;
  proto::FleetAgentInfo a2 = a1;
  a2.agent = "a2";
  a2.last_seen_ms = 40000;
  a2.liveness = proto::FleetLiveness::kLost;
  a2.refused_messages = 3;
  a2.refused_key = std::string(40, 'z');
  result.agents = {a1, a2};
  const std::string text = FormatAgents(result);
  EXPECT_NE(text.find("controller ctl-1, latest version 9, 2 agents known\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("  all: desired v4 (applied by an agent)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  group/web: desired v7 (set by the operator); v9 pending (desired once "
                      "an agent applies it); v8 refused by every agent, not handed out\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("AGENT  STATE  GROUPS  SHA256        APPLIED  DESIRED  LAST SEEN  CURVE KEY"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("a1     alive  web     cccccccccccc  7        7        2s ago"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("a2     lost   web"), std::string::npos) << text;
  EXPECT_NE(text.find("3 (key " + std::string(40, 'z') + ")"), std::string::npos) << text;
}

// ---- command line ----

TEST(FleetCommandLineTest, ParsesTheFleetCommands) {
  Environment bad_env;
  bad_env.agent_endpoint = "nonsense";  // not used by fleet commands, so not in their way
  auto push = ParseCommandLine(
      {"fleet", "push", "web.cfg", "--agent-id", "a1", "--control", "tcp://10.0.0.1:7000",
       "--canary", "1", "--batch", "5", "--stop-on-failure", "--expect", "9", "--force", "--json",
       "--allow-no-match", "--desired-always"},
      bad_env);
  ASSERT_TRUE(push.ok()) << push.status().ToString();
  EXPECT_EQ(push->command, Command::kFleetPush);
  EXPECT_EQ(push->file, "web.cfg");
  EXPECT_EQ(push->fleet.target, FleetTarget::Agent("a1"));
  EXPECT_EQ(push->fleet.control_endpoint, "tcp://10.0.0.1:7000");
  EXPECT_EQ(push->fleet.canary, 1u);
  EXPECT_EQ(push->fleet.batch, 5u);
  EXPECT_EQ(push->fleet.expect, 9u);
  EXPECT_TRUE(push->fleet.stop_on_failure);
  EXPECT_TRUE(push->fleet.allow_no_match);
  EXPECT_TRUE(push->fleet.desired_always);
  EXPECT_TRUE(push->force);
  EXPECT_TRUE(push->json);

  auto group =
      ParseCommandLine({"--control", "ipc:///c", "fleet", "push", "-", "--group", "web"}, {});
  ASSERT_TRUE(group.ok()) << group.status().ToString();
  EXPECT_EQ(group->fleet.target, FleetTarget::Group("web"));
  EXPECT_EQ(group->fleet.canary, 0u);
  EXPECT_FALSE(group->fleet.expect.has_value());
  EXPECT_FALSE(group->fleet.allow_no_match);
  EXPECT_FALSE(group->fleet.desired_always);

  auto agents = ParseCommandLine({"fleet", "agents", "--control", "ipc:///c"}, {});
  ASSERT_TRUE(agents.ok());
  EXPECT_EQ(agents->command, Command::kFleetAgents);
  // --agent keeps its one meaning: the agent's command endpoint.
  auto ping = ParseCommandLine({"--agent", "tcp://10.0.0.2:5555", "ping"}, {});
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(ping->agent_endpoint, "tcp://10.0.0.2:5555");
}

TEST(FleetCommandLineTest, BadFleetUsageExitsTwo) {
  const std::vector<std::string> push = {"fleet", "push", "f.cfg", "--control", "ipc:///c"};
  auto with = [](std::vector<std::string> base, std::vector<std::string> more) {
    base.insert(base.end(), more.begin(), more.end());
    return base;
  };
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"fleet"}, "fleet needs a command: push or agents"},
      {{"fleet", "launch"}, "unknown fleet command \"launch\""},
      {{"fleet", "serve", "--pub", "ipc:///p"},
       "fleet serve is gone: the controller is its own daemon now, lb-controller --config"},
      {{"fleet", "push", "f.cfg", "--all"}, "fleet push needs --control ENDPOINT"},
      {{"fleet", "push", "--all", "--control", "ipc:///c"}, "fleet push needs a FILE"},
      {push, "fleet push needs a target: --all, --group G or --agent-id ID"},
      {with(push, {"--all", "--group", "web"}), "fleet push takes one target"},
      {with(push, {"--group", "a/b"}), "--group wants a name"},
      {with(push, {"--agent-id", "a\nb"}), "--agent-id wants a name"},
      {with(push, {"--agent", "a1"}), "fleet push targets one agent with --agent-id ID"},
      {with(push, {"--all", "--canary", "0"}), "--canary wants a positive whole number"},
      {with(push, {"--all", "--stop-on-failure"}), "--stop-on-failure needs --canary or --batch"},
      {with(push, {"--all", "--pub", "ipc:///p"}), "unknown option \"--pub\""},
      {{"fleet", "agents"}, "fleet agents needs --control ENDPOINT"},
      {{"fleet", "agents", "--control", "ipc:///c", "--all"},
       "--all is an option of fleet push only"},
      {{"status", "--control", "ipc:///c"}, "--control is an option of fleet push and agents only"},
      {{"ping", "--all"}, "--all is an option of fleet push only"},
      {{"ping", "--desired-always"}, "--desired-always is an option of fleet push only"},
      {with(push, {"--all", "--server-key", "k"}),
       "--server-key is an option of the commands that talk to the agent only"},
  };
  for (const Case& c : cases) {
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    RunOutput r = RunLbctl(c.args);
    EXPECT_EQ(r.code, kExitUsage) << joined << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << joined << "\n" << r.err;
  }
  RunOutput help = RunLbctl({"fleet", "help"});
  EXPECT_EQ(help.code, kExitOk);
  for (const char* part : {"fleet push FILE (--all | --group G | --agent-id ID)", "--canary N",
                           "--batch K", "--stop-on-failure", "--allow-no-match", "--desired-always",
                           "fleet agents", "lb-controller", "4  fleet push", "5  fleet push"}) {
    EXPECT_NE(help.out.find(part), std::string::npos) << part << "\n" << help.out;
  }
}

}  // namespace
}  // namespace lb::cli
