// Test harness for integration tests: real haproxy, real lb-agent and lb-bridge processes, real
// HTTP backends, real ZeroMQ and HTTP sockets on loopback or ipc:// in a temporary directory.
// Nothing here mocks HAProxy. Ports come from the kernel (bind to port 0), never fixed.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lb/common/curve_socket.h"
#include "lb/proto/codec.h"
#include "temp_dir.h"
#include "test_pki.h"

namespace httplib {
class Client;
class Server;
}  // namespace httplib

namespace lb::testing {

using std::chrono::milliseconds;

// Paths of what the tests run, from compile definitions (tests/integration/CMakeLists.txt).
std::string AgentBinary();
std::string BridgeBinary();
std::string ControllerBinary();
std::string HaproxyBinary();

// Polls `condition` every 10 ms until it is true or `timeout` passes. Returns its last value.
bool WaitFor(const std::function<bool()>& condition, milliseconds timeout);

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

// A TCP port that was free a moment ago (bound to port 0 on 127.0.0.1, then closed).
int FreePort();

// A real HTTP server on 127.0.0.1 (or another loopback address such as 127.0.0.2) that answers
// every GET with its name; GET /slow/<ms> answers after <ms> milliseconds (a long request).
class HttpBackend {
 public:
  explicit HttpBackend(std::string name, std::string host = "127.0.0.1");
  ~HttpBackend();
  int port() const { return port_; }
  const std::string& name() const { return name_; }
  void Stop();
  // Stop()s if needed, then serves again on the same port (SO_REUSEADDR). Returns false when
  // the port could not be bound again (something else took it meanwhile).
  bool Restart();

 private:
  void Route();

  std::string name_;
  std::string host_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// GET http://127.0.0.1:<port><path>; returns the body, or "" on any failure.
std::string HttpGetBody(int port, const std::string& path = "/");

struct Server {
  std::string name;
  int port;
  std::string options = "check inter 100 fall 1 rise 1";
  std::string host = "127.0.0.1";
};

// An haproxy config: one frontend on `frontend_port` to backend `backend` with `servers`.
// `global_extra` / `defaults_extra` are appended to those sections.
std::string HaproxyConfig(int frontend_port, const std::vector<Server>& servers,
                          const std::string& backend = "scaling_nodes",
                          const std::string& global_extra = "",
                          const std::string& defaults_extra = "");

// One command on an haproxy CLI socket (a unix socket path): sent, half-closed (the master
// socket answers only then), read to the end. "" when the socket cannot be reached in 5 s.
std::string HaproxyCli(const std::string& socket_path, const std::string& command);

// One call on the agent's command socket with a fresh REQ socket.
proto::Result<proto::Reply> AgentCall(const std::string& endpoint, const std::string& cmd,
                                      const nlohmann::json& args = nlohmann::json::object(),
                                      milliseconds timeout = milliseconds(20000),
                                      const common::CurveClientKeys* keys = nullptr);
// Sends raw frames (no encoding) and returns the raw reply frame; "" on timeout.
std::string AgentRaw(const std::string& endpoint, const std::string& frame,
                     milliseconds timeout = milliseconds(10000));

// One connection to the agent's ipc:// socket speaking ZMTP 3.0 by hand (NULL mechanism, as a
// DEALER), so that a frame can be announced and left unfinished, or a handshake left hanging,
// which no ZeroMQ socket can do. Every call gives up after 5 s.
class RawZmtp {
 public:
  // Connects; with `handshake`, exchanges greetings and sends READY.
  explicit RawZmtp(const std::string& ipc_endpoint, bool handshake = true);
  ~RawZmtp();
  RawZmtp(const RawZmtp&) = delete;
  RawZmtp& operator=(const RawZmtp&) = delete;
  bool connected() const { return fd_ >= 0; }
  // Announces a last frame of `size` bytes (a long frame: flags 0x02, 8-byte size).
  void AnnounceFrame(uint64_t size);
  // Sends up to `bytes` of payload; returns how many the agent took before it hung up.
  std::size_t SendPayload(std::size_t bytes);
  // True when the agent closed the connection (read returns 0 or a reset) within 5 s.
  bool ClosedByPeer();

