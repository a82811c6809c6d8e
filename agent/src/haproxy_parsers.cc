#include "haproxy_parsers.h"

#include <algorithm>
#include <charconv>
#include <sstream>

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

// The records of haproxy's CSV. A field holding a comma, a double quote or a line break is
// quoted ("up, 75%"; "say ""hi"""), and may span lines; every other field is bare. A record cut
// short inside quotes (an answer truncated mid-line) is dropped.
std::vector<std::vector<std::string>> CsvRecords(std::string_view text) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false;       // inside a quoted field
  bool record_open = false;  // something of the current record has been read
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field += c;
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
      record_open = true;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
      record_open = true;
    } else if (c == '\n') {
      if (!field.empty() && field.back() == '\r') field.pop_back();
      if (record_open || !field.empty()) {
        fields.push_back(std::move(field));
        records.push_back(std::move(fields));
      }
      fields.clear();
      field.clear();
      record_open = false;
    } else {
      field += c;
      record_open = true;
    }
  }
  if (!quoted && (record_open || !field.empty())) {
    fields.push_back(std::move(field));
    records.push_back(std::move(fields));
  }
  return records;
}

int64_t ToInt(std::string_view s, int64_t missing = -1) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return missing;
  return v;
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    pos = nl + 1;
  }
  return out;
}

// "1d02h03m04s" -> seconds; unknown parts are ignored. Numbers and the total stop at
// kMaxUptime (2^40 s, some 35,000 years) so that no run of digits overflows.
int64_t ParseUptime(std::string_view s) {
  constexpr int64_t kMaxUptime = int64_t{1} << 40;
  int64_t total = 0, number = 0;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      number = std::min(number * 10 + (c - '0'), kMaxUptime);
      continue;
    }
    switch (c) {
      case 'd':
        total += number * 86400;
        break;
      case 'h':
        total += number * 3600;
        break;
      case 'm':
        total += number * 60;
        break;
      case 's':
        total += number;
        break;
      default:
        break;
    }
    total = std::min(total, kMaxUptime);
    number = 0;
  }
  return total;
}

}  // namespace

Result<std::vector<StatRow>> ParseShowStat(std::string_view csv) {
  if (csv.rfind("# ", 0) != 0) {
    std::string head(csv.substr(0, 80));
    return Status(ErrorCode::kHaproxyUnavailable,
                  "unexpected answer to 'show stat' (no CSV header): \"" + head + "\"");
  }
  auto records = CsvRecords(csv.substr(2));
  if (records.empty()) {
    return Status(ErrorCode::kHaproxyUnavailable, "'show stat' answered an empty header");
  }
  const std::vector<std::string>& header = records[0];
  std::map<std::string_view, std::size_t> col;
  for (std::size_t i = 0; i < header.size(); ++i) col[header[i]] = i;
  for (const char* required : {"pxname", "svname", "status", "type"}) {
    if (!col.count(required)) {
      return Status(ErrorCode::kHaproxyUnavailable,
                    std::string("'show stat' header lacks the column ") + required);
    }
  }
  auto field = [&](const std::vector<std::string>& f, std::string_view name) {
    auto it = col.find(name);
    if (it == col.end() || it->second >= f.size()) return std::string_view();
    return std::string_view(f[it->second]);
  };
  std::vector<StatRow> rows;
  for (std::size_t i = 1; i < records.size(); ++i) {
    const auto& f = records[i];
    if (f.size() < header.size()) continue;  // a line cut off: never half a record
    StatRow row;
    row.pxname = field(f, "pxname");
    row.svname = field(f, "svname");
    int64_t type = ToInt(field(f, "type"));
    if (type < 0 || type > 3) continue;
    row.type = static_cast<StatRow::Type>(type);
    row.status = field(f, "status");
    row.addr = field(f, "addr");
    row.check_status = field(f, "check_status");
    // "* L4OK": haproxy marks a check in progress; the status is the part after the mark.
    if (row.check_status.rfind("* ", 0) == 0) row.check_status.erase(0, 2);
    row.last_chk = field(f, "last_chk");
    row.weight = ToInt(field(f, "weight"));
    row.scur = ToInt(field(f, "scur"));
    row.stot = ToInt(field(f, "stot"));
    row.lastchg = ToInt(field(f, "lastchg"));
    row.downtime = ToInt(field(f, "downtime"));
    row.chkfail = ToInt(field(f, "chkfail"));
    row.check_code = ToInt(field(f, "check_code"));
    row.check_duration = ToInt(field(f, "check_duration"));
    row.backup = ToInt(field(f, "bck"), 0) > 0;
    rows.push_back(std::move(row));
  }
  return rows;
}

