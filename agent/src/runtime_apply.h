// Runs a RuntimePlan on the running haproxy through its CLI (the master socket's `@1`, or the
// stats socket in systemd/sysv modes).
//
// DESIGN: commands go in batches on one connection each (a few KB per batch: one round trip for
// a hundred servers instead of three hundred). haproxy 2.6 does not frame the answers of a batch
// reliably, so an answer is read as a set of lines: every line that is not one of the known
// success messages is a refusal, reported verbatim. The caller then reads the effect back
// (VerifyServers): the answers decide only whether to go on. Removals are sent as one batch of
// `del server` and read back (`show servers state`); haproxy refuses a server that still has
// connections, which is retried until `drain_timeout`.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "haproxy_control.h"
#include "lb/proto/status.h"
#include "runtime_plan.h"

namespace lb::agent {

// OK when every command was accepted and every removed server deleted. Otherwise a status whose
// message says what haproxy refused, or which server still had connections at the deadline.
// `sent` receives every command sent, in order (each `del server` once, however often retried).
proto::Status RunRuntimePlan(HaproxyControl& control, const RuntimePlan& plan,
                             std::chrono::milliseconds drain_timeout,
                             std::vector<std::string>* sent);

// The lines of a runtime command's answer that are not success messages (empty: accepted).
std::vector<std::string> RuntimeRefusals(std::string_view answer);

}  // namespace lb::agent
