// What a pushed config may read and write (issue 14, SECURITY.md "Files a config may name"):
// the real agent, bridge and haproxy. Each case is one the red team used: a config line that made
// haproxy -c quote a file back (SPOE config, ACL file, map_ip(), crt-list, errorfile), a
// `.alert` that printed the agent's environment, a server-state-file or stats socket that made
// the agent or haproxy overwrite a file. None may quote a byte of the file or the environment,
// and the live config and the file stay as they were.
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

constexpr char kSecret[] = "root:x:0:0:SECRET-LINE-ONE:/root:/bin/bash";
constexpr char kSecondLine[] = "SECRET-LINE-TWO";
constexpr char kEnvSecret[] = "env-secret-5e1c0e";

// The frontend/backend around one extra line in the frontend (or global, with `global_line`).
std::string ConfigWith(int port, const std::string& frontend_line,
                       const std::string& global_line = "") {
  return "global\n" + global_line +
         "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
         "    timeout server 5s\n"
         "frontend main\n    bind 127.0.0.1:" +
         std::to_string(port) + "\n    default_backend scaling_nodes\n" + frontend_line +
         "\nbackend scaling_nodes\n    server a 127.0.0.1:9 check\n";
}

class ConfigSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(outside_.File("secret"), std::string(kSecret) + "\n" + kSecondLine + "\n");
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), ConfigWith(frontend_, ""));
    agent_.StartAgent();
    agent_.StartBridge();
    live_ = ReadFile(agent_.config_path());
  }

  // The whole reply (message, details, warnings) of `cmd` with `config`, as text.
  std::string Reply(const std::string& cmd, const std::string& config) {
    auto r = agent_.Call(cmd, {{"config", config}});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return "";
    last_code_ = r->status.ok() ? "ok" : std::string(proto::ErrorCodeName(r->status.code()));
    return proto::ReplyToJson(*r).dump();
  }
  // POST /reload through the bridge: status and body.
  std::pair<int, std::string> BridgeReload(const std::string& config) {
    httplib::Client client("127.0.0.1", agent_.bridge_port());
    client.set_read_timeout(30, 0);
    auto res = client.Post("/reload", {{"X-Requested-With", "test"}}, config, "text/plain");
    if (!res) return {0, ""};
    return {res->status, res->body};
  }
  void ExpectNoSecret(const std::string& text) {
    EXPECT_EQ(text.find("SECRET-LINE"), std::string::npos) << text;
    EXPECT_EQ(text.find("root:x:0:0"), std::string::npos) << text;
    EXPECT_EQ(text.find(kEnvSecret), std::string::npos) << text;
  }

  TempDir outside_;  // not an allowed directory
  AgentFixture agent_;
  int frontend_ = 0;
  std::string live_;
  std::string last_code_;
};

TEST_F(ConfigSecurityTest, FilesOutsideTheAllowedPathsAreRefusedBeforeHaproxyReadsThem) {
  const std::string secret = outside_.File("secret");
  const std::vector<std::string> lines = {
      "    filter spoe engine e config " + secret,
      "    acl x src -f " + secret,
      "    http-request deny if { src,map_ip(" + secret + ") -m found }",
      "    bind 127.0.0.1:" + std::to_string(FreePort()) + " ssl crt-list " + secret,
      "    errorfile 503 " + secret,
      "    http-request return status 200 content-type text/plain file " + secret,
  };
  for (const auto& line : lines) {
    SCOPED_TRACE(line);
    const std::string config = ConfigWith(frontend_, line);
    const std::string validated = Reply("validate", config);
    EXPECT_EQ(last_code_, "invalid_config");
    EXPECT_NE(validated.find("outside the directories a config may name"), std::string::npos)
        << validated;
    ExpectNoSecret(validated);
    auto [status, body] = BridgeReload(config);
    EXPECT_EQ(status, 422) << body;
    ExpectNoSecret(body);
    EXPECT_EQ(ReadFile(agent_.config_path()), live_);
  }
}

