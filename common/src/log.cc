#include "lb/common/log.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "lb/common/text.h"

namespace lb::common {
namespace {

std::mutex& SettingsMutex() {
  static std::mutex mutex;
  return mutex;
}
std::string& Program() {
  static std::string program = "lb";
  return program;
}
LogSink& Sink() {
  static LogSink sink;
  return sink;
}
std::atomic<int>& Level() {
  static std::atomic<int> level{static_cast<int>(LogLevel::kInfo)};
  return level;
}

void WriteStderr(std::string_view line) {
  while (!line.empty()) {
    const ssize_t n = write(STDERR_FILENO, line.data(), line.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to complain to
    line.remove_prefix(static_cast<std::size_t>(n));
  }
}

// syslog(3) priorities, as journald reads them from a "<N>" prefix.
int Priority(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return 3;
    case LogLevel::kWarning:
      return 4;
    case LogLevel::kInfo:
      return 6;
    case LogLevel::kDebug:
      return 7;
  }
  return 6;
}

// Code points that end or rewrite a line in some viewer: C0, DEL, C1, and the Unicode line and
// paragraph separators.
bool IsControl(char32_t cp) {
  return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029;
}

void AppendHex(std::string& out, const char* prefix, unsigned value, int digits) {
  char text[16];
  std::snprintf(text, sizeof text, "%s%0*x", prefix, digits, value);
  out += text;
}

// Keys are the code's own words; anything unexpected in one becomes '_'.
std::string Key(std::string_view key) {
  std::string out;
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    out += ok ? c : '_';
  }
  return out.empty() ? "_" : out;
}

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::optional<LogLevel> ParseLogLevel(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warning" || name == "warn") return LogLevel::kWarning;
  if (name == "error") return LogLevel::kError;
  return std::nullopt;
}

void SetLogProgram(std::string_view program) {
  std::lock_guard<std::mutex> lock(SettingsMutex());
  Program() = std::string(program);
}

void SetLogLevel(LogLevel level) { Level() = static_cast<int>(level); }

LogLevel GetLogLevel() { return static_cast<LogLevel>(Level().load()); }

void SetLogSink(LogSink sink) {
  std::lock_guard<std::mutex> lock(SettingsMutex());
  Sink() = std::move(sink);
}

std::string LogValue(std::string_view value) {
  bool bare = !value.empty();
  for (std::size_t i = 0; bare && i < value.size();) {
    const auto [cp, length] = DecodeUtf8(value, i);
    if (length == 0 || IsControl(cp) || cp == ' ' || cp == '"' || cp == '=' || cp == '\\') {
      bare = false;
    }
    i += length == 0 ? 1 : length;
  }
  if (bare) return std::string(value);
  std::string out = "\"";
  for (std::size_t i = 0; i < value.size();) {
    const auto [cp, length] = DecodeUtf8(value, i);
    if (length == 0) {
      AppendHex(out, "\\x", static_cast<unsigned char>(value[i]), 2);
      ++i;
      continue;
    }
    if (cp == '"' || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F) {
      AppendHex(out, "\\x", static_cast<unsigned>(cp), 2);
    } else if (IsControl(cp)) {
      AppendHex(out, "\\u", static_cast<unsigned>(cp), 4);
    } else {
      out.append(value.substr(i, length));
    }
    i += length;
  }
  out += '"';
  return out;
}

std::string FormatLogLine(LogLevel level, std::string_view program, std::string_view message,
                          const std::vector<LogField>& fields, bool journald,
                          std::chrono::system_clock::time_point now) {
  std::string line;
  if (journald) {
    line = "<" + std::to_string(Priority(level)) + ">";
  } else {
    line =
        "ts=" +
        FormatUtc(
            std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count(),
            UtcFormat::kMillis) +
        " ";
  }
  line += "level=";
  line += LogLevelName(level);
  line += " prog=" + LogValue(program);
  if (!message.empty()) line += " msg=" + LogValue(message);
  for (const auto& field : fields) line += " " + Key(field.key) + "=" + LogValue(field.value);
  return line;
}

bool StderrIsJournal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

void Log(LogLevel level, std::string_view message, const std::vector<LogField>& fields) {
  if (static_cast<int>(level) < Level().load()) return;
  // Decided once: stderr does not change under a running daemon.
  static const bool journald = StderrIsJournal();
  LogSink sink;
  std::string program;
  {
    std::lock_guard<std::mutex> lock(SettingsMutex());
    sink = Sink();
    program = Program();
  }
  std::string line = FormatLogLine(level, program, message, fields, journald && !sink,
                                   std::chrono::system_clock::now());
  if (sink) {
    sink(level, line);
    return;
  }
  line += '\n';
  WriteStderr(line);
}

}  // namespace lb::common
