// ConfigLint: what the agent reads from an haproxy config and what it refuses or warns about.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "config_lint.h"

namespace lb::agent {
namespace {

using common::ReloadMethod;
using proto::ErrorCode;

// A config with everything the agent recommends: no warnings in managed mode.
constexpr char kComplete[] = R"(global
    daemon
    server-state-file /var/lib/haproxy/server-state
    hard-stop-after 30s
    stats socket /var/lib/haproxy/stats mode 660 level admin

defaults
    mode http
    option idle-close-on-response
    load-server-state-from-file global
    timeout connect 5s

frontend main
    bind :8080
    default_backend scaling_nodes

backend scaling_nodes
    balance roundrobin
    server i-1 10.0.0.1:80 check
    server i-2 10.0.0.2:80 check
)";

bool HasWarningContaining(const LintResult& result, const std::string& text) {
  return std::any_of(result.warnings.begin(), result.warnings.end(),
                     [&](const std::string& w) { return w.find(text) != std::string::npos; });
}

LintOptions Managed(const std::string& default_backend = "scaling_nodes") {
  LintOptions options;
  options.default_backend = default_backend;
  options.method = ReloadMethod::kManaged;
  options.stats_via_master = true;
  options.socket_path = "/var/lib/haproxy/stats";
  return options;
}

TEST(ReadConfigFactsTest, CountsServersPerBackendAndListenSection) {
  ConfigFacts facts = ReadConfigFacts(
      "frontend fe\n  bind :80\n  server not-counted 1.2.3.4:80\n"
      "backend app\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80 check\n"
      "listen stats_and_more\n  bind :81\n  server c 10.0.0.3:80\n"
      "backend empty\n  balance roundrobin\n"
      "backend templated\n  server-template web 1-5 app.example.com:80 check\n");
  EXPECT_EQ(facts.backend_servers.size(), 4u);
  EXPECT_EQ(facts.backend_servers["app"], 2);
  EXPECT_EQ(facts.backend_servers["stats_and_more"], 1);
  EXPECT_EQ(facts.backend_servers["empty"], 0);
  EXPECT_EQ(facts.backend_servers["templated"], 1);
  EXPECT_EQ(facts.backend_servers.count("fe"), 0u);
}

TEST(ReadConfigFactsTest, IgnoresCommentsAndCommentedOutServers) {
  ConfigFacts facts = ReadConfigFacts(
      "# backend ghost\n"
      "backend app # the main pool\n"
      "  # server old 10.0.0.9:80\n"
      "  server a 10.0.0.1:80 # primary\n"
      "#server b 10.0.0.2:80\n");
  EXPECT_EQ(facts.backend_servers.size(), 1u);
  EXPECT_EQ(facts.backend_servers["app"], 1);
}

TEST(ReadConfigFactsTest, ReadsQuotedWords) {
  ConfigFacts facts = ReadConfigFacts(
      "global\n  stats socket \"/run/hap roxy/admin #1.sock\" level admin\n"
      "  server-state-file '/var/lib/state file'\n"
      "backend \"quoted name\"\n  server a 10.0.0.1:80\n");
  ASSERT_EQ(facts.stats_sockets.size(), 1u);
  EXPECT_EQ(facts.stats_sockets[0], "/run/hap roxy/admin #1.sock");
  EXPECT_EQ(facts.server_state_file, "/var/lib/state file");
  EXPECT_EQ(facts.backend_servers["quoted name"], 1);
}

TEST(ReadConfigFactsTest, ReadsStatsSocketsAndServerState) {
  ConfigFacts facts = ReadConfigFacts(
      "global\n  stats socket /var/lib/haproxy/stats mode 660 level admin\n"
      "  stats socket ipv4@127.0.0.1:9999 level operator\n"
      "  stats timeout 30s\n"
      "  server-state-base /var/lib/haproxy/state\n  server-state-file servers\n"
      "  hard-stop-after 1m\n"
      "defaults\n  load-server-state-from-file global\n  option idle-close-on-response\n");
  EXPECT_EQ(facts.stats_sockets,
            (std::vector<std::string>{"/var/lib/haproxy/stats", "ipv4@127.0.0.1:9999"}));
  EXPECT_EQ(facts.server_state_base, "/var/lib/haproxy/state");
  EXPECT_EQ(facts.server_state_file, "servers");
  EXPECT_TRUE(facts.loads_server_state);
  EXPECT_TRUE(facts.idle_close_on_response);
  EXPECT_TRUE(facts.hard_stop_after);
}

TEST(ReadConfigFactsTest, PrivilegedDirectivesCountOnlyInGlobal) {
  ConfigFacts facts = ReadConfigFacts(
      "global\n  chroot /var/lib/haproxy\n  user haproxy\n  group haproxy\n"
      "userlist admins\n  user tiger password secret\n  group ops users tiger\n"
      "backend app\n  server a 10.0.0.1:80\n");
  EXPECT_EQ(facts.privileged, (std::vector<std::string>{"chroot", "user", "group"}));
  ConfigFacts none = ReadConfigFacts(
      "userlist admins\n  user tiger password secret\n"
      "defaults\n  hard-stop-after 30s\n  stats socket /x\n  server-state-file /y\n");
  EXPECT_TRUE(none.privileged.empty());
  EXPECT_FALSE(none.hard_stop_after);
  EXPECT_TRUE(none.stats_sockets.empty());
  EXPECT_TRUE(none.server_state_file.empty());
}

TEST(ReadConfigFactsTest, ToleratesCrlfAndTabs) {
  ConfigFacts facts = ReadConfigFacts("backend\tapp\r\n\tserver\ta\t10.0.0.1:80\r\n");
  EXPECT_EQ(facts.backend_servers["app"], 1);
}

TEST(ServerStateFilePathTest, AbsoluteFileIgnoresBase) {
  ConfigFacts facts;
  facts.server_state_file = "/var/lib/haproxy/state";
  facts.server_state_base = "/elsewhere";
  EXPECT_EQ(ServerStateFilePath(facts), "/var/lib/haproxy/state");
}

TEST(ServerStateFilePathTest, RelativeFileIsUnderBase) {
  ConfigFacts facts;
  facts.server_state_file = "servers";
  facts.server_state_base = "/var/lib/haproxy/state";
  EXPECT_EQ(ServerStateFilePath(facts), "/var/lib/haproxy/state/servers");
}

TEST(ServerStateFilePathTest, NoFileIsEmpty) {
  ConfigFacts facts;
  facts.server_state_base = "/var/lib/haproxy/state";
  EXPECT_EQ(ServerStateFilePath(facts), "");
}

TEST(LintConfigTest, CompleteConfigHasNoWarnings) {
  LintResult result = LintConfig(ReadConfigFacts(kComplete), Managed());
  EXPECT_TRUE(result.status.ok()) << result.status.ToString();
  EXPECT_TRUE(result.warnings.empty()) << result.warnings.front();
}

TEST(LintConfigTest, MissingDefaultBackendIsInvalidUnlessForced) {
  ConfigFacts facts = ReadConfigFacts(kComplete);
  LintOptions options = Managed("web");
  LintResult refused = LintConfig(facts, options);
  EXPECT_EQ(refused.status.code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(refused.status.message().find("\"web\""), std::string::npos)
      << refused.status.message();
  options.force = true;
  EXPECT_TRUE(LintConfig(facts, options).status.ok());
}

TEST(LintConfigTest, BackendWithoutServerIsInvalidUnlessForced) {
  ConfigFacts facts = ReadConfigFacts(
      "global\n  hard-stop-after 30s\nbackend scaling_nodes\n  balance roundrobin\n");
  LintOptions options = Managed();
  LintResult refused = LintConfig(facts, options);
  EXPECT_EQ(refused.status.code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(refused.status.message().find("no server"), std::string::npos)
      << refused.status.message();
  options.force = true;
  EXPECT_TRUE(LintConfig(facts, options).status.ok());
}

TEST(LintConfigTest, ListenSectionCountsAsDefaultBackend) {
  ConfigFacts facts = ReadConfigFacts("listen scaling_nodes\n  bind :80\n  server a 10.0.0.1:80\n");
  EXPECT_TRUE(LintConfig(facts, Managed()).status.ok());
}

TEST(LintConfigTest, ManagedNonRootRefusesPrivilegedDirectives) {
  std::string config = kComplete;
  config.replace(config.find("    daemon\n"), 11,
                 "    daemon\n    chroot /var/lib/haproxy\n    user haproxy\n");
  ConfigFacts facts = ReadConfigFacts(config);
  LintOptions options = Managed();
  options.running_as_root = false;
  LintResult refused = LintConfig(facts, options);
  EXPECT_EQ(refused.status.code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(refused.status.message().find("chroot"), std::string::npos) << refused.status.message();
  EXPECT_NE(refused.status.message().find("user"), std::string::npos) << refused.status.message();
  // force is about emptying the load balancer, not about privileges.
  options.force = true;
  EXPECT_EQ(LintConfig(facts, options).status.code(), ErrorCode::kInvalidConfig);
}

TEST(LintConfigTest, ManagedRootAcceptsPrivilegedDirectives) {
  std::string config = kComplete;
  config.replace(config.find("    daemon\n"), 11,
                 "    daemon\n    chroot /var/lib/haproxy\n    user haproxy\n    group haproxy\n");
  LintOptions options = Managed();
  options.running_as_root = true;
  LintResult result = LintConfig(ReadConfigFacts(config), options);
  EXPECT_TRUE(result.status.ok()) << result.status.ToString();
}

TEST(LintConfigTest, OtherMethodsAcceptPrivilegedDirectives) {
  std::string config = kComplete;
  config.replace(config.find("    daemon\n"), 11, "    daemon\n    user haproxy\n");
  for (ReloadMethod method : {ReloadMethod::kMaster, ReloadMethod::kSystemd, ReloadMethod::kSysv}) {
    LintOptions options = Managed();
    options.method = method;
    options.running_as_root = false;
    EXPECT_TRUE(LintConfig(ReadConfigFacts(config), options).status.ok())
        << ReloadMethodName(method);
  }
}

TEST(LintConfigTest, WarnsAboutEachMissingReloadSafeguard) {
  LintResult result =
      LintConfig(ReadConfigFacts("backend scaling_nodes\n  server a 10.0.0.1:80\n"), Managed());
  EXPECT_TRUE(result.status.ok()) << result.status.ToString();
  EXPECT_EQ(result.warnings.size(), 3u);
  EXPECT_TRUE(HasWarningContaining(result, "server-state-file"));
  EXPECT_TRUE(HasWarningContaining(result, "idle-close-on-response"));
  EXPECT_TRUE(HasWarningContaining(result, "hard-stop-after"));
}

TEST(LintConfigTest, ServerStateFileWithoutLoadingItWarns) {
  std::string config = kComplete;
  config.erase(config.find("    load-server-state-from-file global\n"),
               std::string("    load-server-state-from-file global\n").size());
  LintResult result = LintConfig(ReadConfigFacts(config), Managed());
  EXPECT_TRUE(HasWarningContaining(result, "server-state-file"));
  EXPECT_EQ(result.warnings.size(), 1u);
}

TEST(LintConfigTest, SystemdWithoutStatsSocketWarns) {
  LintOptions options = Managed();
  options.method = ReloadMethod::kSystemd;
  options.socket_path = "/run/haproxy/admin.sock";
  LintResult result = LintConfig(ReadConfigFacts(kComplete), options);
  EXPECT_TRUE(result.status.ok());
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_NE(result.warnings[0].find("stats socket /run/haproxy/admin.sock"), std::string::npos)
      << result.warnings[0];
}

TEST(LintConfigTest, SystemdWithMatchingStatsSocketDoesNotWarn) {
  LintOptions options = Managed();
  options.method = ReloadMethod::kSystemd;
  options.socket_path = "/var/lib/haproxy/stats";
  EXPECT_TRUE(LintConfig(ReadConfigFacts(kComplete), options).warnings.empty());
  std::string config = kComplete;
  config.replace(config.find("stats socket /var/lib/haproxy/stats"),
                 std::string("stats socket /var/lib/haproxy/stats").size(),
                 "stats socket unix@/var/lib/haproxy/stats");
  EXPECT_TRUE(LintConfig(ReadConfigFacts(config), options).warnings.empty());
}

TEST(LintConfigTest, ManagedWithStatsViaMasterNeedsNoStatsSocket) {
  std::string config = kComplete;
  config.erase(
      config.find("    stats socket"),
      std::string("    stats socket /var/lib/haproxy/stats mode 660 level admin\n").size());
  LintOptions options = Managed();
  options.socket_path = "/run/haproxy/admin.sock";
  EXPECT_TRUE(LintConfig(ReadConfigFacts(config), options).warnings.empty());
  // Without the master socket, managed mode reads the stats socket too.
  options.stats_via_master = false;
  EXPECT_TRUE(HasWarningContaining(LintConfig(ReadConfigFacts(config), options), "stats socket"));
}

}  // namespace
}  // namespace lb::agent
