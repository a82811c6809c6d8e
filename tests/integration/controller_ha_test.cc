// lb-controller highly available on etcd (ARCHITECTURE.md, "A highly available controller"):
// a real 3-member etcd cluster, two real lb-controllers sharing it (one leads, one stands by)
// and real lb-agents, each with its own haproxy, that list both controllers. What is asserted
// is what an operator relies on: the leader is SIGKILLed and the standby leads within 5 s, a
// push through the new leader reaches every agent (ten), no agent's version goes back; a paused
// leader that wakes up after its successor took over publishes nothing and exits; a leader cut
// off from etcd by a real network partition (its own network namespace, a silent drop: netns.h)
// while it still reaches its agents stops within its lease and publishes nothing once its
// successor leads; with etcd's quorum lost a push is refused with the store's reason and agents
// keep their configs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "harness.h"
#include "netns.h"

namespace lb::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kConverge(30000);

long long MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

class ControllerHaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(etcd_.Start());
    for (const char* id : {"ctl-a", "ctl-b"}) {
      FleetController::Options options;
      options.lbctl = LBCTL_BINARY;
      options.dir = dir_.File(id);
      std::filesystem::create_directories(options.dir);
      options.id = id;
      options.beacon_interval_s = 0.2;
      options.etcd_endpoints = etcd_.endpoints();
      if (std::string(id) == "ctl-a" && a_netns_ != nullptr) {
        options.etcd_endpoints = etcd_.endpoints(a_netns_->host_address());
        options.command_prefix = a_netns_->ExecPrefix();
      }
      options.lease_ttl_s = lease_ttl_s_;
      controllers_.push_back(std::make_unique<FleetController>(options));
    }
    // ctl-a first, so that it leads; ctl-b stands by.
    a().Launch();
    ASSERT_TRUE(WaitFor([this] { return a().Serving(); }, milliseconds(20000)))
        << "ctl-a did not lead:\n"
        << a().Log();
    b().Launch();
    ASSERT_TRUE(WaitFor([this] { return b().Log().find("ctl-a leads") != std::string::npos; },
                        milliseconds(20000)))
        << "ctl-b does not stand by:\n"
        << b().Log();
    // A standby's control socket says so, and who leads; its PUB and ROUTER are not bound.
    CommandResult standby = b().Lbctl({"agents"}, milliseconds(10000));
    EXPECT_EQ(standby.exit_code, 1) << standby.Describe();
    EXPECT_NE(standby.err.find("controller ctl-b stands by: controller ctl-a leads (epoch "),
              std::string::npos)
        << standby.Describe();

    shared_port_ = FreePort();
    const std::string pubs = a().pub() + "," + b().pub();
    const std::string routers = a().router() + "," + b().router();
    for (int i = 0; i < agents_count_; ++i) {
      auto agent = std::make_unique<AgentFixture>(Keys{},
                                                  Keys{{"agent_id", "a" + std::to_string(i)},
                                                       {"poll_interval", "1"},
                                                       {"heartbeat_interval", "5"}},
                                                  Keys{{"controller_pub", pubs},
                                                       {"controller_router", routers},
                                                       {"groups", "web"},
                                                       {"state_file", "fleet-state.json"},
                                                       {"beacon_timeout", "1"},
                                                       {"hello_interval", "1"}});
      WriteFile(agent->config_path(), HaproxyConfig(FreePort(), {{"web", backend_.port(), ""}}));
      agents_.push_back(std::move(agent));
    }
    // Each start waits for its haproxy: four at a time.
    std::atomic<int> next{0};
    std::vector<std::thread> starters;
    for (int t = 0; t < 4; ++t) {
      starters.emplace_back([&] {
        for (int i = next++; i < agents_count_; i = next++) agents_[i]->StartAgent();
      });
    }
    for (auto& t : starters) t.join();
    ASSERT_FALSE(HasFailure()) << "an agent did not start";
    ASSERT_TRUE(WaitKnown(a()));
  }

  FleetController& a() { return *controllers_[0]; }
  FleetController& b() { return *controllers_[1]; }

  std::string Config(const std::string& tag) const {
    return HaproxyConfig(shared_port_, {{"web-" + tag, backend_.port(), ""}});
  }

  json FleetInfo(int i) {
    auto r = AgentCall(agents_[i]->endpoint(), "info", json::object(), milliseconds(5000));
    if (!r.ok() || !r->status.ok() || !r->result.contains("fleet")) return nullptr;
    return r->result["fleet"];
  }
  std::string LiveSha(int i) {
    auto r = AgentCall(agents_[i]->endpoint(), "get_config", json::object(), milliseconds(5000));
    if (!r.ok() || !r->status.ok()) return "";
    return r->result.value("sha256", "");
  }
  std::string ShaOf(const std::string& config) {
    auto result = agents_[0]->Ok("validate", {{"config", config}});
    return result.is_object() ? result.value("sha256", "") : "";
  }
  bool EveryAgentRuns(const std::string& sha) {
    std::set<int> pending;
    for (int i = 0; i < agents_count_; ++i) pending.insert(i);
    const bool done = WaitFor(
        [&] {
          for (auto it = pending.begin(); it != pending.end();) {
            it = LiveSha(*it) == sha ? pending.erase(it) : std::next(it);
          }
          return pending.empty();
        },
        kConverge);
    EXPECT_TRUE(done) << pending.size() << " agent(s) do not run " << sha.substr(0, 12);
    return done;
  }
  // The controller lists every agent (each said hello to it).
  bool WaitKnown(FleetController& controller) {
    size_t seen = 0;
    const bool done = WaitFor(
        [&] {
          auto r = controller.Lbctl({"agents", "--json"}, milliseconds(5000));
          if (r.exit_code != 0) return false;
          json parsed = json::parse(r.out, nullptr, false);
          if (parsed.is_discarded() || !parsed.contains("agents")) return false;
          seen = parsed["agents"].size();
          return seen >= static_cast<size_t>(agents_count_);
        },
        kConverge);
    EXPECT_TRUE(done) << controller.options().id << " lists " << seen << " agents, not "
                      << agents_count_;
    return done;
  }
  CommandResult Push(FleetController& controller, const std::string& config) {
    const std::string file = dir_.File("push-" + std::to_string(pushes_++) + ".cfg");
    WriteFile(file, config);
    return controller.Lbctl({"push", file, "--group", "web", "--json", "--timeout", "60"},
                            milliseconds(90000));
  }
  // `lbctl fleet push` given every controller's control endpoint: it finds the leader.
  CommandResult PushToTheLeader(const std::string& config) {
    const std::string file = dir_.File("push-" + std::to_string(pushes_++) + ".cfg");
    WriteFile(file, config);
    return RunCommand({LBCTL_BINARY, "fleet", "push", file, "--group", "web", "--json", "--timeout",
                       "60", "--control", a().control() + "," + b().control()},
                      milliseconds(90000));
  }
  // Every agent's fleet epoch and applied version.
  std::vector<std::pair<uint64_t, uint64_t>> EpochsAndVersions() {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (int i = 0; i < agents_count_; ++i) {
      json info = FleetInfo(i);
      out.emplace_back(info.is_object() ? info.value("epoch", uint64_t{0}) : 0,
                       info.is_object() ? info.value("applied_version", uint64_t{0}) : 0);
    }
    return out;
  }

  int lease_ttl_s_ = 2;   // the controllers' [store] lease_ttl
  int agents_count_ = 4;  // real agents, each with its haproxy
  // When set (before SetUp), ctl-a runs in this namespace and reaches etcd on its host-side
  // address only (etcd_.AlsoListenOn it). Declared first: removed after every process.
  std::unique_ptr<NetNs> a_netns_;
  TempDir dir_;
  EtcdCluster etcd_{dir_.path()};
  HttpBackend backend_{"web"};
  std::vector<std::unique_ptr<FleetController>> controllers_;
  std::vector<std::unique_ptr<AgentFixture>> agents_;
  int shared_port_ = 0;
  int pushes_ = 0;
};

