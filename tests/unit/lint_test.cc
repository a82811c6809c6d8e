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

// ---- Words as haproxy 2.6's parse_line() reads them ----

std::vector<std::string> Texts(const std::vector<ConfigWord>& words) {
  std::vector<std::string> out;
  for (const auto& w : words) out.push_back(w.text);
  return out;
}

using Strings = std::vector<std::string>;

TEST(SplitConfigLineTest, SeparatorsAreAnyRunOfWhitespace) {
  EXPECT_EQ(Texts(SplitConfigLine("  \t lua-load\t \f/etc/x.lua \v ")),
            (Strings{"lua-load", "/etc/x.lua"}));
  EXPECT_TRUE(SplitConfigLine(" \t ").empty());
  EXPECT_TRUE(SplitConfigLine("").empty());
}

TEST(SplitConfigLineTest, CommentsEndTheLineOutsideQuotesOnly) {
  EXPECT_EQ(Texts(SplitConfigLine("server a 1.2.3.4:80 # lua-load x")),
            (Strings{"server", "a", "1.2.3.4:80"}));
  EXPECT_EQ(Texts(SplitConfigLine("server a#b")), (Strings{"server", "a"}));
  EXPECT_EQ(Texts(SplitConfigLine("x \"a#b\" 'c#d' e\\#f")), (Strings{"x", "a#b", "c#d", "e#f"}));
  EXPECT_TRUE(SplitConfigLine("   # lua-load /x.lua").empty());
}

TEST(SplitConfigLineTest, QuotesJoinAndCanCoverPartOfAWord) {
  EXPECT_EQ(Texts(SplitConfigLine("\"lua-load\" '/a b.lua'")), (Strings{"lua-load", "/a b.lua"}));
  EXPECT_EQ(Texts(SplitConfigLine("lua\"-\"load l'ua'-x")), (Strings{"lua-load", "lua-x"}));
  EXPECT_EQ(Texts(SplitConfigLine("a \"\" b")), (Strings{"a", "", "b"}));
  // Inside single quotes nothing is special; inside double quotes a single quote is plain.
  EXPECT_EQ(Texts(SplitConfigLine("'a\\x41\"' \"b'c\"")), (Strings{"a\\x41\"", "b'c"}));
}

TEST(SplitConfigLineTest, BackslashEscapesFollowHaproxy) {
  EXPECT_EQ(Texts(SplitConfigLine("lua\\x2dload a\\ b c\\\\d")),
            (Strings{"lua-load", "a b", "c\\d"}));
  EXPECT_EQ(Texts(SplitConfigLine("\\x6C\\x75\\x61-load")), (Strings{"lua-load"}));
  EXPECT_EQ(Texts(SplitConfigLine("a\\tb \\\"q\\' \"\\$x\"")), (Strings{"a\tb", "\"q'", "$x"}));
  // Not an escape: the backslash stays (haproxy keeps "\1" for regex back-references).
  EXPECT_EQ(Texts(SplitConfigLine("lua\\-load \\1 \\$x \\xZZ")),
            (Strings{"lua\\-load", "\\1", "\\$x", "\\xZZ"}));
}

TEST(SplitConfigLineTest, CarriageReturnEndsTheLineExceptInsideASeparator) {
  EXPECT_EQ(Texts(SplitConfigLine("backend app\r")), (Strings{"backend", "app"}));
  EXPECT_EQ(Texts(SplitConfigLine("global\rlua-load /x.lua")), (Strings{"global"}));
  // After a separator haproxy skips every isspace() char, CR included, and reads on.
  EXPECT_EQ(Texts(SplitConfigLine("\rlua-load \r/x.lua")), (Strings{"lua-load", "/x.lua"}));
}

