// A small INI reader compatible with the files Python's ConfigParser read for the 2015 agent:
// `[section]` headers, `key = value` or `key: value`, `#` and `;` comment lines, keys
// case-insensitive, values trimmed, indented continuation lines appended to the previous value.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lb/proto/status.h"

namespace lb::common {

struct IniValue {
  std::string value;
  int line = 0;  // 1-based line of the key, for error messages
};

// section -> key -> value; section and key names are lower-cased.
using IniFile = std::map<std::string, std::map<std::string, IniValue>>;

// Parses `text`; `origin` (usually the file path) prefixes every error message:
// "<origin>:<line>: <problem>". Like Python 2's ConfigParser, a ';' preceded by whitespace
// starts a comment inside a value. When `section_lines` is given, it receives the line of
// each section header.
proto::Result<IniFile> ParseIni(std::string_view text, const std::string& origin,
                                std::map<std::string, int>* section_lines = nullptr);

// "[section] key" -> value, for every key a settings file sets.
std::map<std::string, std::string> IniValues(const IniFile& ini);

// What a re-read of a settings file (SIGHUP) changed: the keys whose value differs between `before`
// and `after` (set, changed or removed), in order, except those in `applied_live` (the keys a
// re-read applies without a restart).
// ChangedKeys as one line for a log field and systemd's STATUS= ("[lb-agent] port, [fleet] x"),
// "" when nothing waits for a restart.
std::string RestartNeeded(const std::map<std::string, std::string>& before,
                          const std::map<std::string, std::string>& after,
                          const std::vector<std::string>& applied_live);
std::vector<std::string> ChangedKeys(const std::map<std::string, std::string>& before,
                                     const std::map<std::string, std::string>& after,
                                     const std::vector<std::string>& applied_live);

}  // namespace lb::common
