#include "harness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <zmq.hpp>

#include "lb/client/command_client.h"

namespace lb::testing {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// LB_TEST_AGENT_BINARY runs the tests against another build (to show that a test fails on the
// code before a fix, say).
std::string AgentBinary() {
  const char* other = std::getenv("LB_TEST_AGENT_BINARY");
  return other != nullptr && *other != '\0' ? other : LB_AGENT_BINARY;
}
std::string BridgeBinary() { return LB_BRIDGE_BINARY; }
std::string ControllerBinary() { return LB_CONTROLLER_BINARY; }
std::string HaproxyBinary() { return LB_HAPROXY_BINARY; }

bool WaitFor(const std::function<bool()>& condition, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
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

HttpBackend::HttpBackend(std::string name, std::string host)
    : name_(std::move(name)), host_(std::move(host)), server_(std::make_unique<httplib::Server>()) {
  Route();
  port_ = server_->bind_to_any_port(host_);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // The socket is bound and listening already: connections queue until the thread accepts.
  // Until the thread runs, stop() would be a no-op and the destructor's join would hang (a
  // fixture whose SetUp fails at once destroys its backend that early).
  WaitFor([this] { return server_->is_running(); }, milliseconds(5000));
}

void HttpBackend::Route() {
  server_->Get(R"(/slow/(\d+))", [this](const httplib::Request& req, httplib::Response& res) {
    std::this_thread::sleep_for(milliseconds(std::stoi(req.matches[1])));
    res.set_content(name_, "text/plain");
  });
  server_->Get(".*", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(name_, "text/plain");
  });
}

HttpBackend::~HttpBackend() { Stop(); }

void HttpBackend::Stop() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

bool HttpBackend::Restart() {
  Stop();
  server_ = std::make_unique<httplib::Server>();
  Route();
  if (!server_->bind_to_port(host_, port_)) return false;
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // Until the thread runs, stop() would be a no-op and a later join would hang.
  return WaitFor([this] { return server_->is_running(); }, milliseconds(5000));
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
    c << "    server " << s.name << " " << s.host << ":" << s.port << " " << s.options << "\n";
  }
  return c.str();
}

std::string HaproxyCli(const std::string& socket_path, const std::string& command) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  struct timeval tv {
    5, 0
  };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path.c_str());
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string line = command + "\n";
    if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size())) {
      shutdown(fd, SHUT_WR);
      char buf[65536];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
    }
  }
  close(fd);
  return out;
}

proto::Result<proto::Reply> AgentCall(const std::string& endpoint, const std::string& cmd,
                                      const json& args, milliseconds timeout,
                                      const common::CurveClientKeys* keys) {
  static zmq::context_t context;
  client::CommandClientOptions options;
  options.endpoint = endpoint;
  options.timeout = timeout;
  options.max_reply_bytes = 64 * 1024 * 1024;
  if (keys != nullptr) options.curve = *keys;
  options.wording.client = "lb-agent-tests";
  return client::CommandClient(context, options).Call(cmd, args);
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

RawZmtp::RawZmtp(const std::string& ipc_endpoint, bool handshake) {
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = ipc_endpoint.substr(6);  // "ipc://"
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    close(fd_);
    fd_ = -1;
    return;
  }
  timeval tv{5, 0};
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (!handshake) return;
  std::string greeting(64, '\0');
  greeting[0] = '\xff';
  greeting[9] = '\x7f';
  greeting[10] = 3;  // version 3.0
  std::memcpy(&greeting[12], "NULL", 4);
  Send(greeting);
  std::string peer(64, '\0');
  if (!ReadExactly(&peer)) ADD_FAILURE() << "no ZMTP greeting from the agent";
  // READY with Socket-Type DEALER: a short command (flags 0x04).
  std::string body = std::string("\x05READY", 6) + "\x0bSocket-Type" +
                     std::string("\x00\x00\x00\x06", 4) + "DEALER";
  Send(std::string(1, '\x04') + static_cast<char>(body.size()) + body);
}

RawZmtp::~RawZmtp() {
  if (fd_ >= 0) close(fd_);
}

void RawZmtp::AnnounceFrame(uint64_t size) {
  std::string header(9, '\0');
  header[0] = '\x02';
  for (int i = 0; i < 8; ++i) header[1 + i] = static_cast<char>(size >> (56 - 8 * i));
  Send(header);
}

