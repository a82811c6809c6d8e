#include "haproxy_parsers.h"

#include <algorithm>
#include <charconv>
#include <deque>
#include <iterator>
#include <sstream>

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

// Reads haproxy's CSV one record at a time without copying: a bare field is a view into the
// text. A field holding a comma, a double quote or a line break is quoted ("up, 75%"; "say
// ""hi"""), and may span lines; such a field is unescaped into storage the reader owns, valid
// until the reader goes. A record cut short inside quotes (an answer truncated mid-line) is
// dropped. A blank line is no record; a CR before a line feed is not part of the last field.
class CsvReader {
 public:
  explicit CsvReader(std::string_view text) : text_(text) {}

  // The next record's fields into `fields`; false at the end.
  bool Next(std::vector<std::string_view>* fields) {
    while (pos_ < text_.size()) {
      fields->clear();
      bool record_open = false;  // something of the current record has been read
      for (;;) {
        if (pos_ >= text_.size()) {
          // The text ends right after a comma: the record's last field is empty.
          if (!record_open) return false;
          fields->push_back({});
          return true;
        }
        bool cut = false;
        std::string_view field = ReadField(&cut);
        if (cut) return false;
        const char end = pos_ < text_.size() ? text_[pos_] : '\n';
        ++pos_;
        if (end == ',') {
          fields->push_back(field);
          record_open = true;
          continue;
        }
        // End of the line (or of the text).
        if (!field.empty() && field.back() == '\r') field.remove_suffix(1);
        if (record_open || !field.empty() || quoted_field_) {
          fields->push_back(field);
          return true;
        }
        break;  // a blank line: look at the next one
      }
    }
    return false;
  }

 private:
  // One field from pos_ up to (not including) the next ',' or line feed outside quotes; pos_ is
  // left on that character (or at the end). `cut`: the text ended inside quotes.
  std::string_view ReadField(bool* cut) {
    quoted_field_ = false;
    const std::size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\n' && text_[pos_] != '"') {
      ++pos_;
    }
    if (pos_ >= text_.size() || text_[pos_] != '"') return text_.substr(start, pos_ - start);
    // A quote: the field is unescaped into owned storage.
    quoted_field_ = true;
    std::string& out = storage_.emplace_back(text_.substr(start, pos_ - start));
    bool quoted = false;
    for (; pos_ < text_.size(); ++pos_) {
      const char c = text_[pos_];
      if (quoted) {
        if (c == '"') {
          if (pos_ + 1 < text_.size() && text_[pos_ + 1] == '"') {
            out += '"';
            ++pos_;
          } else {
            quoted = false;
          }
        } else {
          out += c;
        }
      } else if (c == '"') {
        quoted = true;
      } else if (c == ',' || c == '\n') {
        break;
      } else {
        out += c;
      }
    }
    if (quoted) *cut = true;
    return out;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  bool quoted_field_ = false;
  std::deque<std::string> storage_;  // unescaped quoted fields; a deque never moves them
};

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
  CsvReader reader(csv.substr(2));
  std::vector<std::string_view> header;
  if (!reader.Next(&header)) {
    return Status(ErrorCode::kHaproxyUnavailable, "'show stat' answered an empty header");
  }
  // The columns read, by name; found once in the header.
  enum Column {
    kPxname,
    kSvname,
    kType,
    kStatus,
    kAddr,
    kCheckStatus,
    kLastChk,
    kWeight,
    kScur,
    kStot,
    kLastchg,
    kDowntime,
    kChkfail,
    kCheckCode,
    kCheckDuration,
    kBck,
    kColumns
  };
  static constexpr std::string_view kNames[kColumns] = {
      "pxname",   "svname",     "type",           "status", "addr",    "check_status",
      "last_chk", "weight",     "scur",           "stot",   "lastchg", "downtime",
      "chkfail",  "check_code", "check_duration", "bck"};
  constexpr std::size_t kAbsent = static_cast<std::size_t>(-1);
  std::size_t col[kColumns];
  std::fill(std::begin(col), std::end(col), kAbsent);
  for (std::size_t i = 0; i < header.size(); ++i) {
    for (int c = 0; c < kColumns; ++c) {
      if (header[i] == kNames[c]) col[c] = i;  // a column named twice: the last one
    }
  }
  for (int required : {kPxname, kSvname, kStatus, kType}) {
    if (col[required] == kAbsent) {
      return Status(ErrorCode::kHaproxyUnavailable,
                    "'show stat' header lacks the column " + std::string(kNames[required]));
    }
  }
  const std::size_t columns = header.size();
  std::vector<std::string_view> f;
  auto field = [&](Column c) {
    return col[c] == kAbsent || col[c] >= f.size() ? std::string_view() : f[col[c]];
  };
  std::vector<StatRow> rows;
  while (reader.Next(&f)) {
    if (f.size() < columns) continue;  // a line cut off: never half a record
    int64_t type = ToInt(field(kType));
    if (type < 0 || type > 3) continue;
    StatRow& row = rows.emplace_back();
    row.pxname = field(kPxname);
    row.svname = field(kSvname);
    row.type = static_cast<StatRow::Type>(type);
    row.status = field(kStatus);
    row.addr = field(kAddr);
    // "* L4OK": haproxy marks a check in progress; the status is the part after the mark.
    std::string_view check_status = field(kCheckStatus);
    if (check_status.starts_with("* ")) check_status.remove_prefix(2);
    row.check_status = check_status;
    row.last_chk = field(kLastChk);
    row.weight = ToInt(field(kWeight));
    row.scur = ToInt(field(kScur));
    row.stot = ToInt(field(kStot));
    row.lastchg = ToInt(field(kLastchg));
    row.downtime = ToInt(field(kDowntime));
    row.chkfail = ToInt(field(kChkfail));
    row.check_code = ToInt(field(kCheckCode));
    row.check_duration = ToInt(field(kCheckDuration));
    row.backup = ToInt(field(kBck), 0) > 0;
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
