#include "server_state.h"

#include <algorithm>
#include <charconv>
#include <set>

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

std::vector<std::string> SplitSpaces(std::string_view line) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
    if (pos >= line.size()) break;
    std::size_t end = pos;
    while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
    out.emplace_back(line.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

int ToInt(const std::string& s) {
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && ptr == s.data() + s.size() ? v : -1;
}

std::string Key(std::string_view backend, std::string_view server) {
  return std::string(backend) + "/" + std::string(server);
}

std::string Endpoint(const std::string& ip, int port) {
  const bool v6 = ip.find(':') != std::string::npos;
  return (v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

const DeclaredServer* FindServer(const DeclaredServers& servers, std::string_view backend,
                                 std::string_view server) {
  const DeclaredBackend* b = servers.Find(backend);
  return b ? b->Find(server) : nullptr;
}

}  // namespace

const RunningServer* ServersState::Find(std::string_view backend, std::string_view server) const {
  if (index.size() == servers.size()) {
    auto it = index.find(Key(backend, server));
    return it == index.end() ? nullptr : &servers[it->second];
  }
  for (const auto& s : servers) {
    if (s.backend == backend && s.name == server) return &s;
  }
  return nullptr;
}

Result<ServersState> ParseServersState(std::string_view text) {
  ServersState out;
  if (text.size() < 2 || text.substr(text.size() - 2) != "\n\n") {
    return Status(ErrorCode::kHaproxyUnavailable,
                  "haproxy's 'show servers state' answer was cut short (a reload in progress?)");
  }
  std::size_t pos = 0;
  int line_number = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_number;
    if (line_number == 1) {
      out.version = std::string(line);
      if (out.version != "1") {
        return Status(ErrorCode::kHaproxyUnavailable,
                      "unexpected answer to 'show servers state' (format \"" +
                          std::string(line.substr(0, 40)) + "\")");
      }
      continue;
    }
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (!out.header.empty()) {
        return Status(ErrorCode::kHaproxyUnavailable,
                      "unexpected answer to 'show servers state' (a second header line)");
      }
      out.header = std::string(line);
      auto names = SplitSpaces(line.substr(1));
      for (std::size_t i = 0; i < names.size(); ++i) out.columns[names[i]] = i;
      if (out.columns.size() != names.size()) {
        return Status(ErrorCode::kHaproxyUnavailable,
                      "unexpected answer to 'show servers state' (a column named twice)");
      }
      continue;
    }
    if (out.columns.empty()) continue;
    // haproxy prints tokens of printable ASCII separated by spaces; a line with anything else
    // (a control character another reader would split on differently) is not a server's.
    if (std::any_of(line.begin(), line.end(),
                    [](char c) { return c != ' ' && (c < 0x21 || c > 0x7e); })) {
      continue;
    }
    RunningServer s;
    s.fields = SplitSpaces(line);
    auto field = [&](const char* name) -> std::string {
      auto it = out.columns.find(name);
      return it != out.columns.end() && it->second < s.fields.size() ? s.fields[it->second] : "";
    };
    if (s.fields.size() < out.columns.size()) continue;  // a line cut short: never half a server
    s.backend = field("be_name");
    s.name = field("srv_name");
    s.addr = field("srv_addr");
    s.port = ToInt(field("srv_port"));
    s.id = ToInt(field("srv_id"));
    s.fqdn = field("srv_fqdn");
    if (s.fqdn == "-") s.fqdn.clear();
    s.op_state = ToInt(field("srv_op_state"));
    s.admin_state = ToInt(field("srv_admin_state"));
    s.uweight = ToInt(field("srv_uweight"));
    s.iweight = ToInt(field("srv_iweight"));
    if (s.backend.empty() || s.name.empty() || s.admin_state < 0 || s.uweight < 0) continue;
    out.servers.push_back(std::move(s));
  }
  for (const char* required : {"be_name", "srv_name", "srv_addr", "srv_admin_state", "srv_uweight",
                               "srv_iweight", "srv_port"}) {
    if (!out.columns.count(required)) {
      return Status(ErrorCode::kHaproxyUnavailable,
                    std::string("'show servers state' header lacks the column ") + required);
    }
  }
  for (std::size_t i = 0; i < out.servers.size(); ++i) {
    out.index.emplace(Key(out.servers[i].backend, out.servers[i].name), i);
  }
  if (out.index.size() != out.servers.size()) out.index.clear();
  return out;
}

