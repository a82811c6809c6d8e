// lbctl's whole behaviour behind main(): parse the command line, call the agent (or watch its
// events), print, and choose the exit code (command_line.h: kExitOk ... kExitUnreachable).
//
// DESIGN: stdout carries only the answer (a table, a summary, the config text, JSON, event
// lines), so that it can be piped; everything addressed to the person (usage errors, the
// agent's refusal, timeouts, lost events) goes to stderr prefixed "lbctl: ". Every exception of
// the libraries is caught below this function: it never throws.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "command_line.h"

namespace lb::cli {

// Runs `lbctl <args...>` (args without the program name). `in` is read for FILE "-".
// `stop_requested` is polled by `watch` (at least every 250 ms, and whenever a signal
// interrupts its wait): true ends the watch with kExitOk; and by `fleet push`, which stops
// its rollout then.
int Run(const std::vector<std::string>& args, const Environment& env, std::istream& in,
        std::ostream& out, std::ostream& err, const std::function<bool()>& stop_requested);

}  // namespace lb::cli
