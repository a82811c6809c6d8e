#include "runtime_plan.h"

#include <algorithm>
#include <map>
#include <set>

namespace lb::agent {
namespace {

// Keywords an added server may carry, with how many arguments each takes. A subset of haproxy
// 2.6's `add server` list (management.txt): the ones that read no file and behave on a runtime
// server exactly as on a configured one. `track` is left out (its target must not be dynamic,
// and removal order matters), and so are TLS keywords (certificates are files; verification
// defaults differ with `ssl-server-verify`).
const std::map<std::string, int>& AddServerKeywords() {
  static const std::map<std::string, int> kKeywords = {{"addr", 1},
                                                       {"agent-addr", 1},
                                                       {"agent-check", 0},
                                                       {"agent-inter", 1},
                                                       {"agent-port", 1},
                                                       {"agent-send", 1},
                                                       {"backup", 0},
                                                       {"check", 0},
                                                       {"check-send-proxy", 0},
                                                       {"disabled", 0},
                                                       {"downinter", 1},
                                                       {"enabled", 0},
                                                       {"error-limit", 1},
                                                       {"fall", 1},
                                                       {"fastinter", 1},
                                                       {"inter", 1},
                                                       {"maxconn", 1},
                                                       {"maxqueue", 1},
                                                       {"minconn", 1},
                                                       {"observe", 1},
                                                       {"on-error", 1},
                                                       {"on-marked-down", 1},
                                                       {"on-marked-up", 1},
                                                       {"pool-low-conn", 1},
                                                       {"pool-max-conn", 1},
                                                       {"pool-purge-delay", 1},
                                                       {"port", 1},
                                                       {"rise", 1},
                                                       {"send-proxy", 0},
                                                       {"send-proxy-v2", 0},
                                                       {"slowstart", 1},
                                                       {"tfo", 0},
                                                       {"weight", 1}};
  return kKeywords;
}

// A word the CLI carries unchanged: haproxy's CLI splits on spaces and ';' and unescapes '\'.
bool CliSafe(const std::string& word) {
  if (word.empty()) return false;
  return std::all_of(word.begin(), word.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("._:/@%+=,[]-").find(c) != std::string_view::npos;
  });
}

// Why a backend's algorithm is static (haproxy cannot add servers to it, nor set most weights),
// or "".
std::string StaticAlgorithm(const DeclaredBackend& b) {
  if (b.balance == "static-rr") return "uses balance static-rr, a static algorithm";
  if (b.hash_type == "map-based") return "uses hash-type map-based, a static algorithm";
  if (b.Hashing() && b.hash_type != "consistent") {
    return "uses balance " + b.balance +
           " without hash-type consistent (map-based by default, a static algorithm)";
  }
  return "";
}

// The params of a server line without the ones the runtime API changes.
std::vector<std::string> FixedParams(const std::vector<std::string>& params) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i] == "weight") {
      ++i;
      continue;
    }
    if (params[i] == "disabled" || params[i] == "enabled") continue;
    out.push_back(params[i]);
  }
  return out;
}

std::string Join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

// Why `s` cannot be added through `add server`, or "".
std::string CannotAdd(const DeclaredBackend& b, const DeclaredServer& s) {
  const std::string who = "server " + b.name + "/" + s.name;
  if (s.from_template) return who + " comes from a server-template line";
  if (s.conditional) return who + " is inside an .if block";
  if (b.has_default_server) {
    return "backend " + b.name +
           " has default-server settings, which a server added at runtime would not inherit";
  }
  if (!s.literal()) {
    return who + " has no IP address with a port (\"" + s.address +
           "\"): a runtime server would not resolve a name";
  }
  if (!CliSafe(s.name) || !CliSafe(s.address)) {
    return who + " has characters the runtime API cannot carry in its name or address";
  }
  const auto& keywords = AddServerKeywords();
  for (std::size_t i = 0; i < s.params.size(); ++i) {
    auto kw = keywords.find(s.params[i]);
    if (kw == keywords.end()) {
      return who + " uses \"" + s.params[i] + "\", which this agent does not apply with add server";
    }
    for (int a = 0; a < kw->second; ++a) {
      if (++i >= s.params.size()) return who + ": \"" + kw->first + "\" lacks its argument";
      if (!CliSafe(s.params[i])) {
        return who + ": the argument of \"" + kw->first +
               "\" has characters the runtime API cannot carry";
      }
    }
  }
  return "";
}

