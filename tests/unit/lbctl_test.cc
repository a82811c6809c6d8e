// lbctl's pure parts: the command line (usage errors are exit 2 with a message), the status
// table (alignment, colour only when asked), the event lines of `watch` and the detection of
// lost events. A last group runs lb::cli::Run against a fake agent (a ROUTER socket in a
// thread) to pin down what is sent and which exit code each kind of answer gives; with CURVE,
// the fake agent is a CURVE server with a real ZapHandler and an allow-list file.
#include "lbctl.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "command_line.h"
#include "events.h"
#include "fake_agent.h"
#include "lb/common/curve_socket.h"
#include "lb/proto/backends.h"
#include "lb/proto/codec.h"
#include "lbctl_run.h"
#include "output.h"
#include "test_util.h"

namespace lb::cli {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

// 2026-11-24T10:31:02.123Z
constexpr int64_t kTs = 1795516262123;

Options Parse(const std::vector<std::string>& args, const Environment& env = {}) {
  auto parsed = ParseCommandLine(args, env);
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return parsed.ok() ? *parsed : Options();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string StripEscapes(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\033') {
      while (i < text.size() && text[i] != 'm') ++i;
      continue;
    }
    out += text[i];
  }
  return out;
}

// ---- command line ----

TEST(LbctlTest, DefaultsEnvironmentAndFlagsInThatOrder) {
  Options defaults = Parse({"ping"});
  EXPECT_EQ(defaults.command, Command::kPing);
  EXPECT_EQ(defaults.agent_endpoint, "tcp://127.0.0.1:5555");
  EXPECT_EQ(defaults.events_endpoint, "tcp://127.0.0.1:5556");
  EXPECT_EQ(defaults.timeout, milliseconds(30000));
  EXPECT_FALSE(defaults.json);

  Environment env;
  env.agent_endpoint = "ipc:///run/a.sock";
  env.events_endpoint = "ipc:///run/e.sock";
  Options from_env = Parse({"info"}, env);
  EXPECT_EQ(from_env.agent_endpoint, "ipc:///run/a.sock");
  EXPECT_EQ(from_env.events_endpoint, "ipc:///run/e.sock");

  Options from_flags =
      Parse({"--agent", "tcp://10.0.0.1:5555", "info", "--events=tcp://10.0.0.1:5556"}, env);
  EXPECT_EQ(from_flags.agent_endpoint, "tcp://10.0.0.1:5555");
  EXPECT_EQ(from_flags.events_endpoint, "tcp://10.0.0.1:5556");
}

TEST(LbctlTest, GlobalOptionsGoBeforeOrAfterTheCommand) {
  Options o = Parse({"status", "--json", "web", "--timeout=2.5", "--no-color"});
  EXPECT_EQ(o.command, Command::kStatus);
  EXPECT_EQ(o.backend, "web");
  EXPECT_TRUE(o.json);
  EXPECT_TRUE(o.no_color);
  EXPECT_EQ(o.timeout, milliseconds(2500));
  EXPECT_EQ(Parse({"--timeout", "2s", "status", "*"}).backend, "*");
  EXPECT_EQ(Parse({"--timeout", "0.001", "ping"}).timeout, milliseconds(1));
  EXPECT_EQ(Parse({"status"}).backend, "") << "empty: the agent's default_backend";
  EXPECT_EQ(Parse({"get_config"}).command, Command::kGetConfig);
}

TEST(LbctlTest, ParsesTheCommandsOwnOptions) {
  const std::string sha(64, 'A');
  Options reload = Parse({"reload", "-", "--expect-sha256", sha, "--force"});
  EXPECT_EQ(reload.command, Command::kReload);
  EXPECT_EQ(reload.file, "-");
  EXPECT_EQ(reload.expect_sha256, std::string(64, 'a')) << "the agent writes lower case";
  EXPECT_TRUE(reload.force);
  // An option may come before the command it belongs to, and `--` ends the options.
  Options validate = Parse({"--force", "validate", "--", "-odd-name.cfg"});
  EXPECT_EQ(validate.file, "-odd-name.cfg");
  EXPECT_TRUE(validate.force);
  Options watch = Parse({"watch", "server/app/", "--count", "3", "--for=1.5"});
  EXPECT_EQ(watch.topic_prefix, "server/app/");
  EXPECT_EQ(watch.count, 3u);
  EXPECT_EQ(watch.for_ms, milliseconds(1500));
  Options all = Parse({"watch"});
  EXPECT_EQ(all.topic_prefix, "");
  EXPECT_FALSE(all.count.has_value());
  EXPECT_FALSE(all.for_ms.has_value());
  EXPECT_FALSE(all.silence.has_value());
  EXPECT_EQ(Parse({"watch", "--silence", "2.5"}).silence, milliseconds(2500));
  EXPECT_EQ(Parse({"history"}).command, Command::kHistory);
  Options rollback = Parse({"rollback", "2", "--force"});
  EXPECT_EQ(rollback.command, Command::kRollback);
  EXPECT_EQ(rollback.rollback_n, 2u);
  EXPECT_TRUE(rollback.force);
  EXPECT_FALSE(Parse({"rollback"}).rollback_n.has_value()) << "the agent picks the default";
}

TEST(LbctlTest, RollbackWantsAnEntryNumber) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"rollback", "x"}, {"rollback", "-1"}, {"rollback", "1", "2"}, {"history", "1"}}) {
    auto parsed = ParseCommandLine(args, {});
    EXPECT_FALSE(parsed.ok()) << args[0] << " " << args[1];
  }
}

TEST(LbctlTest, HistoryIsATableWithTheLiveEntryMarked) {
  const json result = {{"history_dir", "/var/lib/lb-agent/history"},
                       {"keep", 10},
                       {"entries",
                        {{{"n", 0},
                          {"time_unix_ms", 1795516262123},
                          {"outcome", "applied"},
                          {"sha256", std::string(64, 'a')},
                          {"bytes", 120},
                          {"live", true}},
                         {{"n", 1},
                          {"time_unix_ms", 1795516200000},
                          {"outcome", "was_live\x1b[2J"},
                          {"sha256", std::string(64, 'b')},
                          {"bytes", 99},
                          {"live", false}}}}};
  const std::string text = FormatHistory(result);
  EXPECT_EQ(text.rfind("history /var/lib/lb-agent/history (keeps 10; newest first)\n", 0), 0u)
      << text;
  EXPECT_NE(text.find("aaaaaaaaaaaa  120    live"), std::string::npos) << text;
  EXPECT_EQ(text.find(std::string(13, 'a')), std::string::npos) << "12 digits of the sha";
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_NE(FormatHistory({{"entries", json::array()}}).find("no kept config"), std::string::npos);
}

