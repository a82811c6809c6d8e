// The fleet (proto/PROTOCOL.md, "Fleet") end to end: one real controller (lb-controller)
// and many real lb-agents, each managing its own real haproxy, all on ipc:// endpoints in temp
// dirs. What a test asserts is what an operator relies on: after `lbctl fleet push`, every
// targeted agent's live config is the pushed one (get_config sha256), the others' are untouched,
// and the exit code and --json report say what happened.
//
// DESIGN. Every pushed config is the same text for every agent (that is what a fleet push is),
// so its frontend binds one shared port: haproxy sets SO_REUSEPORT, so the fleet's haproxies on
// this one host share it the way separate hosts would each have their own. The configs each
// agent starts with bind their own FreePort(), so before the first push every live config
// differs. Servers have no health checks: 50 haproxies checking every 100 ms would be noise on
// a 2-core machine shared with other tests.
//
// The 50-agent case is one test (a sequence of pushes) because its fixture takes seconds to
// start and ctest runs every test in its own process; the other cases use 6 agents.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <future>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kControllerId[] = "ctl-test";
constexpr milliseconds kConverge(30000);

std::string LbctlBinary() { return LBCTL_BINARY; }

long long MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

// /proc/meminfo's MemAvailable (kB): what the fleet's processes cost, roughly.
long long MemAvailableKb() {
  std::istringstream in(ReadFile("/proc/meminfo"));
  for (std::string key; in >> key;) {
    long long kb = 0;
    in >> kb;
    if (key == "MemAvailable:") return kb;
    in.ignore(1000, '\n');
  }
  return 0;
}

std::string AgentId(int i) {
  char id[16];
  std::snprintf(id, sizeof id, "a%02d", i);
  return id;
}

std::string Group(int i) { return i % 2 == 0 ? "even" : "odd"; }

// Runs `work(i)` for every i in `which` on up to `threads` threads.
void ForEachParallel(const std::vector<int>& which, int threads,
                     const std::function<void(int)>& work) {
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < std::min<int>(threads, static_cast<int>(which.size())); ++t) {
    pool.emplace_back([&] {
      for (std::size_t k = next++; k < which.size(); k = next++) work(which[k]);
    });
  }
  for (auto& t : pool) t.join();
}

std::vector<int> Range(int begin, int end) {
  std::vector<int> r;
  for (int i = begin; i < end; ++i) r.push_back(i);
  return r;
}

// The per-agent entries of `lbctl fleet push --json` or `lbctl fleet agents --json`:
// {agent id: its object}. Accepts a list of objects naming their agent ("agent" or "id") or a
// map keyed by agent id, under "agents" or "results" (or the report itself when it is a list).
std::map<std::string, json> PerAgent(const json& report) {
  std::map<std::string, json> out;
  const json* list = &report;
  if (report.is_object()) {
    list = nullptr;
    for (const char* key : {"agents", "results"}) {
      if (report.contains(key)) {
        list = &report[key];
        break;
      }
    }
  }
  if (list == nullptr) return out;
  if (list->is_object()) {
    for (const auto& [k, v] : list->items()) out[k] = v;
  } else if (list->is_array()) {
    for (const auto& e : *list) {
      if (!e.is_object()) continue;
      std::string id = e.contains("agent") && e["agent"].is_string() ? e["agent"].get<std::string>()
                       : e.contains("id") && e["id"].is_string()     ? e["id"].get<std::string>()
                                                                     : "";
      out[id] = e;
    }
  }
  return out;
}

std::string Outcome(const json& entry) {
  return entry.is_object() && entry.contains("outcome") && entry["outcome"].is_string()
             ? entry["outcome"].get<std::string>()
             : "";
}

std::string ErrorCodeOf(const json& entry) {
  if (!entry.is_object() || !entry.contains("error") || !entry["error"].is_object()) return "";
  return entry["error"].value("code", "");
}

// One controller and `size` agents a00.. (groups "even"/"odd" by index). Agents are created
// at once and started by StartAgents(), so that a test can start one late. `hello_interval`:
// the agents' [fleet] hello_interval (their liveness signal), "" for the default.
class Fleet {
 public:
  explicit Fleet(int size, const std::string& hello_interval = "") : backend_("web") {
    FleetController::Options options;
    options.lbctl = LbctlBinary();
    options.dir = dir_.path();
    options.id = kControllerId;
    options.beacon_interval_s = 0.2;
    controller_ = std::make_unique<FleetController>(options);
    shared_port_ = FreePort();
    for (int i = 0; i < size; ++i) {
      Keys fleet_keys = {{"controller_pub", controller_->pub()},
                         {"controller_router", controller_->router()},
                         {"groups", Group(i)},
                         {"state_file", "fleet-state.json"},
                         {"beacon_timeout", "1"}};
      if (!hello_interval.empty()) fleet_keys["hello_interval"] = hello_interval;
      auto agent = std::make_unique<AgentFixture>(
          Keys{},
          Keys{{"agent_id", AgentId(i)}, {"poll_interval", "1"}, {"heartbeat_interval", "5"}},
          fleet_keys);
      WriteFile(agent->config_path(), HaproxyConfig(FreePort(), {{"web", backend_.port(), ""}}));
      agents_.push_back(std::move(agent));
    }
  }

