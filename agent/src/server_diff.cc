#include "server_diff.h"

namespace lb::agent {

ServerMap ServersFromStats(const std::vector<StatRow>& rows) {
  ServerMap out;
  for (const auto& r : rows) {
    if (r.type != StatRow::Type::kServer) continue;
    out[r.pxname + "/" + r.svname] =
        ServerState{r.status, r.check_status, r.last_chk, r.addr, r.weight < 0 ? 0 : r.weight};
  }
  return out;
}

namespace {

ServerChange Change(const std::string& key, std::string kind, std::optional<ServerState> before,
                    std::optional<ServerState> after) {
  std::size_t slash = key.find('/');
  return ServerChange{key.substr(0, slash), key.substr(slash + 1), std::move(kind),
                      std::move(before), std::move(after)};
}

}  // namespace

std::vector<ServerChange> DiffServers(const ServerMap& before, const ServerMap& after) {
  std::vector<ServerChange> out;
  auto b = before.begin();
  auto a = after.begin();
  while (b != before.end() || a != after.end()) {
    if (a == after.end() || (b != before.end() && b->first < a->first)) {
      out.push_back(Change(b->first, "removed", b->second, std::nullopt));
      ++b;
    } else if (b == before.end() || a->first < b->first) {
      out.push_back(Change(a->first, "added", std::nullopt, a->second));
      ++a;
    } else {
      if (a->second.status != b->second.status) {
        out.push_back(Change(a->first, "status", b->second, a->second));
      } else if (a->second.address != b->second.address) {
        out.push_back(Change(a->first, "address", b->second, a->second));
      } else if (a->second.weight != b->second.weight) {
        out.push_back(Change(a->first, "weight", b->second, a->second));
      }
      ++a;
      ++b;
    }
  }
  return out;
}

std::optional<LogChange> ParseServerLogLine(std::string_view line) {
  std::size_t at = line.find("Server ");
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = line.substr(at + 7);
  std::size_t space = rest.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view name = rest.substr(0, space);
  std::size_t slash = name.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == name.size())
    return std::nullopt;
  std::string_view verb = rest.substr(space + 1);
  LogChange out{std::string(name.substr(0, slash)), std::string(name.substr(slash + 1)), "", ""};
  if (verb.rfind("is going DOWN for maintenance", 0) == 0 ||
      verb.rfind("was DOWN and now enters maintenance", 0) == 0 ||
      verb.rfind("was UP and now enters maintenance", 0) == 0) {
    out.status = "MAINT";
  } else if (verb.rfind("is DOWN", 0) == 0) {
    out.status = "DOWN";
  } else if (verb.rfind("is UP", 0) == 0) {
    out.status = "UP";
  } else {
    return std::nullopt;
  }
  std::size_t reason = verb.find("reason: ");
  if (reason != std::string_view::npos) {
    std::string_view r = verb.substr(reason + 8);
    out.why = std::string(r.substr(0, r.find(", ")));
  }
  return out;
}

}  // namespace lb::agent