 private:
  void Send(const std::string& data);
  bool ReadExactly(std::string* out);
  int fd_ = -1;
};

// A child process with its output in a log file.
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path);
  ~Process();  // SIGKILL if still running
  pid_t pid() const { return pid_; }
  bool Running();
  // SIGTERM, then SIGKILL after `grace`. Returns the exit status as waitpid gave it.
  int Stop(milliseconds grace = milliseconds(10000));
  void Kill();

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// lb-agent in managed mode (by default) in its own temp dir. The test writes haproxy.cfg
// before Start() (or passes it to the constructor).
using Keys = std::map<std::string, std::string>;

class AgentFixture {
 public:
  // `fleet_keys`, when not empty, become lb-agent.cfg's [fleet] section (relative paths such as
  // state_file resolve against the fixture's temp dir).
  explicit AgentFixture(std::map<std::string, std::string> haproxy_keys = {},
                        std::map<std::string, std::string> agent_keys = {},
                        std::map<std::string, std::string> fleet_keys = {});
  ~AgentFixture();

  TempDir& dir() { return dir_; }
  const std::string& endpoint() const { return endpoint_; }
  std::string events_endpoint() const { return "ipc://" + dir_.File("events.sock"); }
  std::string config_path() const { return dir_.File("haproxy.cfg"); }
  std::string settings_path() const { return dir_.File("lb-agent.cfg"); }
  int bridge_port() const { return bridge_port_; }
  std::string AgentLog() const { return ReadFile(dir_.File("agent.log")); }

  // Starts lb-agent and waits until it answers ping (and, when haproxy.cfg exists in managed
  // mode, until haproxy runs a worker).
  void StartAgent();
  // Words put before the agent's argv by later StartAgent() calls, e.g.
  // {"/usr/sbin/ip", "netns", "exec", "ns1"} (which execs, so the pid stays the agent's).
  void SetCommandPrefix(std::vector<std::string> prefix) { command_prefix_ = std::move(prefix); }
  // True while the agent process started by StartAgent() runs.
  bool AgentRunning() { return agent_ != nullptr && agent_->Running(); }
  void StopAgent();
  void KillAgent();  // SIGKILL: haproxy keeps running
  void StartBridge();
  void StopBridge();

  proto::Result<proto::Reply> Call(const std::string& cmd,
                                   const nlohmann::json& args = nlohmann::json::object()) {
    return AgentCall(endpoint_, cmd, args, milliseconds(20000), client_keys());
  }

  // CURVE (SECURITY.md): keys of lb-agent.cfg's [security] section, written by later Start*()
  // calls (relative paths resolve against the fixture's temp dir), and the client keys that
  // Call(), Ok(), ErrorCode() and StartAgent()'s ping use (none: plaintext).
  void SetSecurityKeys(Keys keys) { security_keys_ = std::move(keys); }
  void SetClientKeys(common::CurveClientKeys keys) { client_keys_ = std::move(keys); }
  const common::CurveClientKeys* client_keys() const {
    return client_keys_.own.public_key.empty() ? nullptr : &client_keys_;
  }
  // `result` of a successful call; fails the test (and returns null) otherwise.
  nlohmann::json Ok(const std::string& cmd, const nlohmann::json& args = nlohmann::json::object());
  // The error code of a call that must fail ("ok" when it did not fail).
  std::string ErrorCode(const std::string& cmd,
                        const nlohmann::json& args = nlohmann::json::object());

  // Status of one server of default_backend ("" when absent).
  std::string ServerStatus(const std::string& server);
  // haproxy master's reload counter from `info` (-1 when unknown).
  int HaproxyReloads();
  // The master socket of the haproxy the agent manages, and `@1 <command>` through it.
  std::string master_socket() const { return dir_.File("master.sock"); }
  std::string WorkerCli(const std::string& command) const {
    return HaproxyCli(master_socket(), "@1 " + command);
  }
  pid_t HaproxyWorkerPid();

