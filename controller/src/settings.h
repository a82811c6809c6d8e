// ControllerSettings: lb-controller.cfg, loaded once at start-up into a const struct, in the INI
// format of lb-agent.cfg (common/ini_schema.h). Every key, its default and its trade-off is
// documented in etc/lb-controller.cfg; the comments here say what the code relies on.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "lb/common/log.h"
#include "lb/proto/status.h"

namespace lb::controller {

struct ControllerSettings {
  std::string path;  // the file it was read from
  // [controller]
  std::string id;  // in every push and beacon; default: the host name
  std::string pub_endpoint = "tcp://127.0.0.1:5557";     // pushes and beacons
  std::string router_endpoint = "tcp://127.0.0.1:5558";  // agents' hellos and acks
  std::string control_endpoint = "ipc:///run/lb-controller/control.sock";  // lbctl fleet
  std::string state_dir = "/var/lib/lb-controller";
  std::chrono::milliseconds beacon_interval{1000};
  // Lines below it are not logged. SIGHUP applies a new value without a restart.
  common::LogLevel log_level = common::LogLevel::kInfo;
  // [security] (SECURITY.md). Paths relative to the settings file's directory.
  // The controller's CURVE certificate (secret part) and the agents' public keys (a file or a
  // directory): both set, PUB and ROUTER are CURVE servers; both empty, plaintext.
  std::string curve_secret_key;
  std::string curve_clients;
  // Agent ids pinned to keys: "<agent id> <public key>" per line. An id not listed is pinned
  // to the key of its first message. Needs CURVE.
  std::string agent_keys;
  // Without CURVE, bind PUB and ROUTER to non-local endpoints anyway (with a warning).
  bool allow_insecure = false;

  // [store] (ARCHITECTURE.md, "A highly available controller"). Empty etcd_endpoints: the
  // state is in state_dir and this is the only controller. Set: the state is in etcd under
  // etcd_prefix, and this controller leads only after winning the election on a lease of
  // lease_ttl_s seconds (it stands by until then).
  std::vector<std::string> etcd_endpoints;  // "http://host:2379" or "https://host:2379"
  // https:// endpoints: the CA that signed the members' certificates (empty: the system's) and
  // this controller's client certificate and key (etcd's --client-cert-auth; both or neither).
  std::string etcd_ca_file;
  std::string etcd_cert_file;
  std::string etcd_key_file;
  std::string etcd_prefix = "/lb-controller/";
  int64_t lease_ttl_s = 3;
  std::chrono::milliseconds etcd_timeout{1000};  // the deadline of one call on one member

  bool curve() const { return !curve_secret_key.empty(); }
  bool ha() const { return !etcd_endpoints.empty(); }

  // "[section] key" -> value as the file sets it: what a re-read (SIGHUP) compares.
  std::map<std::string, std::string> file_values;
};

// Reads and validates `path`. Errors are one line: "<path>:<line>: [<section>] <key>: <problem>".
proto::Result<ControllerSettings> LoadControllerSettings(const std::string& path);
// Same, from text (for tests); `origin` names it in errors, `base_dir` resolves relative paths.
proto::Result<ControllerSettings> ParseControllerSettings(std::string_view text,
                                                          const std::string& origin,
                                                          const std::string& base_dir);

// The agent_keys file: agent id -> Z85 public key. '#' starts a comment line. kBadRequest
// "<path>:<line>: ..." for a line that is not "<valid agent id> <CURVE public key>" or an id
// listed twice; kInternal when it cannot be read.
proto::Result<std::map<std::string, std::string>> ReadAgentKeys(const std::string& path);
proto::Result<std::map<std::string, std::string>> ParseAgentKeys(std::string_view text,
                                                                 const std::string& origin);

// The controller's id when none is set: the host name.
std::string DefaultControllerId();

}  // namespace lb::controller
