// Crash consistency: the real lb-agent is SIGKILLed at random moments of real applies, half of
// them reloads (queued, candidate written and validated, history kept, renamed, haproxy reloading
// and verified) and half of them runtime applies (server lines only: runtime commands, verified,
// renamed), then restarted. Whatever the moment, the live config must be exactly the old or the
// new one, haproxy must accept it, serve it and run exactly its servers, and be the only haproxy
// on it, `info` must report the sha256 of the file on disk, and the temp files a kill leaves
// behind must be gone once the agent answers again.
//
// Kill moments are random delays after the reload is sent, spread over the reload's measured
// duration (seed printed; LB_CRASH_SEED=<n> replays a run). What the agent was doing when it
// died is read from what it left: a temp file (writing or validating), a new history entry
// with the old live file (between keeping history and the rename), the new live file with
// haproxy's reload counter unchanged (between the rename and the reload) or moved (reloading
// or verifying), or the answer (done before the kill).
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <zmq.hpp>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kReloads = 100;
// A large comment makes writing, fsyncing and hashing the config take measurable time.
constexpr std::size_t kPaddingLines = 1024;  // of 64 bytes: 64 KiB

// Version `version` of the config: one server, backend "a" for even versions and "b" for odd
// ones (so what haproxy serves tells which version it runs). The version is at both ends, so
// that a mix of two versions could never equal either. `maxconn` moves every other version: from
// an even version to the next only server lines change (a runtime apply), from an odd one the
// global section changes too (a reload).
bool RuntimeApply(int old_version) { return old_version % 2 == 0; }

std::string VersionedConfig(int frontend, int version, int port_a, int port_b) {
  const std::string tag = "# version " + std::to_string(version) + "\n";
  std::string padding;
  padding.reserve(kPaddingLines * 64);
  for (std::size_t i = 0; i < kPaddingLines; ++i) {
    std::string line = "# v" + std::to_string(version) + " line " + std::to_string(i) + " ";
    line.resize(63, 'x');
    padding += line + "\n";
  }
  const bool odd = version % 2 != 0;
  const std::string global = "    maxconn " + std::to_string(4000 + version / 2) + "\n";
  return tag +
         HaproxyConfig(frontend, {{odd ? "b" : "a", odd ? port_b : port_a}}, "scaling_nodes",
                       global) +
         padding + tag;
}

std::string ServedBy(int version) { return version % 2 != 0 ? "b" : "a"; }

// The version a config text carries ("# version N" on its first line), -1 if none.
int VersionOf(const std::string& text) {
  constexpr std::string_view kTag = "# version ";
  if (text.rfind(kTag, 0) != 0) return -1;
  return std::atoi(text.c_str() + kTag.size());
}

// A reload sent on its own REQ socket; the answer is collected later, without blocking.
class PendingReload {
 public:
  PendingReload(zmq::context_t& context, const std::string& endpoint, const std::string& config)
      : socket_(context, zmq::socket_type::req) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
    const std::string frame = proto::EncodeRequest({json("crash"), "reload", {{"config", config}}});
    sent_ = socket_.send(zmq::buffer(frame), zmq::send_flags::none).has_value();
  }
  bool sent() const { return sent_; }
  // The answer, if it has arrived.
  std::optional<proto::Reply> Answer() {
    zmq::message_t reply;
    if (!socket_.recv(reply, zmq::recv_flags::dontwait)) return std::nullopt;
    proto::DecodeLimits limits;
    auto decoded = proto::DecodeReply(reply.to_string_view(), limits);
    if (!decoded.ok()) return std::nullopt;
    return *decoded;
  }

 private:
  zmq::socket_t socket_;
  bool sent_ = false;
};

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "(none)" : out;
}

// What the agent logs when it finds that its predecessor died between writing the live config
// and haproxy's reload, and reloads haproxy with it.
constexpr std::string_view kFinishedAtStart = "the previous run stopped during a reload";

std::size_t Count(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t pos = 0; (pos = text.find(what, pos)) != std::string::npos; pos += what.size()) {
    ++n;
  }
  return n;
}

// Entries of `dir` that the agent made for itself (temp files, its reload marker).
std::vector<std::string> AgentFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& name : ListDir(dir)) {
    // The lock file stays by design (ConfigStore::Lock): the lock is the flock, not the file.
    if (name.rfind(".lb-agent-lock.", 0) == 0) continue;
    if (name.rfind(".lb-agent-", 0) == 0) out.push_back(std::move(name));
  }
  return out;
}

uint64_t SeedFromEnvironment() {
  if (const char* s = std::getenv("LB_CRASH_SEED"); s != nullptr && *s != '\0') {
    return std::strtoull(s, nullptr, 10);
  }
  return std::random_device{}();
}

