#include "config_lint.h"

#include <filesystem>
#include <set>
#include <sstream>

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Status;

// Splits a config line into words, dropping comments. HAProxy's quoting rules are richer; this
// is enough for the keywords read here, whose arguments are plain words.
std::vector<std::string> Words(std::string_view line) {
  std::vector<std::string> out;
  std::string current;
  bool in_quote = false;
  char quote = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (in_quote) {
      if (c == quote) {
        in_quote = false;
      } else {
        current += c;
      }
      continue;
    }
    if (c == '"' || c == '\'') {
      in_quote = true;
      quote = c;
      continue;
    }
    if (c == '\\' && i + 1 < line.size()) {
      current += line[++i];
      continue;
    }
    if (c == '#') break;
    if (c == ' ' || c == '\t' || c == '\r') {
      if (!current.empty()) out.push_back(std::move(current));
      current.clear();
      continue;
    }
    current += c;
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

const std::set<std::string>& SectionKeywords() {
  static const std::set<std::string> kSections = {
      "global",    "defaults",       "frontend", "backend",       "listen", "peers",
      "resolvers", "userlist",       "program",  "mailers",       "cache",  "http-errors",
      "ring",      "namespace_list", "fcgi-app", "dynamic-update"};
  return kSections;
}

}  // namespace

ConfigFacts ReadConfigFacts(std::string_view config) {
  ConfigFacts facts;
  std::string section, name;
  std::size_t pos = 0;
  while (pos < config.size()) {
    std::size_t nl = config.find('\n', pos);
    if (nl == std::string_view::npos) nl = config.size();
    auto words = Words(config.substr(pos, nl - pos));
    pos = nl + 1;
    if (words.empty()) continue;
    const std::string& kw = words[0];
    if (SectionKeywords().count(kw)) {
      section = kw;
      name = words.size() > 1 ? words[1] : "";
      if (section == "backend" || section == "listen") facts.backend_servers[name];
      continue;
    }
    if ((section == "backend" || section == "listen") &&
        (kw == "server" || kw == "server-template")) {
      facts.backend_servers[name]++;
    }
    if (kw == "load-server-state-from-file") facts.loads_server_state = true;
    if (kw == "option" && words.size() > 1 && words[1] == "idle-close-on-response") {
      facts.idle_close_on_response = true;
    }
    if (section != "global") continue;
    if (kw == "server-state-file" && words.size() > 1) facts.server_state_file = words[1];
    if (kw == "server-state-base" && words.size() > 1) facts.server_state_base = words[1];
    if (kw == "hard-stop-after") facts.hard_stop_after = true;
    if (kw == "pidfile") facts.pidfile = true;
    if (kw == "stats" && words.size() > 2 && words[1] == "socket") {
      facts.stats_sockets.push_back(words[2]);
    }
    if (kw == "chroot" || kw == "user" || kw == "group" || kw == "uid" || kw == "gid") {
      facts.privileged.push_back(kw);
    }
  }
  return facts;
}

std::string ServerStateFilePath(const ConfigFacts& facts) {
  if (facts.server_state_file.empty()) return "";
  std::filesystem::path p(facts.server_state_file);
  if (p.is_absolute() || facts.server_state_base.empty()) return p.string();
  return (std::filesystem::path(facts.server_state_base) / p).string();
}

LintResult LintConfig(const ConfigFacts& facts, const LintOptions& options) {
  using common::ReloadMethod;
  LintResult out;
  if (!options.force) {
    auto it = facts.backend_servers.find(options.default_backend);
    if (it == facts.backend_servers.end()) {
      out.status = Status(ErrorCode::kInvalidConfig,
                          "the config has no backend \"" + options.default_backend +
                              "\" (default_backend in lb-agent.cfg); refusing a config that "
                              "would empty this load balancer; send force: true to apply it "
                              "anyway");
      return out;
    }
    if (it->second == 0) {
      out.status = Status(ErrorCode::kInvalidConfig,
                          "backend \"" + options.default_backend +
                              "\" has no server; refusing a config that would empty this load "
                              "balancer; send force: true to apply it anyway");
      return out;
    }
  }
  const bool master_modes =
      options.method == ReloadMethod::kManaged || options.method == ReloadMethod::kMaster;
  if (options.method == ReloadMethod::kManaged && !options.running_as_root &&
      !facts.privileged.empty()) {
    std::string list;
    for (const auto& p : facts.privileged) list += (list.empty() ? "" : ", ") + p;
    out.status = Status(ErrorCode::kInvalidConfig,
                        "the config uses " + list +
                            " in its global section, which only works when haproxy starts as "
                            "root, and this agent (managed mode) does not run as root: remove "
                            "those lines or run the agent as root");
    return out;
  }
  if (options.method == ReloadMethod::kManaged && facts.pidfile) {
    out.warnings.push_back(
        "'pidfile' in global is ignored in managed mode: the agent runs haproxy with -p "
        "pid_file from lb-agent.cfg");
  }
  if (facts.server_state_file.empty() || !facts.loads_server_state) {
    out.warnings.push_back(
        "no server-state-file in global with load-server-state-from-file in defaults: every "
        "reload forgets health state and sends traffic to DOWN servers until they are checked "
        "again");
  }
  if (!facts.idle_close_on_response) {
    out.warnings.push_back(
        "no 'option idle-close-on-response' in defaults: idle keep-alive connections can be "
        "reset during a reload");
  }
  if (!facts.hard_stop_after) {
    out.warnings.push_back(
        "no 'hard-stop-after' in global: old workers holding long connections are not bounded "
        "and pile up on frequent reloads");
  }
  const bool reads_socket = !master_modes || !options.stats_via_master;
  if (reads_socket) {
    bool found = false;
    for (const auto& s : facts.stats_sockets) {
      if (s == options.socket_path || s == "unix@" + options.socket_path ||
          s == "ipv4@" + options.socket_path) {
        found = true;
      }
    }
    if (!found) {
      out.warnings.push_back("the config has no 'stats socket " + options.socket_path +
                             "' (socket_path in lb-agent.cfg): status will fail after this "
                             "reload");
    }
  }
  return out;
}

}  // namespace lb::agent
