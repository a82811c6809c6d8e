// Parsers for what HAProxy's CLI prints: `show stat` (CSV), `show proc` (master socket) and
// `show info`. Pure functions over text; their input is untrusted (it may be cut short, or come
// from another haproxy version), so every field is checked and nothing throws.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lb/proto/backends.h"
#include "lb/proto/status.h"

namespace lb::agent {

// One row of `show stat`. Columns are found by the names in the "# pxname,svname,..." header,
// so a version that adds or reorders columns still parses. Missing numbers are -1.
struct StatRow {
  enum class Type { kFrontend = 0, kBackend = 1, kServer = 2, kListener = 3 };
  std::string pxname;
  std::string svname;
  Type type = Type::kServer;
  std::string status;
  std::string addr;
  std::string check_status;
  std::string last_chk;
  int64_t weight = -1;
  int64_t scur = -1;
  int64_t stot = -1;
  int64_t lastchg = -1;
  int64_t downtime = -1;
  int64_t chkfail = -1;
  int64_t check_code = -1;
  int64_t check_duration = -1;
  bool backup = false;
};

proto::Result<std::vector<StatRow>> ParseShowStat(std::string_view csv);

// `show stat` as it came from haproxy: like ParseShowStat, but an answer that does not end with
// haproxy's closing blank line was cut short (a worker stopping during a reload does that, at a
// line boundary) and is haproxy_unavailable rather than a shorter list of servers.
proto::Result<std::vector<StatRow>> ParseCompleteShowStat(std::string_view answer);

// Groups servers under their backend. `backend` is one name, or "*" for all backends; a named
// backend that does not exist is an error (bad_request naming the backends that do).
proto::Result<std::vector<proto::BackendStatus>> BackendsFromStats(const std::vector<StatRow>& rows,
                                                                   const std::string& backend);

struct ProcEntry {
  int pid = 0;
  std::string type;  // master, worker, or a program name
  int reloads = 0;   // for the master: reloads since start; for a worker: how old it is
  int failed = 0;    // master only: failed reloads since the last successful one
  int64_t uptime_s = 0;
  std::string version;
};

struct ProcInfo {
  ProcEntry master;
  std::vector<ProcEntry> workers;  // newest first (reloads == 0 is the current one)
};

proto::Result<ProcInfo> ParseShowProc(std::string_view text);

// `show info` as key -> value ("Pid" -> "1234", "Uptime_sec" -> "17", "Version" -> "2.6.12").
std::map<std::string, std::string> ParseShowInfo(std::string_view text);

}  // namespace lb::agent