std::size_t RawZmtp::SendPayload(std::size_t bytes) {
  const std::string chunk(1 << 20, 'x');
  std::size_t sent = 0;
  while (fd_ >= 0 && sent < bytes) {
    ssize_t n = send(fd_, chunk.data(), std::min(chunk.size(), bytes - sent), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  return sent;
}

bool RawZmtp::ClosedByPeer() {
  char buf[4096];
  while (fd_ >= 0) {
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET || errno == EPIPE;
  }
  return false;
}

void RawZmtp::Send(const std::string& data) {
  std::size_t off = 0;
  while (fd_ >= 0 && off < data.size()) {
    ssize_t n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

bool RawZmtp::ReadExactly(std::string* out) {
  std::size_t off = 0;
  while (fd_ >= 0 && off < out->size()) {
    ssize_t n = recv(fd_, out->data() + off, out->size() - off, 0);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
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
                           std::map<std::string, std::string> agent_keys,
                           std::map<std::string, std::string> fleet_keys)
    : haproxy_keys_(std::move(haproxy_keys)),
      agent_keys_(std::move(agent_keys)),
      fleet_keys_(std::move(fleet_keys)) {
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
  std::map<std::string, std::string> agent = {
      {"host", "127.0.0.1"},           {"port", std::to_string(bridge_port_)},
      {"command_endpoint", endpoint_}, {"event_endpoint", events_endpoint()},
      {"history_dir", "history"},      {"agent_timeout", "3"}};
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
  if (!fleet_keys_.empty()) {
    out << "[fleet]\n";
    for (const auto& [k, v] : fleet_keys_) out << k << " = " << v << "\n";
  }
  if (!security_keys_.empty()) {
    out << "[security]\n";
    for (const auto& [k, v] : security_keys_) out << k << " = " << v << "\n";
  }
  WriteFile(settings_path(), out.str());
}

void AgentFixture::StartAgent() {
  WriteSettings();
  std::vector<std::string> argv = command_prefix_;
  for (const auto& word : {AgentBinary(), std::string("--config"), settings_path()}) {
    argv.push_back(word);
  }
  agent_ = std::make_unique<Process>(std::move(argv), dir_.File("agent.log"));
  bool up = WaitFor(
      [this] {
        if (!agent_->Running()) return true;
        auto r = AgentCall(endpoint_, "ping", json::object(), milliseconds(200), client_keys());
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
  auto r = AgentCall(endpoint_, "info", json::object(), milliseconds(2000), client_keys());
  if (!r.ok() || !r->status.ok()) return 0;
  return r->result["haproxy"].value("pid", 0);
}

}  // namespace lb::testing

namespace lb::testing {

struct EventSubscriber::Socket {
  static zmq::context_t& Context() {
    static zmq::context_t context;
    return context;
  }
  Socket() : sub(Context(), zmq::socket_type::sub) {}
  zmq::socket_t sub;
};

EventSubscriber::EventSubscriber(const std::string& endpoint,
                                 const std::vector<std::string>& prefixes, int rcvhwm,
                                 const common::CurveClientKeys* keys)
    : socket_(std::make_unique<Socket>()) {
  socket_->sub.set(zmq::sockopt::linger, 0);
  if (keys != nullptr) common::MakeCurveClient(socket_->sub, keys->own, keys->server_public_key);
  if (rcvhwm > 0) socket_->sub.set(zmq::sockopt::rcvhwm, rcvhwm);
  for (const auto& p : prefixes) socket_->sub.set(zmq::sockopt::subscribe, p);
  socket_->sub.connect(endpoint);
}

EventSubscriber::~EventSubscriber() = default;

std::optional<Event> EventSubscriber::Next(milliseconds timeout) {
  if (!WaitReadable(timeout)) return std::nullopt;
  std::vector<zmq::message_t> frames;
  while (true) {
    zmq::message_t frame;
    if (!socket_->sub.recv(frame, zmq::recv_flags::dontwait)) break;
    frames.push_back(std::move(frame));
    if (!frames.back().more()) break;
  }
  EXPECT_EQ(frames.size(), 2u) << "an event is two frames: [topic, msgpack map]";
  if (frames.size() != 2) return std::nullopt;
  proto::DecodeLimits limits;
  auto body = proto::DecodeMsgpack(frames[1].to_string_view(), limits);
  EXPECT_TRUE(body.ok()) << "event body: " << body.status().ToString();
  if (!body.ok()) return std::nullopt;
  EXPECT_TRUE(body->is_object()) << "event body is not a map: " << body->dump();
  return Event{frames[0].to_string(), std::move(*body), std::chrono::steady_clock::now()};
}

std::optional<Event> EventSubscriber::NextMatching(const std::function<bool(const Event&)>& match,
                                                   milliseconds timeout, std::vector<Event>* seen) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() < 0) return std::nullopt;
    auto event = Next(left);
    if (!event) return std::nullopt;
    if (seen != nullptr) seen->push_back(*event);
    if (match(*event)) return event;
  }
}

bool EventSubscriber::WaitLive(milliseconds timeout, std::vector<Event>* seen) {
  return NextMatching([](const Event& e) { return e.heartbeat(); }, timeout, seen).has_value();
}

bool EventSubscriber::WaitReadable(milliseconds timeout) {
  zmq::pollitem_t item{static_cast<void*>(socket_->sub), 0, ZMQ_POLLIN, 0};
  const auto deadline = Clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    try {
      zmq::poll(&item, 1, std::max(left, milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      ADD_FAILURE() << "zmq_poll on the event socket: " << e.what();
      return false;
    }
    if (item.revents & ZMQ_POLLIN) return true;
    if (Clock::now() >= deadline) return false;
  }
}

}  // namespace lb::testing

namespace lb::testing {

std::string CommandResult::Describe() const {
  return "exit " + std::to_string(exit_code) + " after " + std::to_string(elapsed.count()) +
         " ms\n--- stdout ---\n" + out + "--- stderr ---\n" + err;
}

CommandResult RunCommand(const std::vector<std::string>& argv, milliseconds timeout,
                         const std::string& stdin_path) {
  CommandResult result;
  const auto start = Clock::now();
  std::vector<std::string> words = argv;
  std::vector<char*> args;
  for (auto& a : words) args.push_back(a.data());
  args.push_back(nullptr);
  const int input = open(stdin_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (input < 0) {
    result.err = "cannot open " + stdin_path + " for the command's stdin";
    return result;
  }
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(input);
    return result;
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(input);
    close(out[0]);
    close(out[1]);
    return result;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(input, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execv(args[0], args.data());
    _exit(127);
  }
  close(input);
  close(out[1]);
  close(err[1]);
  int fds[2] = {out[0], err[0]};
  std::string* buffers[2] = {&result.out, &result.err};
  const auto deadline = start + timeout;
  bool timed_out = false;
  while (fds[0] >= 0 || fds[1] >= 0) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p[2];
    int n = 0;
    int which[2];
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0) continue;
      p[n] = {fds[i], POLLIN, 0};
      which[n++] = i;
    }
    if (poll(p, n, static_cast<int>(std::min<int64_t>(left, 100))) < 0 && errno != EINTR) break;
    for (int k = 0; k < n; ++k) {
      if (p[k].revents == 0) continue;
      const int i = which[k];
      char chunk[65536];
      ssize_t got = read(fds[i], chunk, sizeof chunk);
      if (got > 0) {
        buffers[i]->append(chunk, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i]);
        fds[i] = -1;
      }
    }
  }
  for (int fd : fds) {
    if (fd >= 0) close(fd);
  }
  int status = 0;
  if (timed_out) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    result.exit_code = -1000;
  } else {
    // Both pipes closed: the child is exiting (or closed them itself; then wait out the rest).
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() >= deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        status = -1;
        break;
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    if (status == -1) {
      result.exit_code = -1000;
    } else {
      result.exit_code = WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
    }
  }
  result.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  return result;
}

FleetController::FleetController(Options options) : options_(std::move(options)) {
  const std::string& d = options_.dir;
  if (options_.pub.empty()) options_.pub = "ipc://" + d + "/fleet-pub.sock";
  if (options_.router.empty()) options_.router = "ipc://" + d + "/fleet-router.sock";
  if (options_.control.empty()) options_.control = "ipc://" + d + "/fleet-control.sock";
  if (options_.state_dir.empty()) options_.state_dir = d + "/controller-state";
}

FleetController::~FleetController() {
  if (process_) process_->Stop(milliseconds(5000));
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- controller log (" << options_.dir << ") ----\n" << Log() << "----\n";
  }
}