  ~Fleet() {
    // Stopping an agent stops its haproxy (a fraction of a second each): in parallel.
    ForEachParallel(Range(0, size()), 8, [this](int i) { agents_[i].reset(); });
  }

  int size() const { return static_cast<int>(agents_.size()); }
  AgentFixture& agent(int i) { return *agents_[i]; }
  FleetController& controller() { return *controller_; }
  TempDir& dir() { return dir_; }

  // Starts agents `which` on 8 threads; returns how long that took.
  milliseconds StartAgents(const std::vector<int>& which) {
    const auto start = Clock::now();
    ForEachParallel(which, 8, [this](int i) { agents_[i]->StartAgent(); });
    return milliseconds(MsSince(start));
  }

  // A config whose text is the same for every agent; `tag` makes it differ from others.
  std::string Config(const std::string& tag) const {
    return HaproxyConfig(shared_port_, {{"web-" + tag, backend_.port(), ""}});
  }
  // Same, but haproxy -c refuses it.
  std::string InvalidConfig(const std::string& tag) const {
    return Config(tag) + "    this-is-not-a-keyword " + tag + "\n";
  }

  std::string LiveSha(int i) {
    auto r = AgentCall(agents_[i]->endpoint(), "get_config", json::object(), milliseconds(5000));
    if (!r.ok() || !r->status.ok()) return "";
    return r->result.value("sha256", "");
  }
  std::string LiveConfig(int i) { return ReadFile(agents_[i]->config_path()); }

  // info.fleet (null when the agent does not report it).
  json FleetInfo(int i) {
    auto r = AgentCall(agents_[i]->endpoint(), "info", json::object(), milliseconds(5000));
    if (!r.ok() || !r->status.ok() || !r->result.contains("fleet")) return nullptr;
    return r->result["fleet"];
  }

  // The sha256 haproxy -c would give `config`, from one started agent's `validate`.
  std::string ShaOf(const std::string& config, int via = 0) {
    auto result = agents_[via]->Ok("validate", {{"config", config}});
    return result.is_object() ? result.value("sha256", "") : "";
  }

  // Waits until every agent in `which` has live sha `sha`. On timeout, fails the test listing
  // the agents that did not get there.
  bool WaitSha(const std::vector<int>& which, const std::string& sha, milliseconds timeout) {
    std::set<int> pending(which.begin(), which.end());
    const bool done = WaitFor(
        [&] {
          for (auto it = pending.begin(); it != pending.end();) {
            it = LiveSha(*it) == sha ? pending.erase(it) : std::next(it);
          }
          return pending.empty();
        },
        timeout);
    if (!done) {
      std::ostringstream out;
      for (int i : pending) out << " " << AgentId(i) << "=" << LiveSha(i).substr(0, 12);
      ADD_FAILURE() << pending.size() << " agent(s) did not reach " << sha.substr(0, 12)
                    << " within " << timeout.count() << " ms:" << out.str();
    }
    return done;
  }

  // Waits until the controller lists `count` agents (each said hello).
  bool WaitKnown(int count, milliseconds timeout = milliseconds(30000)) {
    int seen = -1;
    const bool done = WaitFor(
        [&] {
          auto r = controller_->Lbctl({"agents", "--json"}, milliseconds(5000));
          if (r.exit_code != 0) return false;
          json parsed = json::parse(r.out, nullptr, false);
          if (parsed.is_discarded()) return false;
          seen = static_cast<int>(PerAgent(parsed).size());
          return seen >= count;
        },
        timeout);
    EXPECT_TRUE(done) << "the controller lists " << seen << " agents, not " << count;
    return done;
  }

  struct Pushed {
    CommandResult run;
    json report;  // the parsed --json output (discarded when not JSON)
    std::map<std::string, json> agents;
  };
  // `lbctl fleet push <file> <target...> --json --timeout 60 <extra...>`.
  Pushed Push(const std::string& config, std::vector<std::string> target,
              std::vector<std::string> extra = {}) {
    const std::string file = dir_.File("push-" + std::to_string(pushes_++) + ".cfg");
    WriteFile(file, config);
    std::vector<std::string> args = {"push", file};
    args.insert(args.end(), target.begin(), target.end());
    args.push_back("--json");
    args.push_back("--timeout");
    args.push_back("60");
    args.insert(args.end(), extra.begin(), extra.end());
    Pushed p;
    p.run = controller_->Lbctl(args, milliseconds(120000));
    p.report = json::parse(p.run.out, nullptr, false);
    if (!p.report.is_discarded()) p.agents = PerAgent(p.report);
    return p;
  }

 private:
  TempDir dir_;
  HttpBackend backend_;
  std::unique_ptr<FleetController> controller_;
  std::vector<std::unique_ptr<AgentFixture>> agents_;
  int shared_port_ = 0;
  int pushes_ = 0;
};

std::vector<int> Filter(const std::vector<int>& which, const std::function<bool(int)>& keep) {
  std::vector<int> out;
  for (int i : which) {
    if (keep(i)) out.push_back(i);
  }
  return out;
}

