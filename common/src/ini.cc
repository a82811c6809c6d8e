#include "lb/common/ini.h"

#include <algorithm>
#include <cctype>

namespace lb::common {
namespace {

std::string Trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

proto::Result<IniFile> ParseIni(std::string_view text, const std::string& origin,
                                std::map<std::string, int>* section_lines) {
  using proto::ErrorCode;
  using proto::Status;
  IniFile out;
  std::string section;
  IniValue* last = nullptr;
  int line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view raw = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    std::string line = Trim(raw);
    auto where = [&] { return origin + ":" + std::to_string(line_no) + ": "; };
    if (line.empty() || line[0] == '#' || line[0] == ';') {
      if (line.empty()) last = nullptr;
      continue;
    }
    bool indented = std::isspace(static_cast<unsigned char>(raw[0]));
    if (indented && last != nullptr) {
      last->value += "\n" + line;
      continue;
    }
    if (line[0] == '[') {
      if (line.back() != ']')
        return Status(ErrorCode::kBadRequest, where() + "unterminated section header");
      section = Lower(Trim(std::string_view(line).substr(1, line.size() - 2)));
      if (section.empty()) return Status(ErrorCode::kBadRequest, where() + "empty section name");
      out[section];
      if (section_lines != nullptr && !section_lines->count(section)) {
        (*section_lines)[section] = line_no;
      }
      last = nullptr;
      continue;
    }
    std::size_t sep = line.find_first_of("=:");
    if (sep == std::string::npos) {
      return Status(ErrorCode::kBadRequest,
                    where() + "expected \"key = value\", got \"" + line.substr(0, 60) + "\"");
    }
    if (section.empty()) {
      return Status(ErrorCode::kBadRequest, where() + "key outside of any [section]");
    }
    std::string key = Lower(Trim(std::string_view(line).substr(0, sep)));
    if (key.empty()) return Status(ErrorCode::kBadRequest, where() + "empty key");
    auto& keys = out[section];
    if (keys.count(key)) {
      return Status(ErrorCode::kBadRequest, where() + "key '" + key + "' repeated in [" + section +
                                                "] (first on line " +
                                                std::to_string(keys[key].line) + ")");
    }
    std::string value = line.substr(sep + 1);
    for (std::size_t i = 1; i < value.size(); ++i) {
      if (value[i] == ';' && std::isspace(static_cast<unsigned char>(value[i - 1]))) {
        value.resize(i);
        break;
      }
    }
    keys[key] = IniValue{Trim(value), line_no};
    last = &keys[key];
  }
  return out;
}

std::map<std::string, std::string> IniValues(const IniFile& ini) {
  std::map<std::string, std::string> values;
  for (const auto& [section, keys] : ini) {
    for (const auto& [key, value] : keys) values["[" + section + "] " + key] = value.value;
  }
  return values;
}

std::string RestartNeeded(const std::map<std::string, std::string>& before,
                          const std::map<std::string, std::string>& after,
                          const std::vector<std::string>& applied_live) {
  std::string list;
  for (const auto& key : ChangedKeys(before, after, applied_live)) {
    list += (list.empty() ? "" : ", ") + key;
  }
  return list;
}

std::vector<std::string> ChangedKeys(const std::map<std::string, std::string>& before,
                                     const std::map<std::string, std::string>& after,
                                     const std::vector<std::string>& applied_live) {
  std::vector<std::string> changed;
  auto note = [&](const std::string& key) {
    if (std::find(applied_live.begin(), applied_live.end(), key) != applied_live.end()) return;
    if (std::find(changed.begin(), changed.end(), key) == changed.end()) changed.push_back(key);
  };
  for (const auto& [key, value] : before) {
    auto it = after.find(key);
    if (it == after.end() || it->second != value) note(key);
  }
  for (const auto& [key, value] : after) {
    if (before.find(key) == before.end()) note(key);
  }
  std::sort(changed.begin(), changed.end());
  return changed;
}

}  // namespace lb::common
