// The INI reader and lb-agent.cfg's typed form, including the 2015 agent's files as they are.
#include "lb/common/settings.h"

#include <gtest/gtest.h>

#include <string>

#include "lb/common/ini.h"

namespace lb::common {
namespace {

using proto::ErrorCode;

// The 2015 agent's lb-agent.cfg, verbatim (shared/reference/original-lb-agent.md).
constexpr char k2015Config[] =
    "[lb-agent]\n"
    "host = 0.0.0.0\n"
    "port = 6666\n"
    "[haproxy]\n"
    "config_file_path = /etc/haproxy/haproxy.cfg\n"
    "default_backend = scaling_nodes\n"
    "socket_path = /var/lib/haproxy/stats\n"
    "socket_buffer_size = 4096\n"
    "socket_timeout = 5\n"
    "systemv_init_path = /etc/init.d/haproxy\n"
    "systemd_service_name =\n";

// Expects `text` to be refused with exactly one line that starts with `prefix`.
void ExpectOneLineError(const std::string& text, const std::string& prefix) {
  auto settings = ParseSettings(text, "lb.cfg", "/etc/lb-agent");
  ASSERT_FALSE(settings.ok()) << "accepted:\n" << text;
  const std::string& message = settings.status().message();
  EXPECT_EQ(settings.status().code(), ErrorCode::kBadRequest);
  EXPECT_EQ(message.rfind(prefix, 0), 0u)
      << "message: " << message << "\nexpected prefix: " << prefix;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_GT(message.size(), prefix.size()) << "no problem after the prefix: " << message;
}

TEST(IniTest, ReadsSectionsAndBothSeparators) {
  auto ini = ParseIni("[One]\nalpha = 1\nBeta: two words \n[two]\ngamma=3\n", "t.ini");
  ASSERT_TRUE(ini.ok()) << ini.status().ToString();
  ASSERT_EQ(ini->size(), 2u);
  EXPECT_EQ(ini->at("one").at("alpha").value, "1");
  EXPECT_EQ(ini->at("one").at("alpha").line, 2);
  EXPECT_EQ(ini->at("one").at("beta").value, "two words");
  EXPECT_EQ(ini->at("one").at("beta").line, 3);
  EXPECT_EQ(ini->at("two").at("gamma").value, "3");
  EXPECT_EQ(ini->at("two").at("gamma").line, 5);
}

TEST(IniTest, SkipsCommentLines) {
  auto ini = ParseIni("# top comment\n[s]\n; semicolon comment\nkey = v\n", "t.ini");
  ASSERT_TRUE(ini.ok()) << ini.status().ToString();
  ASSERT_EQ(ini->at("s").size(), 1u);
  EXPECT_EQ(ini->at("s").at("key").value, "v");
  EXPECT_EQ(ini->at("s").at("key").line, 4);
}

TEST(IniTest, StripsInlineSemicolonCommentsLikePython2) {
  // Python 2.7's ConfigParser, which read the 2015 agent's files, ends a value at a ';' that
  // follows whitespace; a ';' inside a word stays.
  auto ini = ParseIni("[s]\nport = 6666 ; the bridge port\npattern = a;b\n", "t.ini");
  ASSERT_TRUE(ini.ok()) << ini.status().ToString();
  EXPECT_EQ(ini->at("s").at("port").value, "6666");
  EXPECT_EQ(ini->at("s").at("pattern").value, "a;b");
}

TEST(IniTest, AppendsIndentedContinuationLines) {
  auto ini = ParseIni("[s]\nkey = first\n  second\n\tthird\nother = x\n", "t.ini");
  ASSERT_TRUE(ini.ok()) << ini.status().ToString();
  EXPECT_EQ(ini->at("s").at("key").value, "first\nsecond\nthird");
  EXPECT_EQ(ini->at("s").at("other").value, "x");
  EXPECT_EQ(ini->at("s").at("other").line, 5);
}

TEST(IniTest, AcceptsCrlfLineEndings) {
  auto ini = ParseIni("[s]\r\nkey = value\r\nnext: 2\r\n", "t.ini");
  ASSERT_TRUE(ini.ok()) << ini.status().ToString();
  EXPECT_EQ(ini->at("s").at("key").value, "value");
  EXPECT_EQ(ini->at("s").at("next").value, "2");
  EXPECT_EQ(ini->at("s").at("next").line, 3);
}

TEST(IniTest, DuplicateKeyIsAnErrorNamingBothLines) {
  auto ini = ParseIni("[s]\nport = 1\nother = 2\nPORT = 3\n", "dup.ini");
  ASSERT_FALSE(ini.ok());
  const std::string& message = ini.status().message();
  EXPECT_EQ(message.rfind("dup.ini:4: ", 0), 0u) << message;
  EXPECT_NE(message.find("port"), std::string::npos) << message;
  EXPECT_NE(message.find("line 2"), std::string::npos) << message;
}

TEST(IniTest, KeyOutsideSectionIsAnError) {
  auto ini = ParseIni("# comment\nkey = value\n[s]\n", "out.ini");
  ASSERT_FALSE(ini.ok());
  EXPECT_EQ(ini.status().message().rfind("out.ini:2: ", 0), 0u) << ini.status().message();
}

TEST(IniTest, LineWithoutSeparatorIsAnError) {
  auto ini = ParseIni("[s]\njust words\n", "bad.ini");
  ASSERT_FALSE(ini.ok());
  EXPECT_EQ(ini.status().message().rfind("bad.ini:2: ", 0), 0u) << ini.status().message();
}

TEST(SettingsTest, Loads2015AgentFileAndInfersSysv) {
  auto settings = ParseSettings(k2015Config, "lb-agent.cfg", "/etc/lb-agent");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->bridge.host, "0.0.0.0");
  EXPECT_EQ(settings->bridge.port, 6666);
  EXPECT_EQ(settings->haproxy.config_file_path, "/etc/haproxy/haproxy.cfg");
  EXPECT_EQ(settings->haproxy.default_backend, "scaling_nodes");
  EXPECT_EQ(settings->haproxy.socket_path, "/var/lib/haproxy/stats");
  EXPECT_EQ(settings->haproxy.socket_buffer_size, 4096u);
  EXPECT_EQ(settings->haproxy.socket_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(settings->haproxy.systemv_init_path, "/etc/init.d/haproxy");
  EXPECT_EQ(settings->haproxy.systemd_service_name, "");
  EXPECT_EQ(settings->haproxy.reload_method, ReloadMethod::kSysv);
}

TEST(SettingsTest, MisspeltSystemdKeyInfersSystemd) {
  std::string text = k2015Config;
  text.replace(text.find("systemd_service_name ="), std::string("systemd_service_name =").size(),
               "sytemd_service_name = haproxy");
  auto settings = ParseSettings(text, "lb-agent.cfg", "/etc/lb-agent");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->haproxy.systemd_service_name, "haproxy");
  EXPECT_EQ(settings->haproxy.reload_method, ReloadMethod::kSystemd);
}

TEST(SettingsTest, CorrectlySpeltSystemdKeyInfersSystemd) {
  std::string text = k2015Config;
  text.replace(text.find("systemd_service_name ="), std::string("systemd_service_name =").size(),
               "systemd_service_name = haproxy.service");
  auto settings = ParseSettings(text, "lb-agent.cfg", "/etc/lb-agent");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->haproxy.systemd_service_name, "haproxy.service");
  EXPECT_EQ(settings->haproxy.reload_method, ReloadMethod::kSystemd);
}

