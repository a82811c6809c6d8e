// RuntimePlan: whether a new config can be applied to the running haproxy through its runtime
// API, with no reload, and the commands that do it.
//
// Pure. A change qualifies only when the running result is exactly what a reload of the new file
// would give, which this agent can prove in these cases and no others:
//   - the two configs differ in `server` lines of backend/listen sections only (ConfigSkeleton);
//   - a changed server differs in its IP-literal address/port (`set server addr ... port`), its
//     weight (`set server weight`) or `disabled` (`set server state maint|ready`), nothing else;
//   - an added server has an IP-literal address with a port, only keywords of kAddServerKeywords
//     (a subset of what 2.6's `add server` takes, each one's effect identical to a config line's),
//     no `track`, and its backend has no `default-server` (a runtime server does not inherit one);
//   - a removed server is named by no `use-server` or `track`;
//   - the backend's algorithm is dynamic (not static-rr, not a map-based hash), and where server
//     ids decide (`balance first`, a consistent hash, stick tables: DeclaredBackend::IdsMatter)
//     the order is kept and servers are added or removed at the end only, so that every id is
//     the one a reload would give (a reload numbers by position, `add server` takes the lowest
//     free id, `del server` leaves the others').
// Anything else is a reload, with the reason. A config identical but for comments, spacing or
// (where ids do not decide) the order of server lines is a plan with no command.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "server_config.h"

namespace lb::agent {

struct RuntimeRemoval {
  std::string backend;
  std::string server;
};

struct RuntimePlan {
  bool runtime = false;  // false: reload, for `reason`
  std::string reason;
  // Commands for the current worker, in order: additions (add server, enable health/agent,
  // enable server), changes, and maintenance for the servers to remove.
  std::vector<std::string> commands;
  // Servers to `del server` once they have no connection left (after `commands`).
  std::vector<RuntimeRemoval> removals;
  // Backends whose servers change.
  std::vector<std::string> backends;
};

RuntimePlan PlanRuntime(std::string_view live_config, std::string_view new_config);
// The same with the configs' servers already read (ReadDeclaredServers of each text).
RuntimePlan PlanRuntime(std::string_view live_config, std::string_view new_config,
                        const DeclaredServers& live, const DeclaredServers& next);

}  // namespace lb::agent