TEST(SplitConfigLineTest, EnvironmentVariablesAreMarkedOnlyInsideDoubleQuotes) {
  auto words = SplitConfigLine("\"$KW\" \"${A-lua-load}x\" $PLAIN '${SINGLE}' \"\\$ESCAPED\"");
  ASSERT_EQ(words.size(), 5u);
  EXPECT_EQ(words[0].text, "$KW");
  EXPECT_TRUE(words[0].from_env);
  EXPECT_EQ(words[1].text, "${A-lua-load}x");
  EXPECT_TRUE(words[1].from_env);
  EXPECT_EQ(words[2].text, "$PLAIN");
  EXPECT_FALSE(words[2].from_env);
  EXPECT_EQ(words[3].text, "${SINGLE}");
  EXPECT_FALSE(words[3].from_env);
  EXPECT_EQ(words[4].text, "$ESCAPED");
  EXPECT_FALSE(words[4].from_env);
  auto expanded = SplitConfigLine("\"${WORDS[*]}\" next");
  ASSERT_EQ(expanded.size(), 2u);
  EXPECT_TRUE(expanded[0].from_env);
  EXPECT_EQ(expanded[0].text, "${WORDS[*]}");
}

// ---- The config policy: directives that run programs or load code ----

std::vector<std::string> Directives(const std::string& config) {
  std::vector<std::string> out;
  for (const auto& d : ReadConfigFacts(config).code_directives) {
    out.push_back(std::to_string(d.line) + ": " + d.directive);
  }
  return out;
}

TEST(CodeDirectivesTest, FindsEachKindWithItsLine) {
  const std::string config =
      "global\n"
      "    lua-load /etc/haproxy/a.lua\n"
      "    lua-load-per-thread /etc/haproxy/b.lua\n"
      "    lua-prepend-path /tmp/?.lua\n"
      "    external-check\n"
      "    insecure-fork-wanted\n"
      "    insecure-setuid-wanted\n"
      "    ssl-engine rdrand\n"
      "    ssl-provider-path /tmp\n"
      "    ssl-provider evil\n"
      "    setenv LD_PRELOAD /tmp/evil.so\n"
      "    presetenv OPENSSL_CONF /tmp/openssl.cnf\n"
      "backend app\n"
      "    option external-check\n"
      "    external-check command /bin/true\n"
      "    external-check path \"/usr/bin:/bin\"\n"
      "    filter opentracing config /etc/haproxy/ot.cfg\n"
      "    server a 10.0.0.1:80 check\n"
      "program cron\n"
      "    command /usr/bin/env sh -c id\n";
  EXPECT_EQ(
      Directives(config),
      (Strings{"2: lua-load", "3: lua-load-per-thread", "4: lua-prepend-path", "5: external-check",
               "6: insecure-fork-wanted", "7: insecure-setuid-wanted", "8: ssl-engine",
               "9: ssl-provider-path", "10: ssl-provider", "11: setenv LD_PRELOAD",
               "12: presetenv OPENSSL_CONF", "14: option external-check",
               "15: external-check command", "16: external-check path", "17: filter opentracing",
               "19: program", "20: command (in a program section)"}));
}

TEST(CodeDirectivesTest, QuotingEscapingCaseAndWhitespaceDoNotHideThem) {
  for (const std::string line :
       {"lua-load /x.lua", "\tlua-load\t/x.lua", "  \t lua-load   /x.lua  ", "\"lua-load\" /x.lua",
        "'lua-load' /x.lua", "lua\"-\"load /x.lua", "lua''-load /x.lua", "lua\\x2dload /x.lua",
        "\\x6cua-load /x.lua", "LUA-LOAD /x.lua", "Lua-Load /x.lua", "lua-load\r", "\rlua-load /x",
        "\f\vlua-load /x.lua", "\"\" lua-load /x.lua", "lua-load#comment-after-it"}) {
    EXPECT_EQ(Directives("global\n" + line + "\n"), (Strings{"2: lua-load"})) << "line: " << line;
  }
  for (const std::string line : {"option external-check", "option\t\"external-check\"",
                                 "OPTION External-Check", "option external\\x2dcheck"}) {
    EXPECT_EQ(Directives("backend b\n" + line + "\n"), (Strings{"2: option external-check"}))
        << "line: " << line;
  }
  EXPECT_EQ(Directives("backend b\n  External-Check   Command  '/bin/sh'\n"),
            (Strings{"2: external-check command"}));
  EXPECT_EQ(Directives("  PROGRAM x\n  Command /bin/sh\n"),
            (Strings{"1: program", "2: command (in a program section)"}));
}