class FleetTest : public ::testing::Test {
 protected:
  static constexpr int kSmall = 6;  // agents in the tests that do not need 50

  // A started fleet of `size` agents that all said hello to the controller.
  void StartFleet(int size, const std::string& hello_interval = "") {
    fleet_ = std::make_unique<Fleet>(size, hello_interval);
    fleet_->controller().Start();
    ASSERT_FALSE(HasFailure());
    fleet_->StartAgents(Range(0, size));
    ASSERT_FALSE(HasFailure()) << "an agent did not start";
    ASSERT_TRUE(fleet_->WaitKnown(size));
  }

  std::unique_ptr<Fleet> fleet_;
};

// ---------------------------------------------------------------------------------------------
// 50 agents: push to all, to one group, an agent started late, an agent SIGKILLed during a
// push, and an invalid config. One sequence, timed phase by phase.
TEST_F(FleetTest, FiftyAgentsConvergeOnEveryPushAndKeepTheirConfigOnAnInvalidOne) {
  constexpr int kAgents = 50;
  constexpr int kLate = kAgents - 1;  // a49 starts after the first push
  constexpr int kKilled = 7;          // a07 is SIGKILLed during the fourth push
  const auto fixture_start = Clock::now();
  const long long available_before = MemAvailableKb();
  Fleet fleet(kAgents);
  fleet.controller().Start();
  ASSERT_FALSE(::testing::Test::HasFailure());
  const auto early = Range(0, kLate);
  const milliseconds started = fleet.StartAgents(early);
  ASSERT_FALSE(::testing::Test::HasFailure()) << "an agent did not start";
  ASSERT_TRUE(fleet.WaitKnown(kLate));
  std::cout << "[fleet] " << kLate << " agents + haproxy started in " << started.count()
            << " ms (8 threads); fixture ready (all said hello) after " << MsSince(fixture_start)
            << " ms; MemAvailable dropped by " << (available_before - MemAvailableKb()) / 1024
            << " MiB" << std::endl;

  // 1. --all: 49 running agents converge; the 50th starts afterwards and converges by itself.
  const std::string config1 = fleet.Config("v1");
  const std::string sha1 = fleet.ShaOf(config1);
  ASSERT_FALSE(sha1.empty());
  {
    SCOPED_TRACE("push --all to 49 agents");
    auto t = Clock::now();
    auto p = fleet.Push(config1, {"--all", "--expect", std::to_string(kLate)});
    std::cout << "[fleet] push --all (49 agents, new config) exited " << p.run.exit_code
              << " after " << p.run.elapsed.count() << " ms" << std::endl;
    EXPECT_EQ(p.run.exit_code, 0) << p.run.Describe();
    EXPECT_FALSE(p.report.is_discarded()) << "--json output is not JSON:\n" << p.run.Describe();
    EXPECT_EQ(p.agents.size(), static_cast<std::size_t>(kLate)) << p.run.out;
    for (const auto& [id, entry] : p.agents) {
      EXPECT_EQ(Outcome(entry), "applied") << id << ": " << entry.dump();
    }
    ASSERT_TRUE(fleet.WaitSha(early, sha1, kConverge));
    std::cout << "[fleet] 49 agents on v1 " << MsSince(t) << " ms after the push began"
              << std::endl;
  }
  {
    SCOPED_TRACE("late agent");
    auto t = Clock::now();
    fleet.StartAgents({kLate});
    ASSERT_FALSE(::testing::Test::HasFailure());
    ASSERT_TRUE(fleet.WaitSha({kLate}, sha1, kConverge));
    std::cout << "[fleet] late agent a49 on v1 " << MsSince(t) << " ms after it was started"
              << std::endl;
    json info = fleet.FleetInfo(kLate);
    EXPECT_TRUE(info.is_object()) << "info has no \"fleet\" section";
    if (info.is_object()) {
      EXPECT_EQ(info.value("applied_version", 0), 1) << info.dump();
    }
  }
  const auto all = Range(0, kAgents);
  const auto even = Filter(all, [](int i) { return i % 2 == 0; });
  const auto odd = Filter(all, [](int i) { return i % 2 == 1; });

  // 2. --group even: only even agents change; odd agents do not even reload haproxy.
  const std::string config2 = fleet.Config("v2-even");
  const std::string sha2 = fleet.ShaOf(config2);
  {
    SCOPED_TRACE("push --group even");
    std::map<int, int> reloads;
    for (int i : all) reloads[i] = fleet.agent(i).HaproxyReloads();
    auto p = fleet.Push(config2, {"--group", "even", "--expect", std::to_string(even.size())});
    std::cout << "[fleet] push --group even (25 agents) exited " << p.run.exit_code << " after "
              << p.run.elapsed.count() << " ms" << std::endl;
    EXPECT_EQ(p.run.exit_code, 0) << p.run.Describe();
    EXPECT_EQ(p.agents.size(), even.size()) << p.run.out;
    for (const auto& [id, entry] : p.agents) {
      EXPECT_EQ(Outcome(entry), "applied") << id << ": " << entry.dump();
      EXPECT_EQ(std::stoi(id.substr(1)) % 2, 0) << id << " is not in group even";
    }
    ASSERT_TRUE(fleet.WaitSha(even, sha2, kConverge));
    // A late message would have arrived by now: the beacon interval is 0.2 s.
    std::this_thread::sleep_for(milliseconds(1000));
    for (int i : odd) {
      EXPECT_EQ(fleet.LiveSha(i), sha1) << AgentId(i) << " (odd) changed";
      EXPECT_EQ(fleet.agent(i).HaproxyReloads(), reloads[i]) << AgentId(i) << " reloaded";
    }
    for (int i : even) {  // "applied" means haproxy runs it, not only that the file changed
      // (a change of server lines only, applied through the runtime API: no reload)
      json status = fleet.agent(i).Ok("status");
      ASSERT_TRUE(status.is_object()) << AgentId(i);
      const json& servers = status["backends"][0]["servers"];
      ASSERT_EQ(servers.size(), 1u) << AgentId(i) << ": " << servers.dump();
      EXPECT_EQ(servers[0]["name"], "web-v2-even") << AgentId(i);
      EXPECT_EQ(fleet.agent(i).Ok("info")["agent"]["applies_runtime"], 1) << AgentId(i);
    }
  }

  // 3. --all while a07 is SIGKILLed and restarted: it adopts its haproxy and converges, and the
  // push still sees every agent's ack.
  const std::string config3 = fleet.Config("v3");
  const std::string sha3 = fleet.ShaOf(config3);
  {
    SCOPED_TRACE("push --all with an agent SIGKILLed during it");
    const std::string pid_file = fleet.agent(kKilled).dir().File("haproxy.pid");
    const std::string master_before = ReadFile(pid_file);
    auto push = std::async(std::launch::async, [&] {
      return fleet.Push(config3, {"--all", "--expect", std::to_string(kAgents)});
    });
    // lbctl starts in a few ms, and 50 validations take seconds on 2 cores: 150 ms in, the
    // push is under way and most agents are still validating.
    std::this_thread::sleep_for(milliseconds(150));
    fleet.agent(kKilled).KillAgent();
    const std::string live_at_kill = fleet.LiveConfig(kKilled);
    fleet.agent(kKilled).StartAgent();
    ASSERT_FALSE(::testing::Test::HasFailure());
    auto p = push.get();
    std::cout << "[fleet] push --all with a07 killed at 150 ms exited " << p.run.exit_code
              << " after " << p.run.elapsed.count() << " ms (a07's config when killed: "
              << (live_at_kill == config3 ? "v3" : "not yet v3") << ")" << std::endl;
    EXPECT_EQ(p.run.exit_code, 0) << p.run.Describe();
    EXPECT_EQ(p.agents.size(), static_cast<std::size_t>(kAgents)) << p.run.out;
    for (const auto& [id, entry] : p.agents) {
      const std::string outcome = Outcome(entry);
      EXPECT_TRUE(outcome == "applied" || outcome == "unchanged") << id << ": " << entry.dump();
    }
    ASSERT_TRUE(fleet.WaitSha(all, sha3, kConverge));
    EXPECT_EQ(ReadFile(pid_file), master_before)
        << "the restarted agent did not adopt its running haproxy";
  }

  // 4. An invalid config: every agent refuses it (push exits 4, each listed with
  // invalid_config) and every live config stays byte for byte what it was.
  {
    SCOPED_TRACE("push --all of an invalid config");
    std::vector<std::string> before;
    for (int i : all) before.push_back(fleet.LiveConfig(i));
    auto p = fleet.Push(fleet.InvalidConfig("v4"), {"--all", "--expect", std::to_string(kAgents)});
    std::cout << "[fleet] push --all of an invalid config exited " << p.run.exit_code << " after "
              << p.run.elapsed.count() << " ms" << std::endl;
    EXPECT_EQ(p.run.exit_code, 4) << p.run.Describe();
    EXPECT_EQ(p.agents.size(), static_cast<std::size_t>(kAgents)) << p.run.out;
    for (int i : all) {
      auto it = p.agents.find(AgentId(i));
      if (it == p.agents.end()) {
        ADD_FAILURE() << AgentId(i) << " missing from the report";
        continue;
      }
      EXPECT_EQ(Outcome(it->second), "refused") << it->second.dump();
      EXPECT_EQ(ErrorCodeOf(it->second), "invalid_config") << it->second.dump();
    }
    for (int i : all) {
      EXPECT_EQ(fleet.LiveConfig(i), before[i]) << AgentId(i) << "'s live config changed";
      EXPECT_EQ(fleet.LiveSha(i), sha3) << AgentId(i);
    }
  }
  // 5. The controller's view agrees: 50 agents, each on v3 with its group.
  {
    json agents = fleet.controller().Agents();
    auto listed = PerAgent(agents);
    EXPECT_EQ(listed.size(), static_cast<std::size_t>(kAgents)) << agents.dump();
    for (int i : all) {
      auto it = listed.find(AgentId(i));
      if (it == listed.end()) {
        ADD_FAILURE() << AgentId(i) << " missing from lbctl fleet agents --json";
        continue;
      }
      EXPECT_EQ(it->second.value("sha256", ""), sha3) << it->second.dump();
      EXPECT_EQ(it->second.value("groups", json::array()), json::array({Group(i)}))
          << it->second.dump();
    }
  }
  std::cout << "[fleet] whole 50-agent sequence: " << MsSince(fixture_start) << " ms" << std::endl;
}