TEST(LbctlTest, BadUsageExitsTwoWithAMessage) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  struct Case {
    std::vector<std::string> args;
    std::string message;  // a part of what stderr must say
  };
  const std::vector<Case> cases = {
      {{}, "no command given"},
      {{"frobnicate"}, "unknown command \"frobnicate\""},
      {{"--frob", "ping"}, "unknown option \"--frob\""},
      {{"-x", "ping"}, "unknown option \"-x\""},
      {{"status", "a", "b"}, "unexpected \"b\""},
      {{"status", ""}, "BACKEND must not be empty"},
      {{"ping", "extra"}, "ping takes no arguments"},
      {{"reload"}, "reload needs a FILE"},
      {{"validate", "a", "b"}, "unexpected \"b\""},
      {{"--timeout", "0", "ping"}, "--timeout wants a number of seconds"},
      {{"--timeout", "-1", "ping"}, "--timeout wants a number of seconds"},
      {{"--timeout", "soon", "ping"}, "\"soon\""},
      {{"--timeout", "1e9", "ping"}, "at most 86400"},
      {{"ping", "--timeout"}, "--timeout needs a value"},
      {{"--json=yes", "ping"}, "--json takes no value"},
      {{"ping", "--force"}, "--force is an option of reload, validate and rollback only"},
      {{"status", "--count", "2"}, "--count is an option of watch only"},
      {{"validate", "f", "--expect-sha256", std::string(64, 'a')}, "of reload and rollback only"},
      {{"watch", "--count", "0"}, "--count wants a positive whole number"},
      {{"watch", "--for", "x"}, "--for wants a number of seconds"},
      {{"reload", "f", "--expect-sha256", "abc"}, "64 hex digits"},
      {{"reload", "f", "--expect-sha256", std::string(63, 'a') + "g"}, "64 hex digits"},
      {{"--agent", "localhost:5555", "ping"}, "--agent wants a ZeroMQ endpoint"},
      {{"--agent", "bogus://x", "ping"}, "cannot use \"bogus://x\""},
      {{"reload", "/nonexistent/haproxy.cfg"},
       "cannot read /nonexistent/haproxy.cfg: No such file or directory"},
      {{"validate", dir}, "Is a directory"},
  };
  for (const Case& c : cases) {
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    RunOutput r = RunLbctl(c.args);
    EXPECT_EQ(r.code, kExitUsage) << joined << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("lbctl: ", 0), 0u) << joined << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << joined << "\n" << r.err;
    EXPECT_EQ(r.out, "") << joined;
  }
  // A bad LBCTL_AGENT is a usage error too, named as such; it does not stop `help`.
  Environment env;
  env.agent_endpoint = "nonsense";
  EXPECT_EQ(RunLbctl({"ping"}, env).code, kExitUsage);
  EXPECT_NE(RunLbctl({"ping"}, env).err.find("LBCTL_AGENT"), std::string::npos);
  EXPECT_EQ(RunLbctl({"help"}, env).code, kExitOk);
}

TEST(LbctlTest, HelpDocumentsCommandsAndExitCodes) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"help"}, {"--help"}, {"-h"}, {"reload", "--help"}, {"help", "reload"}}) {
    RunOutput r = RunLbctl(args);
    EXPECT_EQ(r.code, kExitOk);
    EXPECT_EQ(r.err, "");
    for (const char* part : {"status [BACKEND",
                             "reload FILE",
                             "--expect-sha256",
                             "validate FILE",
                             "info",
                             "get-config",
                             "ping",
                             "watch [TOPIC-PREFIX]",
                             "--count",
                             "--for",
                             "--agent",
                             "--events",
                             "--timeout",
                             "--json",
                             "--no-color",
                             "LBCTL_AGENT",
                             "LBCTL_EVENTS",
                             "keygen PATH",
                             "--curve-key FILE",
                             "--server-key FILE",
                             "LBCTL_CURVE_KEY",
                             "LBCTL_SERVER_KEY",
                             "Exit status",
                             "0  success",
                             "1  the agent refused",
                             "2  usage error",
                             "3  no answer"}) {
      EXPECT_NE(r.out.find(part), std::string::npos) << part;
    }
  }
  RunOutput version = RunLbctl({"--version"});
  EXPECT_EQ(version.code, kExitOk);
  EXPECT_EQ(version.out.rfind("lbctl ", 0), 0u);
}

TEST(LbctlTest, CurveKeysComeFromFlagsOrEnvironmentBothOrNeither) {
  Options none = Parse({"status"});
  EXPECT_EQ(none.curve_key, "");
  EXPECT_EQ(none.server_key, "");

  Options flags = Parse({"--curve-key", "me_secret", "status", "--server-key=agent.pub"});
  EXPECT_EQ(flags.curve_key, "me_secret");
  EXPECT_EQ(flags.server_key, "agent.pub");

  Environment env;
  env.curve_key = "env_secret";
  env.server_key = "env.pub";
  for (const char* command : {"status", "info", "get-config", "ping", "watch"}) {
    Options from_env = Parse({command}, env);
    EXPECT_EQ(from_env.curve_key, "env_secret") << command;
    EXPECT_EQ(from_env.server_key, "env.pub") << command;
  }
  Options flag_wins =
      Parse({"ping", "--curve-key", "flag_secret", "--server-key", "flag.pub"}, env);
  EXPECT_EQ(flag_wins.curve_key, "flag_secret");
  EXPECT_EQ(flag_wins.server_key, "flag.pub");
  // Each key on its own: a flag for one, the environment for the other.
  Options mixed = Parse({"reload", "f.cfg", "--curve-key", "flag_secret"}, env);
  EXPECT_EQ(mixed.curve_key, "flag_secret");
  EXPECT_EQ(mixed.server_key, "env.pub");

  // Commands that do not talk to the agent ignore the environment's keys, even a half pair.
  Environment half;
  half.curve_key = "env_secret";
  EXPECT_EQ(Parse({"help"}, half).command, Command::kHelp);
  EXPECT_EQ(Parse({"keygen", "k"}, half).curve_key, "");
  EXPECT_EQ(Parse({"fleet", "agents", "--control", "ipc:///c"}, half).curve_key, "");

  struct Case {
    std::vector<std::string> args;
    Environment env;
    std::string message;
  };
  Environment only_server;
  only_server.server_key = "env.pub";
  const std::vector<Case> cases = {
      {{"--curve-key", "me_secret", "status"},
       {},
       "--curve-key (lbctl's own secret certificate) "
       "needs --server-key FILE or LBCTL_SERVER_KEY"},
      {{"ping", "--server-key", "a.pub"},
       {},
       "--server-key (the agent's public certificate) "
       "needs --curve-key FILE or LBCTL_CURVE_KEY"},
      {{"ping"}, half, "LBCTL_CURVE_KEY (lbctl's own secret certificate) needs --server-key"},
      {{"watch"}, only_server, "LBCTL_SERVER_KEY (the agent's public certificate) needs"},
      {{"ping", "--curve-key", "", "--server-key", "a.pub"}, {}, "--curve-key must not be empty"},
      {{"fleet", "push", "f", "--all", "--control", "ipc:///c", "--curve-key", "k"},
       {},
       "--curve-key is an option of the commands that talk to the agent only"},
      {{"keygen", "k", "--server-key", "a.pub"},
       {},
       "--server-key is an option of the commands that talk to the agent only"},
      {{"keygen"}, {}, "keygen needs a PATH"},
      {{"keygen", "a", "b"}, {}, "keygen takes one PATH; unexpected \"b\""},
      {{"keygen", ""}, {}, "keygen: PATH must not be empty"},
  };
  for (const Case& c : cases) {
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    auto parsed = ParseCommandLine(c.args, c.env);
    ASSERT_FALSE(parsed.ok()) << joined;
    EXPECT_EQ(parsed.status().code(), proto::ErrorCode::kBadRequest) << joined;
    EXPECT_NE(parsed.status().message().find(c.message), std::string::npos)
        << joined << "\n"
        << parsed.status().message();
    RunOutput r = RunLbctl(c.args, c.env);
    EXPECT_EQ(r.code, kExitUsage) << joined << "\n" << r.err;
  }
}

