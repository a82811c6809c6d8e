#include "lb/common/allow_list.h"

#include <filesystem>
#include <vector>

#include "lb/common/curve_certificate.h"
#include "lb/common/file.h"
#include "zcert_text.h"

namespace lb::common {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

Status BadRequest(const std::string& message) { return Status(ErrorCode::kBadRequest, message); }

}  // namespace

Result<std::set<std::string>> ParseAllowList(std::string_view text, const std::string& origin) {
  std::set<std::string> keys;
  std::size_t start = 0;
  int number = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++number;
    std::string t = zcert::Trim(line);
    if (t.empty()) continue;
    // A bare key first: Z85 keys may start with '#' or contain '='.
    std::string key = t.substr(0, t.find_first_of(" \t"));
    if (!IsZ85Key(key)) {
      if (t[0] == '#') continue;
      if (auto value = zcert::Value(t, "public-key")) {
        key = *value;
      } else if (zcert::Value(t, "secret-key")) {
        return BadRequest(origin + ":" + std::to_string(number) +
                          ": a secret key in an allow-list; list public keys only");
      } else if (t == "metadata" || t == "curve" || t.find(" = ") != std::string::npos) {
        continue;  // the rest of a zcert public certificate
      }
    }
    if (!IsZ85Key(key)) {
      return BadRequest(origin + ":" + std::to_string(number) +
                        ": not a CURVE public key (40 Z85 characters): \"" + key.substr(0, 60) +
                        "\"");
    }
    keys.insert(key);
  }
  return keys;
}

Result<std::set<std::string>> ReadAllowList(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    Result<std::string> text = ReadSmallFile(path, zcert::kMaxFileBytes);
    if (!text.ok()) return text.status();
    return ParseAllowList(*text, path);
  }
  std::set<std::string> keys;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name.empty() || name[0] == '.') continue;
    // A secret certificate dropped into the directory by mistake is refused, not trusted.
    files.push_back(entry.path().string());
  }
  if (ec) return OsError("cannot list", path, ec.value());
  for (const auto& file : files) {
    Result<std::string> text = ReadSmallFile(file, zcert::kMaxFileBytes);
    if (!text.ok()) return text.status();
    Result<std::set<std::string>> more = ParseAllowList(*text, file);
    if (!more.ok()) return more.status();
    keys.insert(more->begin(), more->end());
  }
  return keys;
}

}  // namespace lb::common