std::string FleetController::Log() const { return ReadFile(options_.dir + "/controller.log"); }

void FleetController::WriteSettings() const {
  std::ostringstream interval;
  interval << options_.beacon_interval_s;
  std::ostringstream cfg;
  cfg << "[controller]\n"
      << "id = " << options_.id << "\n"
      << "pub = " << options_.pub << "\n"
      << "router = " << options_.router << "\n"
      << "control = " << options_.control << "\n"
      << "state_dir = " << options_.state_dir << "\n"
      << "beacon_interval = " << interval.str() << "\n"
      << "[security]\n"
      << "curve_secret_key = " << options_.curve_secret_key << "\n"
      << "curve_clients = " << options_.curve_clients << "\n"
      << "agent_keys = " << options_.agent_keys << "\n"
      << "allow_insecure = " << (options_.allow_insecure ? "yes" : "no") << "\n";
  if (!options_.etcd_endpoints.empty()) {
    cfg << "[store]\n"
        << "etcd_endpoints = " << options_.etcd_endpoints << "\n"
        << "etcd_ca_file = " << options_.etcd_ca_file << "\n"
        << "etcd_cert_file = " << options_.etcd_cert_file << "\n"
        << "etcd_key_file = " << options_.etcd_key_file << "\n"
        << "lease_ttl = " << options_.lease_ttl_s << "\n";
  }
  WriteFile(settings_path(), cfg.str());
}