TEST(LbctlTest, KeygenWritesAPairAndNeverOverwrites) {
  test_util::TempDir tmp;
  const std::string path = tmp.File("lbctl");
  RunOutput r = RunLbctl({"keygen", path});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.err, "");
  auto secret = common::ReadCertificate(path + "_secret", /*need_secret=*/true);
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  auto public_half = common::ReadCertificate(path, /*need_secret=*/false);
  ASSERT_TRUE(public_half.ok()) << public_half.status().ToString();
  EXPECT_EQ(public_half->public_key, secret->public_key);
  EXPECT_NE(r.out.find("public key: " + secret->public_key + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("public certificate: " + path + " "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("secret certificate: " + path + "_secret "), std::string::npos) << r.out;
  namespace fs = std::filesystem;
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                fs::perms::others_read);
  EXPECT_EQ(fs::status(path + "_secret").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  // A second run refuses, and the pair on disk stays the same.
  RunOutput again = RunLbctl({"keygen", path});
  EXPECT_EQ(again.code, kExitUsage);
  EXPECT_EQ(again.out, "");
  EXPECT_NE(again.err.find("already exists; not overwriting a key file"), std::string::npos)
      << again.err;
  auto still = common::ReadCertificate(path + "_secret", true);
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(still->secret_key, secret->secret_key);

  RunOutput as_json = RunLbctl({"keygen", "--json", tmp.File("other")});
  ASSERT_EQ(as_json.code, kExitOk) << as_json.err;
  json written = json::parse(as_json.out);
  EXPECT_EQ(written["public_file"], tmp.File("other"));
  EXPECT_EQ(written["secret_file"], tmp.File("other") + "_secret");
  EXPECT_EQ(written["public_key"], common::ReadCertificate(tmp.File("other"), false)->public_key);

  RunOutput nowhere = RunLbctl({"keygen", tmp.File("missing-dir/k")});
  EXPECT_EQ(nowhere.code, kExitUsage);
  EXPECT_NE(nowhere.err.find("cannot create"), std::string::npos) << nowhere.err;
}

TEST(LbctlTest, ColourOnlyOnATerminalWithoutNoColorOrJson) {
  Environment terminal;
  terminal.stdout_is_terminal = true;
  EXPECT_TRUE(UseColor(Parse({"status"}), terminal));
  EXPECT_FALSE(UseColor(Parse({"status", "--no-color"}), terminal));
  EXPECT_FALSE(UseColor(Parse({"status", "--json"}), terminal));
  Environment no_color = terminal;
  no_color.no_color = true;
  EXPECT_FALSE(UseColor(Parse({"status"}), no_color));
  EXPECT_FALSE(UseColor(Parse({"status"}), Environment()));
}

TEST(LbctlTest, DescribesDurations) {
  EXPECT_EQ(DescribeSeconds(milliseconds(30000)), "30 s");
  EXPECT_EQ(DescribeSeconds(milliseconds(500)), "0.5 s");
  EXPECT_EQ(DescribeSeconds(milliseconds(1250)), "1.25 s");
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(59), "59s");
  EXPECT_EQ(FormatDuration(192), "3m12s");
  EXPECT_EQ(FormatDuration(7500), "2h05m");
  EXPECT_EQ(FormatDuration(3 * 86400 + 4 * 3600 + 5), "3d04h");
  EXPECT_EQ(FormatDuration(-1), "-");
  EXPECT_EQ(FormatTimestamp(kTs), "2026-11-24T10:31:02.123Z");
  EXPECT_EQ(FormatTimestamp(0), "1970-01-01T00:00:00.000Z");
}

// ---- status table ----

json StatusResult() {
  return json::parse(R"({"backends": [
    {"name": "scaling_nodes", "status": "UP", "servers": [
      {"name": "web1", "status": "UP", "address": "10.0.0.1:8080", "weight": 1,
       "check_status": "L4OK", "last_chk": "", "check_code": -1, "current_sessions": 3,
       "total_sessions": 10, "seconds_since_change": 192, "backup": false},
      {"name": "a-much-longer-name", "status": "DOWN", "address": "10.0.0.22:8080",
       "weight": 100, "check_status": "L7STS", "last_chk": "HTTP status check returned code <503>",
       "check_code": 503, "current_sessions": 0, "total_sessions": 0,
       "seconds_since_change": -1, "backup": true},
      {"name": "w3", "status": "MAINT", "address": "10.0.0.3:80", "weight": 0,
       "check_status": "", "last_chk": "", "check_code": -1, "current_sessions": 0,
       "seconds_since_change": 7500}]},
    {"name": "empty", "status": "DOWN", "servers": []}]})");
}

TEST(LbctlTest, StatusTableAlignsColumns) {
  const std::string text = FormatStatus(StatusResult(), /*color=*/false);
  EXPECT_EQ(text.find('\033'), std::string::npos) << "no colour when disabled";
  const std::vector<std::string> lines = Lines(text);
  ASSERT_EQ(lines.size(), 8u) << text;
  EXPECT_EQ(lines[0], "backend scaling_nodes  UP  (3 servers)");
  const std::string& header = lines[1];
  EXPECT_EQ(header,
            "SERVER                       STATUS  ADDRESS         WEIGHT  CHECK      LAST CHECK" +
                std::string(29, ' ') + "SESSIONS  SINCE");
  // Every cell starts where its heading starts.
  const std::vector<std::string> headings = {"SERVER", "STATUS",     "ADDRESS",  "WEIGHT",
                                             "CHECK",  "LAST CHECK", "SESSIONS", "SINCE"};
  const std::vector<std::vector<std::string>> cells = {
      {"web1", "UP", "10.0.0.1:8080", "1", "L4OK", "-", "3", "3m12s"},
      {"a-much-longer-name (backup)", "DOWN", "10.0.0.22:8080", "100", "L7STS/503",
       "HTTP status check returned code <503>", "0", "-"},
      {"w3", "MAINT", "10.0.0.3:80", "0", "-", "-", "0", "2h05m"}};
  for (size_t row = 0; row < cells.size(); ++row) {
    const std::string& line = lines[2 + row];
    for (size_t col = 0; col < headings.size(); ++col) {
      const size_t at = header.find(headings[col]);
      ASSERT_NE(at, std::string::npos);
      EXPECT_EQ(line.substr(at, cells[row][col].size()), cells[row][col])
          << "row " << row << " column " << headings[col] << ":\n"
          << header << "\n"
          << line;
      if (at > 0) {
        EXPECT_EQ(line[at - 1], ' ') << line;
      }
    }
  }
  for (const auto& line : lines) {
    EXPECT_TRUE(line.empty() || line.back() != ' ') << "trailing blank: [" << line << "]";
  }
  EXPECT_EQ(lines[5], "");
  EXPECT_EQ(lines[6], "backend empty  DOWN  (0 servers)");
  EXPECT_EQ(lines[7], "  (no servers)");
}

