// reload_method = sysv (and by the same code path systemd): the agent runs an init script and
// verifies the reload on the stats socket. The init script is the test's stand-in for
// /etc/init.d/haproxy: it signals a real haproxy master (SIGUSR2 = reload).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>
#include <string>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest()
      : agent_(Keys{{"reload_method", "sysv"},
                    {"systemv_init_path", "./init-haproxy"},
                    {"socket_path", "stats.sock"}}) {}

  void SetUp() override {
    const std::string dir = agent_.dir().path();
    WriteFile(agent_.dir().File("init-haproxy"),
              "#!/bin/sh\n"
              "case \"$1\" in\n"
              "  reload)\n"
              "    if [ -f " +
                  dir +
                  "/refuse ]; then echo 'haproxy.service: reload refused' >&2; exit 1; fi\n"
                  "    kill -USR2 \"$(cat " +
                  dir +
                  "/haproxy.pid)\" ;;\n"
                  "  *) echo \"usage: $0 reload\" >&2; exit 2 ;;\n"
                  "esac\n");
    chmod(agent_.dir().File("init-haproxy").c_str(), 0755);
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), Config({{"a", a_.port()}}));
    haproxy_ = std::make_unique<Process>(
        std::vector<std::string>{HaproxyBinary(), "-W", "-db", "-f", agent_.config_path(), "-p",
                                 agent_.dir().File("haproxy.pid")},
        agent_.dir().File("haproxy.log"));
    agent_.StartAgent();
    ASSERT_TRUE(WaitFor([&] { return agent_.ServerStatus("a") == "UP"; }, milliseconds(10000)))
        << ReadFile(agent_.dir().File("haproxy.log"));
  }

  // The stats socket is relative to haproxy's working directory: give it an absolute path.
  std::string Config(const std::vector<Server>& servers) {
    return HaproxyConfig(
        frontend_, servers, "scaling_nodes",
        "    stats socket " + agent_.dir().File("stats.sock") + " mode 600 level admin\n");
  }

  HttpBackend a_{"a"};
  HttpBackend b_{"b"};
  AgentFixture agent_;
  std::unique_ptr<Process> haproxy_;
  int frontend_ = 0;
};

TEST_F(ServiceTest, InitScriptReloadIsAppliedAndVerified) {
  const int old_pid = agent_.Ok("info")["haproxy"]["pid"];
  json result =
      agent_.Ok("reload", {{"config", Config({{"b", b_.port()}})}, {"apply_via", "reload"}});
  EXPECT_EQ(result["outcome"], "applied");
  EXPECT_EQ(result["verified"], true);
  EXPECT_NE(agent_.Ok("info")["haproxy"]["pid"], old_pid) << "a new worker answers";
  EXPECT_TRUE(WaitFor([&] { return HttpGetBody(frontend_) == "b"; }, milliseconds(5000)));
  EXPECT_TRUE(WaitFor([&] { return agent_.ServerStatus("b") == "UP"; }, milliseconds(5000)));
}

TEST_F(ServiceTest, FailingInitScriptIsReportedWithItsStderrAndRolledBack) {
  const std::string before = ReadFile(agent_.config_path());
  WriteFile(agent_.dir().File("refuse"), "");
  auto reply =
      agent_.Call("reload", {{"config", Config({{"b", b_.port()}})}, {"apply_via", "reload"}});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kReloadFailed);
  EXPECT_NE(reply->status.message().find("reload refused"), std::string::npos)
      << reply->status.message();
  EXPECT_NE(reply->status.message().find("exit code 1"), std::string::npos);
  // The rollback reload fails the same way, and the file is restored anyway.
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
  EXPECT_EQ(HttpGetBody(frontend_), "a");
}

TEST_F(ServiceTest, ServerChangeGoesThroughTheStatsSocketWithoutTheInitScript) {
  const int old_pid = agent_.Ok("info")["haproxy"]["pid"];
  WriteFile(agent_.dir().File("refuse"), "");  // the init script would fail: it must not run
  const std::string next = Config({{"a", a_.port()}, {"b", b_.port()}});
  json result = agent_.Ok("reload", {{"config", next}});
  EXPECT_EQ(result["applied_via"], "runtime") << result.dump();
  EXPECT_EQ(result["verified"], true);
  EXPECT_EQ(agent_.Ok("info")["haproxy"]["pid"], old_pid) << "the same worker";
  EXPECT_EQ(ReadFile(agent_.config_path()), next);
  EXPECT_TRUE(WaitFor([&] { return agent_.ServerStatus("b") == "UP"; }, milliseconds(5000)));
  std::set<std::string> seen;
  EXPECT_TRUE(WaitFor(
      [&] {
        seen.insert(HttpGetBody(frontend_));
        return seen.count("a") && seen.count("b");
      },
      milliseconds(5000)));
}

TEST_F(ServiceTest, ConfigWithoutTheStatsSocketGetsAWarning) {
  json result = agent_.Ok("validate", {{"config", HaproxyConfig(frontend_, {{"b", b_.port()}})}});
  bool warned = false;
  for (const auto& w : result["warnings"]) {
    warned = warned || w.get<std::string>().find("stats socket") != std::string::npos;
  }
  EXPECT_TRUE(warned) << result.dump();
}

}  // namespace
}  // namespace lb::testing
