// What an operator does to the daemons, against the real binaries and a real haproxy: SIGHUP
// (systemctl reload), systemd's notify socket (Type=notify), restarting the agent under traffic,
// a second agent on the same config, a start that fails, and the --check of what lb-bridge reads.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

// systemd's side of NOTIFY_SOCKET: a unix datagram socket in the test's temp dir.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << path;
    timeval timeout{0, 100000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  }
  ~NotifySocket() { close(fd_); }
  // Waits up to `timeout` for a datagram that starts with `prefix`; returns it ("" if none).
  // Datagrams before it are kept in seen().
  std::string WaitFor(const std::string& prefix, milliseconds timeout) {
    std::string found;
    lb::testing::WaitFor(
        [&] {
          char buffer[4096];
          const ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
          if (n <= 0) return false;
          std::string message(buffer, static_cast<size_t>(n));
          seen_.push_back(message);
          if (message.rfind(prefix, 0) == 0) found = message;
          return !found.empty();
        },
        timeout);
    return found;
  }
  const std::vector<std::string>& seen() const { return seen_; }

 private:
  int fd_;
  std::vector<std::string> seen_;
};

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += "[" + line + "] ";
  return out;
}

class OperationsTest : public ::testing::Test {
 protected:
  explicit OperationsTest(Keys haproxy_keys = {}) : agent_(std::move(haproxy_keys)) {}
  ~OperationsTest() override { FinishTraffic(); }

  void Start() {
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
    agent_.StartAgent();
    ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus("a") == "UP"; }, milliseconds(10000)));
  }
  bool Serves() { return HttpGetBody(frontend_) == "a"; }
  // The one backend that answered 10 requests through `port`, or what answered instead.
  static std::string Answers(int port) {
    std::string first = HttpGetBody(port);
    for (int i = 0; i < 9; ++i) {
      if (HttpGetBody(port) != first) return "mixed";
    }
    return first;
  }

  // Requests through the frontend on a thread of their own, counted, until Finish().
  void StartTraffic() {
    traffic_ = std::thread([this] {
      while (!traffic_stop_) {
        (Serves() ? served_ : failed_)++;
        std::this_thread::sleep_for(milliseconds(5));
      }
    });
  }
  void FinishTraffic() {
    traffic_stop_ = true;
    if (traffic_.joinable()) traffic_.join();
  }

  // lb-agent.cfg with `line` added under [lb-agent] (AgentFixture writes the section first).
  void AddAgentSetting(const std::string& line) {
    std::string text = ReadFile(agent_.settings_path());
    const std::string section = "[lb-agent]\n";
    const auto at = text.find(section);
    ASSERT_NE(at, std::string::npos) << text;
    text.insert(at + section.size(), line + "\n");
    WriteFile(agent_.settings_path(), text);
  }

  HttpBackend a_{"a"};
  HttpBackend b_{"b"};
  AgentFixture agent_;
  int frontend_ = 0;
  std::thread traffic_;
  std::atomic<bool> traffic_stop_{false};
  std::atomic<int> served_{0};
  std::atomic<int> failed_{0};
};

