// Fuzz target: the agent's own reading of a reload's HAProxy config (agent/src/config_lint.h):
// ReadConfigFacts, SplitConfigLine, LintConfig and ServerStateFilePath. Every reload and
// validate body goes through them before haproxy sees it.
//
// Property checked, from the header's contract that quoting cannot hide a keyword: a line whose
// first word, as SplitConfigLine reads it, is `lua-load` is always among the code directives,
// and LintConfig refuses the config unless allow_programs is set.
//
// Then the servers the input declares (ReadDeclaredServers, ConfigSkeleton) and the runtime plan
// from a fixed live config to the input (PlanRuntime): every command of a runtime plan must reach
// haproxy as exactly one CLI command (no ';', backslash, line break or empty word), and only a
// config whose skeleton equals the live one may be planned at runtime.
//
// Then the path policy (config_paths.h): every path the input names is read, resolved to an
// absolute path (or left empty when built from an environment variable); when the policy
// accepts the config, every path it judged lies under the allowed directory; and haproxy's
// message about any line of it, reduced, never quotes a line of another file.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "config_lint.h"
#include "config_paths.h"
#include "runtime_plan.h"
#include "server_config.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view config(reinterpret_cast<const char*>(data), size);
  lb::agent::ConfigFacts facts = lb::agent::ReadConfigFacts(config);
  (void)lb::agent::ServerStateFilePath(facts);

  int line_no = 0;
  bool lua_load = false;
  for (size_t pos = 0; pos <= config.size();) {
    size_t nl = config.find('\n', pos);
    if (nl == std::string_view::npos) nl = config.size();
    ++line_no;
    auto words = lb::agent::SplitConfigLine(config.substr(pos, nl - pos));
    pos = nl + 1;
    if (words.empty() || words[0].text != "lua-load") continue;
    lua_load = true;
    bool listed = false;
    for (const auto& d : facts.code_directives) listed |= d.line == line_no;
    Check(listed);
  }

  lb::agent::LintOptions options;
  options.default_backend = "scaling_nodes";
  lb::agent::LintResult refused = lb::agent::LintConfig(facts, options);
  if (lua_load) Check(!refused.status.ok());
  options.allow_programs = true;
  options.force = true;
  options.method = lb::common::ReloadMethod::kSystemd;
  options.socket_path = "/run/haproxy/admin.sock";
  (void)lb::agent::LintConfig(facts, options);

  const std::vector<lb::agent::ConfigPath> paths =
      lb::agent::ReadConfigPaths(config, "/etc/haproxy");
  for (const auto& p : paths) Check(p.resolved.empty() || p.resolved[0] == '/');
  if (lb::agent::CheckConfigPaths(paths, {"/etc/haproxy"}).ok()) {
    for (const auto& p : paths) {
      if (p.use == lb::agent::ConfigPath::Use::kMention) continue;
      if (p.use == lb::agent::ConfigPath::Use::kLog && p.resolved == "/dev/log") continue;
      Check(p.resolved == "/etc/haproxy" || p.resolved.rfind("/etc/haproxy/", 0) == 0);
    }
  }
  // As haproxy -c would print it about a line of another file: reduced to a location.
  const std::string quoted = "[ALERT]    (1) : parsing [/etc/shadow:1] : " +
                             std::string(config.substr(0, std::min<size_t>(config.size(), 200)));
  Check(lb::agent::ReduceMessage(quoted, "haproxy.cfg", paths).find("parsing [/etc/shadow:1] :") ==
        std::string::npos);

  static const std::string kLive =
      "global\n    maxconn 100\ndefaults\n    mode http\nfrontend main\n    bind :80\n"
      "    default_backend app\nbackend app\n    balance roundrobin\n"
      "    server a 10.0.0.1:80 check\n    server b 10.0.0.2:80 weight 2\n";
  (void)lb::agent::ReadDeclaredServers(config);
  lb::agent::RuntimePlan plan = lb::agent::PlanRuntime(kLive, config);
  if (plan.runtime) {
    Check(lb::agent::ConfigSkeleton(kLive) == lb::agent::ConfigSkeleton(config));
    for (const auto& c : plan.commands) {
      Check(c.find_first_of(";\\\n\r") == std::string::npos);
      Check(c.find("  ") == std::string::npos && !c.empty() && c.back() != ' ');
    }
  }
  return 0;
}