TEST(SettingsTest, NeitherInitScriptNorServiceInfersManaged) {
  std::string text = k2015Config;
  text.erase(text.find("systemv_init_path"),
             std::string("systemv_init_path = /etc/init.d/haproxy\n").size());
  auto settings = ParseSettings(text, "lb-agent.cfg", "/etc/lb-agent");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->haproxy.reload_method, ReloadMethod::kManaged);
}

TEST(SettingsTest, ExplicitReloadMethodWins) {
  auto settings = ParseSettings(std::string(k2015Config) + "reload_method = master\n",
                                "lb-agent.cfg", "/etc/lb-agent");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->haproxy.reload_method, ReloadMethod::kMaster);
}

TEST(SettingsTest, EmptyFileGivesDefaults) {
  auto settings = ParseSettings("", "empty.cfg", "/etc/lb-agent");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->bridge.port, 6666);
  EXPECT_EQ(settings->haproxy.default_backend, "scaling_nodes");
  EXPECT_EQ(settings->haproxy.reload_method, ReloadMethod::kManaged);
}

TEST(SettingsTest, BadIntegerIsOneLineError) {
  ExpectOneLineError("[lb-agent]\nhost = 0.0.0.0\nport = six\n", "lb.cfg:3: [lb-agent] port: ");
  ExpectOneLineError("[haproxy]\nsocket_buffer_size = 4k\n",
                     "lb.cfg:2: [haproxy] socket_buffer_size: ");
}