// The failover with ten agents.
class ControllerFailoverTest : public ControllerHaTest {
 protected:
  ControllerFailoverTest() { agents_count_ = 10; }
};

TEST_F(ControllerFailoverTest, EtcdLeaderSigkilledStandbyLeadsWithin5sAndItsPushReachesEveryAgent) {
  const std::string first = Config("first");
  CommandResult pushed = Push(a(), first);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.Describe();
  ASSERT_TRUE(EveryAgentRuns(ShaOf(first)));
  const auto before = EpochsAndVersions();
  const uint64_t epoch_a = before[0].first;
  ASSERT_GT(epoch_a, 0u) << "the leader's pushes carry its epoch";
  for (const auto& [epoch, version] : before) {
    EXPECT_EQ(epoch, epoch_a);
    EXPECT_GT(version, 0u);
  }

  const auto killed = Clock::now();
  a().Kill();  // SIGKILL: its lease is not revoked, etcd lets it expire
  ASSERT_TRUE(WaitFor([this] { return b().Serving(); }, milliseconds(20000)))
      << "ctl-b did not take over:\n"
      << b().Log();
  const long long lead_ms = MsSince(killed);
  // Every agent follows the new leader: its epoch, from its beacons.
  const bool followed = WaitFor(
      [&] {
        for (const auto& [epoch, version] : EpochsAndVersions()) {
          if (epoch <= epoch_a) return false;
        }
        return true;
      },
      kConverge);
  const long long follow_ms = MsSince(killed);
  std::cout << "failover: leader SIGKILLed -> standby serving in " << lead_ms
            << " ms (lease TTL 2 s); every agent on the new epoch in " << follow_ms << " ms\n";
  EXPECT_LT(lead_ms, 5000) << "the failover budget is 5 s";
  ASSERT_TRUE(followed) << "not every agent follows the new leader";

  // A push through the new leader (lbctl finds it among both controllers) reaches every agent;
  // no version goes back.
  ASSERT_TRUE(WaitKnown(b()));
  const std::string second = Config("second");
  pushed = PushToTheLeader(second);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.Describe();
  ASSERT_TRUE(EveryAgentRuns(ShaOf(second)));
  const auto after = EpochsAndVersions();
  for (int i = 0; i < agents_count_; ++i) {
    EXPECT_GT(after[i].first, epoch_a) << "agent " << i;
    EXPECT_GT(after[i].second, before[i].second)
        << "agent " << i << ": the new leader's versions continue from the old one's";
  }
}

