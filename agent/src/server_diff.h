// What changed between two readings of haproxy's servers, and what haproxy's log says changed.
// Pure functions: the event loop feeds them `show stat` rows and log lines.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "haproxy_parsers.h"

namespace lb::agent {

struct ServerState {
  std::string status;
  std::string check_status;
  std::string last_chk;
  std::string address;
  int64_t weight = 0;
};

// "backend/server" -> state, from `show stat` rows (servers only).
using ServerMap = std::map<std::string, ServerState>;
ServerMap ServersFromStats(const std::vector<StatRow>& rows);

struct ServerChange {
  std::string backend;
  std::string server;
  std::string change;  // "status", "address", "weight", "added", "removed"
  std::optional<ServerState> previous;
  std::optional<ServerState> current;
};

// Changes from `before` to `after`, in key order: added, removed, status, address, then weight
// changes (a server whose status and address or weight changed yields one "status" change; both
// states carry the address and weight).
std::vector<ServerChange> DiffServers(const ServerMap& before, const ServerMap& after);

// A server state change announced in haproxy's log, e.g.
// "Server app/web1 is DOWN, reason: Layer4 connection problem, info: ..." (any syslog prefix).
struct LogChange {
  std::string backend;
  std::string server;
  std::string status;  // UP, DOWN or MAINT
  std::string why;     // the reason haproxy gave, or ""
};
std::optional<LogChange> ParseServerLogLine(std::string_view line);

}  // namespace lb::agent
