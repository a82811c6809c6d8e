#include "output.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <vector>

#include "lb/common/text.h"

namespace lb::cli {
namespace {

using nlohmann::json;

constexpr std::string_view kGreen = "\033[32m";
constexpr std::string_view kRed = "\033[31m";
constexpr std::string_view kYellow = "\033[33m";
constexpr std::string_view kReset = "\033[0m";

// Columns are measured in code points, not bytes, so that a UTF-8 name does not push the
// columns after it out of line.
size_t DisplayWidth(std::string_view text) {
  size_t width = 0;
  for (unsigned char c : text) width += (c & 0xC0) != 0x80;
  return width;
}

const json* Member(const json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// An integer field, or `fallback` when it is missing or not a number.
int64_t Int(const json& object, std::string_view key, int64_t fallback = -1) {
  const json* v = Member(object, key);
  if (v == nullptr || !v->is_number()) return fallback;
  if (v->is_number_float()) return static_cast<int64_t>(v->get<double>());
  if (v->is_number_unsigned()) return static_cast<int64_t>(v->get<uint64_t>());
  return v->get<int64_t>();
}

bool Bool(const json& object, std::string_view key, bool fallback = false) {
  const json* v = Member(object, key);
  return v != nullptr && v->is_boolean() ? v->get<bool>() : fallback;
}

const json& Object(const json& object, std::string_view key) {
  static const json* empty = new json(json::object());
  const json* v = Member(object, key);
  return v != nullptr && v->is_object() ? *v : *empty;
}

std::string_view ColorFor(std::string_view status) {
  if (status == "UP") return kGreen;
  if (status == "DOWN") return kRed;
  return kYellow;
}

std::string Ms(const json& object, std::string_view key) {
  const int64_t ms = Int(object, key);
  return ms < 0 ? "-" : std::to_string(ms) + " ms";
}

void AppendWarnings(const json& result, std::ostringstream& out) {
  const json* warnings = Member(result, "warnings");
  if (warnings == nullptr || !warnings->is_array()) return;
  for (const auto& w : *warnings) {
    out << "warning: " << OneLine(w.is_string() ? w.get<std::string>() : DumpJson(w, -1)) << "\n";
  }
}

// Prints rows as an aligned table. `color_column` (or -1) names the column whose cells are
// coloured by ColorFor; escapes go around the text, padding stays outside them.
void PrintTable(const std::vector<std::vector<std::string>>& rows, int color_column, bool color,
                std::ostringstream& out) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t c = 0; c < row.size(); ++c) {
      widths[c] = std::max(widths[c], DisplayWidth(row[c]));
    }
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const bool colored = color && r > 0 && static_cast<int>(c) == color_column;
      if (colored) line += ColorFor(row[c]);
      line += row[c];
      if (colored) line += kReset;
      if (c + 1 < row.size()) line.append(widths[c] - DisplayWidth(row[c]) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
}

}  // namespace

std::string Count(int64_t n, std::string_view noun) {
  return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

std::string DumpJson(const json& value, int indent) {
  std::string text = value.dump(indent, ' ', false, json::error_handler_t::replace);
  // json::dump escapes C0 controls but writes C1 controls (U+0080-U+009F, e.g. U+009B, CSI) and
  // the line separators U+2028/U+2029 as raw UTF-8, which a terminal may obey. They can only
  // appear inside strings, where \u escapes mean the same.
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    if (c == 0xC2 && next >= 0x80 && next <= 0x9F) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", next);
      out += escaped;
      ++i;
    } else if (c == 0xE2 && next == 0x80 && i + 2 < text.size() &&
               (static_cast<unsigned char>(text[i + 2]) == 0xA8 ||
                static_cast<unsigned char>(text[i + 2]) == 0xA9)) {
      out += static_cast<unsigned char>(text[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string SafeText(std::string_view text, bool keep_newlines) {
  std::string out;
  out.reserve(text.size());
  auto decode = [&text](size_t i) { return common::DecodeUtf8(text, i); };
  // Skips a control string (OSC, DCS, SOS, PM, APC) up to its terminator: BEL, ESC \ or ST.
  auto skip_string = [&](size_t i) {
    while (i < text.size()) {
      auto [cp, length] = decode(i);
      if (cp == 0x07 || cp == 0x9C) return i + length;
      if (cp == 0x1B && i + 1 < text.size() && text[i + 1] == '\\') return i + 2;
      i += length == 0 ? 1 : length;
    }
    return i;
  };
  // Skips the parameters, intermediates and final byte of a CSI sequence.
  auto skip_csi = [&](size_t i) {
    while (i < text.size() && static_cast<unsigned char>(text[i]) >= 0x20 &&
           static_cast<unsigned char>(text[i]) <= 0x3F) {
      ++i;
    }
    if (i < text.size() && static_cast<unsigned char>(text[i]) >= 0x40 &&
        static_cast<unsigned char>(text[i]) <= 0x7E) {
      ++i;
    }
    return i;
  };
  size_t i = 0;
  while (i < text.size()) {
    auto [cp, length] = decode(i);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD: a lone byte (0x9B is CSI on an 8-bit terminal)
      ++i;
      continue;
    }
    i += length;
    if (cp == '\n' || (cp == '\r' && keep_newlines)) {
      out += keep_newlines ? static_cast<char>(cp) : ' ';
    } else if (cp == 0x1B) {
      // An escape sequence goes whole: ESC [ ... final, ESC ] ... ST, ESC <intermediates> final.
      if (i >= text.size()) continue;
      const char kind = text[i];
      if (kind == '[') {
        i = skip_csi(i + 1);
      } else if (kind == ']' || kind == 'P' || kind == 'X' || kind == '^' || kind == '_') {
        i = skip_string(i + 1);
      } else {
        while (i < text.size() && text[i] >= 0x20 && text[i] <= 0x2F) ++i;
        if (i < text.size() && text[i] >= 0x30 && text[i] <= 0x7E) ++i;
      }
    } else if (cp == 0x9B) {
      i = skip_csi(i);
    } else if (cp == 0x9D || cp == 0x90 || cp == 0x98 || cp == 0x9E || cp == 0x9F) {
      i = skip_string(i);
    } else if (cp < 0x20 || cp == 0x7F || cp == 0x2028 || cp == 0x2029) {
      out += ' ';
    } else if (cp >= 0x80 && cp <= 0x9F) {
      // Another C1 control: dropped.
    } else {
      out.append(text.substr(i - length, length));
    }
  }
  return out;
}

std::string OneLine(std::string_view raw) {
  const std::string text = SafeText(raw, /*keep_newlines=*/true);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    if (c == '\n' || c == '\r') {
      out += " | ";
    } else {
      out += c;
    }
  }
  // Trim blanks and separators left by leading or trailing newlines.
  auto junk = [](char c) { return c == ' ' || c == '|'; };
  size_t begin = 0;
  while (begin < out.size() && junk(out[begin])) ++begin;
  size_t end = out.size();
  while (end > begin && junk(out[end - 1])) --end;
  return out.substr(begin, end - begin);
}

// Keeps the lines of a multi-line message but no other control characters.
std::string Printable(std::string_view text) {
  std::string out = SafeText(text, /*keep_newlines=*/true);
  for (char& c : out) {
    if (c == '\r') c = ' ';
  }
  return out;
}

std::string Field(const json& object, std::string_view key) {
  const json* v = Member(object, key);
  if (v == nullptr || v->is_null()) return "-";
  if (v->is_string()) {
    std::string text = OneLine(v->get<std::string>());
    return text.empty() ? "-" : text;
  }
  return OneLine(DumpJson(*v, -1));
}

std::string FormatTimestamp(int64_t unix_ms) {
  return common::FormatUtc(unix_ms < 0 ? 0 : unix_ms * 1000, common::UtcFormat::kMillis);
}

std::string FormatDuration(int64_t seconds) {
  if (seconds < 0) return "-";
  char text[64];
  if (seconds < 60) {
    std::snprintf(text, sizeof text, "%llds", static_cast<long long>(seconds));
  } else if (seconds < 3600) {
    std::snprintf(text, sizeof text, "%lldm%02llds", static_cast<long long>(seconds / 60),
                  static_cast<long long>(seconds % 60));
  } else if (seconds < 86400) {
    std::snprintf(text, sizeof text, "%lldh%02lldm", static_cast<long long>(seconds / 3600),
                  static_cast<long long>(seconds % 3600 / 60));
  } else {
    std::snprintf(text, sizeof text, "%lldd%02lldh", static_cast<long long>(seconds / 86400),
                  static_cast<long long>(seconds % 86400 / 3600));
  }
  return text;
}

std::string FormatStatus(const json& result, bool color) {
  std::ostringstream out;
  const json* backends = Member(result, "backends");
  if (backends == nullptr || !backends->is_array() || backends->empty()) {
    return "no backends\n";
  }
  bool first = true;
  for (const json& backend : *backends) {
    if (!first) out << "\n";
    first = false;
    const json* servers = Member(backend, "servers");
    const size_t count = servers != nullptr && servers->is_array() ? servers->size() : 0;
    const std::string status = Field(backend, "status");
    out << "backend " << Field(backend, "name") << "  ";
    if (color) out << ColorFor(status);
    out << status;
    if (color) out << kReset;
    out << "  (" << Count(static_cast<int64_t>(count), "server") << ")\n";
    if (count == 0) {
      out << "  (no servers)\n";
      continue;
    }

    std::vector<std::vector<std::string>> rows = {
        {"SERVER", "STATUS", "ADDRESS", "WEIGHT", "CHECK", "LAST CHECK", "SESSIONS", "SINCE"}};
    for (const json& s : *servers) {
      std::string name = Field(s, "name");
      if (Bool(s, "backup")) name += " (backup)";
      std::string check = Field(s, "check_status");
      if (const int64_t code = Int(s, "check_code"); code >= 0 && check != "-") {
        check += "/" + std::to_string(code);
      }
      const int64_t weight = Int(s, "weight");
      const int64_t sessions = Int(s, "current_sessions");
      rows.push_back({name, Field(s, "status"), Field(s, "address"),
                      weight < 0 ? "-" : std::to_string(weight), check, Field(s, "last_chk"),
                      sessions < 0 ? "-" : std::to_string(sessions),
                      FormatDuration(Int(s, "seconds_since_change"))});
    }
    PrintTable(rows, 1, color, out);
  }
  return out.str();
}

std::string FormatReload(const json& result) {
  std::ostringstream out;
  const std::string outcome = Field(result, "outcome");
  out << outcome;
  if (outcome == "unchanged") out << " (the live config is already this one; no reload)";
  out << "\n";
  out << "  sha256    " << Field(result, "sha256") << "\n";
  if (Member(result, "previous_sha256") != nullptr) {
    out << "  previous  " << Field(result, "previous_sha256") << "\n";
  }
  out << "  timings   validate " << Ms(result, "validate_ms") << ", reload "
      << Ms(result, "reload_ms") << ", total " << Ms(result, "total_ms") << "\n";
  if (Bool(result, "rolled_back")) out << "  rolled back to the previous config\n";
  AppendWarnings(result, out);
  return out.str();
}

std::string FormatValidate(const json& result) {
  std::ostringstream out;
  out << (Bool(result, "valid") ? "valid" : "not valid") << "\n";
  out << "  sha256    " << Field(result, "sha256") << "\n";
  out << "  timings   validate " << Ms(result, "validate_ms") << "\n";
  AppendWarnings(result, out);
  return out.str();
}

std::string FormatInfo(const json& result) {
  std::ostringstream out;
  const json& agent = Object(result, "agent");
  const json& haproxy = Object(result, "haproxy");
  const json& config = Object(result, "config");
  auto label = [&out](std::string_view name) {
    out << name << std::string(name.size() < 13 ? 13 - name.size() : 1, ' ');
  };

  label("agent");
  out << "lb-agent " << Field(agent, "version") << ", pid " << Field(agent, "pid") << ", up "
      << FormatDuration(Int(agent, "uptime_s")) << ", reload method "
      << Field(agent, "reload_method") << "\n";
  label("");
  out << "commands on " << Field(agent, "command_endpoint") << ", default backend "
      << Field(agent, "default_backend") << "\n";
  label("");
  out << Count(Int(agent, "reload_runs", 0), "reload") << " run, "
      << Int(agent, "reloads_superseded", 0) << " superseded\n";

  label("haproxy");
  if (Bool(haproxy, "running")) {
    out << "running, version " << Field(haproxy, "version") << ", worker pid "
        << Field(haproxy, "pid");
    if (Member(haproxy, "master_pid") != nullptr) {
      out << ", master pid " << Field(haproxy, "master_pid");
    }
    out << ", up " << FormatDuration(Int(haproxy, "uptime_s")) << "\n";
    std::vector<std::string> counters;
    if (const int64_t reloads = Int(haproxy, "reloads"); reloads >= 0) {
      counters.push_back(Count(reloads, "reload") + " (" +
                         std::to_string(Int(haproxy, "failed_reloads", 0)) + " failed)");
    }
    if (const int64_t old = Int(haproxy, "old_workers"); old >= 0) {
      counters.push_back(Count(old, "old worker"));
    }
    if (const int64_t starts = Int(haproxy, "starts"); starts >= 0) {
      counters.push_back("started " + Count(starts, "time") + " by the agent");
    }
    if (!counters.empty()) {
      label("");
      for (size_t i = 0; i < counters.size(); ++i) out << (i ? ", " : "") << counters[i];
      out << "\n";
    }
  } else {
    out << "NOT RUNNING";
    if (Member(haproxy, "error") != nullptr) out << ": " << Field(haproxy, "error");
    out << "\n";
  }

  label("config");
  out << Field(config, "path") << "\n";
  label("");
  out << "sha256 " << Field(config, "sha256") << "\n";

  label("last reload");
  const json* last = Member(result, "last_reload");
  if (last == nullptr || !last->is_object()) {
    out << "none since the agent started\n";
  } else {
    out << Field(*last, "outcome") << " at " << FormatTimestamp(Int(*last, "time_unix_ms", 0))
        << ", " << Ms(*last, "total_ms") << "\n";
    label("");
    out << "sha256 " << Field(*last, "sha256") << "\n";
    const json& error = Object(*last, "error");
    if (!error.empty()) {
      label("");
      out << Field(error, "code") << ": " << Field(error, "message") << "\n";
    }
  }
  return out.str();
}

std::string FormatHistory(const json& result) {
  std::ostringstream out;
  out << "history " << Field(result, "history_dir") << " (keeps " << Field(result, "keep")
      << "; newest first)\n";
  const json* entries = Member(result, "entries");
  if (entries == nullptr || !entries->is_array() || entries->empty()) {
    out << "  (no kept config: nothing applied yet, or history_keep = 0)\n";
    return out.str();
  }
  std::vector<std::vector<std::string>> rows = {{"N", "TIME", "OUTCOME", "SHA256", "BYTES", ""}};
  for (const json& entry : *entries) {
    std::string sha = Field(entry, "sha256");
    if (sha.size() > 12) sha = sha.substr(0, 12);
    rows.push_back({Field(entry, "n"), FormatTimestamp(Int(entry, "time_unix_ms", 0)),
                    Field(entry, "outcome"), sha, Field(entry, "bytes"),
                    Bool(entry, "live") ? "live" : ""});
  }
  PrintTable(rows, -1, false, out);
  return out.str();
}

std::string FormatRollback(const json& result) {
  const json& target = Object(result, "rollback_to");
  std::string sha = Field(target, "sha256");
  if (sha.size() > 12) sha = sha.substr(0, 12);
  return "rollback to history entry " + Field(target, "n") + " (" +
         FormatTimestamp(Int(target, "time_unix_ms", 0)) + ", " + Field(target, "outcome") +
         ", sha256 " + sha + ")\n" + FormatReload(result);
}

std::string FormatPing(const json& result, const std::string& endpoint, double rtt_ms) {
  char rtt[32];
  std::snprintf(rtt, sizeof rtt, "%.1f ms", rtt_ms);
  return "pong from lb-agent " + Field(result, "version") + " at " + endpoint + " (" + rtt + ")\n";
}

std::string FormatRefusal(const proto::Status& status) {
  std::ostringstream out;
  out << "lbctl: " << proto::ErrorCodeName(status.code()) << ": " << Printable(status.message())
      << "\n";
  const json& details = status.details();
  if (!details.is_object()) return out.str();
  switch (status.code()) {
    case proto::ErrorCode::kConflict:
    case proto::ErrorCode::kSuperseded:
      if (Member(details, "sha256") != nullptr) {
        out << "lbctl: the live config's sha256 is " << Field(details, "sha256") << "\n";
      }
      break;
    case proto::ErrorCode::kReloadFailed:
      out << "lbctl: "
          << (Bool(details, "rolled_back") ? "rolled back to the previous config"
                                           : "NOT rolled back")
          << "; live sha256 " << Field(details, "sha256") << "\n";
      if (Member(details, "reload_error") != nullptr &&
          status.message().find(Field(details, "reload_error")) == std::string::npos) {
        out << "lbctl: " << Field(details, "reload_error") << "\n";
      }
      break;
    case proto::ErrorCode::kInvalidConfig:
      if (const json* lines = Member(details, "haproxy_output"); lines && lines->is_array()) {
        for (const auto& line : *lines) {
          if (!line.is_string()) continue;
          if (status.message().find(line.get<std::string>()) != std::string::npos) continue;
          out << OneLine(line.get<std::string>()) << "\n";
        }
      }
      break;
    default:
      break;
  }
  return out.str();
}

}  // namespace lb::cli
