// Test harness for integration tests: real haproxy, real lb-agent and lb-bridge processes, real
// HTTP backends, real ZeroMQ and HTTP sockets on loopback or ipc:// in a temporary directory.
// Nothing here mocks HAProxy. Ports come from the kernel (bind to port 0), never fixed.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "lb/proto/codec.h"

namespace httplib {
class Server;
}

namespace lb::testing {

using std::chrono::milliseconds;

// Paths of what the tests run, from compile definitions (tests/integration/CMakeLists.txt).
std::string AgentBinary();
std::string BridgeBinary();
std::string HaproxyBinary();

// Polls `condition` every 10 ms until it is true or `timeout` passes. Returns its last value.
bool WaitFor(const std::function<bool()>& condition, milliseconds timeout);

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

// A TCP port that was free a moment ago (bound to port 0 on 127.0.0.1, then closed).
int FreePort();

// A real HTTP server on 127.0.0.1 that answers every GET with its name.
class HttpBackend {
 public:
  explicit HttpBackend(std::string name);
  ~HttpBackend();
  int port() const { return port_; }
  const std::string& name() const { return name_; }
  void Stop();

 private:
  std::string name_;
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
};

// An haproxy config: one frontend on `frontend_port` to backend `backend` with `servers`.
// `global_extra` / `defaults_extra` are appended to those sections.
std::string HaproxyConfig(int frontend_port, const std::vector<Server>& servers,
                          const std::string& backend = "scaling_nodes",
                          const std::string& global_extra = "",
                          const std::string& defaults_extra = "");

// One call on the agent's command socket with a fresh REQ socket.
proto::Result<proto::Reply> AgentCall(const std::string& endpoint, const std::string& cmd,
                                      const nlohmann::json& args = nlohmann::json::object(),
                                      milliseconds timeout = milliseconds(20000));
// Sends raw frames (no encoding) and returns the raw reply frame; "" on timeout.
std::string AgentRaw(const std::string& endpoint, const std::string& frame,
                     milliseconds timeout = milliseconds(10000));

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
  explicit AgentFixture(std::map<std::string, std::string> haproxy_keys = {},
                        std::map<std::string, std::string> agent_keys = {});
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
  void StopAgent();
  void KillAgent();  // SIGKILL: haproxy keeps running
  void StartBridge();
  void StopBridge();

  proto::Result<proto::Reply> Call(const std::string& cmd,
                                   const nlohmann::json& args = nlohmann::json::object()) {
    return AgentCall(endpoint_, cmd, args);
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
  pid_t HaproxyWorkerPid();

 private:
  void WriteSettings();

  TempDir dir_;
  std::map<std::string, std::string> haproxy_keys_;
  std::map<std::string, std::string> agent_keys_;
  std::string endpoint_;
  int bridge_port_ = 0;
  std::unique_ptr<Process> agent_;
  std::unique_ptr<Process> bridge_;
};

// Kills the haproxy whose master pid is in `pid_file` (and its workers).
void KillHaproxy(const std::string& pid_file);

}  // namespace lb::testing
