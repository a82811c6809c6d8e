// lb-bench: what lb-agent costs on top of HAProxy itself, measured in one run on this machine.
//
// For 3 and 1000 servers it starts a real lb-agent (managed mode, so a real haproxy) in a temp
// dir and measures, each next to the raw HAProxy floor:
//   status  agent `status` over ZeroMQ   vs  `@1 show stat` on the master socket, parsed
//   reload  agent `reload` (new config)  vs  haproxy -c + show servers state + master reload +
//                                             wait for the new worker in `show proc`
// and prints one table. Then the event publisher:
//   cpu      the agent's CPU while it polls `show stat` every 250 ms with 1,000 servers, next to
//            the haproxy worker's own CPU in the same seconds
//   latency  from a backend's listener closing to the DOWN event at a subscriber, with polling
//            only (250 ms) and with the log listener, health checks every 100 ms
// Server-only changes (issue 9), each through the runtime API and through a forced reload of the
// same change, next to the raw runtime commands on the master socket:
//   weight     one server's weight (3-server backend)
//   add 1      one server added, then (remove 1) removed again (3-server backend)
//   add 100    100 servers added to a 1,000-server backend, then (remove 100) removed again
// And what CURVE (SECURITY.md) adds:
//   status   the same `status` with the command socket a CURVE server (encryption per message)
//   connect  a new connection + `ping`, as each lbctl run does: plaintext vs CURVE handshake
// And the HTTP side (lb-bridge in front of the same agent, 3 servers):
//   status  agent `status` over ZeroMQ: one client (p50) and 64 clients at once (req/s, p99)
//   http    POST /getBackends on one kept-alive connection (p50), and 64 connections at once
//           driven by wrk (Debian's), each next to raw `show stat` and to the ZeroMQ figures
// Usage: lb-bench [--agent PATH] [--bridge PATH] [--haproxy PATH] [--iterations N]
//                 [--only core|runtime|events|curve|http]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>
#include <zmq.hpp>

#include "haproxy_parsers.h"
#include "haproxy_socket.h"
#include "lb/client/command_client.h"
#include "lb/common/curve_socket.h"
#include "lb/proto/codec.h"
#include "process.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct Stats {
  double p50 = 0, p99 = 0;
};

Stats Measure(int n, const std::function<void()>& op) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    auto start = Clock::now();
    op();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms[std::min(ms.size() - 1, ms.size() * 99 / 100)]};
}

[[noreturn]] void Die(const std::string& why) {
  std::cerr << "lb-bench: " << why << std::endl;
  std::exit(1);
}

int FreePort() {
  // Bound and released; good enough for a benchmark on loopback.
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::rep);
  s.bind("tcp://127.0.0.1:*");
  std::string ep = s.get(zmq::sockopt::last_endpoint);
  return std::stoi(ep.substr(ep.rfind(':') + 1));
}

std::string Config(int frontend, int servers, const std::string& dir, int variant) {
  std::ostringstream c;
  c << "global\n    stats socket " << dir << "/stats.sock mode 600 level admin\n"
    << "    server-state-file " << dir << "/state\n    hard-stop-after 5s\n"
    << "defaults\n    mode http\n    option idle-close-on-response\n"
    << "    load-server-state-from-file global\n"
    << "    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
    << "frontend main\n    bind 127.0.0.1:" << frontend << "\n    default_backend app\n"
    << "backend app\n";
  for (int i = 0; i < servers; ++i) {
    c << "    server s" << i << " 127.0.0.1:" << (20000 + i % 1000) << " weight "
      << (1 + variant % 2) << "\n";
  }
  return c.str();
}