TEST_F(ControllerFailoverTest, EtcdLeaderSigkilledMidRolloutIsReportedAndARerunConverges) {
  const std::string first = Config("first");
  const CommandResult pushed_first = Push(a(), first);
  ASSERT_EQ(pushed_first.exit_code, 0) << pushed_first.Describe();
  const std::string first_sha = ShaOf(first);
  ASSERT_TRUE(EveryAgentRuns(first_sha));
  const auto before = EpochsAndVersions();

  // A staged rollout (waves of 2) through the leader; the leader dies after the first wave.
  const std::string second = Config("second");
  const std::string second_sha = ShaOf(second);
  const std::string file = dir_.File("staged.cfg");
  WriteFile(file, second);
  CommandResult staged;
  std::thread rollout([&] {
    staged =
        RunCommand({LBCTL_BINARY, "fleet", "push", file, "--group", "web", "--batch", "2", "--json",
                    "--timeout", "15", "--control", a().control() + "," + b().control()},
                   milliseconds(90000));
  });
  const bool started = WaitFor(
      [&] {
        for (int i = 0; i < agents_count_; ++i) {
          if (LiveSha(i) == second_sha) return true;
        }
        return false;
      },
      kConverge);
  a().Kill();
  rollout.join();
  ASSERT_TRUE(started) << "the rollout reached no agent";
  // Reported, not silently half-done: lbctl says the controller went away (exit 3, at its
  // --timeout: it kept asking the controller it started with), with what each agent answered.
  EXPECT_EQ(staged.exit_code, 3) << staged.Describe();
  const auto mid = EpochsAndVersions();

  // Run again (lbctl finds the new leader): every agent converges; no version goes back.
  ASSERT_TRUE(WaitFor([this] { return b().Serving(); }, milliseconds(20000))) << b().Log();
  ASSERT_TRUE(WaitKnown(b()));
  CommandResult rerun = PushToTheLeader(second);
  ASSERT_EQ(rerun.exit_code, 0) << rerun.Describe();
  ASSERT_TRUE(EveryAgentRuns(second_sha));
  const auto after = EpochsAndVersions();
  for (int i = 0; i < agents_count_; ++i) {
    EXPECT_LE(before[i].second, mid[i].second) << "agent " << i;
    EXPECT_LT(mid[i].second, after[i].second) << "agent " << i;
  }
}

