// HAProxy SIGKILLed under a managed agent: while it is gone `status` answers
// haproxy_unavailable and the event stream says so, the agent starts it again with growing
// delays between failed attempts, and the next reload is applied and served.
//
// StatusTest.ManagedModeRestartsAKilledHaproxy covers the plain restart (a new master pid);
// here haproxy is kept from coming back for two attempts, so that the time without it is long
// enough to observe and the backoff between attempts can be measured.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kEventTimeout(10000);

// Every start attempt the wrapper recorded: "refused" or "started", and when (unix ns).
struct Attempt {
  std::string outcome;
  int64_t ns = 0;
};
std::vector<Attempt> StartAttempts(const std::string& path) {
  std::istringstream in(ReadFile(path));
  std::vector<Attempt> out;
  Attempt a;
  while (in >> a.outcome >> a.ns) out.push_back(a);
  return out;
}

std::size_t Refused(const std::vector<Attempt>& attempts) {
  std::size_t n = 0;
  for (const auto& a : attempts) n += a.outcome == "refused" ? 1 : 0;
  return n;
}

TEST(HaproxyKilledTest, UnavailableWhileDownThenRestartedWithBackoffAndReloadsAgain) {
  HttpBackend a("a");
  HttpBackend b("b");
  TempDir scratch;
  const std::string wrapper = scratch.File("haproxy");
  const std::string attempts = scratch.File("starts");
  const std::string block = scratch.File("block-start");
  // The real haproxy, except that a start (not `haproxy -c`) fails while `block` exists; every
  // start attempt is recorded once decided, so that removing `block` cannot race with it.
  const std::string script =
      "#!/bin/sh\n"
      "if [ \"$1\" != -c ]; then\n"
      "  if [ -e BLOCK ]; then\n"
      "    echo \"refused $(date +%s%N)\" >> ATTEMPTS\n"
      "    echo '[ALERT] start refused by the test' >&2; exit 1\n"
      "  fi\n"
      "  echo \"started $(date +%s%N)\" >> ATTEMPTS\n"
      "fi\n"
      "exec HAPROXY \"$@\"\n";
  std::string text = script;
  for (const auto& [word, value] : std::vector<std::pair<std::string, std::string>>{
           {"BLOCK", block}, {"ATTEMPTS", attempts}, {"HAPROXY", HaproxyBinary()}}) {
    for (std::size_t pos; (pos = text.find(word)) != std::string::npos;) {
      text.replace(pos, word.size(), value);
    }
  }
  WriteFile(wrapper, text);
  ASSERT_EQ(chmod(wrapper.c_str(), 0755), 0);
  AgentFixture agent(Keys{{"haproxy_binary", wrapper}},
                     Keys{{"poll_interval", "0.25"}, {"heartbeat_interval", "0.2"}});
  const int frontend = FreePort();
  WriteFile(agent.config_path(), HaproxyConfig(frontend, {{"a", a.port()}}));
  EventSubscriber events(agent.events_endpoint(), {"haproxy", "heartbeat"});
  agent.StartAgent();
  ASSERT_TRUE(WaitFor([&] { return HttpGetBody(frontend) == "a"; }, milliseconds(10000)));
  ASSERT_TRUE(events.WaitLive(kEventTimeout));
  const pid_t master = agent.Ok("info")["haproxy"]["master_pid"];
  ASSERT_GT(master, 0);
  const std::size_t attempts_before = StartAttempts(attempts).size();

  WriteFile(block, "");
  KillHaproxy(agent.dir().File("haproxy.pid"));  // SIGKILL to the master's process group
  ASSERT_TRUE(WaitFor([&] { return HttpGetBody(frontend).empty(); }, milliseconds(5000)))
      << "haproxy still serves after SIGKILL";

  // While it is down: an event, and status says haproxy is unavailable.
  auto down =
      events.NextMatching([](const Event& e) { return e.topic == "haproxy"; }, kEventTimeout);
  ASSERT_TRUE(down) << "no haproxy event after the kill";
  EXPECT_EQ(down->body["state"], "down") << down->body.dump();
  EXPECT_FALSE(down->body.value("message", "").empty());
  auto status = agent.Call("status");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->status.code(), proto::ErrorCode::kHaproxyUnavailable)
      << status->status.ToString();
  EXPECT_NE(status->status.message().find("master.sock"), std::string::npos)
      << "the message names the socket: " << status->status.message();
  EXPECT_EQ(agent.Ok("info")["haproxy"]["running"], false);
  EXPECT_TRUE(agent.Ok("ping")["pong"]) << "the agent answers while haproxy is away";

  // Two failed attempts, then haproxy may start again.
  ASSERT_TRUE(WaitFor([&] { return Refused(StartAttempts(attempts)) >= 2; }, milliseconds(10000)))
      << "the agent did not try to start haproxy twice:\n"
      << agent.AgentLog();
  std::remove(block.c_str());
  auto up = events.NextMatching(
      [](const Event& e) { return e.topic == "haproxy" && e.body.value("state", "") == "up"; },
      milliseconds(15000));
  ASSERT_TRUE(up) << "no haproxy up event:\n" << agent.AgentLog();
  json info = agent.Ok("info");
  EXPECT_EQ(info["haproxy"]["running"], true);
  const pid_t new_master = info["haproxy"].value("master_pid", 0);
  EXPECT_GT(new_master, 0);
  EXPECT_NE(new_master, master);
  EXPECT_EQ(up->body["pid"], info["haproxy"]["pid"]);
  EXPECT_EQ(HaproxyMasters(agent.config_path()), std::vector<pid_t>{new_master});

  // Backoff: the delay between failed attempts grows (1 s, then 2 s).
  std::vector<Attempt> after = StartAttempts(attempts);
  after.erase(after.begin(), after.begin() + static_cast<std::ptrdiff_t>(attempts_before));
  ASSERT_EQ(after.size(), 3u) << "start attempts after the kill: two refused, one that worked";
  EXPECT_EQ(after[0].outcome, "refused");
  EXPECT_EQ(after[1].outcome, "refused");
  EXPECT_EQ(after[2].outcome, "started");
  const double gap1_ms = (after[1].ns - after[0].ns) / 1e6;
  const double gap2_ms = (after[2].ns - after[1].ns) / 1e6;
  std::cout << "restart attempts after the kill: gaps " << gap1_ms << " ms, " << gap2_ms << " ms"
            << std::endl;
  EXPECT_GE(gap1_ms, 900);
  EXPECT_GE(gap2_ms, 1800);
  EXPECT_GT(gap2_ms, gap1_ms * 1.5) << "the delay between attempts grows";

  // The next reload is applied and served.
  EXPECT_TRUE(WaitFor([&] { return HttpGetBody(frontend) == "a"; }, milliseconds(5000)));
  json reload = agent.Ok("reload", {{"config", HaproxyConfig(frontend, {{"b", b.port()}})}});
  EXPECT_EQ(reload["outcome"], "applied");
  EXPECT_EQ(HttpGetBody(frontend), "b");
  EXPECT_TRUE(WaitFor([&] { return agent.ServerStatus("b") == "UP"; }, milliseconds(5000)));
}

}  // namespace
}  // namespace lb::testing