// ---------------------------------------------------------------------------------------------
// Small fleets for the cases that do not need 50 agents.
// --agent-id ID reaches that agent only; the others do not even reload.
TEST_F(FleetTest, PushToOneAgentTouchesOnlyThatAgent) {
  StartFleet(kSmall);
  ASSERT_FALSE(HasFatalFailure());
  Fleet& fleet = *fleet_;
  const std::string config1 = fleet.Config("v1");
  auto p1 = fleet.Push(config1, {"--all", "--expect", std::to_string(kSmall)});
  ASSERT_EQ(p1.run.exit_code, 0) << p1.run.Describe();
  const std::string sha1 = fleet.ShaOf(config1);
  ASSERT_TRUE(fleet.WaitSha(Range(0, kSmall), sha1, kConverge));
  std::vector<int> reloads;
  for (int i = 0; i < kSmall; ++i) reloads.push_back(fleet.agent(i).HaproxyReloads());

  const std::string config2 = fleet.Config("only-a04");
  auto p2 = fleet.Push(config2, {"--agent-id", AgentId(4)});
  EXPECT_EQ(p2.run.exit_code, 0) << p2.run.Describe();
  ASSERT_EQ(p2.agents.size(), 1u) << p2.run.out;
  EXPECT_EQ(p2.agents.begin()->first, AgentId(4));
  EXPECT_EQ(Outcome(p2.agents.begin()->second), "applied") << p2.run.out;
  ASSERT_TRUE(fleet.WaitSha({4}, fleet.ShaOf(config2), kConverge));
  std::this_thread::sleep_for(milliseconds(1000));  // 5 beacons: anything late has come
  for (int i = 0; i < kSmall; ++i) {
    if (i == 4) continue;
    EXPECT_EQ(fleet.LiveSha(i), sha1) << AgentId(i);
    EXPECT_EQ(fleet.agent(i).HaproxyReloads(), reloads[i]) << AgentId(i) << " reloaded";
  }
}

