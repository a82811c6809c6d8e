// Fuzz target: haproxy's `show servers state` (ParseServersState) and what the agent decides from
// it before and after every apply (agent/src/server_state.h): CarryServerState, which writes the
// server-state file a new worker loads, and VerifyServers.
//
// Properties checked: the carried file holds only lines of servers the new config declares, each
// with as many fields as the header has columns (a line haproxy would misread never reaches the
// file), and a server whose IP address or port differs from the new config is never carried.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "server_config.h"
#include "server_state.h"

namespace {

// Aborts with the property that failed.
#define Check(condition)                                                             \
  do {                                                                               \
    if (!(condition)) {                                                              \
      std::fprintf(stderr, "property failed: %s (line %d)\n", #condition, __LINE__); \
      std::abort();                                                                  \
    }                                                                                \
  } while (false)

// The servers of the seeds (fuzz/make_seeds.py), some moved, one gone, one new.
constexpr char kLive[] =
    "backend scaling_nodes\n"
    "    server i-node1 127.0.0.1:1 check\n"
    "    server i-node2 127.0.0.1:2 check weight 50\n"
    "    server i-backup 127.0.0.1:3 backup\n"
    "    server maint 127.0.0.1:4 disabled\n"
    "backend api\n"
    "    server api1 [::1]:5 check\n"
    "    server api2 127.0.0.1:6\n";
constexpr char kNext[] =
    "backend scaling_nodes\n"
    "    balance first\n"
    "    server i-node1 127.0.0.1:1 check weight 4\n"
    "    server i-node2 127.0.0.1:9 check weight 50\n"
    "    server maint 127.0.0.1:4\n"
    "    server new 127.0.0.1:10\n"
    "backend api\n"
    "    server api1 [::1]:5 check disabled\n"
    "    server api2 app.example.com:6 agent-check agent-port 7\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lb::agent::DeclaredServers live = lb::agent::ReadDeclaredServers(kLive);
  static const lb::agent::DeclaredServers next = lb::agent::ReadDeclaredServers(kNext);
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto state = lb::agent::ParseServersState(text);
  if (!state.ok()) return 0;
  for (bool keep : {true, false}) {
    lb::agent::StateCarry carry = lb::agent::CarryServerState(*state, live, next, keep);
    std::istringstream lines(carry.file_text);
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
      if (++n <= 2) continue;  // version and header
      std::istringstream words(line);
      std::vector<std::string> w;
      for (std::string x; words >> x;) w.push_back(x);
      Check(w.size() >= state->columns.size());
      const std::string& backend = w[state->columns.at("be_name")];
      const std::string& server = w[state->columns.at("srv_name")];
      const lb::agent::DeclaredBackend* b = next.Find(backend);
      Check(b != nullptr);
      const lb::agent::DeclaredServer* s = b->Find(server);
      Check(s != nullptr);
      if (s->literal()) {
        Check(w[state->columns.at("srv_addr")] == s->ip);
        Check(w[state->columns.at("srv_port")] == std::to_string(s->port));
      }
    }
    (void)lb::agent::VerifyServers(next, carry.expect, *state, {});
  }
  return 0;
}