TEST(LbctlTest, StatusTableColoursStatusCellsWithoutMovingColumns) {
  const std::string plain = FormatStatus(StatusResult(), false);
  const std::string colored = FormatStatus(StatusResult(), true);
  EXPECT_NE(colored.find("\033[32mUP\033[0m"), std::string::npos) << colored;
  EXPECT_NE(colored.find("\033[31mDOWN\033[0m"), std::string::npos);
  EXPECT_NE(colored.find("\033[33mMAINT\033[0m"), std::string::npos);
  EXPECT_EQ(StripEscapes(colored), plain);
  EXPECT_EQ(Lines(colored)[1].find('\033'), std::string::npos) << "headings stay plain";
}

TEST(LbctlTest, StatusTableSurvivesUnexpectedShapes) {
  EXPECT_EQ(FormatStatus(json::object(), false), "no backends\n");
  EXPECT_EQ(FormatStatus(json::parse(R"({"backends": 3})"), false), "no backends\n");
  const std::string odd = FormatStatus(
      json::parse(R"({"backends": [{"name": 7, "servers": [{"name": null, "weight": "x",
        "status": "UP\u001b[2J\nDOWN"}, 5]}]})"),
      false);
  EXPECT_NE(odd.find("backend 7"), std::string::npos) << odd;
  EXPECT_EQ(odd.find('\033'), std::string::npos) << "escapes from the wire are neutralised";
  EXPECT_NE(odd.find("UP | DOWN"), std::string::npos) << "the whole sequence goes: " << odd;
}

// ---- other results ----

TEST(LbctlTest, ReloadAndValidateShowOutcomeShaTimingsAndWarnings) {
  const std::string sha(64, 'b');
  const std::string reload = FormatReload(json{{"outcome", "applied"},
                                               {"sha256", sha},
                                               {"previous_sha256", std::string(64, 'a')},
                                               {"validate_ms", 12},
                                               {"reload_ms", 98},
                                               {"total_ms", 112},
                                               {"warnings", {"no server-state-file", "two\nlines"}},
                                               {"rolled_back", false}});
  EXPECT_EQ(reload,
            "applied\n"
            "  sha256    " +
                sha +
                "\n"
                "  previous  " +
                std::string(64, 'a') +
                "\n"
                "  timings   validate 12 ms, reload 98 ms, total 112 ms\n"
                "warning: no server-state-file\n"
                "warning: two | lines\n");
  EXPECT_NE(FormatReload(json{{"outcome", "unchanged"}}).find("unchanged (the live config"),
            std::string::npos);
  EXPECT_EQ(
      FormatValidate(json{{"valid", true}, {"sha256", sha}, {"validate_ms", 7}, {"warnings", {}}}),
      "valid\n  sha256    " + sha + "\n  timings   validate 7 ms\n");
}

TEST(LbctlTest, InfoIsAReadableSummary) {
  const json info = json::parse(R"({
    "agent": {"version": "0.1.0", "pid": 10, "uptime_s": 3700, "reload_method": "managed",
              "command_endpoint": "tcp://127.0.0.1:5555", "default_backend": "scaling_nodes",
              "reload_runs": 4, "reloads_superseded": 1},
    "haproxy": {"running": true, "method": "managed", "pid": 21, "master_pid": 20,
                "version": "2.6.12", "uptime_s": 60, "reloads": 4, "failed_reloads": 0,
                "old_workers": 0, "starts": 1},
    "config": {"path": "/etc/haproxy/haproxy.cfg", "sha256": "abc"},
    "last_reload": {"time_unix_ms": 1795516262123, "outcome": "applied", "sha256": "abc",
                    "total_ms": 112}})");
  const std::string text = FormatInfo(info);
  for (const char* part :
       {"lb-agent 0.1.0, pid 10, up 1h01m, reload method managed", "tcp://127.0.0.1:5555",
        "default backend scaling_nodes", "4 reloads run, 1 superseded",
        "running, version 2.6.12, worker pid 21, master pid 20, up 1m00s",
        "4 reloads (0 failed), 0 old workers, started 1 time by the agent",
        "/etc/haproxy/haproxy.cfg", "sha256 abc", "applied at 2026-11-24T10:31:02.123Z, 112 ms"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
  }
  const std::string down = FormatInfo(json::parse(
      R"({"haproxy": {"running": false, "error": "connect master.sock: refused"},
          "last_reload": null})"));
  EXPECT_NE(down.find("NOT RUNNING: connect master.sock: refused"), std::string::npos) << down;
  EXPECT_NE(down.find("none since the agent started"), std::string::npos) << down;
}

TEST(LbctlTest, RefusalsNameTheCodeAndWhatTheDetailsAdd) {
  using proto::ErrorCode;
  using proto::Status;
  EXPECT_EQ(FormatRefusal(Status(ErrorCode::kBadRequest, "no backend named \"x\"")),
            "lbctl: bad_request: no backend named \"x\"\n");
  const std::string conflict = FormatRefusal(
      Status(ErrorCode::kConflict, "expect_sha256 differs", json{{"sha256", "live123"}}));
  EXPECT_NE(conflict.find("lbctl: conflict: expect_sha256 differs\n"), std::string::npos);
  EXPECT_NE(conflict.find("live config's sha256 is live123"), std::string::npos);
  const std::string invalid =
      FormatRefusal(Status(ErrorCode::kInvalidConfig, "haproxy -c rejected the config:\n[ALERT] a",
                           json{{"haproxy_output", {"[ALERT] a", "[ALERT] b"}}}));
  EXPECT_EQ(invalid,
            "lbctl: invalid_config: haproxy -c rejected the config:\n[ALERT] a\n[ALERT] b\n");
  const std::string failed = FormatRefusal(Status(ErrorCode::kReloadFailed, "reload failed",
                                                  json{{"rolled_back", true}, {"sha256", "s"}}));
  EXPECT_NE(failed.find("rolled back to the previous config; live sha256 s"), std::string::npos);
}

// ---- watch lines ----

json Body(const std::string& type, json fields) {
  json body = {{"v", 1},         {"agent", "lb1"}, {"epoch", 1000}, {"seq", 42},
               {"topic_seq", 7}, {"ts_ms", kTs},   {"type", type}};
  body.update(fields);
  return body;
}

