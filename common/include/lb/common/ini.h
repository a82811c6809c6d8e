// A small INI reader compatible with the files Python's ConfigParser read for the 2015 agent:
// `[section]` headers, `key = value` or `key: value`, `#` and `;` comment lines, keys
// case-insensitive, values trimmed, indented continuation lines appended to the previous value.
#pragma once

#include <map>
#include <string>
#include <string_view>

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

}  // namespace lb::common
