#include "harness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <zmq.hpp>

namespace lb::testing {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string AgentBinary() { return LB_AGENT_BINARY; }
std::string BridgeBinary() { return LB_BRIDGE_BINARY; }
std::string HaproxyBinary() { return LB_HAPROXY_BINARY; }

bool WaitFor(const std::function<bool()>& condition, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/lbt.XXXXXX";
  char* p = mkdtemp(tmpl);
  if (p == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

HttpBackend::HttpBackend(std::string name)
    : name_(std::move(name)), server_(std::make_unique<httplib::Server>()) {
  server_->Get(".*", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(name_, "text/plain");
  });
  port_ = server_->bind_to_any_port("127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // The socket is bound and listening already: connections queue until the thread accepts.
}

HttpBackend::~HttpBackend() { Stop(); }

void HttpBackend::Stop() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string HttpGetBody(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(5, 0);
  auto res = client.Get(path);
  if (!res || res->status != 200) return "";
  return res->body;
}

std::string HaproxyConfig(int frontend_port, const std::vector<Server>& servers,
                          const std::string& backend, const std::string& global_extra,
                          const std::string& defaults_extra) {
  std::ostringstream c;
  c << "global\n"
    << "    hard-stop-after 10s\n"
    << global_extra << "defaults\n"
    << "    mode http\n"
    << "    option idle-close-on-response\n"
    << "    timeout connect 1s\n"
    << "    timeout client 10s\n"
    << "    timeout server 10s\n"
    << "    timeout check 1s\n"
    << defaults_extra << "frontend main\n"
    << "    bind 127.0.0.1:" << frontend_port << "\n"
    << "    default_backend " << backend << "\n"
    << "backend " << backend << "\n"
    << "    balance roundrobin\n";
  for (const auto& s : servers) {
    c << "    server " << s.name << " 127.0.0.1:" << s.port << " " << s.options << "\n";
  }
  return c.str();
}

proto::Result<proto::Reply> AgentCall(const std::string& endpoint, const std::string& cmd,
                                      const json& args, milliseconds timeout) {
  static zmq::context_t context;
  try {
    zmq::socket_t socket(context, zmq::socket_type::req);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout.count()));
    socket.set(zmq::sockopt::sndtimeo, static_cast<int>(timeout.count()));
    socket.connect(endpoint);
    proto::Request request{json(cmd + "-1"), cmd, args};
    std::string frame = proto::EncodeRequest(request);
    if (!socket.send(zmq::buffer(frame))) {
      return proto::Status(proto::ErrorCode::kTimeout, "send timed out");
    }
    zmq::message_t reply;
    if (!socket.recv(reply)) return proto::Status(proto::ErrorCode::kTimeout, "no reply");
    proto::DecodeLimits limits;
    limits.max_frame_bytes = 64 * 1024 * 1024;
    return proto::DecodeReply(reply.to_string_view(), limits);
  } catch (const zmq::error_t& e) {
    return proto::Status(proto::ErrorCode::kUnavailable, e.what());
  }
}

std::string AgentRaw(const std::string& endpoint, const std::string& frame, milliseconds timeout) {
  static zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::req);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout.count()));
  socket.connect(endpoint);
  socket.send(zmq::buffer(frame));
  zmq::message_t reply;
  if (!socket.recv(reply)) return "";
  return reply.to_string();
}

Process::Process(std::vector<std::string> argv, std::string log_path) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(log, 1);
    dup2(log, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  close(log);
}

Process::~Process() {
  if (Running()) Kill();
}

bool Process::Running() {
  if (pid_ <= 0 || reaped_) return false;
  pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

int Process::Stop(milliseconds grace) {
  if (!Running()) return status_;
  kill(pid_, SIGTERM);
  if (!WaitFor([this] { return !Running(); }, grace)) Kill();
  return status_;
}

void Process::Kill() {
  if (!Running()) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, &status_, 0);
  reaped_ = true;
}

void KillHaproxy(const std::string& pid_file) {
  std::string text = ReadFile(pid_file);
  int pid = std::atoi(text.c_str());
  if (pid <= 1) return;
  kill(-pid, SIGKILL);  // the master and its workers share its process group
  kill(pid, SIGKILL);
}

AgentFixture::AgentFixture(std::map<std::string, std::string> haproxy_keys,
                           std::map<std::string, std::string> agent_keys)
    : haproxy_keys_(std::move(haproxy_keys)), agent_keys_(std::move(agent_keys)) {
  endpoint_ = "ipc://" + dir_.File("cmd.sock");
  bridge_port_ = FreePort();
}

AgentFixture::~AgentFixture() {
  if (bridge_) bridge_->Stop();
  if (agent_) agent_->Stop();
  KillHaproxy(dir_.File("haproxy.pid"));
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- agent log (" << dir_.path() << ") ----\n"
              << AgentLog() << "---- bridge log ----\n"
              << ReadFile(dir_.File("bridge.log")) << "----\n";
  }
}