TEST(CrashConsistencyTest, AgentKilledDuringReloadsLeavesOldOrNewConfigServed) {
  HttpBackend a("a");
  HttpBackend b("b");
  AgentFixture agent;
  const int frontend = FreePort();
  const std::string live_path = agent.config_path();
  const std::string history = agent.dir().File("history");
  int version = 0;
  WriteFile(live_path, VersionedConfig(frontend, version, a.port(), b.port()));
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return HttpGetBody(frontend) == "a"; }, milliseconds(10000)));

  // Each kind's duration, from the client's side, without kills.
  std::map<bool, std::vector<int64_t>> durations;  // runtime? -> microseconds
  for (int i = 0; i < 10; ++i) {
    const bool runtime = RuntimeApply(version);
    ++version;
    const auto start = Clock::now();
    json r =
        agent.Ok("reload", {{"config", VersionedConfig(frontend, version, a.port(), b.port())}});
    ASSERT_EQ(r["outcome"], "applied");
    ASSERT_EQ(r["applied_via"], runtime ? "runtime" : "reload") << r.dump();
    durations[runtime].push_back(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
  }
  // The median: kills in [0, median] land in every phase of most applies, some after the end.
  std::map<bool, int64_t> median_us;
  std::string measured;
  for (auto& [runtime, list] : durations) {
    std::sort(list.begin(), list.end());
    median_us[runtime] = std::max<int64_t>(list[list.size() / 2], 1);
    measured += std::string(measured.empty() ? "" : ", ") + (runtime ? "runtime " : "reload ") +
                std::to_string(median_us[runtime]) + " us";
  }

  const uint64_t seed = SeedFromEnvironment();
  std::mt19937_64 rng(seed);
  std::cout << "crash consistency: seed " << seed << " (LB_CRASH_SEED=" << seed
            << " replays it), medians: " << measured << ": kills in [0, median] after sending"
            << std::endl;

  zmq::context_t context;
  std::map<std::string, int> phases;
  int restarts = 0;
  int temps_left_by_kills = 0;
  int planted = 0;
  int kills = 0;
  const auto test_start = Clock::now();
  for (int i = 0; i < kReloads; ++i) {
    SCOPED_TRACE("kill " + std::to_string(i) + " (seed " + std::to_string(seed) + ")");
    const std::string old_text = ReadFile(live_path);
    const int old_version = VersionOf(old_text);
    ASSERT_GE(old_version, 0);
    const int new_version = old_version + 1;
    const std::string new_text = VersionedConfig(frontend, new_version, a.port(), b.port());
    const int reloads_before = agent.HaproxyReloads();
    ASSERT_GE(reloads_before, 0);
    const std::vector<std::string> history_before = ListDir(history);

    const bool runtime = RuntimeApply(old_version);
    const int64_t delay = std::uniform_int_distribution<int64_t>(0, median_us[runtime])(rng);
    auto reload = std::make_unique<PendingReload>(context, agent.endpoint(), new_text);
    ASSERT_TRUE(reload->sent());
    std::this_thread::sleep_for(std::chrono::microseconds(delay));
    agent.KillAgent();
    ++kills;

    // What the agent left behind tells what it was doing.
    const bool answered = reload->Answer().has_value();
    // Closed now: a request still queued in the socket would reach the restarted agent.
    reload.reset();
    const std::vector<std::string> temps = AgentTempFiles(agent.dir().path());
    const std::string text_after_kill = ReadFile(live_path);
    const std::vector<std::string> history_after = ListDir(history);
    const bool history_grew =
        !history_after.empty() &&
        !std::binary_search(history_before.begin(), history_before.end(), history_after.back());
    temps_left_by_kills += temps.empty() ? 0 : 1;

    // Now and then a temp file as a kill in an older agent version might have left it.
    if (i % 10 == 5) {
      WriteFile(agent.dir().File(".lb-agent-tmp.haproxy.cfg.planted"), "global\n    # half");
      ++planted;
    }
    const std::size_t finished_before = Count(agent.AgentLog(), kFinishedAtStart);
    agent.StartAgent();
    ++restarts;
    if (::testing::Test::HasFatalFailure()) return;
    const bool finished_at_start = Count(agent.AgentLog(), kFinishedAtStart) > finished_before;

    // The temp files (and the agent's reload marker) are gone before the agent answers.
    EXPECT_EQ(AgentFiles(agent.dir().path()), std::vector<std::string>{})
        << "directory: " << Join(ListDir(agent.dir().path()));
    EXPECT_EQ(AgentTempFiles(history), std::vector<std::string>{});

    const std::string live = ReadFile(live_path);
    ASSERT_TRUE(live == old_text || live == new_text)
        << "live config is neither version " << old_version << " nor " << new_version << " ("
        << live.size() << " bytes, starts with version " << VersionOf(live) << ")";
    EXPECT_EQ(live, text_after_kill) << "the restart changed the live file";
    const int live_version = VersionOf(live);

    const int reloads_after = agent.HaproxyReloads();
    std::string phase;
    if (answered) {
      phase = "answered before the kill";
    } else if (runtime) {
      // The window between the marker and the rename holds the runtime commands.
      if (live == old_text && finished_at_start) {
        phase = "runtime: commands sent or verifying, before rename";
      } else if (live == old_text) {
        phase = "runtime: queued/checked/candidate";
      } else if (finished_at_start) {
        phase = "runtime: renamed, before the end";
      } else {
        phase = "runtime: done, before the answer";
      }
    } else if (!temps.empty()) {
      phase = "candidate written/validated";
    } else if (live == old_text && (history_grew || finished_at_start)) {
      phase = "history kept, before rename";
    } else if (live == old_text) {
      phase = "queued/checked, before write";
    } else if (!finished_at_start) {
      phase = "reloaded, before the answer";
    } else if (reloads_after - reloads_before == 1) {
      // Only the restarted agent's reload counted: haproxy never got the killed one's.
      phase = "renamed, before reload";
    } else {
      phase = "reloading/verifying";
    }
    ++phases[phase];
    SCOPED_TRACE("phase: " + phase + ", delay " + std::to_string(delay) + " us");

    CommandResult check = HaproxyCheck(live_path);
    EXPECT_EQ(check.exit_code, 0) << "haproxy -c refuses the live config: " << check.Describe();

    json info = agent.Ok("info");
    EXPECT_EQ(info["config"]["sha256"], Sha256OfFile(live_path));

    // haproxy runs exactly the live file's server (a half-done runtime apply would leave both).
    std::string running;
    EXPECT_TRUE(WaitFor(
        [&] {
          running.clear();
          std::istringstream state(agent.WorkerCli("show servers state scaling_nodes"));
          for (std::string line; std::getline(state, line);) {
            std::istringstream words(line);
            std::string be_id, be_name, srv_id, srv_name;
            if (line.empty() || line[0] == '#' ||
                !(words >> be_id >> be_name >> srv_id >> srv_name))
              continue;
            running += (running.empty() ? "" : ",") + srv_name;
          }
          return running == ServedBy(live_version);
        },
        milliseconds(5000)))
        << "haproxy runs servers [" << running << "], the live config has only "
        << ServedBy(live_version);
    // haproxy serves, and serves the live file's version.
    EXPECT_TRUE(WaitFor([&] { return HttpGetBody(frontend) == ServedBy(live_version); },
                        milliseconds(10000)))
        << "haproxy serves \"" << HttpGetBody(frontend) << "\", the live config (version "
        << live_version << ") sends to \"" << ServedBy(live_version) << "\"";
    // A master that is re-executing itself (a reload) can read with an empty command line for
    // an instant, so that its workers look like masters: a second haproxy would stay.
    EXPECT_TRUE(WaitFor([&] { return HaproxyMasters(live_path).size() == 1; }, milliseconds(5000)))
        << "one haproxy master for the config, not " << HaproxyMasters(live_path).size();
    if (::testing::Test::HasFailure()) break;
  }
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - test_start).count();

  // How often the restarted agent found haproxy's master re-executing itself and waited for
  // it (Supervisor) instead of starting a second haproxy.
  const std::size_t waited = Count(agent.AgentLog(), "does not answer on");
  const std::size_t finished = Count(agent.AgentLog(), kFinishedAtStart);
  std::cout << "crash consistency: " << kills << " kills, " << restarts << " restarts, "
            << temps_left_by_kills << " kills left a temp file, " << planted
            << " temp files planted, " << waited
            << " restarts waited for a re-executing haproxy master, " << finished
            << " restarts finished an interrupted reload, " << elapsed_s << " s\n";
  for (const auto& [phase, n] : phases) std::cout << "  " << n << "\t" << phase << "\n";
  std::cout << std::flush;

  // Every kill left a consistent state; the kills must also have hit the middle of reloads,
  // not only their edges, for that to mean something.
  EXPECT_GT(temps_left_by_kills, 0) << "no kill landed while a candidate existed";
  EXPECT_GT(phases["reloading/verifying"] + phases["renamed, before reload"], 0)
      << "no kill landed after the rename";
  EXPECT_GT(phases["runtime: commands sent or verifying, before rename"] +
                phases["runtime: renamed, before the end"],
            0)
      << "no kill landed inside a runtime apply";
  // The agent still reloads normally after all this.
  json last = agent.Ok("reload", {{"config", VersionedConfig(frontend, 1000, a.port(), b.port())}});
  EXPECT_EQ(last["outcome"], "applied");
  EXPECT_EQ(HttpGetBody(frontend), "a");
}

}  // namespace
}  // namespace lb::testing