// A push re-delivered with an old version (a stale duplicate from the network, or a controller
// replaying history) is acked "ignored" and changes nothing, although its config differs from
// the live one. The test stands in for the controller on its own sockets, with the same id.
TEST_F(FleetTest, StaleAndDuplicateVersionsAreIgnored) {
  StartFleet(kSmall);
  ASSERT_FALSE(HasFatalFailure());
  Fleet& fleet = *fleet_;
  const int kAgents = kSmall;
  const auto all = Range(0, kAgents);
  const std::string config1 = fleet.Config("v1");
  const std::string config2 = fleet.Config("v2");
  auto p1 = fleet.Push(config1, {"--all", "--expect", std::to_string(kAgents)});
  ASSERT_EQ(p1.run.exit_code, 0) << p1.run.Describe();
  auto p2 = fleet.Push(config2, {"--all", "--expect", std::to_string(kAgents)});
  ASSERT_EQ(p2.run.exit_code, 0) << p2.run.Describe();
  const std::string sha2 = fleet.ShaOf(config2);
  ASSERT_TRUE(fleet.WaitSha(all, sha2, kConverge));
  std::vector<std::string> live;
  std::vector<int> reloads;
  for (int i : all) {
    live.push_back(fleet.LiveConfig(i));
    reloads.push_back(fleet.agent(i).HaproxyReloads());
    json info = fleet.FleetInfo(i);
    ASSERT_TRUE(info.is_object()) << "info has no \"fleet\" section";
    EXPECT_EQ(info.value("applied_version", 0), 2) << AgentId(i) << ": " << info.dump();
  }
  ASSERT_EQ(fleet.controller().Stop(), 0) << fleet.controller().Log();

  // The stand-in controller: same id, same endpoints, latest = 2.
  zmq::context_t context;
  zmq::socket_t pub(context, zmq::socket_type::pub);
  zmq::socket_t router(context, zmq::socket_type::router);
  pub.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::linger, 0);
  pub.bind(fleet.controller().pub());
  router.bind(fleet.controller().router());
  const std::string stale_config = fleet.Config("stale");
  auto now_ms = [] {
    return std::chrono::duration_cast<milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  std::map<std::string, std::map<uint64_t, json>> acks;  // agent -> version -> ack
  std::vector<json> hellos;
  auto exchange = [&](uint64_t version, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    auto next_send = Clock::now();
    while (Clock::now() < deadline) {
      if (Clock::now() >= next_send) {
        json beacon = {{"v", 1},
                       {"type", "beacon"},
                       {"controller", kControllerId},
                       {"latest", 2},
                       {"ts_ms", now_ms()}};
        std::string b = proto::EncodeMsgpack(beacon);
        pub.send(zmq::buffer(std::string("fleet/beacon")), zmq::send_flags::sndmore);
        pub.send(zmq::buffer(b));
        json push = {{"v", 1},
                     {"type", "push"},
                     {"controller", kControllerId},
                     {"version", version},
                     {"target", {{"kind", "all"}}},
                     {"cmd", "reload"},
                     {"args", {{"config", stale_config}}}};
        std::string m = proto::EncodeMsgpack(push);
        pub.send(zmq::buffer(std::string("fleet/all")), zmq::send_flags::sndmore);
        pub.send(zmq::buffer(m));
        next_send = Clock::now() + milliseconds(200);
      }
      zmq::pollitem_t item{static_cast<void*>(router), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, milliseconds(50));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      while (true) {
        zmq::message_t f;
        if (!router.recv(f, zmq::recv_flags::dontwait)) break;
        frames.push_back(std::move(f));
        if (!frames.back().more()) break;
      }
      if (frames.size() < 2) continue;
      proto::DecodeLimits limits;
      auto body = proto::DecodeMsgpack(frames.back().to_string_view(), limits);
      if (!body.ok() || !body->is_object()) {
        ADD_FAILURE() << "an agent sent a frame that is not a msgpack map";
        continue;
      }
      const std::string type = body->value("type", "");
      if (type == "hello") {
        hellos.push_back(*body);
        json up = {{"v", 1}, {"type", "uptodate"}, {"controller", kControllerId}, {"latest", 2}};
        std::string u = proto::EncodeMsgpack(up);
        router.send(frames[0], zmq::send_flags::sndmore);
        if (frames.size() == 3) router.send(zmq::message_t(), zmq::send_flags::sndmore);
        router.send(zmq::buffer(u));
      } else if (type == "ack") {
        acks[body->value("agent", "")][body->value("version", uint64_t{0})] = *body;
      }
      bool everyone = true;
      for (int i : all) everyone = everyone && acks[AgentId(i)].count(version);
      if (everyone) return true;
    }
    return false;
  };
  // Version 1 (below the applied 2), then version 2 again (a duplicate), both with a config
  // that is not live.
  for (uint64_t version : {uint64_t{1}, uint64_t{2}}) {
    SCOPED_TRACE("re-delivered version " + std::to_string(version));
    EXPECT_TRUE(exchange(version, milliseconds(15000)))
        << "not every agent acked the re-delivered version " << version;
    for (int i : all) {
      auto it = acks[AgentId(i)].find(version);
      if (it == acks[AgentId(i)].end()) continue;
      EXPECT_EQ(it->second.value("outcome", ""), "ignored") << it->second.dump();
      EXPECT_EQ(it->second.value("sha256", ""), sha2) << it->second.dump();
    }
  }
  for (int i : all) {
    EXPECT_EQ(fleet.LiveConfig(i), live[i]) << AgentId(i) << "'s live config changed";
    EXPECT_EQ(fleet.agent(i).HaproxyReloads(), reloads[i]) << AgentId(i) << " reloaded";
    json info = fleet.FleetInfo(i);
    if (info.is_object()) {
      EXPECT_EQ(info.value("applied_version", 0), 2) << info.dump();
    }
  }
  for (const auto& h : hellos) {
    EXPECT_EQ(h.value("applied_version", 0), 2) << "hello: " << h.dump();
  }
  pub.close();
  router.close();

  // The real controller again, from its state: followed, and a new push applies.
  fleet.controller().Start();
  ASSERT_FALSE(HasFailure());
  const std::string config3 = fleet.Config("v3");
  auto p3 = fleet.Push(config3, {"--all", "--expect", std::to_string(kAgents)});
  EXPECT_EQ(p3.run.exit_code, 0) << p3.run.Describe();
  EXPECT_TRUE(fleet.WaitSha(all, fleet.ShaOf(config3), kConverge));
}