  // Pids of the processes started by StartAgent() / StartBridge() (-1 before).
  pid_t agent_pid() const { return agent_ ? agent_->pid() : -1; }
  pid_t bridge_pid() const { return bridge_ ? bridge_->pid() : -1; }
  // True while the bridge process started by StartBridge() runs.
  bool BridgeRunning() { return bridge_ != nullptr && bridge_->Running(); }

  // Writes lb-agent.cfg as StartAgent() would (for a test that runs the agent itself).
  void WriteSettings();

 private:
  TempDir dir_;
  std::map<std::string, std::string> haproxy_keys_;
  std::map<std::string, std::string> agent_keys_;
  std::map<std::string, std::string> fleet_keys_;
  Keys security_keys_;
  common::CurveClientKeys client_keys_;
  std::vector<std::string> command_prefix_;
  std::string endpoint_;
  int bridge_port_ = 0;
  std::unique_ptr<Process> agent_;
  std::unique_ptr<Process> bridge_;
};

// Kills the haproxy whose master pid is in `pid_file` (and its workers).
void KillHaproxy(const std::string& pid_file);

// One event from the agent's PUB socket (proto/PROTOCOL.md, "Events").
struct Event {
  std::string topic;
  nlohmann::json body;  // the decoded msgpack map
  std::chrono::steady_clock::time_point received;

  bool heartbeat() const { return topic == "heartbeat"; }
  uint64_t seq() const { return body.value("seq", uint64_t{0}); }
};

// A ZeroMQ SUB socket connected to an agent's event endpoint. It may be created before the
// agent binds (ZeroMQ reconnects). Not thread-safe: it belongs to the thread that created it.
//
// PUB/SUB drops what is published before the subscription reaches the publisher, so a test
// that triggers a change must first wait until the socket is live: subscribe to "heartbeat"
// too (or to "") and call WaitLive().
class EventSubscriber {
 public:
  // `prefixes`: topic prefixes ("" = everything). `rcvhwm` > 0 overrides ZeroMQ's receive
  // high-water mark (default 1000 messages).
  // `keys`: CURVE client keys (null: plaintext).
  explicit EventSubscriber(const std::string& endpoint,
                           const std::vector<std::string>& prefixes = {""}, int rcvhwm = 0,
                           const common::CurveClientKeys* keys = nullptr);
  ~EventSubscriber();

  // The next event, or nullopt when none arrives within `timeout` (or its body is not msgpack:
  // that fails the test).
  std::optional<Event> Next(milliseconds timeout);
  // Receives (and returns) events until `match` accepts one, which is the last element;
  // nullopt at the deadline, with everything received in `*seen` when given.
  std::optional<Event> NextMatching(const std::function<bool(const Event&)>& match,
                                    milliseconds timeout, std::vector<Event>* seen = nullptr);
  // Receives until a heartbeat arrives: the subscription is live. Events before it are
  // appended to `*seen` when given. Needs a "" or "heartbeat" subscription.
  bool WaitLive(milliseconds timeout, std::vector<Event>* seen = nullptr);
  // True when a message is queued for this socket, without receiving it (for subscribers
  // that must never read).
  bool WaitReadable(milliseconds timeout);