// etcd takes no request above 1.5 MiB: the fleet's state, here two configs of 0.9 MiB for groups
// no agent is in yet plus the agents' own, goes in blobs (ARCHITECTURE.md), and the standby
// that takes over reads it whole. (The agents' config stays small: what is tested is the store,
// not how long an agent takes to apply a large config.)
TEST_F(ControllerHaTest, EtcdStateAboveEtcdsRequestLimitIsKeptAndTheNextLeaderServesFromIt) {
  auto padded = [&](const std::string& tag) {
    std::string padding;
    for (int line = 0; padding.size() < 900 * 1024; ++line) {
      padding += "# " + tag + " padding line " + std::to_string(line) + " " +
                 std::string(80, static_cast<char>('a' + line % 26)) + "\n";
    }
    return padding + Config(tag);
  };
  const std::string web = Config("web");
  const CommandResult pushed_web = Push(a(), web);
  ASSERT_EQ(pushed_web.exit_code, 0) << pushed_web.Describe();
  ASSERT_TRUE(EveryAgentRuns(ShaOf(web)));
  // Configs for agents yet to come: 1.8 MiB of them in the state now.
  for (const char* group : {"edge", "batch"}) {
    const std::string file = dir_.File(std::string(group) + ".cfg");
    WriteFile(file, padded(group));
    const CommandResult pushed =
        a().Lbctl({"push", file, "--group", group, "--allow-no-match", "--json", "--timeout", "30"},
                  milliseconds(60000));
    ASSERT_EQ(pushed.exit_code, 0) << pushed.Describe();
  }

  a().Kill();
  ASSERT_TRUE(WaitFor([this] { return b().Serving(); }, milliseconds(20000))) << b().Log();
  // ctl-b read the three targets back: it knows them, with their versions.
  const json agents = b().Agents();
  ASSERT_TRUE(agents.is_object()) << b().Log();
  std::set<std::string> targets;
  for (const auto& target : agents.value("targets", json::array())) {
    if (target.value("desired_version", uint64_t{0}) > 0) targets.insert(target.value("key", ""));
  }
  EXPECT_EQ(targets, (std::set<std::string>{"group/batch", "group/edge", "group/web"}))
      << agents.dump(1);
  ASSERT_TRUE(WaitKnown(b()));
  const std::string next = Config("next");
  const CommandResult pushed_next = Push(b(), next);
  ASSERT_EQ(pushed_next.exit_code, 0) << pushed_next.Describe();
  ASSERT_TRUE(EveryAgentRuns(ShaOf(next)));
}