TEST_F(ConfigSecurityTest, MessagesAboutAllowedFilesNameTheFileButQuoteNothing) {
  // Inside the config's directory, so allowed: haproxy -c reads it and refuses it, and the agent
  // passes on where, not what.
  const std::string inside = agent_.dir().File("lists.txt");
  WriteFile(inside, std::string(kSecret) + "\n" + kSecondLine + "\n");
  const std::vector<std::string> lines = {
      "    filter spoe engine e config " + inside,
      "    acl x src -f lists.txt",
      "    http-request deny if { src,map_ip(lists.txt) -m found }",
      "    bind 127.0.0.1:" + std::to_string(FreePort()) + " ssl crt-list lists.txt",
  };
  for (const auto& line : lines) {
    SCOPED_TRACE(line);
    const std::string config = ConfigWith(frontend_, line);
    const std::string validated = Reply("validate", config);
    EXPECT_EQ(last_code_, "invalid_config");
    ExpectNoSecret(validated);
    EXPECT_NE(validated.find("withheld"), std::string::npos) << validated;
    EXPECT_NE(validated.find("lists.txt"), std::string::npos) << "names the file: " << validated;
    auto [status, body] = BridgeReload(config);
    EXPECT_EQ(status, 422) << body;
    ExpectNoSecret(body);
    EXPECT_EQ(ReadFile(agent_.config_path()), live_);
  }
}

TEST_F(ConfigSecurityTest, StateFileAndSocketsCannotOverwriteAnyFile) {
  WriteFile(outside_.File("notes"), "precious\n");
  const std::string notes_inside = agent_.dir().File("notes.txt");
  WriteFile(notes_inside, "precious too\n");
  const std::string rel = std::filesystem::relative(outside_.File("notes"), agent_.dir().path());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"    server-state-file " + outside_.File("notes") + "\n", "outside"},
      {"    server-state-file " + rel + "\n", "outside"},
      {"    server-state-file " + outside_.File("new/dir/state") + "\n", "outside"},
      {"    server-state-file notes.txt\n", "is not a server-state file"},
      {"    stats socket notes.txt mode 600 level admin\n", "is not a socket"},
      {"    stats socket " + outside_.File("notes") + "\n", "outside"},
  };
  for (const auto& [global, why] : cases) {
    SCOPED_TRACE(global);
    const std::string config =
        ConfigWith(frontend_, "    load-server-state-from-file global", global);
    const std::string reply = Reply("reload", config);
    EXPECT_EQ(last_code_, "invalid_config") << reply;
    EXPECT_NE(reply.find(why), std::string::npos) << reply;
    EXPECT_EQ(ReadFile(agent_.config_path()), live_);
  }
  EXPECT_EQ(ReadFile(outside_.File("notes")), "precious\n");
  EXPECT_EQ(ReadFile(notes_inside), "precious too\n");
  struct stat st {};
  ASSERT_EQ(lstat(notes_inside.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode)) << "not replaced with a socket";
  EXPECT_FALSE(std::filesystem::exists(outside_.File("new"))) << "no directory was created";
}

// The agent's environment holds a secret; a config reads variables through "${NAME}".
class ConfigEnvironmentTest : public ::testing::Test {
 protected:
  void Start(Keys security) {
    setenv("LB_TEST_SECRET", kEnvSecret, 1);
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), ConfigWith(frontend_, ""));
    agent_.SetSecurityKeys(std::move(security));
    agent_.StartAgent();
  }
  void TearDown() override { unsetenv("LB_TEST_SECRET"); }

  AgentFixture agent_;
  int frontend_ = 0;
};

TEST_F(ConfigEnvironmentTest, TheAgentsEnvironmentDoesNotReachAConfig) {
  Start({});
  auto alert = agent_.Call(
      "reload",
      {{"config", ConfigWith(frontend_, "", "    .alert \"${LB_TEST_SECRET} ${HOME}\"\n")}});
  ASSERT_TRUE(alert.ok());
  const std::string text = proto::ReplyToJson(*alert).dump();
  EXPECT_EQ(text.find(kEnvSecret), std::string::npos) << text;
  EXPECT_EQ(text.find(std::getenv("HOME") ? std::getenv("HOME") : "/nonexistent-home"),
            std::string::npos)
      << text;
  json warned =
      agent_.Ok("validate",
                {{"config", ConfigWith(frontend_, "", "    .warning \"[${LB_TEST_SECRET}]\"\n")}});
  EXPECT_EQ(warned.dump().find(kEnvSecret), std::string::npos) << warned.dump();
  EXPECT_NE(warned.dump().find("[]"), std::string::npos)
      << "the variable is empty: " << warned.dump();
}

TEST_F(ConfigEnvironmentTest, ConfigEnvironmentPassesWhatTheOperatorChose) {
  Start({{"config_environment", "LB_TEST_SECRET SITE=eu-west"}});
  json warned = agent_.Ok(
      "validate",
      {{"config", ConfigWith(frontend_, "", "    .warning \"[${LB_TEST_SECRET}|${SITE}]\"\n")}});
  EXPECT_NE(warned.dump().find(std::string("[") + kEnvSecret + "|eu-west]"), std::string::npos)
      << warned.dump();
}

}  // namespace
}  // namespace lb::testing
