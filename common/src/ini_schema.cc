#include "lb/common/ini_schema.h"

#include <charconv>
#include <filesystem>

#include "lb/common/file.h"

namespace lb::common {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

std::string ParseIniInt(const std::string& value, long long min, long long max, long long* out) {
  long long v = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || ptr != value.data() + value.size()) {
    return "expected an integer, got \"" + value + "\"";
  }
  if (v < min || v > max) {
    return "must be between " + std::to_string(min) + " and " + std::to_string(max);
  }
  *out = v;
  return "";
}

std::string ParseIniSeconds(const std::string& value, std::chrono::milliseconds* out) {
  std::size_t used = 0;
  double seconds = 0;
  try {
    seconds = std::stod(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || value.empty()) return "expected seconds, got \"" + value + "\"";
  // Written so that NaN ("nan", which stod accepts) fails too.
  if (!(seconds > 0 && seconds <= 86400)) return "must be more than 0 and at most 86400 seconds";
  *out = std::chrono::milliseconds(static_cast<long long>(seconds * 1000 + 0.5));
  return "";
}

std::string ParseIniBool(const std::string& value, bool* out) {
  static const std::map<std::string, bool> kWords = {
      {"1", true},  {"yes", true}, {"true", true},   {"on", true},
      {"0", false}, {"no", false}, {"false", false}, {"off", false}};
  auto it = kWords.find(value);
  if (it == kWords.end()) {
    return "expected yes/no, true/false, on/off or 1/0, got \"" + value + "\"";
  }
  *out = it->second;
  return "";
}

std::string ResolveIniPath(const std::string& value, const std::string& base_dir) {
  std::filesystem::path p(value);
  return p.is_absolute() ? value
                         : (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

Result<SettingsText> ReadSettingsFile(const std::string& path) {
  // A settings file is a few kilobytes; a megabyte is a wrong path.
  Result<std::string> text = ReadSmallFile(path, 1024 * 1024);
  if (!text.ok()) {
    if (text.status().code() == ErrorCode::kTooLarge) return text.status();
    const int err = text.status().details().value("errno", 0);
    return Status(ErrorCode::kBadRequest,
                  path + ": cannot open: " + std::generic_category().message(err));
  }
  return SettingsText{std::move(*text), std::filesystem::absolute(path).parent_path().string()};
}

}  // namespace lb::common
