// Settings: lb-agent.cfg loaded once at start-up into a const struct, shared by lb-agent and
// lb-bridge (one file per load balancer, as with the 2015 agent). Every key, its default and its
// trade-off is documented in etc/lb-agent.cfg; the comments here say what the code relies on.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "lb/common/log.h"
#include "lb/proto/status.h"

namespace lb::common {

enum class ReloadMethod {
  kManaged,  // the agent runs haproxy in master-worker mode itself and supervises it
  kMaster,   // an haproxy started elsewhere in master-worker mode; reload via its master socket
  kSystemd,  // systemctl reload <systemd_service_name>
  kSysv,     // <systemv_init_path> reload
};

std::string_view ReloadMethodName(ReloadMethod method);

struct BridgeSettings {
  std::string host = "0.0.0.0";  // [lb-agent] host
  int port = 6666;               // [lb-agent] port
  // How long the bridge waits for the agent's answer before it answers 504. Reloads take a
  // validation plus a reload (~0.1-1 s), so the default leaves a wide margin.
  std::chrono::milliseconds agent_timeout{30000};
  // /getBackends keeps only servers whose name starts with this (the 2015 agent hard-coded "i-").
  std::string instance_prefix;
  // Largest HTTP body: always [lb-agent] max_config_bytes.
  std::size_t max_body_bytes = 16 * 1024 * 1024;
};

struct AgentSettings {
  std::string command_endpoint = "tcp://127.0.0.1:5555";
  std::size_t max_config_bytes = 16 * 1024 * 1024;
  // Connections open at once on the command socket, and on the event socket (each): a
  // handshake beyond it is refused, so that local clients cannot use up the descriptors a
  // reload needs. Lowered at start when the descriptor limit leaves too little room.
  int max_connections = 1000;
  std::string history_dir = "/var/lib/lb-agent/history";
  int history_keep = 10;
  // Worker threads for status/info/validate/get_config; reloads have their own thread.
  int query_threads = 2;
  // Events (see proto/PROTOCOL.md, "Events"): the PUB socket, this agent's id in every event
  // (empty: the hostname), how often `show stat` is polled for changes, how often a heartbeat
  // goes out, and how many events a slow subscriber may have queued before it loses some.
  std::string event_endpoint = "tcp://127.0.0.1:5556";
  std::string agent_id;
  std::chrono::milliseconds poll_interval{250};
  std::chrono::milliseconds heartbeat_interval{5000};
  int event_hwm = 10000;
  // Optional log listener: a unix datagram socket path, or udp@host:port, that the HAProxy
  // config's `log` line points at. Server state changes then become events the moment a health
  // check decides them instead of at the next poll. Empty: off.
  std::string log_listener;
};

struct HaproxySettings {
  std::string config_file_path = "/etc/haproxy/haproxy.cfg";
  std::string default_backend = "scaling_nodes";
  // Stats socket: a unix socket path or host:port. Read in systemd/sysv modes; in managed and
  // master modes the master socket is used instead (see stats_via_master).
  std::string socket_path = "/var/lib/haproxy/stats";
  std::size_t socket_buffer_size = 4096;
  std::chrono::milliseconds socket_timeout{5000};
  std::string systemv_init_path;
  std::string systemd_service_name;
  std::string systemctl_path = "/bin/systemctl";
  ReloadMethod reload_method = ReloadMethod::kManaged;
  std::string haproxy_binary = "/usr/sbin/haproxy";
  std::string master_socket = "/run/lb-agent/haproxy-master.sock";
  std::string pid_file = "/run/lb-agent/haproxy.pid";
  std::chrono::milliseconds validate_timeout{15000};
  std::chrono::milliseconds reload_timeout{15000};
  bool stats_via_master = true;
  // Managed mode: stop haproxy when the agent exits cleanly (SIGTERM/SIGINT). Off by default:
  // an agent restart (an upgrade, a settings change) must not interrupt traffic; the next agent
  // adopts the running master. An agent that crashes never takes haproxy down either way.
  bool stop_haproxy_on_exit = false;
  bool save_server_state = true;
  // A config that changes only server lines (add, remove, address, weight, disabled) is applied
  // through haproxy's runtime API with no reload, when the result is provably what a reload of
  // the file would give (agent/src/runtime_plan.h); no: every change is a reload.
  bool runtime_updates = true;
  // A server removed at runtime is put in maintenance, then deleted once its last connection
  // ends; still busy after this long, the change is applied by a reload instead (whose old
  // worker lets those connections finish).
  std::chrono::milliseconds runtime_drain_timeout{2000};
};

// [fleet]: a controller that pushes configs to many agents (proto/PROTOCOL.md, "Fleet"). Off
// while controller_pub is empty. The agent's id is [lb-agent] agent_id. Agent ids and group names
// are 1 to 255 bytes without '/' or control characters (proto::IsValidFleetName).
struct FleetSettings {
  std::string controller_pub;     // the controller's PUB endpoint (pushes, beacons)
  std::string controller_router;  // the controller's ROUTER endpoint (hello, ack)
  std::vector<std::string> groups;
  // Where the last processed push version is kept across restarts.
  std::string state_file = "/var/lib/lb-agent/fleet-state.json";
  // Silence on the PUB socket (no beacon) for this long means a dead connection.
  std::chrono::milliseconds beacon_timeout{3000};
  // How often the agent says hello while nothing else goes to the controller: its liveness
  // signal. The controller counts an agent silent for three intervals as lost (`lbctl fleet
  // agents`), and a push does not wait for it. Each hello costs the controller one small answer.
  std::chrono::milliseconds hello_interval{5000};
  // The controller's public CURVE certificate (zcert text file): the agent talks to that
  // controller only, encrypted. Empty: plaintext, allowed only on loopback/ipc:// endpoints or
  // with [security] allow_insecure.
  std::string controller_public_key;
  bool enabled() const { return !controller_pub.empty(); }
};

// [security] (SECURITY.md). Every file is a path, relative to the settings file's directory.
struct SecuritySettings {
  // The agent's CURVE certificate, secret part (zcert format, `lbctl keygen` writes it). Set:
  // the command and event sockets are CURVE servers that accept only the public keys in
  // curve_clients, and the agent uses this key pair towards a fleet controller too. Empty: off.
  std::string curve_secret_key;
  // Allow-list of client public keys: a file (one Z85 key per line, or zcert public
  // certificates' `public-key = "..."` lines) or a directory of zcert public certificates.
  // Re-read when it changes; no restart needed to add or revoke a client.
  std::string curve_clients;
  // Without CURVE the agent refuses to bind its command or event socket to anything but
  // loopback or ipc://, and to follow a fleet controller on a non-loopback endpoint without
  // controller_public_key. yes: do it anyway (with a warning at every start).
  bool allow_insecure = false;
  // HAProxy directives that run programs or load code (external-check, lua-load, program
  // sections, insecure-fork-wanted, ...) are refused in pushed configs unless this is yes.
  bool allow_programs = false;
  // Directories a pushed config may name files and sockets in (state file, stats socket, maps,
  // ACL files, certificates, errorfiles, SPOE files, chroot, log sockets): every such path must
  // resolve, after `..` and symlinks, inside one of these or the config's own directory; else
  // the config is refused before `haproxy -c` reads it. /dev/log is always a valid log target.
  std::vector<std::string> allowed_paths = {"/etc/haproxy", "/etc/ssl", "/usr/share/haproxy",
                                            "/run/haproxy", "/var/lib/haproxy",
                                            // Debian's (and the 2015 README template's) pidfile
                                            "/run/haproxy.pid"};
  // haproxy's environment (haproxy -c and managed haproxy), from which a config's "${NAME}" is
  // expanded: PATH, plus each NAME listed here taken from the agent's environment, or set with
  // NAME=VALUE. Nothing else of the agent's environment reaches a config.
  std::vector<std::string> config_environment;