void FleetController::Start() {
  Launch();
  bool up = WaitFor(
      [this] {
        if (!process_->Running()) return true;
        return Lbctl({"agents", "--json"}, milliseconds(2000)).exit_code == 0;
      },
      milliseconds(15000));
  ASSERT_TRUE(up && process_->Running()) << "lb-controller did not answer:\n" << Log();
}

void FleetController::Launch() {
  WriteSettings();
  std::vector<std::string> argv = options_.command_prefix;
  for (const auto& word : {ControllerBinary(), std::string("--config"), settings_path()}) {
    argv.push_back(word);
  }
  process_ = std::make_unique<Process>(std::move(argv), options_.dir + "/controller.log");
}

bool FleetController::Serving() const {
  return Lbctl({"agents", "--json"}, milliseconds(2000)).exit_code == 0;
}

int FleetController::ExitStatus() {
  if (process_ == nullptr || process_->Running()) return -1;
  return process_->Stop();  // already reaped: its status
}

int FleetController::Stop() { return process_ ? process_->Stop() : 0; }

void FleetController::Kill() {
  if (process_) process_->Kill();
}

CommandResult FleetController::Lbctl(std::vector<std::string> args, milliseconds timeout) const {
  std::vector<std::string> argv = {options_.lbctl, "fleet"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--control");
  argv.push_back(options_.control);
  return RunCommand(argv, timeout);
}

json FleetController::Agents() const {
  CommandResult r = Lbctl({"agents", "--json"}, milliseconds(10000));
  EXPECT_EQ(r.exit_code, 0) << "lbctl fleet agents --json: " << r.Describe();
  if (r.exit_code != 0) return nullptr;
  json parsed = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(parsed.is_discarded()) << "lbctl fleet agents --json is not JSON: " << r.out;
  return parsed.is_discarded() ? json(nullptr) : parsed;
}

// ---- etcd ----

// Debian's etcd-server puts it there; scripts/deps installs it.
constexpr char kEtcdBinary[] = "/usr/bin/etcd";

EtcdCluster::EtcdCluster(std::string dir, int members) : dir_(std::move(dir)), data_dir_(dir_) {
  // Each member preallocates a 64 MiB write-ahead log: tmpfs only with room for a few clusters
  // (a container's /dev/shm is often 64 MiB).
  char shm[] = "/dev/shm/lb-etcd-XXXXXX";
  struct statvfs fs {};
  const bool roomy = statvfs("/dev/shm", &fs) == 0 &&
                     static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize >= (uint64_t{1} << 30);
  if (roomy && mkdtemp(shm) != nullptr) {
    data_dir_ = shm;
    own_data_dir_ = true;
  }
  for (int i = 0; i < members; ++i) {
    Member m;
    m.name = "m" + std::to_string(i + 1);
    members_.push_back(std::move(m));
  }
}

EtcdCluster::~EtcdCluster() {
  for (auto& m : members_) {
    if (m.process) m.process->Kill();
  }
  if (::testing::Test::HasFailure()) std::cerr << Logs();
  if (own_data_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(data_dir_, ec);
  }
}

std::string EtcdCluster::Logs() const {
  std::string out;
  for (const auto& m : members_) {
    out += "---- etcd " + m.name + " log ----\n" + ReadFile(dir_ + "/etcd-" + m.name + ".log");
  }
  return out;
}

std::string EtcdCluster::client_url(int i, const std::string& host) const {
  return (tls_ ? "https://" : "http://") + host + ":" + std::to_string(members_.at(i).client_port);
}

std::unique_ptr<httplib::Client> EtcdCluster::AdminClient(int i) const {
  auto client = std::make_unique<httplib::Client>(client_url(i), tls_ ? tls_->client_cert : "",
                                                  tls_ ? tls_->client_key : "");
  if (tls_) client->set_ca_cert_path(tls_->ca);
  client->set_connection_timeout(std::chrono::seconds(2));
  client->set_read_timeout(std::chrono::seconds(2));
  return client;
}

std::vector<std::string> EtcdCluster::client_urls(const std::string& host) const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(client_url(i, host));
  return out;
}