TEST(CodeDirectivesTest, CommentsAndArgumentsDoNotTrigger) {
  EXPECT_TRUE(Directives("global\n"
                         "    # lua-load /etc/haproxy/a.lua\n"
                         "#lua-load /x.lua\n"
                         "    log stdout format raw local0 # lua-load\n"
                         "    description \"lua-load and external-check\"\n"
                         "    setenv LUA_MESSAGE lua-load\n"
                         "    setenv SERVICE_PATH /srv\n"
                         "    no insecure-fork-wanted\n"
                         "backend app\n"
                         "    no option external-check\n"
                         "    default option external-check\n"
                         "    http-request set-header X-Note lua-load\n"
                         "    option httpchk GET /program\n"
                         "    filter spoe engine ip-rep config /etc/haproxy/spoe.conf\n"
                         "    filter compression\n"
                         "    server program 10.0.0.1:80 check\n"
                         "    # program p\n"
                         "fcgi-app php\n"
                         "    docroot /var/www\n"
                         "    command-not-a-keyword x\n"
                         "backend after_program\n"
                         "    server command 10.0.0.2:80\n")
                  .empty());
}

TEST(CodeDirectivesTest, CommandCountsOnlyInsideAProgramSection) {
  EXPECT_EQ(Directives("program p\n  command /bin/a\nbackend b\n  command /bin/b\n"),
            (Strings{"1: program", "2: command (in a program section)"}));
}

TEST(CodeDirectivesTest, KeywordsFromEnvironmentVariablesAreRefused) {
  // setenv changes the environment haproxy expands the next lines with: the agent cannot know
  // what "$KW" becomes, so a keyword made of a variable is refused.
  EXPECT_EQ(Directives("global\n  setenv KW lua-load\n  \"$KW\" /tmp/x.lua\n"),
            (Strings{"3: \"$KW\" (a keyword taken from an environment variable)"}));
  EXPECT_EQ(Directives("global\n  \"${ALL[*]}\"\n"),
            (Strings{"2: \"${ALL[*]}\" (a keyword taken from an environment variable)"}));
  EXPECT_EQ(Directives("backend b\n  option \"$OPT\"\n"),
            (Strings{"2: option \"$OPT\" (a word taken from an environment variable)"}));
  EXPECT_EQ(Directives("backend b\n  no \"$X\" external-check\n"),
            (Strings{"2: no \"$X\" (a keyword taken from an environment variable)"}));
  EXPECT_EQ(Directives("global\n  setenv \"$NAME\" /tmp/evil.so\n"),
            (Strings{"2: setenv \"$NAME\" (a word taken from an environment variable)"}));
  // Variables in arguments are ordinary (bind "fd@${FD_APP1}", user "$HAPROXY_USER").
  EXPECT_TRUE(Directives("global\n  user \"$HAPROXY_USER\"\nfrontend f\n  bind \"fd@${FD}\"\n"
                         "  log \"${SYSLOG-127.0.0.1}:514\" local0\n"
                         "  $NOT_EXPANDED_OUTSIDE_DOUBLE_QUOTES x\n")
                  .empty());
}

TEST(CodeDirectivesTest, LoaderVariablesInSetenvAreRefused) {
  EXPECT_EQ(Directives("global\n  setenv LD_LIBRARY_PATH /tmp\n  presetenv ld_audit /x.so\n"
                       "  setenv GCONV_PATH /tmp\n  setenv OPENSSL_MODULES /tmp\n"
                       "  setenv PATH /tmp\n  setenv TZ UTC\n  unsetenv LD_PRELOAD\n"),
            (Strings{"2: setenv LD_LIBRARY_PATH", "3: presetenv ld_audit", "4: setenv GCONV_PATH",
                     "5: setenv OPENSSL_MODULES", "6: setenv PATH"}));
}