TEST(LbctlTest, WatchLineForEachEventType) {
  const std::string prefix = "2026-11-24T10:31:02.123Z seq=42 ";
  auto line = [](const std::string& topic, const json& body) {
    return FormatEventLine(topic, body, /*json=*/false);
  };
  EXPECT_EQ(line("server/app/web1", Body("server", {{"backend", "app"},
                                                    {"server", "web1"},
                                                    {"previous", "UP"},
                                                    {"status", "DOWN"},
                                                    {"change", "status"},
                                                    {"check_status", "L4CON"},
                                                    {"why", "Layer4 connection problem"},
                                                    {"source", "log"}})),
            prefix + "server app/web1 UP -> DOWN (Layer4 connection problem) [log]");
  EXPECT_EQ(line("server/app/web3", Body("server", {{"backend", "app"},
                                                    {"server", "web3"},
                                                    {"previous", nullptr},
                                                    {"status", "UP"},
                                                    {"change", "added"},
                                                    {"why", "reload"},
                                                    {"source", "poll"}})),
            prefix + "server app/web3 added UP (reload) [poll]");
  EXPECT_EQ(line("server/app/web3", Body("server", {{"backend", "app"},
                                                    {"server", "web3"},
                                                    {"previous", "UP"},
                                                    {"status", nullptr},
                                                    {"change", "removed"},
                                                    {"why", "reload"},
                                                    {"source", "poll"}})),
            prefix + "server app/web3 removed (was UP) (reload) [poll]");
  EXPECT_EQ(line("server/app/web1", Body("server", {{"backend", "app"},
                                                    {"server", "web1"},
                                                    {"previous", "UP"},
                                                    {"status", "UP"},
                                                    {"change", "weight"},
                                                    {"weight", 5},
                                                    {"why", nullptr},
                                                    {"source", "poll"}})),
            prefix + "server app/web1 weight 5 UP [poll]");
  // Without a why, haproxy's last check description explains the change.
  EXPECT_EQ(line("server/app/web2", Body("server", {{"backend", "app"},
                                                    {"server", "web2"},
                                                    {"previous", "UP"},
                                                    {"status", "DOWN"},
                                                    {"change", "status"},
                                                    {"last_chk", "Connection refused"},
                                                    {"source", "poll"}})),
            prefix + "server app/web2 UP -> DOWN (Connection refused) [poll]");

  EXPECT_EQ(line("reload", Body("reload", {{"outcome", "applied"},
                                           {"sha256", "abcd1234ffffeeee"},
                                           {"previous_sha256", "0000"},
                                           {"total_ms", 112},
                                           {"source", "command"}})),
            prefix + "reload applied sha256=abcd1234 112ms");
  EXPECT_EQ(line("reload", Body("reload", {{"outcome", "rolled_back"},
                                           {"sha256", "abcd1234ffff"},
                                           {"total_ms", 900},
                                           {"error",
                                            {{"code", "reload_failed"},
                                             {"message", "haproxy refused:\n[ALERT] x\n"}}}})),
            prefix +
                "reload rolled_back sha256=abcd1234 900ms: reload_failed: haproxy refused: | "
                "[ALERT] x");
  EXPECT_EQ(line("reload", Body("reload", {{"outcome", "invalid_config"},
                                           {"error",
                                            {{"code", "invalid_config"},
                                             {"message", "no backend \"scaling_nodes\""}}}})),
            prefix + "reload invalid_config: no backend \"scaling_nodes\"");

  EXPECT_EQ(line("haproxy", Body("haproxy", {{"state", "down"},
                                             {"pid", 0},
                                             {"message", "connect master.sock: refused"}})),
            prefix + "haproxy down: connect master.sock: refused");
  EXPECT_EQ(line("haproxy",
                 Body("haproxy", {{"state", "up"}, {"pid", 4242}, {"message", "worker 4242"}})),
            prefix + "haproxy up pid=4242: worker 4242");
  EXPECT_EQ(line("heartbeat",
                 Body("heartbeat",
                      {{"sha256", "0123456789abcdef"}, {"haproxy_pid", 4242}, {"interval_s", 5}})),
            prefix + "heartbeat sha256=01234567 haproxy_pid=4242");
  // A type this lbctl does not know is still one readable line.
  EXPECT_EQ(line("future/x", Body("future", {{"answer", 42}})),
            prefix +
                "future future/x "
                R"({"agent":"lb1","answer":42,"epoch":1000,"seq":42,"topic_seq":7,"ts_ms":)" +
                std::to_string(kTs) + R"(,"type":"future","v":1})");
  // Not even a map: no crash, one line.
  EXPECT_EQ(line("x", json("text")).find('\n'), std::string::npos);
}

TEST(LbctlTest, WatchJsonLineIsTheBodyPlusTopic) {
  json body = Body("server", {{"backend", "app"}, {"server", "web1"}, {"status", "DOWN"}});
  const std::string line = FormatEventLine("server/app/web1", body, /*json=*/true);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  json parsed = json::parse(line);
  EXPECT_EQ(parsed["topic"], "server/app/web1");
  parsed.erase("topic");
  EXPECT_EQ(parsed, body);
  // Bytes that are not UTF-8 are replaced, not thrown on.
  json bad = Body("server", {{"server", std::string("web\xff\xfe")}});
  const std::string replaced = FormatEventLine("server/app/web\xff", bad, true);
  EXPECT_TRUE(json::accept(replaced)) << replaced;
  EXPECT_EQ(json::parse(FormatEventLine("t", json::array({1, 2}), true)),
            json::parse(R"({"topic": "t", "body": [1, 2]})"));
}

// ---- gap detection ----

json Seq(uint64_t seq, const std::string& type = "server", int64_t epoch = 1000,
         uint64_t topic_seq = 1) {
  return {{"seq", seq}, {"epoch", epoch}, {"type", type}, {"topic_seq", topic_seq}};
}

TEST(LbctlTest, GapDetectionCountsLostEventsAcrossAllTopics) {
  GapDetector gaps("");
  EXPECT_EQ(gaps.Observe("server/a/b", Seq(40)), 0u) << "the first event is the baseline";
  EXPECT_EQ(gaps.Observe("reload", Seq(41)), 0u);
  EXPECT_EQ(gaps.Observe("server/a/b", Seq(44)), 2u) << "42 and 43 lost";
  // A heartbeat repeats the last event's seq ...
  EXPECT_EQ(gaps.Observe("heartbeat", Seq(44, "heartbeat")), 0u);
  EXPECT_EQ(gaps.Observe("server/a/b", Seq(45)), 0u);
  // ... so one that is ahead means the events up to its seq were lost.
  EXPECT_EQ(gaps.Observe("heartbeat", Seq(47, "heartbeat")), 2u) << "46 and 47 lost";
  EXPECT_EQ(gaps.Observe("server/a/b", Seq(48)), 0u);
  // An agent restart (new epoch) starts again at 1: no gap, a new baseline.
  EXPECT_EQ(gaps.Observe("server/a/b", Seq(1, "server", 2000)), 0u);
  EXPECT_EQ(gaps.Observe("server/a/b", Seq(2, "server", 2000)), 0u);
  EXPECT_EQ(gaps.Observe("server/a/b", Seq(5, "server", 2000)), 2u);
  // A body without a usable seq tells nothing.
  EXPECT_EQ(gaps.Observe("x", json{{"epoch", 2000}}), 0u);
  EXPECT_EQ(gaps.Observe("x", json("not a map")), 0u);
}

TEST(LbctlTest, GapDetectionWithAPrefixUsesTopicSeq) {
  GapDetector gaps("server/");
  // seq jumps over other topics' events by design: never a gap on its own.
  EXPECT_EQ(gaps.Observe("server/a/1", Seq(10, "server", 1000, 1)), 0u);
  EXPECT_EQ(gaps.Observe("server/a/1", Seq(20, "server", 1000, 2)), 0u);
  EXPECT_EQ(gaps.Observe("server/a/2", Seq(21, "server", 1000, 5)), 0u) << "new topic: baseline";
  EXPECT_EQ(gaps.Observe("server/a/1", Seq(30, "server", 1000, 5)), 2u) << "3 and 4 lost";
  EXPECT_EQ(gaps.Observe("server/a/2", Seq(31, "server", 1000, 6)), 0u);
  EXPECT_EQ(gaps.Observe("server/a/1", Seq(1, "server", 2000, 1)), 0u) << "agent restarted";
}