// Why the change of `live` into `next` cannot keep every server's id what a reload of the file
// gives it, in a backend where ids decide (DeclaredBackend::IdsMatter), or "". A reload numbers
// servers by position; `del server` leaves the others' ids, `add server` takes the lowest free
// one. So only servers removed from the end and added at the end keep them equal.
std::string IdsDiffer(const DeclaredBackend& live, const DeclaredBackend& next) {
  const std::string why = next.IdsMatter();
  if (why.empty()) return "";
  std::vector<std::string> old_names, new_names;
  for (const auto& s : live.servers) old_names.push_back(s.name);
  for (const auto& s : next.servers) new_names.push_back(s.name);
  if (old_names == new_names) return "";
  for (const auto* b : {&live, &next}) {
    for (const auto& s : b->servers) {
      if (s.explicit_id) return "backend " + next.name + " sets server ids (" + why + ")";
    }
  }
  std::size_t kept = 0;
  while (kept < old_names.size() && kept < new_names.size() && old_names[kept] == new_names[kept]) {
    ++kept;
  }
  // What follows the common prefix must be only removed servers in the old list and only new
  // servers in the new list.
  for (std::size_t i = kept; i < old_names.size(); ++i) {
    if (next.Find(old_names[i]) != nullptr) {
      return "backend " + next.name + " changes the order of its servers (" + why + ")";
    }
  }
  for (std::size_t i = kept; i < new_names.size(); ++i) {
    if (live.Find(new_names[i]) != nullptr) {
      return "backend " + next.name + " changes the order of its servers (" + why + ")";
    }
  }
  return "";
}

std::string FirstDifference(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  auto shown = [](const std::vector<std::string>& v, std::size_t i) {
    if (i >= v.size()) return std::string("(end of file)");
    std::string line = v[i];
    std::replace(line.begin(), line.end(), '\x1f', ' ');
    line.erase(std::remove(line.begin(), line.end(), '\x1e'), line.end());
    return "\"" + line.substr(0, 80) + "\"";
  };
  return shown(a, i) + " becomes " + shown(b, i);
}

}  // namespace

RuntimePlan PlanRuntime(std::string_view live_config, std::string_view new_config) {
  return PlanRuntime(live_config, new_config, ReadDeclaredServers(live_config),
                     ReadDeclaredServers(new_config));
}