TEST_F(OperationsTest, HupRereadsSettingsAndLeavesAgentHaproxyAndTrafficAsTheyWere) {
  NotifySocket systemd(agent_.dir().File("notify"));
  agent_.SetCommandPrefix({"/usr/bin/env", "NOTIFY_SOCKET=" + agent_.dir().File("notify")});
  Start();
  ASSERT_FALSE(HasFatalFailure());
  const std::string ready = systemd.WaitFor("READY=1", milliseconds(5000));
  EXPECT_NE(ready.find("STATUS=commands on " + agent_.endpoint() + "; haproxy master "),
            std::string::npos)
      << Joined(systemd.seen());
  const pid_t agent_pid = agent_.agent_pid();
  const pid_t worker = agent_.HaproxyWorkerPid();
  ASSERT_GT(worker, 0);
  const int reloads = agent_.HaproxyReloads();
  ASSERT_TRUE(agent_.Ok("ping").is_object());
  EXPECT_EQ(agent_.AgentLog().find("cmd=ping"), std::string::npos)
      << "a successful read is a debug line, below the default log_level";

  AddAgentSetting("log_level = debug");
  AddAgentSetting("query_threads = 3");  // only a restart applies it
  StartTraffic();
  ASSERT_EQ(kill(agent_pid, SIGHUP), 0);
  ASSERT_TRUE(
      WaitFor([&] { return agent_.AgentLog().find("SIGHUP: re-read") != std::string::npos; },
              milliseconds(5000)))
      << agent_.AgentLog();
  EXPECT_NE(systemd.WaitFor("RELOADING=1", milliseconds(2000)), "") << Joined(systemd.seen());
  const std::string reread = systemd.WaitFor("READY=1", milliseconds(2000));
  EXPECT_NE(reread.find("changed keys that need a restart: [lb-agent] query_threads"),
            std::string::npos)
      << Joined(systemd.seen());
  std::this_thread::sleep_for(milliseconds(300));  // traffic across and after the re-read
  FinishTraffic();

  EXPECT_TRUE(agent_.AgentRunning());
  EXPECT_EQ(agent_.agent_pid(), agent_pid);
  EXPECT_EQ(agent_.HaproxyWorkerPid(), worker) << "SIGHUP must not touch haproxy";
  EXPECT_EQ(agent_.HaproxyReloads(), reloads);
  EXPECT_GT(served_, 0);
  EXPECT_EQ(failed_, 0) << "requests failed around the SIGHUP";
  const std::string log = agent_.AgentLog();
  EXPECT_NE(log.find("log_level=debug restart_needed=\"[lb-agent] query_threads\""),
            std::string::npos)
      << log;
  // The new level applies at once: a ping is now logged.
  ASSERT_TRUE(agent_.Ok("ping").is_object());
  EXPECT_TRUE(WaitFor([&] { return agent_.AgentLog().find("cmd=ping") != std::string::npos; },
                      milliseconds(2000)))
      << agent_.AgentLog();

  // A settings file that no longer parses changes nothing and is said so.
  WriteFile(agent_.settings_path(), ReadFile(agent_.settings_path()) + "[nonsense]\n");
  ASSERT_EQ(kill(agent_pid, SIGHUP), 0);
  EXPECT_TRUE(WaitFor(
      [&] { return agent_.AgentLog().find("not applied, nothing changed") != std::string::npos; },
      milliseconds(5000)));
  EXPECT_TRUE(agent_.AgentRunning());

  agent_.StopAgent();
  EXPECT_NE(systemd.WaitFor("STOPPING=1", milliseconds(2000)), "") << Joined(systemd.seen());
}

TEST_F(OperationsTest, AgentRestartNeverInterruptsTrafficByDefault) {
  Start();
  ASSERT_FALSE(HasFatalFailure());
  const pid_t worker = agent_.HaproxyWorkerPid();
  StartTraffic();
  agent_.StopAgent();
  const int after_stop = served_;
  ASSERT_TRUE(WaitFor([&] { return served_ > after_stop + 10; }, milliseconds(5000)))
      << "haproxy stopped serving with the agent";
  agent_.StartAgent();
  ASSERT_FALSE(HasFatalFailure());
  std::this_thread::sleep_for(milliseconds(200));
  FinishTraffic();
  EXPECT_EQ(failed_, 0) << served_ << " requests served";
  EXPECT_EQ(agent_.HaproxyWorkerPid(), worker) << "the new agent adopts the running haproxy";
  EXPECT_EQ(agent_.HaproxyReloads(), 0);
  EXPECT_NE(agent_.AgentLog().find("haproxy keeps serving for the next agent"), std::string::npos)
      << agent_.AgentLog();
}

class StopOnExitTest : public OperationsTest {
 protected:
  StopOnExitTest() : OperationsTest({{"stop_haproxy_on_exit", "yes"}}) {}
};

// stop_haproxy_on_exit = yes: a second agent on the same config, which would adopt the first
// one's haproxy and stop it on its way out, exits before touching it.
TEST_F(StopOnExitTest, SecondAgentOnTheSameConfigExitsAndLeavesTheFirstAlone) {
  Start();
  ASSERT_FALSE(HasFatalFailure());
  const pid_t worker = agent_.HaproxyWorkerPid();
  StartTraffic();
  CommandResult second =
      RunCommand({AgentBinary(), "--config", agent_.settings_path()}, milliseconds(15000));
  EXPECT_EQ(second.exit_code, 1) << second.Describe();
  EXPECT_NE(second.err.find("another lb-agent runs with the config " + agent_.config_path()),
            std::string::npos)
      << second.err;
  EXPECT_NE(second.err.find("is held by pid " + std::to_string(agent_.agent_pid())),
            std::string::npos)
      << second.err;
  std::this_thread::sleep_for(milliseconds(200));
  FinishTraffic();
  EXPECT_EQ(failed_, 0);
  EXPECT_EQ(agent_.HaproxyWorkerPid(), worker);
  EXPECT_TRUE(agent_.Ok("ping").is_object());
}