std::string EtcdCluster::endpoints(const std::string& host) const {
  std::string out;
  for (const auto& url : client_urls(host)) out += (out.empty() ? "" : ",") + url;
  return out;
}

void EtcdCluster::StartMember(int i) {
  Member& m = members_.at(i);
  const std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  const std::string client = client_url(i);
  const std::string listen =
      extra_client_host_.empty() ? client : client + "," + client_url(i, extra_client_host_);
  const std::string data = data_dir_ + "/etcd-" + m.name;
  const bool fresh = !std::filesystem::exists(data);
  std::vector<std::string> argv{kEtcdBinary,
                                "--name",
                                m.name,
                                "--data-dir",
                                data,
                                "--listen-peer-urls",
                                peer,
                                "--initial-advertise-peer-urls",
                                peer,
                                "--listen-client-urls",
                                listen,
                                "--advertise-client-urls",
                                client,
                                "--initial-cluster",
                                initial_cluster_,
                                "--initial-cluster-state",
                                fresh ? "new" : "existing",
                                "--initial-cluster-token",
                                "lb-test-" + std::to_string(members_[0].peer_port),
                                "--heartbeat-interval",
                                "100",
                                "--election-timeout",
                                "1000",
                                "--logger",
                                "zap",
                                "--log-level",
                                "warn"};
  if (tls_) {
    for (const auto& arg : {"--cert-file=" + tls_->server_cert, "--key-file=" + tls_->server_key,
                            "--trusted-ca-file=" + tls_->ca, std::string("--client-cert-auth")}) {
      argv.push_back(arg);
    }
  }
  m.process = std::make_unique<Process>(std::move(argv), dir_ + "/etcd-" + m.name + ".log");
}

void EtcdCluster::Start() {
  ASSERT_TRUE(std::filesystem::exists(kEtcdBinary))
      << kEtcdBinary << " not found: these tests run a real etcd cluster. Install Debian's "
      << "etcd-server (apt-get install etcd-server etcd-client), or run scripts/test, whose "
      << "scripts/deps installs it.";
  // Ports at the last moment, all different: a port FreePort() released can be the next one
  // the kernel hands to a bind(0), here or in the test (a backend that took a peer port was
  // seen), so nothing of the test binds between this and the members' start.
  std::set<int> taken;
  auto fresh_port = [&taken] {
    int port = FreePort();
    while (!taken.insert(port).second) port = FreePort();
    return port;
  };
  initial_cluster_.clear();
  for (int i = 0; i < size(); ++i) {
    members_[i].client_port = fresh_port();
    members_[i].peer_port = fresh_port();
    initial_cluster_ += (i == 0 ? "" : ",") + members_[i].name +
                        "=http://127.0.0.1:" + std::to_string(members_[i].peer_port);
  }
  for (int i = 0; i < size(); ++i) StartMember(i);
  const bool healthy = WaitFor(
      [this] {
        for (int i = 0; i < size(); ++i) {
          if (!Healthy(i)) return false;
        }
        return true;
      },
      milliseconds(30000));
  ASSERT_TRUE(healthy) << "the etcd cluster did not become healthy within 30 s\n" << Logs();
}