RuntimePlan PlanRuntime(std::string_view live_config, std::string_view new_config,
                        const DeclaredServers& live, const DeclaredServers& next) {
  RuntimePlan plan;
  auto reload = [&plan](std::string reason) {
    plan = RuntimePlan();
    plan.reason = std::move(reason);
    return plan;
  };
  const std::vector<std::string> live_skeleton = ConfigSkeleton(live_config);
  const std::vector<std::string> new_skeleton = ConfigSkeleton(new_config);
  if (live_skeleton != new_skeleton) {
    return reload("the change is not limited to server lines: " +
                  FirstDifference(live_skeleton, new_skeleton));
  }
  std::set<std::string> referenced(next.references.begin(), next.references.end());
  referenced.insert(live.references.begin(), live.references.end());

  std::vector<std::string> adds, changes, maint;
  for (const DeclaredBackend& nb : next.backends) {
    const DeclaredBackend* lb = live.Find(nb.name);
    if (lb == nullptr) return reload("backend " + nb.name + " is new");
    bool changed = false;
    std::vector<std::string> backend_adds, backend_changes, backend_maint;
    std::vector<RuntimeRemoval> backend_removals;
    for (const DeclaredServer& s : nb.servers) {
      const std::string id = nb.name + "/" + s.name;
      const DeclaredServer* old = lb->Find(s.name);
      if (old == nullptr) {
        if (std::string why = CannotAdd(nb, s); !why.empty()) return reload(why);
        changed = true;
        // A runtime server starts in maintenance; `enable server` makes it take traffic. (Added
        // with `enabled` instead, 2.6.12 lists it as running but never puts it in the
        // load-balancing tree: it gets no request. Measured.)
        backend_adds.push_back("add server " + id + " " + s.address +
                               (s.params.empty() ? "" : " " + Join(s.params)));
        if (s.check) backend_adds.push_back("enable health " + id);
        if (s.agent_check) backend_adds.push_back("enable agent " + id);
        if (!s.disabled) backend_adds.push_back("enable server " + id);
        continue;
      }
      const std::string who = "server " + id;
      if (old->conditional != s.conditional) {
        return reload(who + " moves " + (s.conditional ? "into" : "out of") + " an .if block");
      }
      if (old->address == s.address && old->effective_params == s.effective_params) continue;
      if (s.from_template || old->from_template) {
        return reload(who + " comes from a server-template line");
      }
      if (s.conditional) return reload(who + " is inside an .if block");
      if (!s.track.empty() || !old->track.empty()) return reload(who + " uses track");
      if (old->backup != s.backup) return reload(who + " changes backup");
      if (FixedParams(old->effective_params) != FixedParams(s.effective_params)) {
        return reload(who + " changes more than its address, weight or disabled (\"" +
                      Join(old->effective_params) + "\" becomes \"" + Join(s.effective_params) +
                      "\")");
      }
      if (old->address != s.address && !(old->literal() && s.literal())) {
        return reload(who + " changes an address that is not an IP literal with a port (\"" +
                      old->address + "\" becomes \"" + s.address + "\")");
      }
      if (old->literal() && (old->ip != s.ip || old->port != s.port)) {
        backend_changes.push_back("set server " + id + " addr " + s.ip + " port " +
                                  std::to_string(s.port));
        changed = true;
      }
      if (old->weight != s.weight) {
        backend_changes.push_back("set server " + id + " weight " + std::to_string(s.weight));
        changed = true;
      }
      if (old->disabled != s.disabled) {
        backend_changes.push_back("set server " + id + " state " +
                                  (s.disabled ? "maint" : "ready"));
        changed = true;
      }
    }
    for (const DeclaredServer& old : lb->servers) {
      if (nb.Find(old.name) != nullptr) continue;
      const std::string id = nb.name + "/" + old.name;
      if (old.from_template) return reload("server " + id + " comes from a server-template line");
      if (old.conditional) return reload("server " + id + " is inside an .if block");
      if (referenced.count(id)) {
        return reload("server " + id + " is named by a use-server or track line");
      }
      if (!old.track.empty()) return reload("server " + id + " uses track");
      if (!CliSafe(old.name)) {
        return reload("server " + id + " has characters the runtime API cannot carry");
      }
      changed = true;
      // An agent check can bring a server out of maintenance by itself: stop it first.
      if (old.agent_check) backend_maint.push_back("disable agent " + id);
      backend_maint.push_back("set server " + id + " state maint");
      backend_removals.push_back({nb.name, old.name});
    }
    // In a backend where ids decide, a reorder alone changes where traffic goes.
    if (std::string why = IdsDiffer(*lb, nb); !why.empty()) return reload(why);
    if (!changed) continue;
    if (std::string why = StaticAlgorithm(nb); !why.empty()) {
      return reload("backend " + nb.name + " " + why);
    }
    plan.backends.push_back(nb.name);
    adds.insert(adds.end(), backend_adds.begin(), backend_adds.end());
    changes.insert(changes.end(), backend_changes.begin(), backend_changes.end());
    maint.insert(maint.end(), backend_maint.begin(), backend_maint.end());
    plan.removals.insert(plan.removals.end(), backend_removals.begin(), backend_removals.end());
  }
  plan.runtime = true;
  // New capacity first, then changes, then the servers that go stop taking traffic.
  plan.commands = std::move(adds);
  plan.commands.insert(plan.commands.end(), changes.begin(), changes.end());
  plan.commands.insert(plan.commands.end(), maint.begin(), maint.end());
  return plan;
}

}  // namespace lb::agent
