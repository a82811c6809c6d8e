// The config policy (SECURITY.md) end to end: a real lb-agent in managed mode refuses a config
// that makes haproxy run code, although haproxy itself accepts it, and leaves the live config
// and haproxy alone; and the agent warns at every start when it runs as root.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "harness.h"

namespace lb::testing {
namespace {

// 1-based number of the line of `text` that contains `needle`.
int LineOf(const std::string& text, const std::string& needle) {
  const auto at = text.find(needle);
  return at == std::string::npos
             ? -1
             : 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
}

int Occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(PolicyTest, LuaLoadIsRefusedByReloadAndValidateWhileHaproxyWouldAcceptIt) {
  HttpBackend a("backend-a");
  HttpBackend b("backend-b");
  AgentFixture agent;
  const int frontend = FreePort();
  WriteFile(agent.config_path(), HaproxyConfig(frontend, {{"a", a.port()}}));
  agent.StartAgent();
  ASSERT_EQ(HttpGetBody(frontend), "backend-a");
  const std::string before = ReadFile(agent.config_path());
  const pid_t worker = agent.HaproxyWorkerPid();

  const std::string lua = agent.dir().File("hello.lua");
  WriteFile(lua, "core.Info('loaded by haproxy')\n");
  const std::string config =
      HaproxyConfig(frontend, {{"b", b.port()}}, "scaling_nodes", "    \"lua-load\" " + lua + "\n");
  // haproxy itself takes this config: the refusal below is the agent's policy.
  const std::string candidate = agent.dir().File("candidate.cfg");
  WriteFile(candidate, config);
  CommandResult check = RunCommand({HaproxyBinary(), "-c", "-f", candidate});
  ASSERT_EQ(check.exit_code, 0) << check.Describe();

  const std::string where = "line " + std::to_string(LineOf(config, "lua-load")) + ": lua-load";
  for (const std::string cmd : {"validate", "reload"}) {
    auto reply = agent.Call(cmd, {{"config", config}});
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->status.code(), proto::ErrorCode::kInvalidConfig) << cmd;
    EXPECT_NE(reply->status.message().find(where), std::string::npos)
        << cmd << ": " << reply->status.message();
    EXPECT_NE(reply->status.message().find("[security] allow_programs = yes"), std::string::npos)
        << cmd << ": " << reply->status.message();
  }
  EXPECT_EQ(ReadFile(agent.config_path()), before);  // byte for byte
  EXPECT_EQ(agent.HaproxyWorkerPid(), worker);       // not reloaded
  EXPECT_EQ(HttpGetBody(frontend), "backend-a");
  for (const auto& entry : std::filesystem::directory_iterator(agent.dir().path())) {
    EXPECT_NE(entry.path().filename().string().rfind(".lb-agent-tmp.", 0), 0u)
        << "temp file left behind: " << entry.path();
  }
}

// Differential check against haproxy's own parser: every spelling under which haproxy really
// loads a Lua file (it prints the file's alert during `haproxy -c`) is refused by the agent's
// policy, not merely by haproxy -c.
TEST(PolicyTest, EverySpellingUnderWhichHaproxyLoadsLuaIsRefused) {
  AgentFixture agent;
  agent.StartAgent();
  const std::string lua = agent.dir().File("marker.lua");
  WriteFile(lua, "core.Alert('LB-POLICY-LUA-LOADED')\n");
  const int frontend = FreePort();
  const std::vector<std::string> spellings = {
      "lua-load " + lua,
      "\tlua-load\t" + lua,
      "\"lua-load\" " + lua,
      "lua\"-\"load " + lua,
      "'lua'-load " + lua,
      "lua\\x2dload " + lua,
      "\\x6cua-load " + lua,
      "\rlua-load " + lua,
      "lua-load \r" + lua,
      "\"$KW\" " + lua,  // KW is set to lua-load by the line before
      "\"${KW}\" " + lua,
      "\"${UNSET-lua-load}\" " + lua,
      "lua-load-per-thread " + lua,
  };
  int loaded_by_haproxy = 0;
  for (const std::string& spelling : spellings) {
    const std::string config = HaproxyConfig(frontend, {{"a", FreePort()}}, "scaling_nodes",
                                             "    setenv KW lua-load\n    " + spelling + "\n");
    const std::string path = agent.dir().File("spelling.cfg");
    WriteFile(path, config);
    CommandResult check = RunCommand({HaproxyBinary(), "-c", "-f", path});
    const bool loaded = (check.out + check.err).find("LB-POLICY-LUA-LOADED") != std::string::npos;
    loaded_by_haproxy += loaded ? 1 : 0;
    auto reply = agent.Call("validate", {{"config", config}});
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->status.code(), proto::ErrorCode::kInvalidConfig) << spelling;
    if (loaded) {
      EXPECT_NE(reply->status.message().find("allow_programs"), std::string::npos)
          << "haproxy loads Lua with [" << spelling
          << "] but the agent did not refuse it by policy: " << reply->status.message();
    }
  }
  // Each spelling is a real way to load Lua, not a typo that haproxy -c would catch anyway.
  EXPECT_EQ(loaded_by_haproxy, static_cast<int>(spellings.size()));
}

TEST(PolicyTest, AgentWarnsAtEveryStartWhenRunningAsRoot) {
  AgentFixture agent;
  agent.StartAgent();
  agent.StopAgent();
  agent.StartAgent();
  const std::string log = agent.AgentLog();
  const std::string warning = "level=warning prog=lb-agent msg=\"warning: running as root";
  if (geteuid() == 0) {
    EXPECT_EQ(Occurrences(log, warning), 2) << log;
    EXPECT_NE(log.find("SECURITY.md"), std::string::npos) << log;
  } else {
    EXPECT_EQ(Occurrences(log, warning), 0) << log;
  }
}

}  // namespace
}  // namespace lb::testing