TEST_F(ControllerHaTest, SplitBrainPausedLeaderWakesDeposedPublishesNothingAndExits) {
  const std::string first = Config("first");
  const CommandResult pushed_first = Push(a(), first);
  ASSERT_EQ(pushed_first.exit_code, 0) << pushed_first.Describe();
  ASSERT_TRUE(EveryAgentRuns(ShaOf(first)));
  const uint64_t epoch_a = EpochsAndVersions()[0].first;

  // ctl-a stops in its tracks (a VM pause, a long GC): it cannot keep its lease alive, and it
  // does not know. ctl-b takes over and pushes.
  ASSERT_EQ(kill(a().pid(), SIGSTOP), 0);
  ASSERT_TRUE(WaitFor([this] { return b().Serving(); }, milliseconds(20000))) << b().Log();
  ASSERT_TRUE(WaitKnown(b()));
  const std::string second = Config("second");
  CommandResult pushed = Push(b(), second);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.Describe();
  const std::string second_sha = ShaOf(second);
  ASSERT_TRUE(EveryAgentRuns(second_sha));
  const auto led_by_b = EpochsAndVersions();

  // ctl-a wakes up: the first thing it finds is that its lease may have expired; it stops
  // before it publishes anything, and exits 75 (its service manager starts it as a standby).
  ASSERT_EQ(kill(a().pid(), SIGCONT), 0);
  ASSERT_TRUE(WaitFor([this] { return a().ExitStatus() != -1; }, milliseconds(10000)))
      << "the deposed leader kept running:\n"
      << a().Log();
  const int status = a().ExitStatus();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 75) << "status " << status;
  EXPECT_NE(a().Log().find("no longer leads"), std::string::npos) << a().Log();
  // Nothing changed on the agents: still ctl-b's config, epoch and versions.
  const auto later = EpochsAndVersions();
  for (int i = 0; i < agents_count_; ++i) {
    EXPECT_EQ(LiveSha(i), second_sha) << "agent " << i;
    EXPECT_EQ(later[i], led_by_b[i]) << "agent " << i;
    EXPECT_GT(later[i].first, epoch_a);
  }
}

// Split brain over a real partition: ctl-a runs in its own network namespace and reaches etcd
// only over its veth pair (etcd also listens on the pair's host-side address), while its PUB,
// ROUTER and control socket are ipc:// and so still reach every agent and lbctl. The cut is a
// silent drop (netns.h): ctl-a's etcd calls get no answer, no reset, and hang until their
// deadlines, as behind a dead switch. Needs root: without it the test fails, never skips.
class ControllerSplitBrainTest : public ControllerHaTest {
 protected:
  void SetUp() override {
    const NetTools tools = FindNetTools("ControllerSplitBrainTest");
    ASSERT_FALSE(HasFailure());
    RemoveLeftovers(tools);
    a_netns_ = std::make_unique<NetNs>(tools, 's', 0);
    ASSERT_TRUE(a_netns_->ok()) << "could not set up namespace " << a_netns_->name();
    etcd_.AlsoListenOn(a_netns_->host_address());
    ControllerHaTest::SetUp();
  }
};

// The first line of a controller's log that contains `text`, and its time (ms since the Unix
// epoch: the clock of the beacons' ts_ms); {0, ""} when no line does.
struct LogLine {
  int64_t at_ms = 0;
  std::string text;
};
LogLine FirstLogLine(const std::string& log, const std::string& text) {
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(text) == std::string::npos) continue;
    std::tm tm{};
    int ms = 0;
    if (std::sscanf(line.c_str(), "ts=%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
      continue;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return {static_cast<int64_t>(timegm(&tm)) * 1000 + ms, line};
  }
  return {};
}

