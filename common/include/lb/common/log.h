// The one way lb-agent, lb-bridge and lb-controller write log lines: one line per event on
// stderr (the journal, supervisord or a terminal take it from there), "<program>: <message>".
//
// DESIGN: every line goes through Log(), which writes it with one write(2), so that lines of
// different threads never interleave. Messages read as sentences; values a machine may want to
// pick out go as key=value (LogLine::Field). The level says how much the line matters; what a
// level changes in the output (priority prefixes for journald) is decided here and nowhere else.
// Thread-safe; SetLogProgram and SetLogSink are meant for main() and tests, before threads start.
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <string_view>

namespace lb::common {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

// The prefix of every line ("lb-agent"). Default: "lb".
void SetLogProgram(std::string_view program);

// Where lines go instead of stderr (tests); `line` is the whole line without '\n'. An empty
// function restores stderr.
using LogSink = std::function<void(LogLevel level, std::string_view line)>;
void SetLogSink(LogSink sink);

// Writes "<program>: <message>".
void Log(LogLevel level, std::string_view message);

// A line built with <<, written when it goes out of scope:
//   LogInfo() << "listening on " << endpoint;
//   (LogInfo() << "request").Field("cmd", cmd).Field("ms", 1.5)  ->  "request cmd=status ms=1.5"
class LogLine {
 public:
  explicit LogLine(LogLevel level) : level_(level) {}
  ~LogLine() { Log(level_, stream_.str()); }
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  template <typename T>
  LogLine& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }
  // Appends "key=value", after a space unless it is the first thing on the line.
  template <typename T>
  LogLine& Field(std::string_view key, const T& value) {
    if (stream_.tellp() > 0) stream_ << ' ';
    stream_ << key << '=' << value;
    return *this;
  }

 private:
  const LogLevel level_;
  std::ostringstream stream_;
};

inline LogLine LogDebug() { return LogLine(LogLevel::kDebug); }
inline LogLine LogInfo() { return LogLine(LogLevel::kInfo); }
inline LogLine LogWarning() { return LogLine(LogLevel::kWarning); }
inline LogLine LogError() { return LogLine(LogLevel::kError); }

}  // namespace lb::common