 private:
  struct Socket;
  std::unique_ptr<Socket> socket_;
};

// A command run to completion with its stdout and stderr captured apart (for a CLI's --json
// output). No shell: argv[0] is a path.
struct CommandResult {
  int exit_code = -1;  // the exit status; -signal when a signal ended it; -1000 after `timeout`
  std::string out;
  std::string err;
  milliseconds elapsed{0};
  std::string Describe() const;  // exit code, stdout and stderr, for failure messages
};
// Runs `argv` with stdin from `stdin_path` (default /dev/null); SIGKILLs it when it outlives
// `timeout`. Thread-safe (a fleet test runs several at once).
CommandResult RunCommand(const std::vector<std::string>& argv,
                         milliseconds timeout = milliseconds(60000),
                         const std::string& stdin_path = "/dev/null");

// lb-controller (the fleet controller, proto/PROTOCOL.md "Fleet") as a child process on ipc://
// endpoints in `dir` unless endpoints are given, with its settings in dir/lb-controller.cfg.
// Its log is dir/controller.log.
class FleetController {
 public:
  struct Options {
    std::string lbctl;      // path of lbctl, for Lbctl()
    std::string dir;        // where the sockets, the state dir, the settings and the log go
    std::string pub;        // default ipc://<dir>/fleet-pub.sock
    std::string router;     // default ipc://<dir>/fleet-router.sock
    std::string control;    // default ipc://<dir>/fleet-control.sock
    std::string state_dir;  // default <dir>/controller-state
    std::string id = "ctl-test";
    double beacon_interval_s = 0.2;
    // [security]: CURVE with the controller's secret certificate and the agents' public keys
    // (both or neither), agent ids pinned to keys, plaintext beyond loopback.
    std::string curve_secret_key;
    std::string curve_clients;
    std::string agent_keys;
    bool allow_insecure = false;
    // [store]: etcd client URLs (comma-separated; "" for the state dir) and the lease's TTL.
    std::string etcd_endpoints;
    std::string etcd_ca_file, etcd_cert_file, etcd_key_file;  // https:// endpoints
    int lease_ttl_s = 2;
    // Words put before the controller's argv, e.g. NetNs::ExecPrefix() (`ip netns exec` execs
    // in place, so pid(), Kill() and ExitStatus() are still the controller's).
    std::vector<std::string> command_prefix;
  };
  explicit FleetController(Options options);
  ~FleetController();  // SIGTERM, then SIGKILL

  // Writes the settings, starts it and waits until `lbctl fleet agents` answers on the control
  // endpoint. Fails the test (with the log) when it does not.
  void Start();
  // Writes the settings and starts it without waiting (a standby binds nothing until it leads).
  void Launch();
  // `lbctl fleet agents` answers on its control endpoint within 2 s: it serves (it leads).
  bool Serving() const;
  // The exit status as waitpid gave it once it exited by itself; -1 while it runs.
  int ExitStatus();
  // SIGTERM and wait; returns the exit status as waitpid gave it.
  int Stop();
  void Kill();
  bool Running() { return process_ != nullptr && process_->Running(); }
  pid_t pid() const { return process_ ? process_->pid() : -1; }

  const Options& options() const { return options_; }
  const std::string& pub() const { return options_.pub; }
  const std::string& router() const { return options_.router; }
  const std::string& control() const { return options_.control; }
  std::string settings_path() const { return options_.dir + "/lb-controller.cfg"; }
  std::string Log() const;

  // `lbctl fleet <args...> --control <control>`.
  CommandResult Lbctl(std::vector<std::string> args,
                      milliseconds timeout = milliseconds(120000)) const;
  // `lbctl fleet agents --json`, parsed (null when it failed: the test fails too).
  nlohmann::json Agents() const;

 private:
  void WriteSettings() const;

  Options options_;
  std::unique_ptr<Process> process_;
};

// A real etcd cluster (Debian's etcd-server, /usr/bin/etcd) of `members` members on loopback,
// ports from FreePort(), each member's log in dir/etcd-<name>.log. Data dirs go to a temp dir
// on tmpfs (/dev/shm) when it has 1 GiB free, else under `dir`: etcd fsyncs every write, and on
// this machine's shared disk one fsync was measured at 2 s under load, longer than any deadline of
// the controller; the tests are about the controller, not the disk. Raft's heartbeat and
// election timeout are 100 ms and 1000 ms (etcd's defaults); the log level is warn. A missing
// etcd binary fails the test with what to install, never skips it.
class EtcdCluster {
 public:
  explicit EtcdCluster(std::string dir, int members = 3);
  ~EtcdCluster();  // SIGKILLs every member; prints their logs when the test failed