StateCarry CarryServerState(const ServersState& running, const DeclaredServers& live,
                            const DeclaredServers& next, bool keep_operator_state) {
  StateCarry out;
  out.file_text = running.version + "\n" + running.header + "\n";
  for (const auto& b : next.backends) {
    for (const auto& s : b.servers) {
      out.expect[Key(b.name, s.name)] =
          ServerExpectation{s.agent_check ? -1 : s.weight, s.disabled, "", ""};
    }
  }
  auto column = [&](const char* name) { return running.columns.at(name); };
  for (const RunningServer& r : running.servers) {
    const DeclaredServer* n = FindServer(next, r.backend, r.name);
    if (n == nullptr) continue;  // gone from the config
    const DeclaredServer* l = FindServer(live, r.backend, r.name);
    const std::string key = Key(r.backend, r.name);
    // Address: IP literals against what runs (which catches a hand-made `set server addr` too),
    // other forms against the live config's text.
    if (n->literal() ? (r.addr != n->ip || r.port != n->port)
                     : (l == nullptr || l->address != n->address)) {
      out.left_out.push_back(key + ": address " + Endpoint(r.addr, r.port) + " becomes " +
                             n->address);
      continue;
    }
    ServerExpectation& expect = out.expect[key];
    // Weight: the new config's, unless an operator set another on a server whose configured
    // weight does not change.
    int uweight = n->weight;
    if (n->agent_check && l != nullptr && l->weight == n->weight) {
      // An agent check sets the weight in effect ("up 75%"): it stays the agent's.
      uweight = r.uweight;
      expect.weight = -1;
    } else if (keep_operator_state && l != nullptr && r.uweight != l->weight &&
               l->weight == n->weight) {
      uweight = r.uweight;
      expect.weight = r.uweight;
      expect.why_weight = "set through the runtime API (the config's weight did not change)";
    }
    // Maintenance: as the config says, or an operator's MAINT on a server the config enables.
    const bool operator_maint =
        keep_operator_state && l != nullptr && !l->disabled && !n->disabled && r.maint();
    if (operator_maint) expect.why_maint = "MAINT set through the runtime API";
    expect.maint = n->disabled || operator_maint;
    if (r.maint() != expect.maint) {
      // Entering or leaving maintenance: the server starts from the new config.
      out.left_out.push_back(key + (expect.maint ? ": enters" : ": leaves") + " maintenance");
      continue;
    }
    int admin = r.admin_state;
    // The config-maintenance flag as the new config has it, so that haproxy applies the forced
    // flags of the file (its rule when the configuration did not change).
    admin = n->disabled ? (admin | kAdminConfigMaint) : (admin & ~kAdminConfigMaint);
    if (!keep_operator_state) admin &= ~kAdminForcedDrain;
    std::vector<std::string> fields = r.fields;
    fields[column("srv_admin_state")] = std::to_string(admin);
    fields[column("srv_uweight")] = std::to_string(uweight);
    fields[column("srv_iweight")] = std::to_string(n->weight);
    if (n->literal()) {
      // What the config says, in the form it says it (the file is haproxy's input).
      fields[column("srv_addr")] = n->ip;
      fields[column("srv_port")] = std::to_string(n->port);
    }
    std::string line;
    for (const auto& f : fields) line += (line.empty() ? "" : " ") + f;
    out.file_text += line + "\n";
  }
  return out;
}

std::vector<std::string> VerifyServers(const DeclaredServers& declared,
                                       const std::map<std::string, ServerExpectation>& expect,
                                       const ServersState& running,
                                       const std::vector<StatRow>& stats) {
  std::vector<std::string> out;
  std::map<std::string, bool> backup;
  for (const auto& row : stats) {
    if (row.type == StatRow::Type::kServer) backup[Key(row.pxname, row.svname)] = row.backup;
  }
  for (const DeclaredBackend& b : declared.backends) {
    const std::string where = "backend " + b.name + ", server ";
    std::set<std::string> names;
    const bool positional_ids = !b.IdsMatter().empty() && !b.has_conditional &&
                                std::none_of(b.servers.begin(), b.servers.end(),
                                             [](const DeclaredServer& s) { return s.explicit_id; });
    int position = 0;
    for (const DeclaredServer& s : b.servers) {
      ++position;
      names.insert(s.name);
      if (s.conditional) continue;  // the agent does not evaluate `.if`
      const RunningServer* r = running.Find(b.name, s.name);
      if (r == nullptr) {
        out.push_back(where + s.name + ": not running, the config declares it (line " +
                      std::to_string(s.line) + ")");
        continue;
      }
      if (s.literal() && r->addr != s.ip) {
        out.push_back(where + s.name + ": address is " + r->addr + ", the config says " + s.ip);
      }
      if (s.literal() && r->port != s.port) {
        out.push_back(where + s.name + ": port is " + std::to_string(r->port) +
                      ", the config says " + std::to_string(s.port));
      }
      auto e = expect.find(Key(b.name, s.name));
      const ServerExpectation want =
          e != expect.end() ? e->second
                            : ServerExpectation{s.agent_check ? -1 : s.weight, s.disabled, "", ""};
      if (want.weight >= 0 && r->uweight != want.weight) {
        out.push_back(where + s.name + ": weight is " + std::to_string(r->uweight) + ", " +
                      (want.why_weight.empty() ? "the config says " : "expected ") +
                      std::to_string(want.weight) +
                      (want.why_weight.empty() ? "" : " (" + want.why_weight + ")"));
      }
      if (r->maint() != want.maint) {
        out.push_back(where + s.name + ": " + (r->maint() ? "in" : "not in") + " maintenance, " +
                      (want.why_maint.empty()
                           ? std::string("the config says ") + (s.disabled ? "disabled" : "enabled")
                           : "expected " + std::string(want.maint ? "in" : "out of") +
                                 " maintenance (" + want.why_maint + ")"));
      }
      auto bk = backup.find(Key(b.name, s.name));
      if (bk != backup.end() && bk->second != s.backup) {
        out.push_back(where + s.name + ": " + (bk->second ? "is" : "is not") +
                      " a backup server, the config says " + (s.backup ? "backup" : "not backup"));
      }
      if (positional_ids && r->id != position) {
        out.push_back(where + s.name + ": id is " + std::to_string(r->id) + ", a reload gives " +
                      std::to_string(position) + " (" + b.IdsMatter() + ")");
      }
    }
    if (b.has_conditional) continue;
    for (const RunningServer& r : running.servers) {
      if (r.backend == b.name && !names.count(r.name)) {
        out.push_back(where + r.name + ": running, the config does not declare it");
      }
    }
  }
  for (const RunningServer& r : running.servers) {
    if (declared.Find(r.backend) == nullptr) {
      out.push_back("backend " + r.backend + ", server " + r.name +
                    ": running, the config does not declare the backend");
    }
  }
  return out;
}

}  // namespace lb::agent
