// `lbctl fleet push | agents`, clients of lb-controller's control socket: what each does with
// the parsed Options, down to the exit code. Like Run() (lbctl.h), they print the answer on `out`,
// everything addressed to the person on `err`, and never throw.
//
// DESIGN of `fleet push`: the rollout is driven from here, through the controller's control
// socket (proto/PROTOCOL.md, "Controller control socket"); the controller only records,
// publishes and collects acks. Without --canary/--batch it is one push to the target, waited
// for until every known matching agent answered (with --expect N: until N agents did). With
// them, the agents the controller knows that match the target (with --expect N: once it knows
// N) are cut into waves (PlanWaves); each agent of a wave gets its own agent-targeted push (a new
// version each), and the next wave starts once every agent of this one answered. After the last
// wave, a push to the whole target is recorded too, with a newer version, so that agents that join
// later (or were unknown) converge on the same config. A rollout that stops early (a failed canary,
// --stop-on-failure, --timeout, Ctrl-C) records no target-level push: the agents it did not
// reach keep their desired state, hence their config. Acks are polled every 100 ms.
// An HA fleet: --control lists every controller; the one that answers `ping` (only the leader
// binds its control socket) is used for the whole command. A leader that dies in the middle of
// a rollout ends it as unreachable (exit 3): run it again, it finds the new leader.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>

#include "command_line.h"

namespace lb::cli {

// Rolls `config` out to options.fleet.target. Exit codes: 0, kExitRefused (the controller
// refused a request), kExitUnreachable, kExitPartialFailure, kExitRolloutTimeout (also when
// interrupted by `stop_requested`).
int RunFleetPush(const Options& options, const Environment& env, const std::string& config,
                 std::ostream& out, std::ostream& err, const std::function<bool()>& stop_requested);

// Lists the agents the controller knows.
int RunFleetAgents(const Options& options, std::ostream& out, std::ostream& err);

}  // namespace lb::cli