  // Chooses the ports, starts every member and waits (30 s) until each answers GET /health
  // with quorum. Fails the test (with the logs) otherwise.
  void Start();
  // Before Start(): every member also serves clients on `host`, an address of this machine
  // (a veth's, for a test that reaches etcd over a path it can cut), on the same port.
  void AlsoListenOn(std::string host) { extra_client_host_ = std::move(host); }
  // Before Start(): clients speak TLS (https:// URLs, the members' certificate from `pki`) and
  // must present a certificate signed by its CA (--client-cert-auth). Peers stay http.
  void UseTls(TestPki pki) { tls_ = std::move(pki); }
  // The client URL of member `i` ("http://127.0.0.1:PORT", https:// with UseTls, or on the
  // AlsoListenOn host) and all of them. After Start().
  std::string client_url(int i, const std::string& host = "127.0.0.1") const;
  std::vector<std::string> client_urls(const std::string& host = "127.0.0.1") const;
  // Comma-separated, as [store] etcd_endpoints takes them.
  std::string endpoints(const std::string& host = "127.0.0.1") const;
  int size() const { return static_cast<int>(members_.size()); }
  // SIGKILL member `i` (its data dir stays: StartMember brings it back into the cluster).
  void KillMember(int i);
  void StartMember(int i);
  bool MemberRunning(int i);
  // GET /health on member `i` within 2 s says {"health": "true"} (the cluster has a leader).
  bool Healthy(int i) const;
  // The index of the member that is raft's leader now (from /v3/maintenance/status), or -1.
  int RaftLeader() const;
  std::string Logs() const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::unique_ptr<Process> process;
  };
  std::string dir_;
  std::string data_dir_;  // the members' data dirs; removed with them when on tmpfs
  bool own_data_dir_ = false;
  std::string initial_cluster_;
  std::string extra_client_host_;  // AlsoListenOn's; "" for loopback only
  std::optional<TestPki> tls_;     // UseTls's
  std::vector<Member> members_;
  // An HTTP client of member `i` for the harness's own checks (with the client certificate).
  std::unique_ptr<httplib::Client> AdminClient(int i) const;
};

// ---- CURVE (issue 5) ----

// Key files in `dir`: the agent's pair (agent, agent_secret), one allowed client's pair
// (client, client_secret), the allow-list `clients` holding that client's key, and a stranger's
// pair (stranger, stranger_secret) that is in no list.
struct CurveFiles {
  std::string agent_secret, agent_public, clients, client_secret, client_public, stranger_secret,
      stranger_public;
  common::CurveClientKeys client;    // the allowed client's keys towards the agent
  common::CurveClientKeys stranger;  // the stranger's keys towards the agent
  // [security] keys that turn CURVE on with these files.
  Keys SecurityKeys() const {
    return {{"curve_secret_key", agent_secret}, {"curve_clients", clients}};
  }
};
CurveFiles WriteCurveFiles(const TempDir& dir);

// ---- Faults and load (issue 5) ----

// Names (not paths) of the entries of `dir` that start with the agent's temp prefix
// ".lb-agent-tmp." (ConfigStore::kTempPrefix), sorted.
std::vector<std::string> AgentTempFiles(const std::string& dir);
// Names of every entry of `dir`, sorted ("" entries never; an unreadable dir gives {}).
std::vector<std::string> ListDir(const std::string& dir);
// Lower-case hex sha256 of a file's bytes ("" when it cannot be read), via sha256sum.
std::string Sha256OfFile(const std::string& path);
// `haproxy -c -f <path>` with the haproxy the tests use.
CommandResult HaproxyCheck(const std::string& path);
// VmRSS of a process in KiB from /proc/<pid>/status; -1 when unknown.
long VmRssKiB(pid_t pid);
// Pids of haproxy masters whose command line has `-f <config_path>`: processes with that
// argument whose parent does not have it (workers are the master's children). More than one
// means two haproxy instances serve the same config.
std::vector<pid_t> HaproxyMasters(const std::string& config_path);

}  // namespace lb::testing