// stop_haproxy_on_exit = yes and an agent that adopts haproxy but cannot bind its event socket:
// it exits 1 and haproxy keeps serving.
TEST_F(StopOnExitTest, StartThatFailsNeverStopsHaproxy) {
  Start();
  ASSERT_FALSE(HasFatalFailure());
  const pid_t worker = agent_.HaproxyWorkerPid();
  agent_.KillAgent();  // haproxy keeps running
  httplib::Server taken;
  const int port = taken.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::string settings = ReadFile(agent_.settings_path());
  const std::string events = "event_endpoint = " + agent_.events_endpoint();
  const auto at = settings.find(events);
  ASSERT_NE(at, std::string::npos) << settings;
  settings.replace(at, events.size(), "event_endpoint = tcp://127.0.0.1:" + std::to_string(port));
  WriteFile(agent_.dir().File("taken.cfg"), settings);
  StartTraffic();
  CommandResult failed =
      RunCommand({AgentBinary(), "--config", agent_.dir().File("taken.cfg")}, milliseconds(20000));
  std::this_thread::sleep_for(milliseconds(200));
  FinishTraffic();
  EXPECT_EQ(failed.exit_code, 1) << failed.Describe();
  EXPECT_NE(failed.err.find("adopt"), std::string::npos) << "it did adopt haproxy first\n"
                                                         << failed.err;
  EXPECT_EQ(HaproxyCli(agent_.master_socket(), "show proc").find(std::to_string(worker)) ==
                std::string::npos,
            false)
      << "haproxy's worker is gone";
  EXPECT_TRUE(Serves());
  EXPECT_EQ(failed_, 0) << served_ << " served";
}