class Agent {
 public:
  // `keys`: with CURVE (extra_keys then holds the [security] section), the client keys.
  Agent(const std::string& binary, const std::string& haproxy, const std::string& dir,
        const std::string& config, const std::string& extra_keys = "",
        const lb::common::CurveClientKeys* keys = nullptr)
      : dir_(dir), endpoint_("ipc://" + dir + "/cmd.sock") {
    if (keys != nullptr) keys_ = *keys;
    std::ofstream(dir + "/haproxy.cfg") << config;
    std::ofstream(dir + "/lb-agent.cfg")
        << "[lb-agent]\ncommand_endpoint = " << endpoint_ << "\nhistory_dir = history\n"
        << "event_endpoint = ipc://" << dir << "/events.sock\n"
        << (keys ? "" : extra_keys)
        << "[haproxy]\nconfig_file_path = haproxy.cfg\ndefault_backend = app\n"
        << "master_socket = master.sock\npid_file = haproxy.pid\nreload_method = managed\n"
        << "haproxy_binary = " << haproxy << "\n"
        << (keys ? extra_keys : "");
    pid_ = fork();
    if (pid_ == 0) {
      int log = ::open((dir + "/agent.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(log, 2);
      dup2(log, 1);
      execl(binary.c_str(), binary.c_str(), "--config", (dir + "/lb-agent.cfg").c_str(), nullptr);
      _exit(127);
    }
    // `status` and `reload` are measured on one kept connection (requests, not connects);
    // ConnectAndPing measures a new connection.
    lb::client::CommandClientOptions options = ClientOptions(milliseconds(30000));
    options.keep_connections = 1;
    client_ = std::make_unique<lb::client::CommandClient>(ctx_, options);
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (true) {
      lb::client::CommandClient probe(ctx_, ClientOptions(milliseconds(200)));
      auto r = probe.Call("info", json::object());
      if (r.ok() && r->status.ok() && r->result["haproxy"].value("running", false)) break;
      if (Clock::now() > deadline) Die("lb-agent did not start; see " + dir + "/agent.log");
    }
  }
  ~Agent() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  json Call(const std::string& cmd, const json& args) {
    auto r = client_->Call(cmd, args);
    if (!r.ok() || !r->status.ok()) {
      Die(cmd + ": " + (r.ok() ? r->status.ToString() : r.status().ToString()));
    }
    // Moved, not copied: a copy of a 1,000-server answer (and freeing it) cost the bench 3-4 ms
    // per call, which the table charged to the agent.
    return std::move(r->result);
  }
  // A new connection and one `ping`, as one lbctl run does.
  void ConnectAndPing() {
    auto r = lb::client::CommandClient(ctx_, ClientOptions(milliseconds(10000))).Call("ping", {});
    if (!r.ok()) Die("ping: " + r.status().ToString());
  }
  std::string master() const { return dir_ + "/master.sock"; }
  std::string events() const { return "ipc://" + dir_ + "/events.sock"; }
  pid_t pid() const { return pid_; }

 private:
  std::string dir_;
  std::string endpoint_;
  lb::client::CommandClientOptions ClientOptions(milliseconds timeout) const {
    lb::client::CommandClientOptions options;
    options.endpoint = endpoint_;
    options.timeout = timeout;
    options.wording.client = "lb-bench";
    if (!keys_.own.public_key.empty()) options.curve = keys_;
    return options;
  }

  pid_t pid_;
  lb::common::CurveClientKeys keys_;
  zmq::context_t ctx_;
  std::unique_ptr<lb::client::CommandClient> client_;
};

// ---------------------------------------------------------------------------------------------
// HTTP: lb-bridge next to the agent's own socket.

// One kept-alive HTTP/1.1 connection to 127.0.0.1:port; Post() sends a request and reads the
// whole response (Content-Length or chunked is what the bridge sends; only Content-Length here).
class HttpConnection {
 public:
  explicit HttpConnection(int port) : port_(port) { Connect(); }
  ~HttpConnection() { close(fd_); }
  // The response's status code. A response that says "Connection: close" (the bridge closes a
  // connection after its keep-alive request count) makes the next request reconnect.
  int Post(const std::string& path) {
    if (fd_ < 0) Connect();
    const std::string request = "POST " + path +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
                                "Connection: keep-alive\r\n\r\n";
    if (write(fd_, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
      Die("write to the bridge failed");
    }
    std::string in;
    std::size_t head_end = std::string::npos;
    std::size_t length = 0;
    bool last = false;
    char buf[16384];
    while (true) {
      if (head_end != std::string::npos && in.size() >= head_end + 4 + length) break;
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) Die("the bridge closed the kept-alive connection or did not answer in 10 s");
      in.append(buf, static_cast<std::size_t>(n));
      if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
        std::string head = in.substr(0, head_end);
        for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        auto at = head.find("content-length:");
        if (at == std::string::npos) Die("a bridge response without Content-Length");
        length = std::stoul(head.substr(at + 15));
        last = head.find("connection: close") != std::string::npos;
      }
    }
    if (last) {
      close(fd_);
      fd_ = -1;
    }
    return std::stoi(in.substr(9, 3));
  }

 private:
  void Connect() {
    const int port = port_;
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      Die("cannot connect to the bridge on port " + std::to_string(port));
    }
  }

