// ConfigLint: what the agent checks in an HAProxy config on top of `haproxy -c`.
//
// Pure functions over the config text (no files, no processes), so the decisions are unit
// tested without haproxy. HAProxy's own parser remains the authority on validity; this only
// reads what the agent needs: sections and servers, the directives that decide whether a
// reload is seamless or whether managed mode can run the config at all, and the directives that
// make haproxy run programs or load code (refused unless [security] allow_programs).
//
// Lines are split into words the way haproxy 2.6 does it (parse_line() in src/tools.c, called
// by readcfgfile()), so that quoting cannot hide a keyword from the agent: leading whitespace
// and every isspace() separator, '#' comments outside quotes, "double" and 'single' quotes that
// may cover part of a word, backslash escapes (\\, \<space>, \#, \", \', \t, \n, \r, \xHH),
// and a line that ends at the first CR. "$VAR" / "${VAR}" inside double quotes are expanded by
// haproxy from an environment this agent cannot know (setenv in the config changes it): such a
// word is marked, and a keyword made of one is refused like the directives themselves.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lb/common/settings.h"
#include "lb/proto/status.h"

namespace lb::agent {

// A directive that makes haproxy run a program or load code (see CodeDirectiveKeywords()).
struct CodeDirective {
  int line = 0;           // 1-based line number in the config
  std::string directive;  // what was found, e.g. "lua-load", "option external-check"

  bool operator==(const CodeDirective& other) const {
    return line == other.line && directive == other.directive;
  }
};

struct ConfigFacts {
  // Backend (and listen) section name -> number of `server` / `server-template` lines.
  std::map<std::string, int> backend_servers;
  std::string server_state_file;           // `server-state-file` in global, resolved against
  std::string server_state_base;           // `server-state-base`
  bool loads_server_state = false;         // `load-server-state-from-file` anywhere
  bool idle_close_on_response = false;     // `option idle-close-on-response` anywhere
  bool hard_stop_after = false;            // `hard-stop-after` in global
  std::vector<std::string> stats_sockets;  // paths or addresses of `stats socket` lines
  std::vector<std::string> privileged;     // `chroot`, `user`, `group`, `uid`, `gid` in global
  bool pidfile = false;                    // `pidfile` in global
  // Every line that runs a program or loads code, in file order (any section, whatever `.if`
  // blocks around it say: the agent does not evaluate conditions).
  std::vector<CodeDirective> code_directives;
};

ConfigFacts ReadConfigFacts(std::string_view config);

// The server-state file a reload should write before reloading ("" when none), following
// haproxy's rule: a relative server-state-file is relative to server-state-base.
std::string ServerStateFilePath(const ConfigFacts& facts);
// The same as an absolute path: relative to `config_dir`, where haproxy runs ("" when none).
std::string ResolvedServerStateFile(const ConfigFacts& facts, const std::string& config_dir);

// One word of a config line as haproxy reads it, after unquoting and unescaping.
struct ConfigWord {
  std::string text;       // "$NAME" / "${NAME}" expansions are kept literally
  bool from_env = false;  // contains an environment variable expansion (in double quotes)
};

// Splits one line (without its '\n') into words like haproxy 2.6's parse_line(). An empty
// quoted word ("") is a word. What haproxy refuses outright (an unterminated quote, a bad \x
// escape, a malformed variable name) is read as far as it goes: the config fails `haproxy -c`
// anyway.
std::vector<ConfigWord> SplitConfigLine(std::string_view line);

// True when `keyword` opens a section in haproxy 2.6 ("global", "backend", "listen", ...).
bool IsSectionKeyword(std::string_view keyword);

struct LintResult {
  proto::Status status;  // invalid_config when the agent refuses the config
  std::vector<std::string> warnings;
};

struct LintOptions {
  std::string default_backend;
  common::ReloadMethod method = common::ReloadMethod::kManaged;
  bool stats_via_master = true;
  std::string socket_path;  // the stats socket the agent reads in systemd/sysv modes
  bool running_as_root = false;
  bool force = false;  // accept a config whose default_backend is missing or empty
  // [security] allow_programs: accept directives that run programs or load code (with a
  // warning naming them). `force` never does.
  bool allow_programs = false;
};

// invalid_config when the config holds directives that run programs or load code and
// `allow_programs` is false; a warning naming them when it is true. The part of LintConfig that
// must run before `haproxy -c` ever sees the file (which would load the code).
LintResult CheckCodeDirectives(const ConfigFacts& facts, bool allow_programs);

// invalid_config when the agent refuses the config (code directives first, then the default
// backend, then managed-mode privileges), with the warnings of an accepted one.
LintResult LintConfig(const ConfigFacts& facts, const LintOptions& options);

// The warning lb-agent logs at every start when it runs with effective uid 0, saying
// why that is a risk and where the non-root set-up is described; "" for any other uid.
std::string RunningAsRootWarning(uid_t euid);

}  // namespace lb::agent
