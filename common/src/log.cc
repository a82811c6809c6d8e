#include "lb/common/log.h"

#include <unistd.h>

#include <cerrno>
#include <mutex>

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

void WriteStderr(std::string_view line) {
  while (!line.empty()) {
    const ssize_t n = write(STDERR_FILENO, line.data(), line.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to complain to
    line.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

void SetLogProgram(std::string_view program) {
  std::lock_guard<std::mutex> lock(SettingsMutex());
  Program() = std::string(program);
}

void SetLogSink(LogSink sink) {
  std::lock_guard<std::mutex> lock(SettingsMutex());
  Sink() = std::move(sink);
}

void Log(LogLevel level, std::string_view message) {
  LogSink sink;
  std::string line;
  {
    std::lock_guard<std::mutex> lock(SettingsMutex());
    sink = Sink();
    line = Program();
  }
  line += ": ";
  line += message;
  if (sink) {
    sink(level, line);
    return;
  }
  line += '\n';
  WriteStderr(line);
}

}  // namespace lb::common