// An agent keeps its applied version across a restart: it says hello with it, is told it is up
// to date, and does not reload haproxy again.
TEST_F(FleetTest, AppliedVersionSurvivesAnAgentRestart) {
  StartFleet(kSmall);
  ASSERT_FALSE(HasFatalFailure());
  Fleet& fleet = *fleet_;
  const int kAgents = kSmall;
  const auto all = Range(0, kAgents);
  const std::string config1 = fleet.Config("v1");
  auto p = fleet.Push(config1, {"--all", "--expect", std::to_string(kAgents)});
  ASSERT_EQ(p.run.exit_code, 0) << p.run.Describe();
  const std::string sha1 = fleet.ShaOf(config1);
  ASSERT_TRUE(fleet.WaitSha(all, sha1, kConverge));
  // A clean stop leaves haproxy serving (stop_haproxy_on_exit = no); the restarted agent adopts
  // it and has nothing to reload: the master's reload counter (the push's reload) stays.
  const int reloads = fleet.agent(3).HaproxyReloads();
  const pid_t worker = fleet.agent(3).HaproxyWorkerPid();
  fleet.agent(3).StopAgent();
  fleet.agent(3).StartAgent();
  ASSERT_FALSE(HasFailure());
  // Give it a hello round trip and a few beacons.
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_EQ(fleet.LiveSha(3), sha1);
  EXPECT_EQ(fleet.agent(3).HaproxyReloads(), reloads) << "the restarted agent reloaded haproxy";
  EXPECT_EQ(fleet.agent(3).HaproxyWorkerPid(), worker) << "haproxy was not adopted";
  json info = fleet.FleetInfo(3);
  ASSERT_TRUE(info.is_object()) << "info has no \"fleet\" section";
  EXPECT_EQ(info.value("applied_version", 0), 1) << info.dump();
  auto last = fleet.agent(3).Ok("info")["last_reload"];
  EXPECT_TRUE(last.is_null()) << "the restarted agent ran a reload: " << last.dump();
}

