#include "config_lint.h"

#include <filesystem>
#include <set>
#include <sstream>

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Status;

bool IsSpace(char c) {
  // isspace() in the C locale, which haproxy runs in.
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAlnum(char c) { return IsAlpha(c) || (c >= '0' && c <= '9'); }

// The length of the environment variable reference at `ref` ("$NAME", "${NAME}",
// "${NAME[*]}", "${NAME-default}"), as far as parse_line() reads it; at least 1 ("$").
std::size_t VariableLength(std::string_view ref) {
  std::size_t j = 1;
  const bool brace = j < ref.size() && ref[j] == '{';
  if (brace) ++j;
  if (j >= ref.size() || !(IsAlpha(ref[j]) || ref[j] == '_' || ref[j] == '.')) return j;
  ++j;
  while (j < ref.size() && (IsAlnum(ref[j]) || ref[j] == '_')) ++j;
  if (!brace) return j;
  if (ref.substr(j, 3) == "[*]") j += 3;
  // A default value runs to the first '}', quotes or not.
  while (j < ref.size() && ref[j] != '}') ++j;
  return j < ref.size() ? j + 1 : j;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

const std::set<std::string>& SectionKeywords() {
  static const std::set<std::string> kSections = {
      "global",    "defaults",       "frontend", "backend",       "listen", "peers",
      "resolvers", "userlist",       "program",  "mailers",       "cache",  "http-errors",
      "ring",      "namespace_list", "fcgi-app", "dynamic-update"};
  return kSections;
}

// Directives that make haproxy run a program or load code into itself (HAProxy 2.6
// configuration manual), refused whatever their arguments and section:
//  - Lua: lua-load, lua-load-per-thread run a script in haproxy; lua-prepend-path decides
//    which files `require` loads.
//  - external-check (global) enables health checks that run a command; the per-proxy
//    `external-check command|path` lines name it.
//  - program <name>: a section whose `command` the master runs and restarts.
//  - insecure-setuid-wanted lets what haproxy runs gain privileges.
//  - ssl-engine, ssl-provider, ssl-provider-path: OpenSSL loads a shared object (an engine or
//    a provider, from any directory with ssl-provider-path).
// With their arguments (CodeDirectiveOf): insecure-fork-wanted (lets Lua and external checks
// fork), option external-check, filter opentracing, setenv/presetenv of a loader variable.
// Not refused: spoe and fcgi-app filters (they send data to an agent or an application server
// over the network, like a `server` line) and data files (51degrees, wurfl, deviceatlas, maps,
// ACL files, errorfile, h1-case-adjust-file).
const std::set<std::string>& AlwaysRefused() {
  static const std::set<std::string> kKeywords = {
      "lua-load",         "lua-load-per-thread",    "lua-prepend-path", "external-check",
      "program",          "insecure-setuid-wanted", "ssl-engine",       "ssl-provider",
      "ssl-provider-path"};
  return kKeywords;
}

// Environment variables that make a process load code: the dynamic loader's (LD_PRELOAD,
// LD_LIBRARY_PATH, LD_AUDIT, ...), glibc's iconv modules, OpenSSL's configuration, engines and
// providers, and PATH. `setenv` changes haproxy's own environment, which the master carries
// into its re-execution at start and at every reload and into everything it starts: with
// haproxy 2.6.12, `setenv LD_PRELOAD /x.so` in global makes the master load /x.so.
bool LoadsCode(const std::string& name) {
  const std::string upper = [&] {
    std::string u = name;
    for (char& c : u) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    return u;
  }();
  static const std::set<std::string> kNames = {"GCONV_PATH", "OPENSSL_CONF", "OPENSSL_ENGINES",
                                               "OPENSSL_MODULES", "PATH"};
  return upper.rfind("LD_", 0) == 0 || kNames.count(upper) > 0;
}

std::string Quoted(const ConfigWord& word) { return "\"" + word.text + "\""; }

// The code directive on one line, or "" when there is none. `in_program` tracks whether the
// line is inside a `program` section. Keywords are matched without regard to case (haproxy's
// are case-sensitive, so a different case is at worst refused twice), and leading empty words
// ("" lua-load ...) are skipped, which haproxy would not do: both err on the side of refusing.
std::string CodeDirectiveOf(const std::vector<ConfigWord>& line, bool* in_program) {
  std::size_t i = 0;
  while (i < line.size() && line[i].text.empty() && !line[i].from_env) ++i;
  if (i == line.size()) return "";
  if (line[i].from_env) {
    return Quoted(line[i]) + " (a keyword taken from an environment variable)";
  }
  std::string modifier;
  if (const std::string first = Lower(line[i].text); first == "no" || first == "default") {
    modifier = first;
    ++i;
    if (i == line.size()) return "";
    if (line[i].from_env) {
      return modifier + " " + Quoted(line[i]) + " (a keyword taken from an environment variable)";
    }
  }
  const std::string keyword = Lower(line[i].text);
  const ConfigWord* arg = i + 1 < line.size() ? &line[i + 1] : nullptr;
  const std::string arg_lower = arg ? Lower(arg->text) : "";
  auto from_env = [&] {
    return keyword + " " + Quoted(*arg) + " (a word taken from an environment variable)";
  };

  if (SectionKeywords().count(keyword)) *in_program = keyword == "program";
  if (AlwaysRefused().count(keyword)) {
    if (keyword == "external-check" && arg && !arg->from_env &&
        (arg_lower == "command" || arg_lower == "path")) {
      return keyword + " " + arg_lower;
    }
    return keyword;
  }
  // `no` and `default` turn these two off.
  if (keyword == "insecure-fork-wanted") return modifier.empty() ? keyword : "";
  if (keyword == "option" && arg) {
    if (arg->from_env) return from_env();
    if (arg_lower == "external-check" && modifier.empty()) return "option external-check";
  }
  // The OpenTracing filter's own config names a tracer plugin, a shared object haproxy loads.
  if (keyword == "filter" && arg) {
    if (arg->from_env) return from_env();
    if (arg_lower == "opentracing") return "filter opentracing";
  }
  if ((keyword == "setenv" || keyword == "presetenv") && arg) {
    if (arg->from_env) return from_env();
    if (LoadsCode(arg->text)) return keyword + " " + arg->text;
  }
  if (*in_program && keyword == "command") return "command (in a program section)";
  return "";
}

}  // namespace

bool IsSectionKeyword(std::string_view keyword) {
  return SectionKeywords().count(std::string(keyword)) > 0;
}

std::vector<ConfigWord> SplitConfigLine(std::string_view line) {
  std::vector<ConfigWord> out;
  ConfigWord current;
  bool open = false;  // a word has begun since the last separator
  bool squote = false;
  bool dquote = false;
  std::size_t i = 0;
  while (i < line.size() && IsSpace(line[i])) ++i;  // readcfgfile() skips these
  while (i < line.size()) {
    const char c = line[i];
    if (c == '\0' || c == '\n' || c == '\r') break;
    if (c == '#' && !squote && !dquote) break;
    if (c == '"' && !squote) {
      dquote = !dquote;
      open = true;
      ++i;
      continue;
    }
    if (c == '\'' && !dquote) {
      squote = !squote;
      open = true;
      ++i;
      continue;
    }
    if (c == '\\' && !squote) {
      open = true;
      const char next = i + 1 < line.size() ? line[i + 1] : '\0';
      int hi = -1, lo = -1;
      if (next == 'x' && i + 3 < line.size()) {
        hi = HexDigit(line[i + 2]);
        lo = HexDigit(line[i + 3]);
      }
      if (next == ' ' || next == '\\' || next == '#' || next == '\'' || next == '"' ||
          (next == '$' && dquote)) {
        current.text += next;
        i += 2;
      } else if (next == 't' || next == 'n' || next == 'r') {
        current.text += next == 't' ? '\t' : next == 'n' ? '\n' : '\r';
        i += 2;
      } else if (hi >= 0 && lo >= 0) {
        current.text += static_cast<char>(hi * 16 + lo);
        i += 4;
      } else {
        current.text += '\\';  // not an escape: the backslash stays, the next char is read
        ++i;
      }
      continue;
    }
    if (IsSpace(c) && !squote && !dquote) {
      // A run of separators, CR included: only a CR that ends a word ends the line.
      while (i < line.size() && IsSpace(line[i])) ++i;
      if (open) out.push_back(std::move(current));
      current = ConfigWord();
      open = false;
      continue;
    }
    open = true;
    if (c == '$' && dquote) {
      const std::size_t n = VariableLength(line.substr(i));
      current.text.append(line.substr(i, n));
      current.from_env = true;
      i += n;
      continue;
    }
    current.text += c;
    ++i;
  }
  if (open) out.push_back(std::move(current));
  return out;
}

ConfigFacts ReadConfigFacts(std::string_view config) {
  ConfigFacts facts;
  std::string section, name;
  bool in_program = false;
  int line_number = 0;
  std::size_t pos = 0;
  while (pos < config.size()) {
    std::size_t nl = config.find('\n', pos);
    if (nl == std::string_view::npos) nl = config.size();
    const std::vector<ConfigWord> split = SplitConfigLine(config.substr(pos, nl - pos));
    pos = nl + 1;
    ++line_number;
    if (std::string code = CodeDirectiveOf(split, &in_program); !code.empty()) {
      facts.code_directives.push_back({line_number, std::move(code)});
    }
    std::vector<std::string> words;
    for (const auto& w : split) words.push_back(w.text);
    if (words.empty() || words[0].empty()) continue;  // haproxy skips these lines too
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

std::string ResolvedServerStateFile(const ConfigFacts& facts, const std::string& config_dir) {
  const std::filesystem::path state = ServerStateFilePath(facts);
  if (state.empty()) return "";
  return (std::filesystem::path(config_dir) / state).lexically_normal().string();
}

namespace {

// "line 3: lua-load; line 9: option external-check", at most 10 of them.
std::string DescribeCodeDirectives(const std::vector<CodeDirective>& found) {
  constexpr std::size_t kMaxListed = 10;
  std::string out;
  for (std::size_t i = 0; i < found.size() && i < kMaxListed; ++i) {
    out += (i ? "; line " : "line ") + std::to_string(found[i].line) + ": " + found[i].directive;
  }
  if (found.size() > kMaxListed) {
    out += "; and " + std::to_string(found.size() - kMaxListed) + " more";
  }
  return out;
}

}  // namespace

LintResult CheckCodeDirectives(const ConfigFacts& facts, bool allow_programs) {
  LintResult out;
  if (facts.code_directives.empty()) return out;
  const std::string found = DescribeCodeDirectives(facts.code_directives);
  if (!allow_programs) {
    out.status = Status(ErrorCode::kInvalidConfig,
                        "the config makes haproxy run programs or load code, which this agent "
                        "refuses (" +
                            found +
                            "); remove those lines, or allow them in lb-agent.cfg with "
                            "\"[security] allow_programs = yes\" (see SECURITY.md)");
    return out;
  }
  out.warnings.push_back("the config makes haproxy run programs or load code (" + found +
                         "), allowed by [security] allow_programs");
  return out;
}

LintResult LintConfig(const ConfigFacts& facts, const LintOptions& options) {
  using common::ReloadMethod;
  LintResult out = CheckCodeDirectives(facts, options.allow_programs);
  if (!out.status.ok()) return out;
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

std::string RunningAsRootWarning(uid_t euid) {
  if (euid != 0) return "";
  return "warning: running as root: whoever can send this agent a config (command "
         "socket, bridge, fleet controller) gets a root process to write files and start "
         "haproxy, and any flaw in the agent is a root compromise; run it as its own user with "
         "write access to the config directory only (SECURITY.md, etc/systemd/lb-agent.service)";
}

}  // namespace lb::agent