Result<std::vector<StatRow>> ParseCompleteShowStat(std::string_view answer) {
  if (answer.size() < 2 || answer.substr(answer.size() - 2) != "\n\n") {
    return Status(ErrorCode::kHaproxyUnavailable,
                  "haproxy's 'show stat' answer was cut short (a reload in progress?)");
  }
  return ParseShowStat(answer);
}

Result<std::vector<proto::BackendStatus>> BackendsFromStats(const std::vector<StatRow>& rows,
                                                            const std::string& backend) {
  std::vector<proto::BackendStatus> out;
  std::map<std::string, std::size_t> index;
  for (const auto& row : rows) {
    if (row.type != StatRow::Type::kBackend && row.type != StatRow::Type::kServer) continue;
    if (backend != "*" && row.pxname != backend) continue;
    auto [it, inserted] = index.try_emplace(row.pxname, out.size());
    if (inserted) out.push_back(proto::BackendStatus{row.pxname, "", {}});
    proto::BackendStatus& b = out[it->second];
    if (row.type == StatRow::Type::kBackend) {
      b.status = row.status;
      continue;
    }
    proto::ServerStatus s;
    s.name = row.svname;
    s.address = row.addr;
    s.status = row.status;
    s.weight = row.weight < 0 ? 0 : row.weight;
    s.check_status = row.check_status;
    s.last_chk = row.last_chk;
    s.check_code = row.check_code;
    s.check_duration_ms = row.check_duration;
    s.current_sessions = row.scur < 0 ? 0 : row.scur;
    s.total_sessions = row.stot < 0 ? 0 : row.stot;
    s.seconds_since_change = row.lastchg;
    s.downtime_s = row.downtime;
    s.check_failures = row.chkfail < 0 ? 0 : row.chkfail;
    s.backup = row.backup;
    b.servers.push_back(std::move(s));
  }
  if (backend != "*" && out.empty()) {
    std::string known;
    std::map<std::string, bool> seen;
    for (const auto& row : rows) {
      if (row.type == StatRow::Type::kBackend && !seen[row.pxname]) {
        seen[row.pxname] = true;
        known += (known.empty() ? "" : ", ") + row.pxname;
      }
    }
    return Status(ErrorCode::kBadRequest, "haproxy has no backend named \"" + backend +
                                              "\" (backends: " + (known.empty() ? "none" : known) +
                                              ")");
  }
  return out;
}

Result<ProcInfo> ParseShowProc(std::string_view text) {
  ProcInfo info;
  bool have_master = false;
  for (std::string_view line : Lines(text)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in{std::string(line)};
    ProcEntry e;
    std::string pid, type, reloads;
    if (!(in >> pid >> type >> reloads)) continue;
    e.pid = static_cast<int>(ToInt(pid, 0));
    if (e.pid <= 0) continue;
    e.type = type;
    e.reloads = static_cast<int>(ToInt(reloads, 0));
    std::string word;
    while (in >> word) {
      if (word == "[failed:") {
        std::string n;
        in >> n;
        if (!n.empty() && n.back() == ']') n.pop_back();
        e.failed = static_cast<int>(ToInt(n, 0));
      } else if (word.find('d') != std::string::npos && word.back() == 's' && e.uptime_s == 0) {
        e.uptime_s = ParseUptime(word);
      } else if (e.version.empty() && word.find('.') != std::string::npos) {
        e.version = word;
      }
    }
    if (type == "master") {
      info.master = e;
      have_master = true;
    } else if (type == "worker") {
      info.workers.push_back(e);
    }
  }
  if (!have_master) {
    return Status(ErrorCode::kHaproxyUnavailable,
                  "unexpected answer to 'show proc' (no master line): \"" +
                      std::string(text.substr(0, 80)) + "\"");
  }
  std::stable_sort(info.workers.begin(), info.workers.end(),
                   [](const ProcEntry& a, const ProcEntry& b) { return a.reloads < b.reloads; });
  return info;
}

std::map<std::string, std::string> ParseShowInfo(std::string_view text) {
  std::map<std::string, std::string> out;
  for (std::string_view line : Lines(text)) {
    std::size_t colon = line.find(": ");
    if (colon == std::string_view::npos) continue;
    out[std::string(line.substr(0, colon))] = std::string(line.substr(colon + 2));
  }
  return out;
}

}  // namespace lb::agent