void AgentFixture::WriteSettings() {
  std::map<std::string, std::string> agent = {{"host", "127.0.0.1"},
                                              {"port", std::to_string(bridge_port_)},
                                              {"command_endpoint", endpoint_},
                                              {"event_endpoint", events_endpoint()},
                                              {"history_dir", "history"},
                                              {"agent_timeout", "3"}};
  for (const auto& [k, v] : agent_keys_) agent[k] = v;
  std::map<std::string, std::string> haproxy = {{"config_file_path", "haproxy.cfg"},
                                                {"default_backend", "scaling_nodes"},
                                                {"master_socket", "master.sock"},
                                                {"pid_file", "haproxy.pid"},
                                                {"haproxy_binary", HaproxyBinary()},
                                                {"reload_method", "managed"},
                                                {"reload_timeout", "10"}};
  for (const auto& [k, v] : haproxy_keys_) haproxy[k] = v;
  std::ostringstream out;
  out << "[lb-agent]\n";
  for (const auto& [k, v] : agent) out << k << " = " << v << "\n";
  out << "[haproxy]\n";
  for (const auto& [k, v] : haproxy) out << k << " = " << v << "\n";
  WriteFile(settings_path(), out.str());
}

void AgentFixture::StartAgent() {
  WriteSettings();
  agent_ = std::make_unique<Process>(
      std::vector<std::string>{AgentBinary(), "--config", settings_path()}, dir_.File("agent.log"));
  bool up = WaitFor(
      [this] {
        if (!agent_->Running()) return true;
        auto r = AgentCall(endpoint_, "ping", json::object(), milliseconds(200));
        return r.ok() && r->status.ok();
      },
      milliseconds(15000));
  ASSERT_TRUE(up && agent_->Running()) << "lb-agent did not answer ping:\n" << AgentLog();
  const bool managed =
      !haproxy_keys_.count("reload_method") || haproxy_keys_.at("reload_method") == "managed";
  if (managed && std::filesystem::exists(config_path())) {
    bool running = WaitFor([this] { return HaproxyWorkerPid() > 0; }, milliseconds(15000));
    ASSERT_TRUE(running) << "haproxy did not start:\n" << AgentLog();
  }
}

void AgentFixture::StopAgent() {
  if (agent_) agent_->Stop();
}

void AgentFixture::KillAgent() {
  if (agent_) agent_->Kill();
}

void AgentFixture::StartBridge() {
  if (!std::filesystem::exists(settings_path())) WriteSettings();
  bridge_ = std::make_unique<Process>(
      std::vector<std::string>{BridgeBinary(), "--config", settings_path()},
      dir_.File("bridge.log"));
  bool up = WaitFor(
      [this] {
        if (!bridge_->Running()) return true;
        httplib::Client client("127.0.0.1", bridge_port_);
        client.set_connection_timeout(0, 200000);
        auto res = client.Get("/healthz");
        return res != nullptr;
      },
      milliseconds(15000));
  ASSERT_TRUE(up && bridge_->Running()) << "lb-bridge did not start:\n"
                                        << ReadFile(dir_.File("bridge.log"));
}

void AgentFixture::StopBridge() {
  if (bridge_) bridge_->Stop();
}

json AgentFixture::Ok(const std::string& cmd, const json& args) {
  auto r = Call(cmd, args);
  EXPECT_TRUE(r.ok()) << cmd << ": " << r.status().ToString();
  if (!r.ok()) return nullptr;
  EXPECT_TRUE(r->status.ok()) << cmd << ": " << r->status.ToString();
  return r->status.ok() ? r->result : json(nullptr);
}

std::string AgentFixture::ErrorCode(const std::string& cmd, const json& args) {
  auto r = Call(cmd, args);
  if (!r.ok()) return "call failed: " + r.status().ToString();
  return std::string(proto::ErrorCodeName(r->status.code()));
}

std::string AgentFixture::ServerStatus(const std::string& server) {
  auto r = Call("status");
  if (!r.ok() || !r->status.ok()) return "";
  for (const auto& b : r->result["backends"]) {
    for (const auto& s : b["servers"]) {
      if (s["name"] == server) return s["status"];
    }
  }
  return "";
}

int AgentFixture::HaproxyReloads() {
  auto r = Call("info");
  if (!r.ok() || !r->status.ok()) return -1;
  return r->result["haproxy"].value("reloads", -1);
}

pid_t AgentFixture::HaproxyWorkerPid() {
  auto r = AgentCall(endpoint_, "info", json::object(), milliseconds(2000));
  if (!r.ok() || !r->status.ok()) return 0;
  return r->result["haproxy"].value("pid", 0);
}

}  // namespace lb::testing