json Heartbeat(int64_t epoch, double interval_s) {
  return {{"type", "heartbeat"},
          {"agent", "lb1"},
          {"epoch", epoch},
          {"seq", 1},
          {"interval_s", interval_s}};
}

TEST(LbctlTest, WatchSaysWhenTheAgentWentSilentCameBackOrRestarted) {
  using Clock = AgentLiveness::Clock;
  const Clock::time_point t0{};
  AgentLiveness liveness;
  EXPECT_EQ(liveness.silence(), milliseconds(15000)) << "before a heartbeat announces one";
  EXPECT_EQ(liveness.Idle(t0 + std::chrono::hours(1)), std::nullopt) << "nothing heard yet";
  EXPECT_TRUE(liveness.Observe(Heartbeat(1000, 2), t0).empty());
  EXPECT_EQ(liveness.silence(), milliseconds(6000)) << "three announced intervals";
  EXPECT_EQ(liveness.Idle(t0 + milliseconds(5999)), std::nullopt);
  auto silent = liveness.Idle(t0 + milliseconds(6000));
  ASSERT_TRUE(silent.has_value());
  EXPECT_EQ(*silent,
            "agent lb1 silent: no event, not even a heartbeat, for 6 s (heartbeats expected "
            "every 2 s); is lb-agent running?");
  EXPECT_EQ(liveness.Idle(t0 + milliseconds(9000)), std::nullopt) << "said once per silence";
  EXPECT_EQ(liveness.Observe(Heartbeat(1000, 2), t0 + milliseconds(21000)),
            std::vector<std::string>{"agent lb1 back after 21 s of silence"});
  EXPECT_EQ(liveness.Observe(Heartbeat(2000, 2), t0 + milliseconds(22000)),
            std::vector<std::string>{
                "agent lb1 restarted: epoch 1000 -> 2000 (a new process; its seq starts again)"});
  EXPECT_TRUE(liveness.Observe(Heartbeat(2000, 2), t0 + milliseconds(23000)).empty());

  AgentLiveness fixed(milliseconds(1500));
  fixed.Observe(Heartbeat(1, 60), t0);
  EXPECT_EQ(fixed.silence(), milliseconds(1500)) << "--silence wins over the heartbeats";
  EXPECT_TRUE(fixed.Idle(t0 + milliseconds(1500)).has_value());
}

