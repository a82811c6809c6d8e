// Fuzz target: the agent's own reading of a reload's HAProxy config (agent/src/config_lint.h):
// ReadConfigFacts, SplitConfigLine, LintConfig and ServerStateFilePath. Every reload and
// validate body goes through them before haproxy sees it.
//
// Property checked, from the header's contract that quoting cannot hide a keyword: a line whose
// first word, as SplitConfigLine reads it, is `lua-load` is always among the code directives,
// and LintConfig refuses the config unless allow_programs is set.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config_lint.h"

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
  return 0;
}