// A controller restarted from an older copy of its state (a restored backup) must not roll
// agents back: hellos carry a version above its latest. What it does with the next push is
// either honest (agents ignore the stale version, the push does not claim success) or better
// (it moves past the agents' version and applies); never a mixed fleet.
TEST_F(FleetTest, ControllerRestoredFromOldStateDoesNotRollAgentsBack) {
  StartFleet(kSmall);
  ASSERT_FALSE(HasFatalFailure());
  Fleet& fleet = *fleet_;
  const int kAgents = kSmall;
  const auto all = Range(0, kAgents);
  const std::string state_dir = fleet.controller().options().state_dir;
  const std::string config1 = fleet.Config("v1");
  auto p1 = fleet.Push(config1, {"--all", "--expect", std::to_string(kAgents)});
  ASSERT_EQ(p1.run.exit_code, 0) << p1.run.Describe();
  const std::string backup = fleet.dir().File("state-backup");
  std::filesystem::copy(state_dir, backup, std::filesystem::copy_options::recursive);
  const std::string config2 = fleet.Config("v2");
  auto p2 = fleet.Push(config2, {"--all", "--expect", std::to_string(kAgents)});
  ASSERT_EQ(p2.run.exit_code, 0) << p2.run.Describe();
  const std::string sha2 = fleet.ShaOf(config2);
  ASSERT_TRUE(fleet.WaitSha(all, sha2, kConverge));

  ASSERT_EQ(fleet.controller().Stop(), 0);
  std::filesystem::remove_all(state_dir);
  std::filesystem::rename(backup, state_dir);
  fleet.controller().Start();
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(fleet.WaitKnown(kAgents));
  std::this_thread::sleep_for(milliseconds(1500));  // hellos and beacons go both ways
  for (int i : all) EXPECT_EQ(fleet.LiveSha(i), sha2) << AgentId(i) << " was rolled back";

  const std::string config3 = fleet.Config("v3");
  const std::string sha3 = fleet.ShaOf(config3);
  auto p3 = fleet.Push(config3, {"--all", "--expect", std::to_string(kAgents)});
  std::cout << "[fleet] push from a controller restored from old state exited " << p3.run.exit_code
            << ":\n"
            << p3.run.out << p3.run.err << std::endl;
  std::this_thread::sleep_for(milliseconds(1000));
  std::set<std::string> shas;
  for (int i : all) shas.insert(fleet.LiveSha(i));
  EXPECT_EQ(shas.size(), 1u) << "a mixed fleet";
  if (p3.run.exit_code == 0) {
    EXPECT_EQ(*shas.begin(), sha3);
  } else {
    EXPECT_EQ(*shas.begin(), sha2);
    for (const auto& [id, entry] : p3.agents) {
      EXPECT_EQ(Outcome(entry), "ignored") << id << ": " << entry.dump();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The fleet's behaviour gaps closed by issue 12, with real agents.

// An agent that went away (SIGKILLed: no goodbye) is listed lost by `fleet agents` within three
// of its hello intervals, and a push does not wait for it until --timeout: it is reported lost
// at once. When it comes back it converges by itself.
TEST_F(FleetTest, AnAgentThatWentAwayIsListedLostAndAPushDoesNotWaitForIt) {
  StartFleet(3, "1");  // lost after 3 s of silence
  ASSERT_FALSE(HasFatalFailure());
  Fleet& fleet = *fleet_;
  auto p1 = fleet.Push(fleet.Config("v1"), {"--all"});
  ASSERT_EQ(p1.run.exit_code, 0) << p1.run.Describe();

  fleet.agent(2).KillAgent();  // its haproxy keeps running; the agent says nothing more
  std::string liveness;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto listed = PerAgent(fleet.controller().Agents());
        liveness = listed.count(AgentId(2)) ? listed[AgentId(2)].value("liveness", "") : "";
        return liveness == "lost";
      },
      milliseconds(10000)))
      << AgentId(2) << " is " << liveness;
  auto alive = PerAgent(fleet.controller().Agents());
  EXPECT_EQ(alive[AgentId(0)].value("liveness", ""), "alive");
  CommandResult table = fleet.controller().Lbctl({"agents"});
  EXPECT_NE(table.out.find(AgentId(2) + "    lost"), std::string::npos) << table.out;

  const std::string config2 = fleet.Config("v2");
  auto p2 = fleet.Push(config2, {"--all"});  // --timeout 60
  EXPECT_EQ(p2.run.exit_code, 5) << p2.run.Describe();
  EXPECT_LT(p2.run.elapsed.count(), 20000) << "it waited for the lost agent";
  EXPECT_EQ(Outcome(p2.agents[AgentId(2)]), "lost") << p2.run.out;
  EXPECT_EQ(Outcome(p2.agents[AgentId(0)]), "applied") << p2.run.out;
  EXPECT_EQ(Outcome(p2.agents[AgentId(1)]), "applied") << p2.run.out;
  EXPECT_NE(p2.run.err.find("(and 1 lost, not waited for)"), std::string::npos) << p2.run.err;

  fleet.agent(2).StartAgent();  // adopts its haproxy, says hello, gets v2
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(fleet.WaitSha({2}, fleet.ShaOf(config2), kConverge));
  EXPECT_TRUE(WaitFor(
      [&] {
        return PerAgent(fleet.controller().Agents())[AgentId(2)].value("liveness", "") == "alive";
      },
      milliseconds(10000)));
}