TEST(LbctlTest, TerminalControlsFromRemoteTextAreRemovedWhole) {
  // CSI (ESC [ and the C1 form U+009B), OSC up to BEL or ST, other C1 controls, a lone 0x9b
  // byte (CSI on an 8-bit terminal), line separators.
  EXPECT_EQ(OneLine("\x1b[2J\x1b[31mred\x1b[0m"), "red");
  EXPECT_EQ(OneLine("a\xc2\x9b"
                    "2Jb"),
            "ab");
  EXPECT_EQ(OneLine("\x1b]0;evil title\x07ok"), "ok");
  EXPECT_EQ(OneLine("\x1b]8;;http://x\x1b\\link"), "link");
  EXPECT_EQ(OneLine("x\xc2\x85y"), "xy") << "NEL";
  EXPECT_EQ(OneLine("x\x9b"
                    "31my"),
            "x\xef\xbf\xbd"
            "31my")
      << "not UTF-8: U+FFFD";
  EXPECT_EQ(OneLine("a\xe2\x80\xa8"
                    "b\tc"),
            "a b c");
  EXPECT_EQ(OneLine("one\r\ntwo\n"), "one | two");
  EXPECT_EQ(OneLine("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(Printable("line 1\n\x1b[1Aline 2\r"), "line 1\nline 2 ");
  // JSON output escapes C1 controls and line separators like json::dump escapes C0 ones.
  EXPECT_EQ(DumpJson(json("a\xc2\x9b"
                          "b\xe2\x80\xa9\x1b"),
                     -1),
            "\"a\\u009bb\\u2029\\u001b\"");
}

// ---- Run against a fake agent ----

using testing::FakeAgent;

FakeAgent::Handler Answer(json result) { return testing::AnswerWith(std::move(result)); }

TEST(LbctlTest, RunSendsTheRequestAndPrintsTheResult) {
  const std::string config = "global\n  daemon\n\n# no newline at the end";
  FakeAgent agent(Answer({{"path", "/x.cfg"}, {"exists", true}, {"config", config}}));
  RunOutput got = RunLbctl({"--agent", agent.endpoint(), "get-config"});
  EXPECT_EQ(got.code, kExitOk) << got.err;
  EXPECT_EQ(got.out, config) << "exactly the config, nothing else";
  EXPECT_EQ(got.err, "");
  EXPECT_EQ(agent.last_request().cmd, "get_config");

  RunOutput json_out = RunLbctl({"--agent", agent.endpoint(), "get-config", "--json"});
  EXPECT_EQ(json::parse(json_out.out)["config"], config);

  const std::string sha(64, 'c');
  RunOutput reload =
      RunLbctl({"--agent=" + agent.endpoint(), "reload", "-", "--force", "--expect-sha256", sha},
               {}, "frontend f\n");
  EXPECT_EQ(reload.code, kExitOk);
  const proto::Request sent = agent.last_request();
  EXPECT_EQ(sent.cmd, "reload");
  EXPECT_EQ(sent.args, json({{"config", "frontend f\n"}, {"force", true}, {"expect_sha256", sha}}));

  RunOutput status = RunLbctl({"--agent", agent.endpoint(), "status", "*"});
  EXPECT_EQ(agent.last_request().args, json({{"backend", "*"}}));
  RunOutput plain_status = RunLbctl({"--agent", agent.endpoint(), "status"});
  EXPECT_EQ(agent.last_request().args, json::object()) << "the agent picks default_backend";
}

TEST(LbctlTest, RunExitsOneOnARefusalWithTheAgentsCodeAndMessage) {
  FakeAgent agent([](const proto::Request& r) {
    return proto::EncodeErrorReply(
        r.id, proto::Status(proto::ErrorCode::kInvalidConfig, "haproxy -c rejected the config",
                            json{{"haproxy_output", {"[ALERT] bad"}}}));
  });
  RunOutput human = RunLbctl({"--agent", agent.endpoint(), "validate", "-"}, {}, "x");
  EXPECT_EQ(human.code, kExitRefused);
  EXPECT_EQ(human.out, "");
  EXPECT_EQ(human.err, "lbctl: invalid_config: haproxy -c rejected the config\n[ALERT] bad\n");

  RunOutput as_json = RunLbctl({"--agent", agent.endpoint(), "--json", "validate", "-"}, {}, "x");
  EXPECT_EQ(as_json.code, kExitRefused);
  json error = json::parse(as_json.out);
  EXPECT_EQ(error["error"]["code"], "invalid_config");
  EXPECT_EQ(error["error"]["details"]["haproxy_output"][0], "[ALERT] bad");
}

TEST(LbctlTest, RunAcceptsAnErrorReplyWithoutId) {
  // The agent answers a frame above its limit with too_large before parsing it: no id to echo.
  FakeAgent agent([](const proto::Request&) {
    return proto::EncodeErrorReply(nullptr,
                                   proto::Status(proto::ErrorCode::kTooLarge, "message too big"));
  });
  RunOutput r = RunLbctl({"--agent", agent.endpoint(), "validate", "-"}, {}, "x");
  EXPECT_EQ(r.code, kExitRefused) << r.err;
  EXPECT_EQ(r.err, "lbctl: too_large: message too big\n");
}

// Terminal control (issue 14): a backend controls its health-check text, which reaches the
// operator's terminal through `lbctl status`: CSI in its C1 form, OSC, ESC and BEL arrive
// nowhere, in the table or in --json.
TEST(LbctlTest, StatusPrintsNoTerminalControlABackendWrote) {
  FakeAgent agent([](const proto::Request& request) {
    proto::ServerStatus server;
    server.name = "web1";
    server.address = "10.0.0.1:80";
    server.status = "DOWN";
    server.check_status = "L7STS";
    server.last_chk =
        "bad \xc2\x9b"
        "2J\x1b]0;owned\x07 \x1b[31mred\x07 \x9b";
    proto::BackendStatus backend{"scaling_nodes", "DOWN", {server}};
    return proto::EncodeOkReply(request.id, json{{"backends", json::array({ToJson(backend)})}});
  });
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--agent", agent.endpoint(), "status"},
        std::vector<std::string>{"--agent", agent.endpoint(), "status", "--json"}}) {
    RunOutput r = RunLbctl(args);
    ASSERT_EQ(r.code, 0) << r.err;
    SCOPED_TRACE(r.out);
    EXPECT_NE(r.out.find("web1"), std::string::npos);
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
    EXPECT_EQ(r.out.find('\x07'), std::string::npos);
    EXPECT_EQ(r.out.find("\xc2\x9b"), std::string::npos);
    // The table drops an OSC sequence whole; --json keeps its text with the controls escaped.
    if (args.back() == "status") {
      EXPECT_EQ(r.out.find("owned"), std::string::npos) << "an OSC title was kept";
    } else {
      EXPECT_NE(r.out.find("\\u001b]0;owned\\u0007"), std::string::npos);
    }
  }
}

TEST(LbctlTest, RunExitsThreeWhenTheAgentDoesNotAnswer) {
  FakeAgent silent([](const proto::Request&) { return std::nullopt; });
  RunOutput held = RunLbctl({"--agent", silent.endpoint(), "--timeout", "0.2", "info"});
  EXPECT_EQ(held.code, kExitUnreachable);
  EXPECT_NE(held.err.find("no answer from " + silent.endpoint() + " to `info` within 0.2 s"),
            std::string::npos)
      << held.err;

  FakeAgent garbage([](const proto::Request&) { return std::string("\xc1"); });
  RunOutput unreadable = RunLbctl({"--agent", garbage.endpoint(), "--timeout", "5", "ping"});
  EXPECT_EQ(unreadable.code, kExitUnreachable);
  EXPECT_NE(unreadable.err.find("unreadable reply"), std::string::npos) << unreadable.err;

  FakeAgent stranger(
      [](const proto::Request&) { return proto::EncodeOkReply("someone else's", json::object()); });
  RunOutput mixed_up = RunLbctl({"--agent", stranger.endpoint(), "ping"});
  EXPECT_EQ(mixed_up.code, kExitUnreachable);
  EXPECT_NE(mixed_up.err.find("carries id \"someone else's\""), std::string::npos) << mixed_up.err;

  RunOutput nobody =
      RunLbctl({"--agent", "ipc:///nonexistent/lbctl/cmd.sock", "--timeout", "0.2", "ping"});
  EXPECT_EQ(nobody.code, kExitUnreachable);
  EXPECT_EQ(nobody.err,
            "lbctl: no answer from ipc:///nonexistent/lbctl/cmd.sock within 0.2 s (is lb-agent "
            "running? is that its command_endpoint? if the agent uses CURVE, pass --curve-key and "
            "--server-key)\n");
}

// ---- CURVE ----

// Key files in a temp dir: the agent's pair, lbctl's pair (in the allow-list), a stranger's pair
// (not in it), and the allow-list.
struct CurveKeyFiles {
  test_util::TempDir dir;
  common::CurveCertificate agent, client, stranger;
  std::string agent_public, client_secret, stranger_secret, allow_list;

  CurveKeyFiles() {
    auto write = [&](const std::string& name, common::CurveCertificate* cert) {
      *cert = *common::GenerateCertificate();
      const proto::Status written = common::WriteCertificate(dir.File(name), *cert, "lbctl_test");
      EXPECT_TRUE(written.ok()) << written.ToString();
    };
    write("agent", &agent);
    write("client", &client);
    write("stranger", &stranger);
    agent_public = dir.File("agent");
    client_secret = dir.File("client_secret");
    stranger_secret = dir.File("stranger_secret");
    allow_list = dir.File("clients");
    test_util::WriteFile(allow_list, client.public_key + " lbctl\n");
  }
  FakeAgent::Curve Server() const { return {agent, allow_list}; }
};

TEST(LbctlTest, RunTalksCurveWithAnAllowedKey) {
  CurveKeyFiles keys;
  FakeAgent agent(Answer({{"pong", true}}), "", keys.Server());
  RunOutput flags = RunLbctl({"--agent", agent.endpoint(), "--curve-key", keys.client_secret,
                              "--server-key", keys.agent_public, "--timeout", "10", "ping"});
  EXPECT_EQ(flags.code, kExitOk) << flags.err;
  EXPECT_EQ(agent.last_request().cmd, "ping");

  Environment env;
  env.curve_key = keys.client_secret;
  env.server_key = keys.agent_public;
  RunOutput from_env = RunLbctl({"--agent", agent.endpoint(), "--timeout", "10", "info"}, env);
  EXPECT_EQ(from_env.code, kExitOk) << from_env.err;
  EXPECT_EQ(agent.last_request().cmd, "info");
  EXPECT_EQ(agent.zap()->accepted(), 2u);
  EXPECT_EQ(agent.zap()->refused(), 0u);
}

TEST(LbctlTest, RunExitsThreeAtOnceWhenTheAgentRefusesTheKey) {
  CurveKeyFiles keys;
  FakeAgent agent(Answer({{"pong", true}}), "", keys.Server());
  const auto start = std::chrono::steady_clock::now();
  RunOutput refused = RunLbctl({"--agent", agent.endpoint(), "--curve-key", keys.stranger_secret,
                                "--server-key", keys.agent_public, "--timeout", "20", "ping"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10))
      << "the ZAP handler's 400 is final: no need to wait for --timeout";
  EXPECT_EQ(refused.code, kExitUnreachable);
  EXPECT_EQ(refused.out, "");
  EXPECT_EQ(refused.err, "lbctl: the agent at " + agent.endpoint() + " refused lbctl's CURVE key " +
                             keys.stranger.public_key +
                             " (ZAP status 400): add that public key to its curve_clients, or "
                             "give a key that is there (--curve-key)\n");
  EXPECT_GE(agent.zap()->refused(), 1u);
  EXPECT_EQ(agent.last_request().cmd, "") << "no request got through";
}

TEST(LbctlTest, RunNamesAFailingHandshakeWhenNoAnswerComes) {
  CurveKeyFiles keys;
  FakeAgent curve_agent(Answer({{"pong", true}}), "", keys.Server());
  // Plaintext lbctl, CURVE agent.
  RunOutput plaintext = RunLbctl({"--agent", curve_agent.endpoint(), "--timeout", "0.5", "ping"});
  EXPECT_EQ(plaintext.code, kExitUnreachable);
  // Either side may notice the mismatch first: lbctl (a protocol error) or the agent (which
  // closes the connection).
  EXPECT_EQ(plaintext.err.rfind(
                "lbctl: no answer from " + curve_agent.endpoint() + " within 0.5 s: the agent ", 0),
            0u)
      << plaintext.err;
  EXPECT_NE(
      plaintext.err.find("pass --curve-key (lbctl's secret certificate, whose public key is in its "
                         "curve_clients) and --server-key (its public certificate)"),
      std::string::npos)
      << plaintext.err;
  // The right client key, the wrong server key (the stranger's).
  RunOutput wrong_server =
      RunLbctl({"--agent", curve_agent.endpoint(), "--curve-key", keys.client_secret,
                "--server-key", keys.dir.File("stranger"), "--timeout", "0.5", "ping"});
  EXPECT_EQ(wrong_server.code, kExitUnreachable);
  EXPECT_NE(wrong_server.err.find("CURVE on one side only, or --server-key is not its public "
                                  "certificate (lbctl's key: " +
                                  keys.client.public_key + ")"),
            std::string::npos)
      << wrong_server.err;
  // CURVE lbctl, plaintext agent.
  FakeAgent plain_agent(Answer({{"pong", true}}));
  RunOutput curve_only_here =
      RunLbctl({"--agent", plain_agent.endpoint(), "--curve-key", keys.client_secret,
                "--server-key", keys.agent_public, "--timeout", "0.5", "ping"});
  EXPECT_EQ(curve_only_here.code, kExitUnreachable);
  EXPECT_TRUE(curve_only_here.err.find("CURVE on one side only") != std::string::npos ||
              curve_only_here.err.find("does not use CURVE: drop --curve-key/--server-key") !=
                  std::string::npos)
      << curve_only_here.err;
  EXPECT_EQ(curve_agent.last_request().cmd, "");
  EXPECT_EQ(plain_agent.last_request().cmd, "");
}

TEST(LbctlTest, RunRefusesUnusableKeyFilesAsUsageErrors) {
  CurveKeyFiles keys;
  FakeAgent agent(Answer({{"pong", true}}), "", keys.Server());
  struct Case {
    std::string curve_key, server_key, message;
  };
  const std::vector<Case> cases = {
      {keys.dir.File("nonexistent_secret"), keys.agent_public,
       "cannot read " + keys.dir.File("nonexistent_secret") + ": No such file or directory"},
      {keys.dir.File("client"), keys.agent_public,
       "no secret-key line: this is a public certificate; give the _secret file"},
      {keys.client_secret, keys.allow_list, "no public-key line"},
  };
  for (const Case& c : cases) {
    for (const char* command : {"ping", "watch"}) {
      RunOutput r = RunLbctl({"--agent", agent.endpoint(), "--events", agent.endpoint(), command,
                              "--curve-key", c.curve_key, "--server-key", c.server_key});
      EXPECT_EQ(r.code, kExitUsage) << command << " " << c.curve_key << "\n" << r.err;
      EXPECT_EQ(r.err.rfind("lbctl: CURVE keys (--curve-key/--server-key): ", 0), 0u) << r.err;
      EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    }
  }
  // A secret certificate readable by everyone is refused too.
  std::filesystem::permissions(keys.client_secret, std::filesystem::perms::others_read,
                               std::filesystem::perm_options::add);
  RunOutput open_secret = RunLbctl({"--agent", agent.endpoint(), "ping", "--curve-key",
                                    keys.client_secret, "--server-key", keys.agent_public});
  EXPECT_EQ(open_secret.code, kExitUsage);
  EXPECT_NE(open_secret.err.find("chmod 600"), std::string::npos) << open_secret.err;
  EXPECT_EQ(agent.zap()->accepted() + agent.zap()->refused(), 0u) << "no connection was tried";
}

// A CURVE PUB socket publishing heartbeats every 20 ms on ipc://, like the agent's event socket.
class FakeCurvePublisher {
 public:
  FakeCurvePublisher(const FakeAgent::Curve& curve, const std::string& dir)
      : endpoint_("ipc://" + dir + "/events.sock") {
    auto zap = common::ZapHandler::Start(context_, curve.allow_list, nullptr);
    EXPECT_TRUE(zap.ok()) << zap.status().ToString();
    zap_ = std::move(*zap);
    thread_ = std::thread([this, own = curve.own] {
      zmq::socket_t pub(context_, zmq::socket_type::pub);
      pub.set(zmq::sockopt::linger, 0);
      common::MakeCurveServer(pub, own, *zap_, "events");
      pub.bind(endpoint_);
      for (uint64_t seq = 1; !stop_; ++seq) {
        const std::string body = proto::EncodeMsgpack(
            json{{"type", "heartbeat"}, {"seq", seq}, {"topic_seq", seq}, {"ts_ms", kTs}});
        pub.send(zmq::buffer(std::string("heartbeat")), zmq::send_flags::sndmore);
        pub.send(zmq::buffer(body), zmq::send_flags::none);
        std::this_thread::sleep_for(milliseconds(20));
      }
    });
  }
  ~FakeCurvePublisher() {
    stop_ = true;
    thread_.join();
    zap_.reset();
  }
  const std::string& endpoint() const { return endpoint_; }
  const common::ZapHandler& zap() const { return *zap_; }

 private:
  const std::string endpoint_;
  zmq::context_t context_;
  std::unique_ptr<common::ZapHandler> zap_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(LbctlTest, WatchSubscribesWithCurveAndStopsWhenTheKeyIsRefused) {
  CurveKeyFiles keys;
  FakeCurvePublisher events(keys.Server(), keys.dir.path());
  RunOutput allowed =
      RunLbctl({"watch", "--events", events.endpoint(), "--curve-key", keys.client_secret,
                "--server-key", keys.agent_public, "--count", "2", "--for", "20"});
  EXPECT_EQ(allowed.code, kExitOk) << allowed.err;
  EXPECT_EQ(Lines(allowed.out).size(), 2u) << allowed.out;
  EXPECT_NE(allowed.out.find("heartbeat"), std::string::npos) << allowed.out;

  const auto start = std::chrono::steady_clock::now();
  RunOutput refused =
      RunLbctl({"watch", "--events", events.endpoint(), "--curve-key", keys.stranger_secret,
                "--server-key", keys.agent_public, "--for", "20"});
  EXPECT_EQ(refused.code, kExitUnreachable);
  EXPECT_EQ(refused.out, "");
  EXPECT_NE(refused.err.find("refused lbctl's CURVE key " + keys.stranger.public_key),
            std::string::npos)
      << refused.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10))
      << "a refusal ends the watch, not --for";
  EXPECT_GE(events.zap().refused(), 1u);
}

}  // namespace
}  // namespace lb::cli