  // lb-bridge: its own CURVE certificate (secret part) towards the agent, and the agent's
  // public certificate. agent_public_key defaults to curve_secret_key without "_secret"
  // (the name `lbctl keygen` gives the public half).
  std::string bridge_curve_secret_key;
  std::string agent_public_key;
  // lb-bridge: a file of bearer tokens (one per line, '#' comments). Set: every request but
  // GET /healthz needs "Authorization: Bearer <token>". Empty: no tokens; a reload then needs a
  // non-simple header (X-Requested-With or a JSON Content-Type) so a browser cannot be made to
  // send one cross-site.
  std::string bridge_tokens_file;
  // lb-bridge: HTTPS with this certificate chain and key (PEM). Both or neither.
  std::string bridge_tls_cert;
  std::string bridge_tls_key;

  bool curve() const { return !curve_secret_key.empty(); }
};

struct Settings {
  std::string path;  // the file it was read from
  // [lb-agent] log_level: lines below it are not logged (lb-agent and lb-bridge). SIGHUP
  // applies a new value without a restart.
  LogLevel log_level = LogLevel::kInfo;
  // "[section] key" -> value as the file sets it, so that a re-read (SIGHUP) can say which
  // changed keys only a restart applies.
  std::map<std::string, std::string> file_values;
  BridgeSettings bridge;
  AgentSettings agent;
  HaproxySettings haproxy;
  FleetSettings fleet;
  SecuritySettings security;
};

// Reads and validates `path`. Errors are one line: "<path>:<line>: [<section>] <key>: <problem>".
// Relative paths inside the file are resolved against the file's directory.
proto::Result<Settings> LoadSettings(const std::string& path);
// What lb-bridge reads from `settings` and would refuse to start with, checked without
// reading any secret (for `lb-agent --check`, which may run as another user): the tokens file
// exists, is a regular file and is not readable by others; the bridge's CURVE key and TLS files
// exist. One line per problem, naming the key; empty when all is well.
std::vector<std::string> CheckBridgeFiles(const Settings& settings);

// Same, from text (for tests); `origin` names it in errors, `base_dir` resolves relative paths.
proto::Result<Settings> ParseSettings(std::string_view text, const std::string& origin,
                                      const std::string& base_dir);

}  // namespace lb::common