int64_t UnixMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST_F(ControllerSplitBrainTest,
       EtcdPartitionedLeaderStopsWithinItsLeaseAndAgentsFollowTheNewEpoch) {
  // ctl-a is the controller itself (`ip netns exec` exec'd it), in a network namespace of its own.
  const std::string proc = "/proc/" + std::to_string(a().pid());
  EXPECT_EQ(std::filesystem::read_symlink(proc + "/exe"),
            std::filesystem::canonical(ControllerBinary()));
  EXPECT_NE(std::filesystem::read_symlink(proc + "/ns/net"),
            std::filesystem::read_symlink("/proc/self/ns/net"));
  const std::string first = Config("first");
  const CommandResult pushed_first = Push(a(), first);
  ASSERT_EQ(pushed_first.exit_code, 0) << pushed_first.Describe();
  ASSERT_TRUE(EveryAgentRuns(ShaOf(first)));
  const uint64_t epoch_a = EpochsAndVersions()[0].first;
  // What ctl-a publishes from now on, heard as an agent hears it (a beacon every 0.2 s).
  EventSubscriber heard_from_a(a().pub());
  ASSERT_TRUE(heard_from_a.WaitReadable(milliseconds(5000))) << "ctl-a publishes nothing";

  const auto cut = Clock::now();
  const int64_t cut_ms = UnixMs();
  ASSERT_TRUE(a_netns_->Cut());
  // ctl-a cannot renew its lease: it stops (and exits 75) no later than the lease could expire,
  // so by the time ctl-b can lead, ctl-a publishes nothing any more.
  ASSERT_TRUE(WaitFor([this] { return a().ExitStatus() != -1; }, milliseconds(15000))) << a().Log();
  const long long exited_ms = MsSince(cut);
  const int status = a().ExitStatus();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 75) << "status " << status;
  // Written when its serving loop returns, which it does before it publishes anything more.
  const LogLine stopped = FirstLogLine(a().Log(), "no longer leads");
  ASSERT_NE(stopped.at_ms, 0) << a().Log();
  const long long dropped = a_netns_->Dropped();
  EXPECT_GT(dropped, 0) << "the cut dropped nothing: it did not cut ctl-a's etcd traffic";
  ASSERT_TRUE(WaitFor([this] { return b().Serving(); }, milliseconds(20000))) << b().Log();
  const LogLine b_won = FirstLogLine(b().Log(), "controller ctl-b leads with epoch ");
  const uint64_t epoch_b =
      std::strtoull(b_won.text.c_str() + b_won.text.rfind(' ') + 1, nullptr, 10);
  ASSERT_GT(epoch_b, epoch_a) << b().Log();
  std::cout << "split brain: leader partitioned from etcd (silent drop, " << dropped
            << " packets dropped) stopped after " << stopped.at_ms - cut_ms << " ms, exited after "
            << exited_ms << " ms; the standby won after " << b_won.at_ms - cut_ms
            << " ms (lease TTL 2 s)\n";
  EXPECT_LE(stopped.at_ms - cut_ms, 3000)
      << "the cut-off leader must stop within its lease's TTL (2 s)";
  // And it is gone soon after: its keepalive call in flight at the cut, unanswered, ends with
  // the lease (no call outlives it), not after etcd_timeout on each of the 3 members.
  EXPECT_LE(exited_ms, 3000) << "the cut-off leader must exit within its lease's TTL (2 s)";

  // Nothing from ctl-a once ctl-b led: everything it published, with its epoch, was sent before
  // ctl-b won the election.
  int64_t a_last_ms = 0;
  int heard = 0;
  while (auto event = heard_from_a.Next(milliseconds(0))) {
    ++heard;
    EXPECT_EQ(event->body.value("epoch", uint64_t{0}), epoch_a) << event->body.dump();
    a_last_ms = std::max(a_last_ms, event->body.value("ts_ms", int64_t{0}));
  }
  ASSERT_GT(heard, 0);
  std::cout << "split brain: ctl-a's last publication " << a_last_ms - cut_ms
            << " ms after the cut, " << b_won.at_ms - a_last_ms << " ms before ctl-b led\n";
  EXPECT_LT(a_last_ms, b_won.at_ms) << "ctl-a published after ctl-b led: split brain";

  // Every agent follows the new leader's epoch, and its push reaches every agent.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& [epoch, version] : EpochsAndVersions()) {
          if (epoch != epoch_b) return false;
        }
        return true;
      },
      kConverge))
      << "not every agent follows the new leader's epoch " << epoch_b;
  ASSERT_TRUE(WaitKnown(b()));
  const auto before = EpochsAndVersions();
  const std::string second = Config("second");
  const CommandResult pushed_second = Push(b(), second);
  ASSERT_EQ(pushed_second.exit_code, 0) << pushed_second.Describe();
  ASSERT_TRUE(EveryAgentRuns(ShaOf(second)));
  const auto after = EpochsAndVersions();
  for (int i = 0; i < agents_count_; ++i) {
    EXPECT_EQ(after[i].first, epoch_b) << "agent " << i;
    EXPECT_EQ(after[i].second, after[0].second) << "agent " << i << ": not ctl-b's push";
    EXPECT_GT(after[i].second, before[i].second) << "agent " << i;
  }
}

