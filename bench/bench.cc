// lb-bench: what lb-agent costs on top of HAProxy itself, measured in one run on this machine.
//
// For 3 and 1000 servers it starts a real lb-agent (managed mode, so a real haproxy) in a temp
// dir and measures, each next to the raw HAProxy floor:
//   status  agent `status` over ZeroMQ   vs  `@1 show stat` on the master socket, parsed
//   reload  agent `reload` (new config)  vs  haproxy -c + show servers state + master reload +
//                                             wait for the new worker in `show proc`
// and prints one table. Usage: lb-bench [--agent PATH] [--haproxy PATH] [--iterations N]
#include <fcntl.h>
#include <signal.h>
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
#include <vector>
#include <zmq.hpp>

#include "haproxy_parsers.h"
#include "haproxy_socket.h"
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
  Agent(const std::string& binary, const std::string& haproxy, const std::string& dir,
        const std::string& config)
      : dir_(dir), endpoint_("ipc://" + dir + "/cmd.sock") {
    std::ofstream(dir + "/haproxy.cfg") << config;
    std::ofstream(dir + "/lb-agent.cfg")
        << "[lb-agent]\ncommand_endpoint = " << endpoint_ << "\nhistory_dir = history\n"
        << "event_endpoint = ipc://" << dir << "/events.sock\n"
        << "[haproxy]\nconfig_file_path = haproxy.cfg\ndefault_backend = app\n"
        << "master_socket = master.sock\npid_file = haproxy.pid\nreload_method = managed\n"
        << "haproxy_binary = " << haproxy << "\n";
    pid_ = fork();
    if (pid_ == 0) {
      int log = ::open((dir + "/agent.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(log, 2);
      dup2(log, 1);
      execl(binary.c_str(), binary.c_str(), "--config", (dir + "/lb-agent.cfg").c_str(), nullptr);
      _exit(127);
    }
    socket_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::req);
    socket_->set(zmq::sockopt::rcvtimeo, 30000);
    socket_->set(zmq::sockopt::linger, 0);
    socket_->connect(endpoint_);
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (true) {
      zmq::socket_t probe(ctx_, zmq::socket_type::req);
      probe.set(zmq::sockopt::rcvtimeo, 200);
      probe.set(zmq::sockopt::linger, 0);
      probe.connect(endpoint_);
      probe.send(zmq::buffer(lb::proto::EncodeRequest({json(0), "info", json::object()})));
      zmq::message_t m;
      if (probe.recv(m)) {
        auto r = lb::proto::DecodeReply(m.to_string_view(), {});
        if (r.ok() && r->status.ok() && r->result["haproxy"].value("running", false)) break;
      }
      if (Clock::now() > deadline) Die("lb-agent did not start; see " + dir + "/agent.log");
    }
  }
  ~Agent() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  json Call(const std::string& cmd, const json& args) {
    socket_->send(zmq::buffer(lb::proto::EncodeRequest({json(1), cmd, args})));
    zmq::message_t m;
    if (!socket_->recv(m)) Die(cmd + ": no answer");
    auto r = lb::proto::DecodeReply(m.to_string_view(), {});
    if (!r.ok() || !r->status.ok()) {
      Die(cmd + ": " + (r.ok() ? r->status.ToString() : r.status().ToString()));
    }
    return r->result;
  }
  std::string master() const { return dir_ + "/master.sock"; }

 private:
  std::string dir_;
  std::string endpoint_;
  pid_t pid_;
  zmq::context_t ctx_;
  std::unique_ptr<zmq::socket_t> socket_;
};

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

}  // namespace

int main(int argc, char** argv) {
  std::string agent_bin = LB_AGENT_BINARY, haproxy = "/usr/sbin/haproxy";
  int iterations = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--agent")
      agent_bin = argv[i + 1];
    else if (a == "--haproxy")
      haproxy = argv[i + 1];
    else if (a == "--iterations")
      iterations = std::max(3, std::atoi(argv[i + 1]));
    else
      Die("unknown argument " + a);
  }
  signal(SIGPIPE, SIG_IGN);
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
    Stats agent_reload = Measure(iterations, [&] {
      agent.Call("reload", {{"config", Config(frontend, servers, dir, variant++)}});
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
  return 0;
}