void EtcdCluster::KillMember(int i) {
  if (members_.at(i).process) members_[i].process->Kill();
}

bool EtcdCluster::MemberRunning(int i) {
  return members_.at(i).process && members_[i].process->Running();
}

int EtcdCluster::RaftLeader() const {
  for (int i = 0; i < size(); ++i) {
    auto res = AdminClient(i)->Post("/v3/maintenance/status", "{}", "application/json");
    if (!res || res->status != 200) continue;
    json body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("header") || !body["header"].is_object()) continue;
    const std::string self = body["header"].value("member_id", "");
    if (!self.empty() && body.value("leader", "") == self) return i;
  }
  return -1;
}

bool EtcdCluster::Healthy(int i) const {
  auto res = AdminClient(i)->Get("/health");
  if (!res || res->status != 200) return false;
  json body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  return body.is_object() && body.value("health", "") == "true";
}
}  // namespace lb::testing

namespace lb::testing {

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> AgentTempFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& name : ListDir(dir)) {
    if (name.rfind(".lb-agent-tmp.", 0) == 0) out.push_back(std::move(name));
  }
  return out;
}

std::string Sha256OfFile(const std::string& path) {
  CommandResult r = RunCommand({"/usr/bin/sha256sum", "--", path}, milliseconds(10000));
  if (r.exit_code != 0 || r.out.size() < 64) return "";
  return r.out.substr(0, 64);
}

CommandResult HaproxyCheck(const std::string& path) {
  return RunCommand({HaproxyBinary(), "-c", "-f", path}, milliseconds(30000));
}

long VmRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

namespace {

// argv of a process from /proc/<pid>/cmdline ({} when it is gone or a kernel thread).
std::vector<std::string> Cmdline(pid_t pid) {
  std::string text = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\0', pos);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

pid_t ParentOf(pid_t pid) {
  // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 1));
  std::string state;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

}  // namespace

std::vector<pid_t> HaproxyMasters(const std::string& config_path) {
  std::set<pid_t> with_config;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::atoi(name.c_str());
    std::vector<std::string> argv = Cmdline(pid);
    for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == "-f" && argv[i + 1] == config_path) {
        with_config.insert(pid);
        break;
      }
    }
  }
  std::vector<pid_t> masters;
  for (pid_t pid : with_config) {
    if (!with_config.count(ParentOf(pid))) masters.push_back(pid);
  }
  return masters;
}

CurveFiles WriteCurveFiles(const TempDir& dir) {
  CurveFiles files;
  auto pair = [&dir](const std::string& name, std::string* secret, std::string* pub) {
    auto cert = common::GenerateCertificate();
    EXPECT_TRUE(cert.ok()) << cert.status().message();
    *pub = dir.File(name);
    *secret = *pub + "_secret";
    proto::Status s = common::WriteCertificate(*pub, *cert, "lb-agent tests");
    EXPECT_TRUE(s.ok()) << s.message();
  };
  pair("agent", &files.agent_secret, &files.agent_public);
  pair("client", &files.client_secret, &files.client_public);
  pair("stranger", &files.stranger_secret, &files.stranger_public);
  files.clients = dir.File("clients");
  auto client = common::ReadCertificate(files.client_public, false);
  WriteFile(files.clients, "# lb-agent tests\n" + client->public_key + " client\n");
  auto load = [&files](const std::string& secret) {
    auto keys = common::LoadClientKeys({secret, files.agent_public});
    EXPECT_TRUE(keys.ok()) << keys.status().message();
    return keys.ok() ? *keys : common::CurveClientKeys{};
  };
  files.client = load(files.client_secret);
  files.stranger = load(files.stranger_secret);
  return files;
}

}  // namespace lb::testing
