// Backend and server state as carried in `status` results, and the legacy JSON envelope of the
// 2015 Python agent's /getBackends that the bridge keeps for existing clients.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lb::proto {

struct ServerStatus {
  std::string name;
  std::string address;  // "ip:port" as haproxy reports it; empty when unknown
  std::string status;   // UP, DOWN, MAINT, DRAIN, "UP 1/3", "no check", ...
  int64_t weight = 0;
  std::string check_status;  // L4OK, L7STS, L4CON, ... ; empty without checks
  std::string last_chk;      // haproxy's last check description; empty when none
  int64_t check_code = -1;   // layer 5-7 code of the last check; -1 when none
  int64_t check_duration_ms = -1;
  int64_t current_sessions = 0;
  int64_t total_sessions = 0;
  int64_t seconds_since_change = -1;  // -1 when haproxy does not know
  int64_t downtime_s = -1;
  int64_t check_failures = 0;
  bool backup = false;
};

struct BackendStatus {
  std::string name;
  std::string status;  // the BACKEND row's status: UP or DOWN
  std::vector<ServerStatus> servers;
};

nlohmann::json ToJson(const ServerStatus& server);
nlohmann::json ToJson(const BackendStatus& backend);

// The `message` list of the legacy /getBackends answer for one backend in a `status` result:
// [{"instance_id": name, "state": status, "description": last_chk or null, ...richer fields}].
// Servers whose name does not start with `name_prefix` are left out (empty prefix: none are).
nlohmann::json LegacyBackendList(const nlohmann::json& backend, const std::string& name_prefix);

}  // namespace lb::proto