TEST(CodeDirectivesTest, LineNumbersCountEveryLineIncludingBlankAndCrlf) {
  EXPECT_EQ(Directives("\r\n# comment\r\n\r\nglobal\r\n\r\n  lua-load /x.lua\r\n"),
            (Strings{"6: lua-load"}));
  // Conditional blocks are not evaluated: what they hide is checked too.
  EXPECT_EQ(Directives(".if defined(NEVER)\n  lua-load /x.lua\n.endif\n"),
            (Strings{"2: lua-load"}));
}

TEST(LintConfigTest, CodeDirectiveIsRefusedWithLineDirectiveAndTheWayToAllowIt) {
  std::string config = kComplete;
  config.replace(config.find("    daemon\n"), 11, "    daemon\n    lua-load /etc/haproxy/x.lua\n");
  config += "    option external-check\n";
  LintOptions options = Managed();
  LintResult refused = LintConfig(ReadConfigFacts(config), options);
  EXPECT_EQ(refused.status.code(), ErrorCode::kInvalidConfig);
  const std::string& message = refused.status.message();
  EXPECT_NE(message.find("line 3: lua-load"), std::string::npos) << message;
  EXPECT_NE(message.find("line 22: option external-check"), std::string::npos) << message;
  EXPECT_NE(message.find("[security] allow_programs = yes"), std::string::npos) << message;
  // force is about emptying the load balancer, not about running programs.
  options.force = true;
  EXPECT_EQ(LintConfig(ReadConfigFacts(config), options).status.code(), ErrorCode::kInvalidConfig);
}

TEST(LintConfigTest, AllowProgramsAcceptsCodeDirectivesWithAWarning) {
  std::string config = kComplete;
  config.replace(config.find("    daemon\n"), 11, "    daemon\n    lua-load /etc/haproxy/x.lua\n");
  LintOptions options = Managed();
  options.allow_programs = true;
  LintResult result = LintConfig(ReadConfigFacts(config), options);
  EXPECT_TRUE(result.status.ok()) << result.status.ToString();
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_NE(result.warnings[0].find("line 3: lua-load"), std::string::npos) << result.warnings[0];
  EXPECT_NE(result.warnings[0].find("allow_programs"), std::string::npos) << result.warnings[0];
}

TEST(LintConfigTest, CodeDirectivesAreCheckedBeforeTheDefaultBackend) {
  LintResult refused =
      LintConfig(ReadConfigFacts("global\n  lua-load /x.lua\nbackend other\n"), Managed());
  EXPECT_EQ(refused.status.code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(refused.status.message().find("lua-load"), std::string::npos)
      << refused.status.message();
}

TEST(LintConfigTest, LongListsOfCodeDirectivesAreCut) {
  std::string config = kComplete;
  for (int i = 0; i < 25; ++i) config += "    option external-check\n";
  LintResult refused = LintConfig(ReadConfigFacts(config), Managed());
  EXPECT_EQ(refused.status.code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(refused.status.message().find("and 15 more"), std::string::npos)
      << refused.status.message();
  EXPECT_LT(refused.status.message().size(), 1000u);
}

TEST(RunningAsRootWarningTest, OnlyRootIsWarnedAndTheLinePointsAtTheFix) {
  const std::string warning = RunningAsRootWarning(0);
  EXPECT_EQ(warning.rfind("warning: running as root", 0), 0u) << warning;
  EXPECT_NE(warning.find("SECURITY.md"), std::string::npos) << warning;
  EXPECT_NE(warning.find("etc/systemd/lb-agent.service"), std::string::npos) << warning;
  EXPECT_EQ(warning.find('\n'), std::string::npos) << "one line";
  EXPECT_EQ(RunningAsRootWarning(1000), "");
  EXPECT_EQ(RunningAsRootWarning(65534), "");
}

}  // namespace
}  // namespace lb::agent
