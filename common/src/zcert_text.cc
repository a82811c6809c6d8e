#include "zcert_text.h"

namespace lb::common::zcert {

std::string Trim(std::string_view s) {
  const char* ws = " \t\r\n";
  std::size_t begin = s.find_first_not_of(ws);
  if (begin == std::string_view::npos) return "";
  std::size_t end = s.find_last_not_of(ws);
  return std::string(s.substr(begin, end - begin + 1));
}

std::optional<std::string> Value(std::string_view line, std::string_view name) {
  std::string t = Trim(line);
  if (t.rfind(name, 0) != 0) return std::nullopt;
  std::string_view rest(t);
  rest.remove_prefix(name.size());
  std::string after = Trim(rest);
  if (after.empty() || after[0] != '=') return std::nullopt;
  std::string value = Trim(std::string_view(after).substr(1));
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  return value;
}

}  // namespace lb::common::zcert