// history and rollback, through the agent's command socket and through lbctl: a rollback is an
// ordinary, verified reload of a kept file, and traffic follows it.
TEST_F(OperationsTest, HistoryListsTheKeptConfigsAndRollbackReloadsOne) {
  HttpBackend& b = b_;
  Start();
  ASSERT_FALSE(HasFatalFailure());
  const std::string v1 = ReadFile(agent_.config_path());
  const std::string v2 = HaproxyConfig(frontend_, {{"b", b.port()}});
  ASSERT_EQ(agent_.Ok("reload", {{"config", v2}, {"apply_via", "reload"}})["outcome"], "applied");
  ASSERT_TRUE(WaitFor([&] { return HttpGetBody(frontend_) == "b"; }, milliseconds(5000)));
  EXPECT_EQ(agent_.ErrorCode("reload", {{"config", "global\n  nonsense\n"}}), "invalid_config");

  json history = agent_.Ok("history");
  ASSERT_TRUE(history.is_object());
  const json& entries = history["entries"];
  ASSERT_EQ(entries.size(), 2u) << "a config refused by validation is never kept: "
                                << history.dump();
  EXPECT_EQ(entries[0]["outcome"], "applied");
  EXPECT_EQ(entries[0]["live"], true);
  EXPECT_EQ(entries[0]["sha256"], history["live_sha256"]);
  EXPECT_EQ(entries[1]["outcome"], "was_live");
  EXPECT_EQ(entries[1]["live"], false);

  const std::string lbctl = LBCTL_BINARY;
  CommandResult listed = RunCommand({lbctl, "--agent", agent_.endpoint(), "history"});
  EXPECT_EQ(listed.exit_code, 0) << listed.Describe();
  EXPECT_NE(listed.out.find("was_live"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("live\n"), std::string::npos) << listed.out;

  CommandResult rolled = RunCommand({lbctl, "--agent", agent_.endpoint(), "rollback"});
  EXPECT_EQ(rolled.exit_code, 0) << rolled.Describe();
  EXPECT_NE(rolled.out.find("rollback to history entry 1 ("), std::string::npos) << rolled.out;
  EXPECT_EQ(ReadFile(agent_.config_path()), v1);
  EXPECT_EQ(Answers(frontend_), "a") << "traffic follows the rollback";
  json after = agent_.Ok("history")["entries"];
  ASSERT_EQ(after.size(), 3u) << after.dump();
  EXPECT_EQ(after[0]["outcome"], "applied");
  EXPECT_EQ(after[0]["sha256"], entries[1]["sha256"]);
  EXPECT_EQ(after[0]["live"], true);

  // The default rollback from v1 goes back to v2; a number that does not exist is refused.
  json again = agent_.Ok("rollback");
  EXPECT_EQ(again["rollback_to"]["sha256"], entries[0]["sha256"]) << again.dump();
  EXPECT_EQ(ReadFile(agent_.config_path()), v2);
  CommandResult missing = RunCommand({lbctl, "--agent", agent_.endpoint(), "rollback", "9"});
  EXPECT_EQ(missing.exit_code, 1) << missing.Describe();
  EXPECT_NE(missing.err.find("no entry 9 in the history"), std::string::npos) << missing.err;
  EXPECT_EQ(ReadFile(agent_.config_path()), v2);
}

TEST(CheckTest, AgentAndBridgeCheckWhatTheBridgeReads) {
  AgentFixture agent;
  const std::string tokens = agent.dir().File("tokens");
  WriteFile(tokens, "a-token-of-thirty-two-characters-or-more\n");
  ASSERT_EQ(chmod(tokens.c_str(), 0644), 0);
  agent.SetSecurityKeys({{"bridge_tokens_file", tokens}});
  agent.WriteSettings();
  for (const std::string& binary : {AgentBinary(), BridgeBinary()}) {
    SCOPED_TRACE(binary);
    CommandResult bad = RunCommand({binary, "--config", agent.settings_path(), "--check"});
    EXPECT_EQ(bad.exit_code, 2) << bad.Describe();
    EXPECT_NE(bad.err.find("readable by other users"), std::string::npos) << bad.Describe();
    EXPECT_NE(bad.err.find("chmod o-rwx " + tokens), std::string::npos) << bad.Describe();
  }
  ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
  for (const std::string& binary : {AgentBinary(), BridgeBinary()}) {
    SCOPED_TRACE(binary);
    CommandResult good = RunCommand({binary, "--config", agent.settings_path(), "--check"});
    EXPECT_EQ(good.exit_code, 0) << good.Describe();
    EXPECT_EQ(good.out, agent.settings_path() + ": ok\n");
  }
  std::filesystem::remove(tokens);
  CommandResult missing =
      RunCommand({BridgeBinary(), "--config", agent.settings_path(), "--check"});
  EXPECT_EQ(missing.exit_code, 2) << missing.Describe();
  EXPECT_NE(missing.err.find("No such file"), std::string::npos) << missing.Describe();
  // --check binds nothing: the bridge's port stays free.
  httplib::Server probe;
  EXPECT_TRUE(probe.bind_to_port("127.0.0.1", agent.bridge_port()));
}

TEST(BridgeHupTest, HupReplacesTheTokensAndKeepsServing) {
  HttpBackend backend("a");
  AgentFixture agent;
  WriteFile(agent.config_path(), HaproxyConfig(FreePort(), {{"a", backend.port()}}));
  const std::string tokens = agent.dir().File("tokens");
  const std::string old_token = "old-token-0123456789abcdefghijklmnopq";
  const std::string new_token = "new-token-0123456789abcdefghijklmnopq";
  WriteFile(tokens, old_token + "\n");
  ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
  agent.SetSecurityKeys({{"bridge_tokens_file", tokens}});
  agent.StartAgent();
  agent.StartBridge();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  auto status_with = [&](const std::string& token) {
    httplib::Client client("127.0.0.1", agent.bridge_port());
    client.set_read_timeout(10, 0);
    client.set_bearer_token_auth(token);
    auto res = client.Get("/getBackends");
    return res ? res->status : -1;
  };
  EXPECT_EQ(status_with(old_token), 200);
  EXPECT_EQ(status_with(new_token), 401);
  const pid_t pid = agent.bridge_pid();
  WriteFile(tokens, new_token + "\n");
  ASSERT_EQ(kill(pid, SIGHUP), 0);
  EXPECT_TRUE(WaitFor([&] { return status_with(new_token) == 200; }, milliseconds(5000)));
  EXPECT_EQ(status_with(old_token), 401) << "a revoked token still works";
  // A file that fails to load keeps the tokens in use: never an open bridge.
  WriteFile(tokens, "# nothing\n");
  ASSERT_EQ(kill(pid, SIGHUP), 0);
  const std::string log_path = agent.dir().File("bridge.log");
  EXPECT_TRUE(WaitFor(
      [&] { return ReadFile(log_path).find("tokens=\"previous 1 kept") != std::string::npos; },
      milliseconds(5000)))
      << ReadFile(log_path);
  EXPECT_EQ(status_with(new_token), 200);
  EXPECT_EQ(status_with(""), 401);
  EXPECT_TRUE(agent.BridgeRunning());
  EXPECT_EQ(agent.bridge_pid(), pid);
}

TEST(ControllerHupTest, HupRereadsAndKeepsServing) {
  TempDir dir;
  FleetController::Options options;
  options.dir = dir.path();
  options.lbctl = LBCTL_BINARY;
  FleetController controller(options);
  controller.Start();
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_EQ(kill(controller.pid(), SIGHUP), 0);
  EXPECT_TRUE(WaitFor([&] { return controller.Log().find("SIGHUP: re-read") != std::string::npos; },
                      milliseconds(5000)))
      << controller.Log();
  EXPECT_TRUE(controller.Running());
  EXPECT_EQ(controller.Lbctl({"agents", "--json"}, milliseconds(5000)).exit_code, 0);
  const int status = controller.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace lb::testing