// Quorum lost with a lease long enough (5 s) that the leader is still within it when the push
// arrives: the store's refusal is what the operator sees.
class ControllerQuorumTest : public ControllerHaTest {
 protected:
  ControllerQuorumTest() { lease_ttl_s_ = 5; }
};

TEST_F(ControllerQuorumTest, EtcdQuorumLostPushRefusedClearlyAgentsKeepRunningThenRecover) {
  const std::string first = Config("first");
  const CommandResult pushed_first = Push(a(), first);
  ASSERT_EQ(pushed_first.exit_code, 0) << pushed_first.Describe();
  const std::string first_sha = ShaOf(first);
  ASSERT_TRUE(EveryAgentRuns(first_sha));
  const auto before = EpochsAndVersions();

  // One member down (a follower: raft's leader going means an election, during which etcd
  // takes no write for a second or two; EtcdTest.OneMemberDownIsSkipped... measures it): nothing
  // visible.
  const int raft_leader = etcd_.RaftLeader();
  ASSERT_NE(raft_leader, -1) << "no member says it leads";
  const int follower = (raft_leader + 1) % etcd_.size();
  etcd_.KillMember(follower);
  const std::string second = Config("second");
  CommandResult pushed = Push(a(), second);
  ASSERT_EQ(pushed.exit_code, 0) << "one etcd member of three down: " << pushed.Describe();
  const std::string second_sha = ShaOf(second);
  ASSERT_TRUE(EveryAgentRuns(second_sha));

  // Two down: no quorum. The push is refused with the store's reason; nothing reaches agents.
  const int other = (raft_leader + 2) % etcd_.size();
  etcd_.KillMember(other);
  pushed = Push(a(), Config("third"));
  EXPECT_EQ(pushed.exit_code, 1) << pushed.Describe();
  EXPECT_NE((pushed.out + pushed.err).find("etcd"), std::string::npos) << pushed.Describe();
  // The leader cannot renew its lease: it stops, and exits 75.
  ASSERT_TRUE(WaitFor([this] { return a().ExitStatus() != -1; }, milliseconds(20000))) << a().Log();
  const int status = a().ExitStatus();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 75) << "status " << status;
  EXPECT_FALSE(b().Serving()) << "no leader can be elected without quorum";
  // Agents keep running what they had, and answer.
  for (int i = 0; i < agents_count_; ++i) {
    EXPECT_EQ(LiveSha(i), second_sha) << "agent " << i;
    EXPECT_GT(EpochsAndVersions()[i].second, before[i].second);
  }

  // Quorum back: the standby leads and pushes.
  etcd_.StartMember(follower);
  etcd_.StartMember(other);
  ASSERT_TRUE(WaitFor([this] { return b().Serving(); }, milliseconds(30000))) << b().Log();
  ASSERT_TRUE(WaitKnown(b()));
  const std::string fourth = Config("fourth");
  pushed = Push(b(), fourth);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.Describe();
  ASSERT_TRUE(EveryAgentRuns(ShaOf(fourth)));
}

}  // namespace
}  // namespace lb::testing
