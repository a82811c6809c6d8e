#include "lb/proto/backends.h"

namespace lb::proto {

using nlohmann::json;

json ToJson(const ServerStatus& s) {
  return {
      {"name", s.name},
      {"address", s.address},
      {"status", s.status},
      {"weight", s.weight},
      {"check_status", s.check_status},
      {"last_chk", s.last_chk},
      {"check_code", s.check_code},
      {"check_duration_ms", s.check_duration_ms},
      {"current_sessions", s.current_sessions},
      {"total_sessions", s.total_sessions},
      {"seconds_since_change", s.seconds_since_change},
      {"downtime_s", s.downtime_s},
      {"check_failures", s.check_failures},
      {"backup", s.backup},
  };
}

json ToJson(const BackendStatus& b) {
  json servers = json::array();
  for (const auto& s : b.servers) servers.push_back(ToJson(s));
  return {{"name", b.name}, {"status", b.status}, {"servers", std::move(servers)}};
}

json LegacyBackendList(const json& backend, const std::string& name_prefix) {
  json out = json::array();
  auto servers = backend.find("servers");
  if (servers == backend.end() || !servers->is_array()) return out;
  for (const auto& server : *servers) {
    if (!server.is_object()) continue;
    // Tolerant of odd values: this renders an answer that crossed a socket.
    auto text = [&](const char* key) {
      auto it = server.find(key);
      return it != server.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    std::string name = text("name");
    if (!name_prefix.empty() && name.rfind(name_prefix, 0) != 0) continue;
    json entry = server;
    entry["instance_id"] = name;
    entry["state"] = text("status");
    std::string last_chk = text("last_chk");
    entry["description"] = last_chk.empty() ? json(nullptr) : json(last_chk);
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace lb::proto
