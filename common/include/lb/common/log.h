// The one way lb-agent, lb-bridge and lb-controller write log lines: one line per event on
// stderr (the journal, supervisord, a container runtime or a terminal take it from there).
//
// DESIGN: every line has one key=value shape (logfmt), whichever program writes it:
//   ts=2026-11-24T10:31:02.123Z level=info prog=lb-agent msg="listening on ..." cmd=reload
// Under systemd (JOURNAL_STREAM names this stderr) the journal stamps the time itself, so `ts=`
// goes and the line starts with the syslog priority instead ("<6>level=info prog=..."), which
// journald turns into the entry's PRIORITY (`journalctl -p warning`).
//
// Every value is written by LogValue(): bare when it is plain printable text, else in double
// quotes with '"', '\\' and every control character escaped (\n, \t, \x1b, \u009b for the C1
// controls, \xff for a byte that is not UTF-8). Whatever a remote peer put in a logged field (a
// command name, a URL, haproxy's output) can therefore never start a line of its own or send
// escape sequences to the terminal of whoever reads the log.
//
// Lines below the level set by SetLogLevel (lb-agent.cfg / lb-controller.cfg `log_level`) are
// dropped. Each line goes out with one write(2), so that lines of different threads never
// interleave. Thread-safe; SetLogProgram and SetLogSink are meant for main() and tests, before
// threads start; SetLogLevel may be called at any time (SIGHUP).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lb::common {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

// "debug", "info", "warning", "error".
std::string_view LogLevelName(LogLevel level);
// The inverse of LogLevelName ("warn" is accepted too); nullopt for anything else.
std::optional<LogLevel> ParseLogLevel(std::string_view name);

// The `prog=` of every line ("lb-agent"). Default: "lb".
void SetLogProgram(std::string_view program);

// Lines below `level` are dropped. Default: kInfo.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

// Where lines go instead of stderr (tests); `line` is the whole formatted line without '\n'.
// An empty function restores stderr.
using LogSink = std::function<void(LogLevel level, std::string_view line)>;
void SetLogSink(LogSink sink);

struct LogField {
  std::string key;
  std::string value;
};

// Writes one line: `message` as msg=, then each field as key=value, unless `level` is below the
// level set.
void Log(LogLevel level, std::string_view message, const std::vector<LogField>& fields = {});

// A value as it appears after "key=" (see the DESIGN above).
std::string LogValue(std::string_view value);

// The whole line Log() writes, without '\n'. `journald`: the priority prefix instead of ts=.
// Pure; for tests.
std::string FormatLogLine(LogLevel level, std::string_view program, std::string_view message,
                          const std::vector<LogField>& fields, bool journald,
                          std::chrono::system_clock::time_point now);

// True when stderr is the journal's stream (JOURNAL_STREAM holds its device and inode, as
// systemd sets it for a service whose StandardError is the journal).
bool StderrIsJournal();

// A line built with <<, written when it goes out of scope:
//   LogInfo() << "listening on " << endpoint;
//   (LogInfo() << "request").Field("cmd", cmd).Field("ms", 1.5)  ->  msg=request cmd=status ms=1.5
class LogLine {
 public:
  explicit LogLine(LogLevel level) : level_(level) {}
  ~LogLine() { Log(level_, stream_.str(), fields_); }
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  template <typename T>
  LogLine& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }
  // Adds key=value after the message.
  template <typename T>
  LogLine& Field(std::string_view key, const T& value) {
    std::ostringstream text;
    text << value;
    fields_.push_back({std::string(key), std::move(text).str()});
    return *this;
  }

 private:
  const LogLevel level_;
  std::ostringstream stream_;
  std::vector<LogField> fields_;
};

inline LogLine LogDebug() { return LogLine(LogLevel::kDebug); }
inline LogLine LogInfo() { return LogLine(LogLevel::kInfo); }
inline LogLine LogWarning() { return LogLine(LogLevel::kWarning); }
inline LogLine LogError() { return LogLine(LogLevel::kError); }

}  // namespace lb::common