  int port_;
  int fd_ = -1;
};

// `wrk` with 64 connections for `seconds` on POST /getBackends: {req/s, p99 ms}.
std::pair<double, double> Wrk(int port, const std::string& dir, int seconds) {
  const std::string script = dir + "/post.lua";
  std::ofstream(script) << "wrk.method = \"POST\"\n";
  const std::string out = dir + "/wrk.out";
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    const std::string d = std::to_string(seconds) + "s";
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/getBackends";
    execlp("wrk", "wrk", "-t2", "-c64", ("-d" + d).c_str(), "--latency", "-s", script.c_str(),
           url.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::ifstream in(out);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    Die("wrk failed (scripts/deps installs it):\n" + text);
  }
  if (text.find("Non-2xx") != std::string::npos ||
      text.find("Socket errors") != std::string::npos) {
    Die("wrk saw errors:\n" + text);
  }
  auto number_after = [&](const std::string& key) {
    auto at = text.find(key);
    if (at == std::string::npos) Die("no \"" + key + "\" in wrk's output:\n" + text);
    std::istringstream rest(text.substr(at + key.size()));
    double value = 0;
    std::string unit;
    rest >> value >> unit;  // "99%   12.34ms" or "Requests/sec:  12345.67"
    if (unit.rfind("us", 0) == 0) value /= 1000;
    if (unit.rfind("s", 0) == 0) value *= 1000;
    return value;
  };
  return {number_after("Requests/sec:"), number_after(" 99%")};
}

