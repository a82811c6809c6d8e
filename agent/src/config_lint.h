// ConfigLint: what the agent checks in an HAProxy config on top of `haproxy -c`.
//
// Pure functions over the config text (no files, no processes), so the decisions are unit
// tested without haproxy. HAProxy's own parser remains the authority on validity; this only
// reads what the agent needs: sections and servers, and the directives that decide whether a
// reload is seamless or whether managed mode can run the config at all.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lb/common/settings.h"
#include "lb/proto/status.h"

namespace lb::agent {

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
};

ConfigFacts ReadConfigFacts(std::string_view config);

// The server-state file a reload should write before reloading ("" when none), following
// haproxy's rule: a relative server-state-file is relative to server-state-base.
std::string ServerStateFilePath(const ConfigFacts& facts);

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
};

LintResult LintConfig(const ConfigFacts& facts, const LintOptions& options);

}  // namespace lb::agent
