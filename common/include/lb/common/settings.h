// Settings: lb-agent.cfg loaded once at start-up into a const struct, shared by lb-agent and
// lb-bridge (one file per load balancer, as with the 2015 agent). Every key, its default and its
// trade-off is documented in etc/lb-agent.cfg; the comments here say what the code relies on.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

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
  // Managed mode: stop haproxy when the agent exits cleanly (SIGTERM/SIGINT). An agent that
  // crashes never takes haproxy down; the next agent adopts the running master.
  bool stop_haproxy_on_exit = true;
  bool save_server_state = true;
};

// [fleet]: a controller that pushes configs to many agents (proto/PROTOCOL.md, "Fleet"). Off
// while controller_pub is empty. The agent's id is [lb-agent] agent_id.
struct FleetSettings {
  std::string controller_pub;     // the controller's PUB endpoint (pushes, beacons)
  std::string controller_router;  // the controller's ROUTER endpoint (hello, ack)
  std::vector<std::string> groups;
  // Where the last processed push version is kept across restarts.
  std::string state_file = "/var/lib/lb-agent/fleet-state.json";
  // Silence on the PUB socket (no beacon) for this long means a dead connection.
  std::chrono::milliseconds beacon_timeout{3000};
  bool enabled() const { return !controller_pub.empty(); }
};

struct Settings {
  std::string path;  // the file it was read from
  BridgeSettings bridge;
  AgentSettings agent;
  HaproxySettings haproxy;
  FleetSettings fleet;
};

// Reads and validates `path`. Errors are one line: "<path>:<line>: [<section>] <key>: <problem>".
// Relative paths inside the file are resolved against the file's directory.
proto::Result<Settings> LoadSettings(const std::string& path);
// Same, from text (for tests); `origin` names it in errors, `base_dir` resolves relative paths.
proto::Result<Settings> ParseSettings(std::string_view text, const std::string& origin,
                                      const std::string& base_dir);

}  // namespace lb::common