void HttpBenchmarks(const std::string& agent_bin, const std::string& bridge_bin,
                    const std::string& haproxy, int iterations) {
  char tmpl[] = "/tmp/lb-bench.XXXXXX";
  std::string dir = mkdtemp(tmpl);
  Agent agent(agent_bin, haproxy, dir, Config(FreePort(), 3, dir, 0));
  const int port = FreePort();
  {
    std::ifstream in(dir + "/lb-agent.cfg");
    std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    cfg.replace(cfg.find("[lb-agent]\n"), 11,
                "[lb-agent]\nhost = 127.0.0.1\nport = " + std::to_string(port) + "\n");
    std::ofstream(dir + "/lb-bridge.cfg") << cfg;
  }
  pid_t bridge = fork();
  if (bridge == 0) {
    int log = ::open((dir + "/bridge.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(log, 2);
    dup2(log, 1);
    execl(bridge_bin.c_str(), bridge_bin.c_str(), "--config", (dir + "/lb-bridge.cfg").c_str(),
          nullptr);
    _exit(127);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (true) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool up = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (up) break;
    if (Clock::now() > deadline) Die("lb-bridge did not start; see " + dir + "/bridge.log");
    std::this_thread::sleep_for(milliseconds(50));
  }

  lb::agent::SocketOptions o;
  const int n = iterations * 25;
  Stats floor = Measure(n, [&] {
    auto csv = lb::agent::HaproxyCommand(agent.master(), "@1 show stat", o);
    if (!csv.ok() || !lb::agent::ParseShowStat(*csv).ok()) Die("raw show stat failed");
  });
  Stats zmq1 = Measure(n, [&] { agent.Call("status", json::object()); });
  // The bridge's per-call cost towards the agent: a new REQ socket (connect + ZMTP handshake)
  // per call, as the bridge did before its pool, next to the pooled socket above.
  zmq::context_t fresh_ctx;
  lb::client::CommandClientOptions fresh_options;
  fresh_options.endpoint = "ipc://" + dir + "/cmd.sock";
  fresh_options.timeout = milliseconds(10000);
  lb::client::CommandClient fresh_client(fresh_ctx, fresh_options);  // keep_connections = 0
  Stats fresh = Measure(n, [&] {
    auto r = fresh_client.Call("status", json::object());
    if (!r.ok() || !r->status.ok()) Die("status on a new socket failed");
  });
  HttpConnection http(port);
  Stats http1 = Measure(n, [&] {
    if (http.Post("/getBackends") != 200) Die("POST /getBackends did not answer 200");
  });

  // 64 ZeroMQ clients at once, each on its own kept connection, for 5 s.
  const auto seconds = std::chrono::seconds(5);
  std::vector<std::vector<double>> per(64);
  std::vector<std::thread> threads;
  zmq::context_t ctx;
  const auto stop = Clock::now() + seconds;
  for (int t = 0; t < 64; ++t) {
    threads.emplace_back([&, t] {
      lb::client::CommandClientOptions options;
      options.endpoint = "ipc://" + dir + "/cmd.sock";
      options.timeout = milliseconds(10000);
      options.keep_connections = 1;
      lb::client::CommandClient client(ctx, options);
      while (Clock::now() < stop) {
        auto start = Clock::now();
        auto r = client.Call("status", json::object());
        if (!r.ok() || !r->status.ok()) Die("status under load failed");
        per[t].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<double> all;
  for (auto& v : per) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  const double zmq_rps = static_cast<double>(all.size()) / 5.0;
  const double zmq_p99 = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  auto [http_rps, http_p99] = Wrk(port, dir, 5);

  std::printf("\n%-34s %8s %12s %10s %10s %12s\n", "status, 3 servers", "clients", "floor p50 ms",
              "p50 ms", "p99 ms", "req/s");
  std::printf("%-34s %8d %12.2f %10.2f %10.2f %12s\n", "agent status over ZeroMQ", 1, floor.p50,
              zmq1.p50, zmq1.p99, "-");
  std::printf("%-34s %8d %12.2f %10.2f %10.2f %12s\n", "agent status, new socket per call", 1,
              floor.p50, fresh.p50, fresh.p99, "-");
  std::printf("%-34s %8d %12.2f %10.2f %10.2f %12s\n", "bridge POST /getBackends keep-alive", 1,
              floor.p50, http1.p50, http1.p99, "-");
  std::printf("%-34s %8d %12.2f %10s %10.2f %12.0f\n", "agent status over ZeroMQ", 64, floor.p50,
              "-", zmq_p99, zmq_rps);
  std::printf("%-34s %8d %12.2f %10s %10.2f %12.0f\n", "bridge /getBackends (wrk)", 64, floor.p50,
              "-", http_p99, http_rps);
  std::printf("keep-alive HTTP p50 / ZeroMQ p50: %.2fx\n", http1.p50 / zmq1.p50);
  kill(bridge, SIGTERM);
  waitpid(bridge, nullptr, 0);
  std::filesystem::remove_all(dir);
}

// The floor of a reload: what any tool must make haproxy do, with the least client code.
void RawReload(const std::string& haproxy, const std::string& dir, const std::string& master,
               const std::string& config) {
  lb::agent::SocketOptions o;
  std::string path = dir + "/raw.cfg";
  std::ofstream(path) << config;
  auto check = lb::agent::RunProcess({haproxy, "-c", "-q", "-f", path}, milliseconds(15000));
  if (!check.ok() || check->exit_code != 0) Die("raw haproxy -c failed");
  auto state = lb::agent::HaproxyCommand(master, "@1 show servers state", o);
  if (state.ok()) std::ofstream(dir + "/state") << *state;
  std::filesystem::copy_file(path, dir + "/haproxy.cfg",
                             std::filesystem::copy_options::overwrite_existing);
  auto before = lb::agent::ParseShowProc(*lb::agent::HaproxyCommand(master, "show proc", o));
  lb::agent::HaproxyCommand(master, "reload", o);
  while (true) {
    auto text = lb::agent::HaproxyCommand(master, "show proc", o);
    if (text.ok()) {
      auto proc = lb::agent::ParseShowProc(*text);
      if (proc.ok() && proc->master.reloads > before->master.reloads && !proc->workers.empty() &&
          proc->workers.front().pid != before->workers.front().pid) {
        break;
      }
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
}

// utime + stime of a process, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A TCP listener a health check can reach; Close() makes checks fail with "refused".
class Listener {
 public:
  explicit Listener(int port) : port_(port) { Open(); }
  ~Listener() { Close(); }
  void Open() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 64) != 0) {
      Die("cannot listen on port " + std::to_string(port_));
    }
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int port_;
  int fd_ = -1;
};

// Waits for a server event with `status` on `sub`; returns false at the deadline.
bool WaitForStatus(zmq::socket_t& sub, const std::string& status, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::vector<zmq::message_t> frames;
    zmq::message_t topic, body;
    if (!sub.recv(topic)) continue;
    if (!topic.more() || !sub.recv(body)) continue;
    auto event = lb::proto::DecodeMsgpack(body.to_string_view(), {});
    if (event.ok() && event->value("status", json()) == json(status)) return true;
  }
  return false;
}

void EventBenchmarks(const std::string& agent_bin, const std::string& haproxy, int iterations) {
  // CPU of polling: 1,000 servers (no health checks: the cost measured is the agent's).
  {
    char tmpl[] = "/tmp/lb-bench.XXXXXX";
    std::string dir = mkdtemp(tmpl);
    Agent agent(agent_bin, haproxy, dir, Config(FreePort(), 1000, dir, 0),
                "poll_interval = 0.25\n");
    pid_t worker = agent.Call("info", json::object())["haproxy"].value("pid", 0);
    const double seconds = 10;
    double agent_before = CpuSeconds(agent.pid()), worker_before = CpuSeconds(worker);
    std::this_thread::sleep_for(milliseconds(static_cast<int>(seconds * 1000)));
    double agent_cpu = (CpuSeconds(agent.pid()) - agent_before) / seconds * 100;
    double worker_cpu = (CpuSeconds(worker) - worker_before) / seconds * 100;
    std::printf("\n%-34s %10s %16s\n", "polling show stat every 250 ms", "agent CPU",
                "haproxy worker");
    std::printf("%-34s %9.2f%% %15.2f%%\n", "1000 servers, % of one core", agent_cpu, worker_cpu);
    std::filesystem::remove_all(dir);
  }
  // Latency from a backend going away to the DOWN event at a subscriber.
  std::printf("\n%-34s %12s %12s %12s\n", "backend down -> event (ms)", "p50", "max", "samples");
  for (bool log : {false, true}) {
    char tmpl[] = "/tmp/lb-bench.XXXXXX";
    std::string dir = mkdtemp(tmpl);
    const int port = FreePort();
    Listener backend(port);
    std::ostringstream cfg;
    cfg << "global\n    hard-stop-after 5s\n";
    if (log) cfg << "    log unix@" << dir << "/log.sock local0 notice\n";
    cfg << "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
        << "    timeout server 5s\n    timeout check 1s\n";
    if (log) cfg << "    log global\n";
    cfg << "frontend main\n    bind 127.0.0.1:" << FreePort() << "\n    default_backend app\n"
        << "backend app\n    server s0 127.0.0.1:" << port << " check inter 100 fall 1 rise 1\n";
    std::string keys = "poll_interval = 0.25\n";
    if (log) keys += "log_listener = " + dir + "/log.sock\n";
    Agent agent(agent_bin, haproxy, dir, cfg.str(), keys);
    zmq::context_t ctx;
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::rcvtimeo, 100);
    sub.set(zmq::sockopt::subscribe, "server/app/s0");
    sub.connect(agent.events());
    std::this_thread::sleep_for(milliseconds(300));  // let the subscription reach the agent
    std::vector<double> ms;
    for (int i = 0; i < iterations / 2 + 5; ++i) {
      // Up first (the first round may already be up: then no event comes, and that is fine).
      WaitForStatus(sub, "UP", milliseconds(i == 0 ? 1500 : 5000));
      // A random phase, so that the failure does not always land at the same point of the
      // check and poll cycles.
      std::this_thread::sleep_for(milliseconds(std::rand() % 300));
      auto start = Clock::now();
      backend.Close();
      if (!WaitForStatus(sub, "DOWN", milliseconds(5000))) Die("no DOWN event");
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      backend.Open();
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%-34s %12.1f %12.1f %12zu\n",
                log ? "log listener + polling" : "polling only (250 ms)", ms[ms.size() / 2],
                ms.back(), ms.size());
    std::filesystem::remove_all(dir);
  }
}

// A config whose backend `app` has these servers (name, port, weight), no health checks.
std::string ServersConfig(int frontend, const std::string& dir,
                          const std::vector<std::tuple<std::string, int, int>>& servers) {
  std::ostringstream c;
  c << "global\n    server-state-file " << dir << "/state\n    hard-stop-after 5s\n"
    << "defaults\n    mode http\n    option idle-close-on-response\n"
    << "    load-server-state-from-file global\n"
    << "    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
    << "frontend main\n    bind 127.0.0.1:" << frontend << "\n    default_backend app\n"
    << "backend app\n    balance roundrobin\n";
  for (const auto& [name, port, weight] : servers) {
    c << "    server " << name << " 127.0.0.1:" << port << " weight " << weight << "\n";
  }
  return c.str();
}

std::vector<std::tuple<std::string, int, int>> Servers(int n, const std::string& prefix = "s",
                                                       int weight = 1) {
  std::vector<std::tuple<std::string, int, int>> out;
  for (int i = 0; i < n; ++i)
    out.emplace_back(prefix + std::to_string(i), 20000 + i % 1000, weight);
  return out;
}

void RuntimeBenchmarks(const std::string& agent_bin, const std::string& haproxy, int iterations) {
  std::printf("\n%-22s %8s %11s %12s %12s %12s %9s %12s\n", "server-only change (ms)", "servers",
              "floor p50", "runtime p50", "runtime p99", "reload p50", "speed-up", "new workers");
  struct Scenario {
    const char* name;
    int base;   // servers in the backend
    int delta;  // servers added (0: a weight change)
  };
  for (const Scenario sc : {Scenario{"weight", 3, 0}, Scenario{"add 1 / remove 1", 3, 1},
                            Scenario{"add 100 / remove 100", 1000, 100}}) {
    char tmpl[] = "/tmp/lb-bench.XXXXXX";
    std::string dir = mkdtemp(tmpl);
    const int frontend = FreePort();
    auto base = Servers(sc.base);
    auto changed = base;
    if (sc.delta == 0) {
      std::get<2>(changed[0]) = 2;
    } else {
      auto more = Servers(sc.delta, "x");
      changed.insert(changed.end(), more.begin(), more.end());
    }
    const std::string a = ServersConfig(frontend, dir, base),
                      b = ServersConfig(frontend, dir, changed);
    Agent agent(agent_bin, haproxy, dir, a);
    lb::agent::SocketOptions o;
    // The raw runtime commands for the same change (the floor), in one batch each way.
    std::vector<std::string> forward, backward;
    if (sc.delta == 0) {
      forward = {"set server app/s0 weight 2"};
      backward = {"set server app/s0 weight 1"};
    } else {
      for (int i = 0; i < sc.delta; ++i) {
        const std::string id = "app/x" + std::to_string(i);
        forward.push_back("add server " + id + " 127.0.0.1:" + std::to_string(20000 + i) +
                          " weight 1");
        forward.push_back("enable server " + id);
        backward.push_back("set server " + id + " state maint");
        backward.push_back("del server " + id);
      }
    }
    auto batch = [](const std::vector<std::string>& commands) {
      std::string line;
      for (const auto& c : commands) line += (line.empty() ? "@1 " : "; @1 ") + c;
      return line;
    };
    const std::string forward_line = batch(forward), backward_line = batch(backward);
    std::vector<double> floor_fwd, floor_back;
    for (int i = 0; i < iterations * 2; ++i) {
      for (bool fwd : {true, false}) {
        auto start = Clock::now();
        auto r = lb::agent::HaproxyCommand(agent.master(), fwd ? forward_line : backward_line, o);
        if (!r.ok()) Die("raw runtime commands: " + r.status().message());
        (fwd ? floor_fwd : floor_back)
            .push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
    }
    const pid_t worker = agent.Call("info", json::object())["haproxy"].value("pid", 0);
    // Through the agent: the runtime path, then a forced reload of the same change.
    auto measure = [&](bool reload) {
      std::vector<double> fwd, back;
      for (int i = 0; i < iterations; ++i) {
        for (bool forward_way : {true, false}) {
          json args = {{"config", forward_way ? b : a}};
          if (reload) args["apply_via"] = "reload";
          auto start = Clock::now();
          json r = agent.Call("reload", args);
          const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
          if (r.value("applied_via", "") != (reload ? "reload" : "runtime") ||
              !r.value("verified", false)) {
            Die(std::string(sc.name) + ": not applied as expected: " + r.dump());
          }
          (forward_way ? fwd : back).push_back(ms);
        }
      }
      return std::make_pair(fwd, back);
    };
    auto runtime = measure(false);
    const pid_t after = agent.Call("info", json::object())["haproxy"].value("pid", 0);
    auto reload = measure(true);
    auto pct = [](std::vector<double> v, double q) {
      std::sort(v.begin(), v.end());
      return v[std::min(v.size() - 1, static_cast<std::size_t>(v.size() * q))];
    };
    auto row = [&](const std::string& op, const std::vector<double>& floor,
                   const std::vector<double>& rt, const std::vector<double>& rl) {
      std::printf("%-22s %8d %11.2f %12.2f %12.2f %12.2f %8.1fx %12d\n", op.c_str(), sc.base,
                  pct(floor, 0.5), pct(rt, 0.5), pct(rt, 0.99), pct(rl, 0.5),
                  pct(rl, 0.5) / pct(rt, 0.5), after != worker ? 1 : 0);
    };
    if (sc.delta == 0) {
      std::vector<double> floor = floor_fwd, rt = runtime.first, rl = reload.first;
      floor.insert(floor.end(), floor_back.begin(), floor_back.end());
      rt.insert(rt.end(), runtime.second.begin(), runtime.second.end());
      rl.insert(rl.end(), reload.second.begin(), reload.second.end());
      row("weight", floor, rt, rl);
    } else {
      const std::string n = std::to_string(sc.delta);
      row("add " + n, floor_fwd, runtime.first, reload.first);
      row("remove " + n, floor_back, runtime.second, reload.second);
    }
    if (!std::getenv("LB_BENCH_KEEP")) std::filesystem::remove_all(dir);
  }
}

// Writes a key pair for the agent and one client into `dir`; the client's keys.
lb::common::CurveClientKeys WriteKeys(const std::string& dir) {
  for (const char* name : {"agent", "client"}) {
    auto cert = lb::common::GenerateCertificate();
    if (!cert.ok()) Die(cert.status().message());
    auto s = lb::common::WriteCertificate(dir + "/" + name, *cert, "lb-bench");
    if (!s.ok()) Die(s.message());
  }
  std::ofstream(dir + "/clients") << lb::common::ReadCertificate(dir + "/client", false)->public_key
                                  << "\n";
  auto keys = lb::common::LoadClientKeys({dir + "/client_secret", dir + "/agent"});
  if (!keys.ok()) Die(keys.status().message());
  return *keys;
}

void CurveBenchmarks(const std::string& agent_bin, const std::string& haproxy, int iterations) {
  std::printf("\n%-26s %8s %16s %16s %14s\n", "CURVE (ms)", "servers", "plaintext p50", "CURVE p50",
              "CURVE p99");
  for (int servers : {3, 1000}) {
    char plain_tmpl[] = "/tmp/lb-bench.XXXXXX";
    char curve_tmpl[] = "/tmp/lb-bench.XXXXXX";
    std::string plain_dir = mkdtemp(plain_tmpl), curve_dir = mkdtemp(curve_tmpl);
    lb::common::CurveClientKeys keys = WriteKeys(curve_dir);
    Agent plain(agent_bin, haproxy, plain_dir, Config(FreePort(), servers, plain_dir, 0));
    Agent curve(agent_bin, haproxy, curve_dir, Config(FreePort(), servers, curve_dir, 0),
                "[security]\ncurve_secret_key = agent_secret\ncurve_clients = clients\n", &keys);
    Stats plain_status = Measure(iterations * 5, [&] { plain.Call("status", json::object()); });
    Stats curve_status = Measure(iterations * 5, [&] { curve.Call("status", json::object()); });
    std::printf("%-26s %8d %16.2f %16.2f %14.2f\n", "status", servers, plain_status.p50,
                curve_status.p50, curve_status.p99);
    if (servers == 3) {
      Stats plain_connect = Measure(iterations * 5, [&] { plain.ConnectAndPing(); });
      Stats curve_connect = Measure(iterations * 5, [&] { curve.ConnectAndPing(); });
      std::printf("%-26s %8s %16.2f %16.2f %14.2f\n", "new connection + ping", "-",
                  plain_connect.p50, curve_connect.p50, curve_connect.p99);
    }
    std::filesystem::remove_all(plain_dir);
    std::filesystem::remove_all(curve_dir);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string agent_bin = LB_AGENT_BINARY, bridge_bin = LB_BRIDGE_BINARY,
              haproxy = "/usr/sbin/haproxy";
  int iterations = 20;
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--agent")
      agent_bin = argv[i + 1];
    else if (a == "--bridge")
      bridge_bin = argv[i + 1];
    else if (a == "--haproxy")
      haproxy = argv[i + 1];
    else if (a == "--iterations")
      iterations = std::max(3, std::atoi(argv[i + 1]));
    else if (a == "--only")
      only = argv[i + 1];
    else
      Die("unknown argument " + a);
  }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (!only.empty() && only != "core" && only != "runtime" && only != "events" && only != "curve" &&
      only != "http") {
    Die("--only wants core, runtime, events, curve or http");
  }
  if (only == "http") {
    HttpBenchmarks(agent_bin, bridge_bin, haproxy, iterations);
    return 0;
  }
  if (only == "runtime") {
    RuntimeBenchmarks(agent_bin, haproxy, iterations);
    return 0;
  }
  if (only == "events") {
    EventBenchmarks(agent_bin, haproxy, iterations);
    return 0;
  }
  if (only == "curve") {
    CurveBenchmarks(agent_bin, haproxy, iterations);
    return 0;
  }
  std::printf("%-8s %8s %14s %14s %14s %10s\n", "op", "servers", "floor p50 ms", "agent p50 ms",
              "agent p99 ms", "overhead");
  for (int servers : {3, 1000}) {
    char tmpl[] = "/tmp/lb-bench.XXXXXX";
    std::string dir = mkdtemp(tmpl);
    const int frontend = FreePort();
    Agent agent(agent_bin, haproxy, dir, Config(frontend, servers, dir, 0));
    lb::agent::SocketOptions o;
    Stats floor_status = Measure(iterations * 5, [&] {
      auto csv = lb::agent::HaproxyCommand(agent.master(), "@1 show stat", o);
      if (!csv.ok() || !lb::agent::ParseShowStat(*csv).ok()) Die("raw show stat failed");
    });
    Stats agent_status = Measure(iterations * 5, [&] { agent.Call("status", json::object()); });
    int variant = 1;
    // Every server's weight changes: a forced reload (the runtime path has its own table).
    Stats agent_reload = Measure(iterations, [&] {
      agent.Call("reload",
                 {{"config", Config(frontend, servers, dir, variant++)}, {"apply_via", "reload"}});
    });
    Stats floor_reload = Measure(iterations, [&] {
      RawReload(haproxy, dir, agent.master(), Config(frontend, servers, dir, variant++));
    });
    auto row = [&](const char* op, Stats floor, Stats a) {
      std::printf("%-8s %8d %14.2f %14.2f %14.2f %9.2fx\n", op, servers, floor.p50, a.p50, a.p99,
                  a.p50 / floor.p50);
    };
    row("status", floor_status, agent_status);
    row("reload", floor_reload, agent_reload);
    std::filesystem::remove_all(dir);
  }
  if (only == "core") return 0;
  RuntimeBenchmarks(agent_bin, haproxy, iterations);
  CurveBenchmarks(agent_bin, haproxy, iterations);
  HttpBenchmarks(agent_bin, bridge_bin, haproxy, iterations);
  EventBenchmarks(agent_bin, haproxy, iterations);
  return 0;
}
