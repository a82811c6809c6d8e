// What the daemons share for operators (common/): the logfmt line and its escaping, log levels,
// the re-read diff of SIGHUP, the secrets-file check, the one-daemon lock, and the sd_notify
// datagrams (against a real unix datagram socket in a temp dir).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "lb/common/file.h"
#include "lb/common/ini.h"
#include "lb/common/log.h"
#include "lb/common/service_manager.h"
#include "lb/common/settings.h"
#include "lb/common/text.h"
#include "temp_dir.h"

namespace lb::common {
namespace {

using proto::ErrorCode;
using proto::Status;
using std::chrono::system_clock;

system_clock::time_point At(int64_t unix_ms) {
  return system_clock::time_point(std::chrono::milliseconds(unix_ms));
}

TEST(LogTest, LineIsLogfmtWithTimestampLevelProgramMessageAndFields) {
  // 2026-11-24T10:31:02.123Z
  const std::string line =
      FormatLogLine(LogLevel::kWarning, "lb-agent", "listening on x",
                    {{"cmd", "reload"}, {"ms", "1.5"}}, false, At(1795516262123));
  EXPECT_EQ(line,
            "ts=2026-11-24T10:31:02.123Z level=warning prog=lb-agent msg=\"listening on x\" "
            "cmd=reload ms=1.5");
}

TEST(LogTest, UnderJournaldThePriorityReplacesTheTimestamp) {
  EXPECT_EQ(FormatLogLine(LogLevel::kError, "lb-bridge", "bad", {}, true, At(0)),
            "<3>level=error prog=lb-bridge msg=bad");
  EXPECT_EQ(FormatLogLine(LogLevel::kWarning, "p", "m", {}, true, At(0)).substr(0, 3), "<4>");
  EXPECT_EQ(FormatLogLine(LogLevel::kInfo, "p", "m", {}, true, At(0)).substr(0, 3), "<6>");
  EXPECT_EQ(FormatLogLine(LogLevel::kDebug, "p", "m", {}, true, At(0)).substr(0, 3), "<7>");
}

TEST(LogTest, ValuesAreBareOrQuotedWithEveryControlEscaped) {
  EXPECT_EQ(LogValue("reload"), "reload");
  EXPECT_EQ(LogValue("née"), "née");  // printable UTF-8 stays as it is
  EXPECT_EQ(LogValue(""), "\"\"");
  EXPECT_EQ(LogValue("a b"), "\"a b\"");
  EXPECT_EQ(LogValue("k=v"), "\"k=v\"");
  EXPECT_EQ(LogValue("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
  // A peer's text can neither start a line of its own nor reach the reader's terminal.
  EXPECT_EQ(LogValue("x\nts=forged level=error"), "\"x\\nts=forged level=error\"");
  EXPECT_EQ(LogValue("a\r\tb"), "\"a\\r\\tb\"");
  EXPECT_EQ(LogValue("\x1b[31mred"), "\"\\x1b[31mred\"");
  EXPECT_EQ(LogValue(std::string("nul\0x", 5)), "\"nul\\x00x\"");
  EXPECT_EQ(LogValue("del\x7f"), "\"del\\x7f\"");
  EXPECT_EQ(LogValue("csi\xc2\x9b"
                     "2J"),
            "\"csi\\u009b2J\"");                               // C1 CSI
  EXPECT_EQ(LogValue("ls\xe2\x80\xa8x"), "\"ls\\u2028x\"");    // line separator
  EXPECT_EQ(LogValue("bad\xff\xc3"), "\"bad\\xff\\xc3\"");     // not UTF-8
  EXPECT_EQ(LogValue("\xe0\x80\xaf"), "\"\\xe0\\x80\\xaf\"");  // overlong '/'
}

TEST(LogTest, KeysAreSanitizedAndMessagesEscaped) {
  const std::string line =
      FormatLogLine(LogLevel::kInfo, "lb", "two\nlines", {{"bad key=", "v"}}, true, At(0));
  EXPECT_EQ(line, "<6>level=info prog=lb msg=\"two\\nlines\" bad_key_=v");
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(LogTest, LevelsParseAndLinesBelowTheLevelAreDropped) {
  EXPECT_EQ(ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("info"), LogLevel::kInfo);
  EXPECT_EQ(ParseLogLevel("warning"), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("warn"), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("error"), LogLevel::kError);
  EXPECT_EQ(ParseLogLevel("INFO"), std::nullopt);
  EXPECT_EQ(ParseLogLevel("verbose"), std::nullopt);

  std::vector<std::string> lines;
  SetLogSink([&](LogLevel, std::string_view line) { lines.emplace_back(line); });
  SetLogLevel(LogLevel::kWarning);
  LogInfo() << "dropped";
  LogDebug() << "dropped too";
  LogWarning() << "kept";
  (LogError() << "failed").Field("why", "a b");
  SetLogLevel(LogLevel::kDebug);
  LogDebug() << "now kept";
  SetLogLevel(LogLevel::kInfo);
  SetLogSink(nullptr);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find("level=warning"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("msg=kept"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("level=error"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("msg=failed why=\"a b\""), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find("level=debug"), std::string::npos) << lines[2];
}

TEST(LogTest, StderrIsTheJournalOnlyWhenJournalStreamNamesIt) {
  struct stat st {};
  ASSERT_EQ(fstat(STDERR_FILENO, &st), 0);
  const std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(StderrIsJournal());
  setenv("JOURNAL_STREAM", mine.c_str(), 1);
  EXPECT_TRUE(StderrIsJournal());
  setenv("JOURNAL_STREAM", (std::to_string(st.st_dev) + ":1").c_str(), 1);
  EXPECT_FALSE(StderrIsJournal()) << "another inode: stderr was redirected since";
  setenv("JOURNAL_STREAM", "garbage", 1);
  EXPECT_FALSE(StderrIsJournal());
  unsetenv("JOURNAL_STREAM");
}

TEST(SettingsRereadTest, ChangedKeysListsWhatOnlyARestartApplies) {
  auto before = ParseIni("[lb-agent]\nport = 1\nlog_level = info\n[haproxy]\nx = 1\n", "a");
  auto after = ParseIni("[lb-agent]\nport = 2\nlog_level = debug\n[fleet]\ny = 1\n", "b");
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_EQ(ChangedKeys(IniValues(*before), IniValues(*after), {"[lb-agent] log_level"}),
            (std::vector<std::string>{"[fleet] y", "[haproxy] x", "[lb-agent] port"}));
  EXPECT_TRUE(ChangedKeys(IniValues(*before), IniValues(*before), {}).empty());
  EXPECT_EQ(RestartNeeded(IniValues(*before), IniValues(*after), {"[lb-agent] log_level"}),
            "[fleet] y, [haproxy] x, [lb-agent] port");
  EXPECT_EQ(RestartNeeded(IniValues(*before), IniValues(*before), {}), "");
}

TEST(TextTest, UtcTimeStampsInEachFormat) {
  const int64_t us = 1795516262123456;  // 2026-11-24T10:31:02.123456Z
  EXPECT_EQ(FormatUtc(us, UtcFormat::kMillis), "2026-11-24T10:31:02.123Z");
  EXPECT_EQ(FormatUtc(us, UtcFormat::kMicros), "2026-11-24T10:31:02.123456Z");
  EXPECT_EQ(FormatUtc(us, UtcFormat::kCompact), "20261124T103102.123456Z");
  EXPECT_EQ(FormatUtc(-5, UtcFormat::kMillis), "1970-01-01T00:00:00.000Z");
}

TEST(TextTest, DecodesUtf8AndRefusesWhatIsNot) {
  using Decoded = std::pair<char32_t, std::size_t>;
  EXPECT_EQ(DecodeUtf8("a", 0), Decoded('a', 1));
  EXPECT_EQ(DecodeUtf8("\xc3\xa9", 0), Decoded(0xE9, 2));
  EXPECT_EQ(DecodeUtf8("\xe2\x80\xa8", 0), Decoded(0x2028, 3));
  EXPECT_EQ(DecodeUtf8("\xf0\x9f\x98\x80", 0), Decoded(0x1F600, 4));
  EXPECT_EQ(DecodeUtf8("x\xc2\x9b", 1), Decoded(0x9B, 2));
  EXPECT_EQ(DecodeUtf8("\xc3", 0).second, 0u) << "truncated";
  EXPECT_EQ(DecodeUtf8("\xc0\xaf", 0).second, 0u) << "overlong";
  EXPECT_EQ(DecodeUtf8("\xed\xa0\x80", 0).second, 0u) << "surrogate";
  EXPECT_EQ(DecodeUtf8("\xf4\x90\x80\x80", 0).second, 0u) << "above U+10FFFF";
  EXPECT_EQ(DecodeUtf8("\xff", 0).second, 0u);
}

TEST(SettingsRereadTest, LogLevelAndStopHaproxyOnExitDefaults) {
  auto settings = ParseSettings("[lb-agent]\nport = 1\n", "lb.cfg", "/etc/lb-agent");
  ASSERT_TRUE(settings.ok()) << settings.status().message();
  EXPECT_EQ(settings->log_level, LogLevel::kInfo);
  EXPECT_FALSE(settings->haproxy.stop_haproxy_on_exit) << "an agent restart must keep haproxy";
  EXPECT_EQ(settings->file_values.at("[lb-agent] port"), "1");
  auto debug = ParseSettings("[lb-agent]\nlog_level = debug\n", "lb.cfg", "/etc/lb-agent");
  ASSERT_TRUE(debug.ok());
  EXPECT_EQ(debug->log_level, LogLevel::kDebug);
  auto bad = ParseSettings("[lb-agent]\nlog_level = loud\n", "lb.cfg", "/etc/lb-agent");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "lb.cfg:2: [lb-agent] log_level: expected error, warning, info or debug");
}

TEST(SecretFileTest, MissingWorldReadableOrNotRegularIsRefusedWithTheFix) {
  lb::testing::TempDir dir;
  const std::string path = dir.File("tokens");
  Status missing = CheckSecretFile(path);
  EXPECT_EQ(missing.code(), ErrorCode::kBadRequest);
  EXPECT_NE(missing.message().find("No such file"), std::string::npos) << missing.message();
  std::ofstream(path) << "secret\n";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  Status readable = CheckSecretFile(path);
  EXPECT_EQ(readable.code(), ErrorCode::kBadRequest);
  EXPECT_NE(readable.message().find("chmod o-rwx " + path), std::string::npos)
      << readable.message();
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);
  EXPECT_TRUE(CheckSecretFile(path).ok());
  EXPECT_NE(CheckSecretFile(dir.path()).message().find("not a regular file"), std::string::npos);
}

TEST(SecretFileTest, CheckBridgeFilesNamesTheKeyAndTheProblem) {
  lb::testing::TempDir dir;
  std::ofstream(dir.File("tokens")) << "t\n";
  ASSERT_EQ(chmod(dir.File("tokens").c_str(), 0644), 0);
  auto settings = ParseSettings(
      "[security]\nbridge_tokens_file = tokens\nbridge_tls_cert = cert.pem\nbridge_tls_key = "
      "key.pem\n",
      "lb.cfg", dir.path());
  ASSERT_TRUE(settings.ok()) << settings.status().message();
  settings->path = "lb.cfg";
  std::vector<std::string> problems = CheckBridgeFiles(*settings);
  ASSERT_EQ(problems.size(), 3u);
  EXPECT_NE(problems[0].find("lb.cfg: [security] bridge_tokens_file"), std::string::npos);
  EXPECT_NE(problems[0].find("readable by other users"), std::string::npos) << problems[0];
  EXPECT_NE(problems[1].find("bridge_tls_cert " + dir.File("cert.pem") + ": does not exist"),
            std::string::npos)
      << problems[1];
  EXPECT_NE(problems[2].find("bridge_tls_key"), std::string::npos) << problems[2];
  ASSERT_EQ(chmod(dir.File("tokens").c_str(), 0600), 0);
  std::ofstream(dir.File("cert.pem")) << "x";
  std::ofstream(dir.File("key.pem")) << "x";
  EXPECT_TRUE(CheckBridgeFiles(*settings).empty());
}

TEST(ExclusiveLockTest, OneHolderAtATimeAndTheOtherIsToldWho) {
  lb::testing::TempDir dir;
  const std::string path = dir.File("lock");
  auto first = ExclusiveLock::Acquire(path);
  ASSERT_TRUE(first.ok()) << first.status().message();
  // flock locks belong to an open file description: a second open in this process conflicts
  // exactly as another process would.
  auto second = ExclusiveLock::Acquire(path);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::kConflict);
  EXPECT_EQ(second.status().message(), path + " is held by pid " + std::to_string(getpid()));
  EXPECT_EQ(second.status().details().value("pid", 0L), static_cast<long>(getpid()));
  first->reset();
  auto third = ExclusiveLock::Acquire(path);
  EXPECT_TRUE(third.ok()) << "released with its holder: " << third.status().message();
}

TEST(ExclusiveLockTest, UnopenableLockFileIsAnOsError) {
  auto lock = ExclusiveLock::Acquire("/nonexistent-dir/lock");
  ASSERT_FALSE(lock.ok());
  EXPECT_NE(lock.status().message().find("open /nonexistent-dir/lock: No such file"),
            std::string::npos)
      << lock.status().message();
}

// A unix datagram socket bound in a temp dir, as systemd's NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    timeval timeout{2, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  }
  ~NotifySocket() { close(fd_); }
  // The next datagram, or "" after 2 s.
  std::string Next() {
    char buffer[4096];
    const ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  }

 private:
  std::string path_;
  int fd_;
};

TEST(ServiceManagerTest, NotifiesTheSocketSystemdNamesAndHidesItFromChildren) {
  lb::testing::TempDir dir;
  NotifySocket systemd(dir.File("notify"));
  setenv("NOTIFY_SOCKET", dir.File("notify").c_str(), 1);
  setenv("WATCHDOG_USEC", "2000", 1);  // 2 ms: a ping is due at every call after 1 ms
  unsetenv("WATCHDOG_PID");
  InitServiceManager();
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr) << "haproxy must not inherit it";
  EXPECT_EQ(std::getenv("WATCHDOG_USEC"), nullptr);
  EXPECT_EQ(WatchdogInterval(), std::chrono::microseconds(2000));

  NotifyReady("serving\nsecond line");
  EXPECT_EQ(systemd.Next(), "READY=1\nSTATUS=serving second line");
  NotifyReloading();
  const std::string reloading = systemd.Next();
  EXPECT_EQ(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u) << reloading;
  NotifyStopping();
  EXPECT_EQ(systemd.Next(), "STOPPING=1");
  usleep(1500);
  ServiceWatchdog();
  EXPECT_EQ(systemd.Next(), "WATCHDOG=1");

  // Without NOTIFY_SOCKET every call does nothing.
  InitServiceManager();
  EXPECT_FALSE(NotifyServiceManager("READY=1"));
  EXPECT_EQ(WatchdogInterval(), std::chrono::microseconds(0));
}

}  // namespace
}  // namespace lb::common
