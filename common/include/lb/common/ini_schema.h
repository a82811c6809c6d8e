// How a daemon's INI settings file (ini.h) becomes its const settings struct: one row per key,
// each row a setter that checks the text and stores it, and one loader that applies the rows and
// reports the first problem as one line "<file>:<line>: [<section>] <key>: <problem>".
// Used by lb-agent.cfg (settings.h) and lb-controller.cfg (controller/src/settings.h).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "lb/common/ini.h"
#include "lb/common/log.h"
#include "lb/proto/status.h"

namespace lb::common {

// Value parsers: "" when `value` is fine (and *out set), else the problem in a few words.
std::string ParseIniInt(const std::string& value, long long min, long long max, long long* out);
// Seconds, possibly fractional ("5", "0.5"), more than 0 and at most a day, as milliseconds.
std::string ParseIniSeconds(const std::string& value, std::chrono::milliseconds* out);
// yes/no, true/false, on/off, 1/0.
std::string ParseIniBool(const std::string& value, bool* out);
// `value` if absolute, else `value` relative to `base_dir` (the settings file's directory).
std::string ResolveIniPath(const std::string& value, const std::string& base_dir);

// One key: checks `value` and stores it in *out; returns the problem, or "".
template <typename T>
using IniSetter = std::function<std::string(const std::string& value, T* out)>;
// section -> key -> setter.
template <typename T>
using IniSchema = std::map<std::string, std::map<std::string, IniSetter<T>>>;

// Rows for the usual kinds of value. `field` maps the struct to the member: [](T* s) { return
// &s->x; }.
template <typename T, typename F>
IniSetter<T> StringKey(F field) {
  return [field](const std::string& v, T* s) {
    *field(s) = v;
    return std::string();
  };
}
template <typename T, typename F>
IniSetter<T> PathKey(F field, const std::string& base_dir) {
  return [field, base_dir](const std::string& v, T* s) {
    if (v.empty()) return std::string("must not be empty");
    *field(s) = ResolveIniPath(v, base_dir);
    return std::string();
  };
}
// A path that may be empty (a feature that is off).
template <typename T, typename F>
IniSetter<T> OptionalPathKey(F field, const std::string& base_dir) {
  return [field, base_dir](const std::string& v, T* s) {
    *field(s) = v.empty() ? std::string() : ResolveIniPath(v, base_dir);
    return std::string();
  };
}
template <typename T, typename F>
IniSetter<T> IntKey(F field, long long min, long long max) {
  return [field, min, max](const std::string& v, T* s) {
    long long out = 0;
    std::string problem = ParseIniInt(v, min, max, &out);
    if (problem.empty()) {
      auto* target = field(s);
      *target = static_cast<std::remove_pointer_t<decltype(target)>>(out);
    }
    return problem;
  };
}
template <typename T, typename F>
IniSetter<T> SecondsKey(F field) {
  return [field](const std::string& v, T* s) { return ParseIniSeconds(v, field(s)); };
}
template <typename T, typename F>
IniSetter<T> BoolKey(F field) {
  return [field](const std::string& v, T* s) { return ParseIniBool(v, field(s)); };
}

// error, warning, info or debug (log.h).
template <typename T, typename F>
IniSetter<T> LogLevelKey(F field) {
  return [field](const std::string& v, T* s) {
    std::optional<LogLevel> level = ParseLogLevel(v);
    if (!level) return std::string("expected error, warning, info or debug");
    *field(s) = *level;
    return std::string();
  };
}

// Parses `text` and applies `schema` to *out. An unknown section or key, or a value a row
// refuses, is kBadRequest "<origin>:<line>: [<section>] <key>: <problem>"; `reference` names
// where the keys are documented ("etc/lb-agent.cfg").
template <typename T>
proto::Status ApplyIni(std::string_view text, const std::string& origin, const IniSchema<T>& schema,
                       const std::string& reference, T* out) {
  std::map<std::string, int> section_lines;
  proto::Result<IniFile> ini = ParseIni(text, origin, &section_lines);
  if (!ini.ok()) return ini.status();
  for (const auto& [section, keys] : *ini) {
    auto rows = schema.find(section);
    if (rows == schema.end()) {
      std::string expected;
      for (const auto& [name, unused] : schema) {
        expected += (expected.empty() ? "[" : ", [") + name + "]";
      }
      return proto::Status(proto::ErrorCode::kBadRequest,
                           origin + ":" + std::to_string(section_lines[section]) +
                               ": unknown section [" + section + "]; expected " + expected);
    }
    for (const auto& [key, value] : keys) {
      const std::string where =
          origin + ":" + std::to_string(value.line) + ": [" + section + "] " + key;
      auto row = rows->second.find(key);
      if (row == rows->second.end()) {
        return proto::Status(proto::ErrorCode::kBadRequest,
                             where + ": unknown key (see " + reference + ")");
      }
      std::string problem = row->second(value.value, out);
      if (!problem.empty())
        return proto::Status(proto::ErrorCode::kBadRequest, where + ": " + problem);
    }
  }
  return proto::Status::Ok();
}

// The text of a settings file and its directory (for relative paths). A file that cannot be
// read is kBadRequest "<path>: cannot open: <reason>": the daemon was given a wrong path.
struct SettingsText {
  std::string text;
  std::string base_dir;
};
proto::Result<SettingsText> ReadSettingsFile(const std::string& path);

}  // namespace lb::common