TEST(SettingsTest, OutOfRangePortIsOneLineError) {
  ExpectOneLineError("[lb-agent]\nport = 70000\n", "lb.cfg:2: [lb-agent] port: ");
  ExpectOneLineError("[lb-agent]\nport = -1\n", "lb.cfg:2: [lb-agent] port: ");
}

TEST(SettingsTest, UnknownKeyIsOneLineError) {
  ExpectOneLineError("[haproxy]\ndefault_backend = app\nsocket_pth = /run/x\n",
                     "lb.cfg:3: [haproxy] socket_pth: ");
}

TEST(SettingsTest, UnknownSectionIsOneLineError) {
  auto settings = ParseSettings("[lb-agent]\nport = 1\n\n[bogus]\nkey = 1\n", "lb.cfg", "/");
  ASSERT_FALSE(settings.ok());
  const std::string& message = settings.status().message();
  // The section header is on line 4, its only key on line 5: either is a fair place to point.
  EXPECT_TRUE(message.rfind("lb.cfg:4: ", 0) == 0 || message.rfind("lb.cfg:5: ", 0) == 0)
      << message;
  EXPECT_NE(message.find("[bogus]"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(SettingsTest, UnknownSectionErrorPointsAtTheSectionNotALaterKey) {
  // Header on line 2, first key on line 3; "aaa" (line 4) is merely first in sorted order.
  auto settings = ParseSettings("\n[bogus]\nzzz = 1\naaa = 2\n", "lb.cfg", "/");
  ASSERT_FALSE(settings.ok());
  const std::string& message = settings.status().message();
  EXPECT_TRUE(message.rfind("lb.cfg:2: ", 0) == 0 || message.rfind("lb.cfg:3: ", 0) == 0)
      << message;
}

TEST(SettingsTest, UnknownEmptySectionErrorNamesARealLine) {
  auto settings = ParseSettings("[lb-agent]\nport = 1\n[bogus]\n", "lb.cfg", "/");
  ASSERT_FALSE(settings.ok());
  const std::string& message = settings.status().message();
  EXPECT_EQ(message.rfind("lb.cfg:3: ", 0), 0u) << message;
  EXPECT_NE(message.find("[bogus]"), std::string::npos) << message;
}

TEST(SettingsTest, BadReloadMethodIsOneLineError) {
  ExpectOneLineError("[haproxy]\nreload_method = upstart\n", "lb.cfg:2: [haproxy] reload_method: ");
}

TEST(SettingsTest, BadBoolIsOneLineError) {
  ExpectOneLineError("[haproxy]\nstats_via_master = maybe\n",
                     "lb.cfg:2: [haproxy] stats_via_master: ");
}

TEST(SettingsTest, BadSecondsIsOneLineError) {
  ExpectOneLineError("[haproxy]\nsocket_timeout = soon\n", "lb.cfg:2: [haproxy] socket_timeout: ");
  ExpectOneLineError("[haproxy]\nsocket_timeout = 0\n", "lb.cfg:2: [haproxy] socket_timeout: ");
}

// Fuzz input fuzz/corpus/settings/crash-seconds-nan: std::stod reads "nan", which passed the
// range check and was cast to an integer (undefined behaviour).
TEST(SettingsTest, NanOrInfiniteSecondsIsOneLineError) {
  for (const char* value : {"nan", "NAN", "-nan", "nan(1)", "inf", "-inf", "infinity"}) {
    ExpectOneLineError(std::string("[lb-agent]\nagent_timeout = ") + value + "\n",
                       "lb.cfg:2: [lb-agent] agent_timeout: ");
  }
}

TEST(SettingsTest, SystemdWithoutServiceNameIsError) {
  auto settings = ParseSettings("[haproxy]\nreload_method = systemd\n", "lb.cfg", "/");
  ASSERT_FALSE(settings.ok());
  EXPECT_EQ(settings.status().message().rfind("lb.cfg", 0), 0u) << settings.status().message();
  EXPECT_NE(settings.status().message().find("systemd_service_name"), std::string::npos);
}

TEST(SettingsTest, RelativePathsAreResolvedAgainstBaseDir) {
  auto settings = ParseSettings(
      "[lb-agent]\nhistory_dir = ../history\n"
      "[haproxy]\nconfig_file_path = haproxy.cfg\nmaster_socket = run/master.sock\n"
      "pid_file = /run/abs.pid\n",
      "lb.cfg", "/etc/lb-agent");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->haproxy.config_file_path, "/etc/lb-agent/haproxy.cfg");
  EXPECT_EQ(settings->haproxy.master_socket, "/etc/lb-agent/run/master.sock");
  EXPECT_EQ(settings->agent.history_dir, "/etc/history");
  EXPECT_EQ(settings->haproxy.pid_file, "/run/abs.pid");
}

TEST(SettingsTest, FractionalSocketTimeoutIsMilliseconds) {
  auto settings = ParseSettings("[haproxy]\nsocket_timeout = 0.5\n", "lb.cfg", "/");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->haproxy.socket_timeout, std::chrono::milliseconds(500));
}

TEST(SettingsTest, KeysAndSectionsAreCaseInsensitive) {
  auto settings = ParseSettings("[HAProxy]\nDefault_Backend = web\n", "lb.cfg", "/");
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->haproxy.default_backend, "web");
}