// A push whose target matches no known agent (a misspelt group) is an error that says so, and
// records nothing; --allow-no-match records it for agents that say hello later.
TEST_F(FleetTest, APushToAGroupNoAgentIsInIsRefused) {
  StartFleet(2);
  ASSERT_FALSE(HasFatalFailure());
  Fleet& fleet = *fleet_;
  auto misspelt = fleet.Push(fleet.Config("v1"), {"--group", "evne"});
  EXPECT_EQ(misspelt.run.exit_code, 1) << misspelt.run.Describe();
  EXPECT_NE(misspelt.run.err.find("no agent the controller knows matches group/evne (it knows 2 "
                                  "agents in groups even, odd); nothing was pushed"),
            std::string::npos)
      << misspelt.run.err;
  EXPECT_EQ(fleet.controller().Agents().value("latest", -1), 0) << "no version was used";
  auto staged = fleet.Push(fleet.Config("v1"), {"--agent-id", "a99", "--canary", "1"});
  EXPECT_EQ(staged.run.exit_code, 1) << staged.run.Describe();

  auto allowed = fleet.Push(fleet.Config("v1"), {"--group", "evne", "--allow-no-match"});
  EXPECT_EQ(allowed.run.exit_code, 0) << allowed.run.Describe();
  EXPECT_EQ(fleet.controller().Agents().value("latest", -1), 1);
}

// A config that every agent refused (invalid) does not become the desired state: an agent that
// joins later gets the last config an agent applied, and `fleet agents` says which is which.
TEST_F(FleetTest, AConfigEveryAgentRefusedIsNotGivenToAnAgentThatJoinsLater) {
  fleet_ = std::make_unique<Fleet>(3);
  Fleet& fleet = *fleet_;
  fleet.controller().Start();
  ASSERT_FALSE(HasFailure());
  fleet.StartAgents({0, 1});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(fleet.WaitKnown(2));
  const std::string config1 = fleet.Config("v1");
  auto p1 = fleet.Push(config1, {"--all"});
  ASSERT_EQ(p1.run.exit_code, 0) << p1.run.Describe();
  const std::string sha1 = fleet.ShaOf(config1);

  auto p2 = fleet.Push(fleet.InvalidConfig("v2"), {"--all"});
  EXPECT_EQ(p2.run.exit_code, 4) << p2.run.Describe();
  json listed = fleet.controller().Agents();
  ASSERT_TRUE(listed.is_object());
  ASSERT_EQ(listed["targets"].size(), 1u) << listed.dump();
  EXPECT_EQ(listed["targets"][0]["key"], "all");
  EXPECT_EQ(listed["targets"][0]["desired_version"], 1) << listed.dump();
  EXPECT_EQ(listed["targets"][0]["desired_because"], "applied");
  EXPECT_EQ(listed["targets"][0]["rejected_version"], 2) << listed.dump();
  CommandResult table = fleet.controller().Lbctl({"agents"});
  EXPECT_NE(table.out.find("all: desired v1 (applied by an agent); v2 refused by every agent, "
                           "not handed out"),
            std::string::npos)
      << table.out;

  fleet.StartAgents({2});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(fleet.WaitSha({2}, sha1, kConverge));
  std::this_thread::sleep_for(milliseconds(1000));  // 5 beacons: a later push would have come
  EXPECT_EQ(fleet.LiveSha(2), sha1);
  EXPECT_EQ(fleet.FleetInfo(2).value("applied_version", 0), 1);

  // The operator may say otherwise: --desired-always makes it the desired state anyway.
  auto p3 = fleet.Push(fleet.InvalidConfig("v3"), {"--all", "--desired-always"});
  EXPECT_EQ(p3.run.exit_code, 4) << p3.run.Describe();
  EXPECT_NE(p3.run.out.find("\"final_version\": 3"), std::string::npos) << p3.run.out;
  listed = fleet.controller().Agents();
  EXPECT_EQ(listed["targets"][0]["desired_version"], 3) << listed.dump();
  EXPECT_EQ(listed["targets"][0]["desired_because"], "operator") << listed.dump();
}

}  // namespace
}  // namespace lb::testing
