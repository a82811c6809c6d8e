// ServerState: what haproxy runs (`show servers state`), what may be carried across a reload, and
// whether the running servers are the declared ones.
//
// DESIGN: haproxy 2.6 applies a server-state file over the new config when it loads it: the
// address and port of every listed server, its weights and its admin flags. A state file written
// blindly before a reload therefore keeps a moved server on its old address. CarryServerState
// decides, server by server, what the new worker may inherit:
//   - health (op state, check results) of every server that keeps its name and address;
//   - nothing for a server whose address or port changes, or whose maintenance changes: it is
//     left out and starts from the new config;
//   - the config owns `weight` and `disabled`: the file is written with the new config's weight,
//     and with the config-maintenance flag as the new config says;
//   - what an operator set by hand through the runtime API on a server the config does not
//     change is kept: forced maintenance (MAINT), DRAIN, and a weight that differs from the
//     config's while the config's weight for that server stays the same. `keep_operator_state`
//     false (recovery after a crash, when such hand changes cannot be told apart from a
//     half-finished runtime apply) gives the config everything.
// The same decisions say what each server must look like afterwards (ServerExpectation), which
// VerifyServers checks against `show servers state` and `show stat`.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "haproxy_parsers.h"
#include "lb/proto/status.h"
#include "server_config.h"

namespace lb::agent {

// srv_admin_state bits (haproxy's SRV_ADMF_*).
constexpr int kAdminForcedMaint = 0x01;  // `set server state maint`, or `disabled` in the config
constexpr int kAdminConfigMaint = 0x04;  // `disabled` in the config
constexpr int kAdminForcedDrain = 0x08;  // `set server state drain`

struct RunningServer {
  std::string backend;
  std::string name;
  std::string addr;  // srv_addr
  int port = 0;      // srv_port
  std::string fqdn;  // srv_fqdn, "" for "-"
  int id = 0;        // srv_id
  int op_state = 0;
  int admin_state = 0;
  int uweight = 0;  // the weight in effect (set by the config or `set server weight`)
  int iweight = 0;  // the config's weight when this worker started
  bool maint() const { return (admin_state & kAdminForcedMaint) != 0; }
  // The whole line as haproxy printed it, split on spaces (for rewriting the state file).
  std::vector<std::string> fields;
};

struct ServersState {
  std::string version;  // first line, "1"
  std::string header;   // "# be_id be_name ..."
  std::map<std::string, std::size_t> columns;
  std::vector<RunningServer> servers;
  const RunningServer* Find(std::string_view backend, std::string_view server) const;
  std::unordered_map<std::string, std::size_t> index;  // "backend/server" -> position
};

// Parses `show servers state` (format version 1). haproxy_unavailable when the answer is not one,
// or was cut short (a complete answer ends with haproxy's blank line).
proto::Result<ServersState> ParseServersState(std::string_view text);

// What a server must look like once the apply is over.
struct ServerExpectation {
  int weight = 1;  // -1: not compared (an agent check sets the weight in effect)
  bool maint = false;
  std::string why_weight;  // "" (the config's) or why another weight is right
  std::string why_maint;   // likewise
};

struct StateCarry {
  std::string file_text;  // the server-state file to write before the reload
  // "backend/server" -> expectation, for every server of the new config.
  std::map<std::string, ServerExpectation> expect;
  // Servers of the new config left out of the file, with the reason ("be/node1: address
  // 127.0.0.1:8081 becomes ..."); servers gone from the config are left out without a word.
  std::vector<std::string> left_out;
};

StateCarry CarryServerState(const ServersState& running, const DeclaredServers& live,
                            const DeclaredServers& next, bool keep_operator_state);

// Every difference between the running servers and the declared ones, as one line each that
// names the backend, the server and the field ("backend app, server web1: port is 8081, the
// config says 8091"). Empty when they match. `stats` supplies `backup` (from show stat's bck);
// `expect` overrides the declared weight and maintenance where carried state was kept. Servers
// of backends the config does not declare are differences too; in a backend where ids decide
// (DeclaredBackend::IdsMatter), so is a server whose id is not its position.
std::vector<std::string> VerifyServers(const DeclaredServers& declared,
                                       const std::map<std::string, ServerExpectation>& expect,
                                       const ServersState& running,
                                       const std::vector<StatRow>& stats);

}  // namespace lb::agent