TEST(SettingsTest, AgentIdAndGroupsFollowTheFleetNameRule) {
  auto ok = ParseSettings(
      "[lb-agent]\nagent_id = web-1.eu\n[fleet]\ncontroller_pub = ipc:///p\n"
      "controller_router = ipc:///r\ngroups = web, eu\thot\nhello_interval = 0.5\n",
      "lb.cfg", "/");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->fleet.groups, (std::vector<std::string>{"web", "eu", "hot"}));
  EXPECT_EQ(ok->fleet.hello_interval, std::chrono::milliseconds(500));
  EXPECT_EQ(ParseSettings("", "lb.cfg", "/")->fleet.hello_interval,
            std::chrono::milliseconds(5000));
  for (const auto& [text, message] : std::vector<std::pair<std::string, std::string>>{
           {"[lb-agent]\nagent_id = a/b\n", "lb.cfg: [lb-agent] agent_id \"a/b\" is not a name"},
           {"[lb-agent]\nagent_id = " + std::string(256, 'a') + "\n", "is not a name"},
           {"[fleet]\ngroups = web, a/b\n",
            "lb.cfg:2: [fleet] groups: group \"a/b\" is not a name"},
           {"[fleet]\nhello_interval = 0\n", "[fleet] hello_interval: must be more than 0"}}) {
    auto parsed = ParseSettings(text, "lb.cfg", "/");
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_NE(parsed.status().message().find(message), std::string::npos)
        << parsed.status().message();
  }
}

}  // namespace
}  // namespace lb::common
