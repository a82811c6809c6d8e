// fleet-fanout-bench: how long a real lb-controller takes to get a push acked by N agents, for
// N = 100, 1,000, 5,000 (--sizes), with the messaging only: every agent is the real
// lb::agent::FleetClient (its sockets, state machine, state file and acks), with the reload path
// replaced by an instant answer ("unchanged" when the config is the one it last applied,
// "applied" otherwise). One table: push -> last ack for a config every agent has and for a new
// one, the controller's CPU seconds and peak RSS, and the client processes' CPU seconds.
//
// DESIGN: the controller is the lb-controller binary, on ipc:// endpoints in a temp dir. The
// clients run in child processes (fork) of at most --per-process clients each: one client holds
// a SUB, a DEALER, a monitor PAIR pair, an eventfd and two threads, so 5,000 of them do not fit
// in one process's descriptor limit (20,000 here). Each child shares one zmq::context_t among
// its clients and reports on a pipe once every client has seen a beacon; it stops its clients
// when its stdin pipe closes (the parent ended) and dies with the parent (PR_SET_PDEATHSIG).
// Pushes and acks go through the control socket (`push`, then `acks` polled every 20 ms); the
// time of the last ack is the controller's own received_ms, so polling adds no latency to it
// (it adds some controller CPU, which is counted).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "fleet_client.h"
#include "lb/client/command_client.h"
#include "lb/common/daemon.h"
#include "lb/common/log.h"
#include "lb/common/settings.h"
#include "lb/proto/fleet.h"
#include "reload_pipeline.h"

namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_interrupted{false};
int g_connect_timeout_s = 180;  // --connect-timeout-s
void OnSignal(int) { g_interrupted = true; }

int64_t WallMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string AgentId(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "bench-%05d", i);
  return buf;
}

// ---- child: the agents ----

struct FakeReload {
  std::mutex mu;
  std::string applied;
};

// Runs clients [first, last) until `stop_fd` reaches EOF; writes one byte to `ready_fd` once each
// has seen a beacon. Never returns.
[[noreturn]] void RunClients(int first, int last, const std::string& dir, const std::string& pub,
                             const std::string& router, milliseconds beacon_timeout, int ready_fd,
                             int stop_fd) {
  lb::common::SetLogLevel(lb::common::LogLevel::kWarning);
  const int count = last - first;
  zmq::context_t context(2);
  context.set(zmq::ctxopt::max_sockets, 8 * count + 64);
  std::vector<std::unique_ptr<lb::common::Settings>> settings;
  std::vector<std::shared_ptr<FakeReload>> reloads;
  std::vector<std::unique_ptr<lb::agent::FleetClient>> clients;
  for (int i = first; i < last; ++i) {
    auto s = std::make_unique<lb::common::Settings>();
    s->agent.agent_id = AgentId(i);
    s->fleet.controller_pub = pub;
    s->fleet.controller_router = router;
    s->fleet.groups = {"bench"};
    s->fleet.beacon_timeout = beacon_timeout;
    s->fleet.state_file = dir + "/agents/" + AgentId(i) + ".json";
    auto fake = std::make_shared<FakeReload>();
    auto submit = [fake](const json& args, lb::agent::ReplyFn reply) {
      auto parsed = lb::agent::ReloadRequestFromArgs(args);
      if (!parsed.ok()) {
        reply(parsed.status(), nullptr);
        return;
      }
      bool same;
      {
        std::lock_guard<std::mutex> lock(fake->mu);
        same = fake->applied == parsed->config;
        fake->applied = parsed->config;
      }
      reply(
          lb::proto::Status::Ok(),
          json{{"outcome", same ? "unchanged" : "applied"}, {"sha256", "bench"}, {"total_ms", 0}});
    };
    auto status = [](const json&) -> lb::proto::Result<json> {
      return json{{"backends", json::array()}};
    };
    auto client = std::make_unique<lb::agent::FleetClient>(context, *s, submit, status,
                                                           [] { return std::string("bench"); });
    if (auto started = client->Start(); !started.ok()) {
      std::cerr << "fleet-fanout-bench: client " << AgentId(i)
                << " did not start: " << started.message() << "\n";
      _exit(3);
    }
    settings.push_back(std::move(s));
    reloads.push_back(std::move(fake));
    clients.push_back(std::move(client));
  }
  // Ready: every client has seen a beacon (it follows the controller).
  const auto deadline = Clock::now() + std::chrono::seconds(g_connect_timeout_s);
  size_t next = 0;
  while (next < clients.size() && Clock::now() < deadline) {
    json info = clients[next]->Info();
    if (info.value("connected", false) && !info["last_beacon_ms_ago"].is_null()) {
      ++next;
      continue;
    }
    pollfd p{stop_fd, POLLIN, 0};
    if (poll(&p, 1, 20) > 0) break;  // the parent gave up
  }
  if (next == clients.size()) {
    char byte = 'r';
    if (write(ready_fd, &byte, 1) != 1) _exit(4);
  }
  char buf[16];
  while (read(stop_fd, buf, sizeof buf) > 0) {
  }
  for (auto& c : clients) c->Stop();
  _exit(0);
}

// ---- parent ----

struct Child {
  pid_t pid = -1;
  int ready_fd = -1;  // read end
  int stop_fd = -1;   // write end: closing it stops the child
};

struct ProcStats {
  double cpu_s = 0;
  double peak_rss_mb = 0;
};

ProcStats ReadStats(pid_t pid) {
  ProcStats out;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto paren = line.rfind(')');
  if (paren != std::string::npos) {
    std::istringstream rest(line.substr(paren + 2));
    std::vector<std::string> fields;
    std::string f;
    while (rest >> f) fields.push_back(f);
    // Fields 14 and 15 of stat (utime, stime); `rest` starts at field 3.
    if (fields.size() > 12) {
      out.cpu_s = (std::stod(fields[11]) + std::stod(fields[12])) /
                  static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) out.peak_rss_mb = std::stod(line.substr(6)) / 1024.0;
  }
  return out;
}

struct PushFigure {
  std::optional<int64_t> ms;  // push -> last ack; nullopt: not every agent acked
  size_t acked = 0;
  size_t expected_outcome = 0;  // acks with the outcome the push should have
};

struct SizeResult {
  int agents = 0;
  int processes = 0;
  std::vector<PushFigure> unchanged, fresh;
  double connect_s = 0;
  ProcStats push_phase_start, end;
  double clients_cpu_s = 0;  // every client process's CPU over the pushes, summed
  std::string error;
};

class Run {
 public:
  Run(std::string controller_binary, std::string root, int n, int per_process,
      milliseconds beacon_timeout)
      : binary_(std::move(controller_binary)),
        root_(std::move(root)),
        n_(n),
        per_process_(per_process),
        beacon_timeout_(beacon_timeout) {}
  ~Run() { Cleanup(); }

  SizeResult Go(int rounds);

 private:
  bool StartController();
  json Call(const std::string& cmd, const json& args, std::string* error);
  PushFigure PushAndWait(const std::string& config, const std::string& want_outcome);
  void Cleanup();

  std::string binary_;
  std::string root_;  // --dir: where the temp dir (sockets, state files, logs) is made
  int n_;
  int per_process_;
  milliseconds beacon_timeout_;
  std::string dir_;
  pid_t controller_ = -1;
  std::vector<Child> children_;
  zmq::context_t context_{1};
  std::unique_ptr<lb::client::CommandClient> control_;
};

json Run::Call(const std::string& cmd, const json& args, std::string* error) {
  auto reply = control_->Call(cmd, args);
  if (!reply.ok()) {
    *error = cmd + ": " + reply.status().message();
    return nullptr;
  }
  if (!reply->status.ok()) {
    *error = cmd + " refused: " + reply->status.message();
    return nullptr;
  }
  return reply->result;
}

bool Run::StartController() {
  std::string tmpl = root_ + "/lb-fanout-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return false;
  dir_ = tmpl;
  std::filesystem::create_directories(dir_ + "/agents");
  std::ofstream cfg(dir_ + "/lb-controller.cfg");
  cfg << "[controller]\nid = ctl-bench\n"
      << "pub = ipc://" << dir_ << "/pub.sock\n"
      << "router = ipc://" << dir_ << "/router.sock\n"
      << "control = ipc://" << dir_ << "/control.sock\n"
      << "state_dir = " << dir_ << "/state\n"
      << "beacon_interval = 1\n";
  cfg.close();
  const std::string cfg_path = dir_ + "/lb-controller.cfg";
  const std::string log_path = dir_ + "/controller.log";
  controller_ = fork();
  if (controller_ < 0) return false;
  if (controller_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log >= 0) {
      dup2(log, 1);
      dup2(log, 2);
    }
    execl(binary_.c_str(), binary_.c_str(), "--config", cfg_path.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  lb::client::CommandClientOptions options;
  options.endpoint = "ipc://" + dir_ + "/control.sock";
  options.timeout = milliseconds(30000);
  options.wording.peer = "the controller";
  options.wording.program = "lb-controller";
  options.wording.endpoint_setting = "control endpoint";
  options.wording.own_key.clear();
  control_ = std::make_unique<lb::client::CommandClient>(context_, options);
  return true;
}

PushFigure Run::PushAndWait(const std::string& config, const std::string& want_outcome) {
  PushFigure figure;
  lb::proto::FleetPushRequest request;
  request.target = lb::proto::FleetTarget::Group("bench");
  request.args = {{"config", config}};
  std::string error;
  const int64_t sent_ms = WallMs();
  json result = Call("push", lb::proto::EncodePushRequest(request), &error);
  if (result.is_null()) {
    std::cerr << "fleet-fanout-bench: " << error << "\n";
    return figure;
  }
  const uint64_t version = result.value("version", uint64_t{0});
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline && !g_interrupted) {
    json acks = Call("acks", lb::proto::EncodeAcksRequest({{version}}), &error);
    if (!acks.is_null()) {
      std::set<std::string> agents;
      int64_t last = 0;
      size_t expected = 0;
      for (const auto& record : acks.value("acks", json::array())) {
        agents.insert(record.value("agent", ""));
        last = std::max(last, record.value("received_ms", int64_t{0}));
        if (record.value("outcome", "") == want_outcome) ++expected;
      }
      figure.acked = agents.size();
      figure.expected_outcome = expected;
      if (static_cast<int>(agents.size()) >= n_) {
        figure.ms = last - sent_ms;
        return figure;
      }
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  return figure;
}

SizeResult Run::Go(int rounds) {
  SizeResult out;
  out.agents = n_;
  if (!StartController()) {
    out.error = "cannot start lb-controller";
    return out;
  }
  std::string error;
  const auto up_deadline = Clock::now() + std::chrono::seconds(15);
  while (Call("agents", json::object(), &error).is_null()) {
    if (Clock::now() > up_deadline || g_interrupted) {
      out.error = "lb-controller did not answer: " + error;
      return out;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  const std::string pub = "ipc://" + dir_ + "/pub.sock";
  const std::string router = "ipc://" + dir_ + "/router.sock";
  const auto connect_start = Clock::now();
  for (int first = 0; first < n_; first += per_process_) {
    const int last = std::min(n_, first + per_process_);
    int ready[2], stop[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(stop, O_CLOEXEC) != 0) {
      out.error = "pipe failed";
      return out;
    }
    std::cout.flush();
    std::cerr.flush();
    pid_t pid = fork();
    if (pid < 0) {
      out.error = "fork failed";
      return out;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      close(ready[0]);
      close(stop[1]);
      for (const Child& c : children_) {
        close(c.ready_fd);
        close(c.stop_fd);
      }
      int log = open((dir_ + "/agents-" + std::to_string(first) + ".log").c_str(),
                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (log >= 0) dup2(log, 2);
      RunClients(first, last, dir_, pub, router, beacon_timeout_, ready[1], stop[0]);
    }
    close(ready[1]);
    close(stop[0]);
    children_.push_back({pid, ready[0], stop[1]});
  }
  out.processes = static_cast<int>(children_.size());
  // Every child says its clients follow the controller, and the controller lists N agents.
  const auto deadline = Clock::now() + std::chrono::seconds(g_connect_timeout_s);
  size_t ready = 0;
  for (Child& c : children_) {
    while (true) {
      pollfd p{c.ready_fd, POLLIN, 0};
      if (poll(&p, 1, 100) > 0) {
        char byte;
        if (read(c.ready_fd, &byte, 1) == 1) ++ready;
        break;
      }
      if (Clock::now() > deadline || g_interrupted) break;
    }
  }
  if (ready != children_.size()) {
    out.error = "the agents did not all see a beacon within " +
                std::to_string(g_connect_timeout_s) + " s (LB_BENCH_KEEP=1 keeps the logs)";
    return out;
  }
  while (true) {
    json agents = Call("agents", json::object(), &error);
    if (!agents.is_null() && static_cast<int>(agents.value("agents", json::array()).size()) >= n_)
      break;
    if (Clock::now() > deadline || g_interrupted) {
      out.error = "the controller did not list " + std::to_string(n_) + " agents";
      return out;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  out.connect_s = std::chrono::duration<double>(Clock::now() - connect_start).count();
  out.push_phase_start = ReadStats(controller_);
  double clients_start_s = 0;
  for (const Child& c : children_) clients_start_s += ReadStats(c.pid).cpu_s;
  // Version 1 is new to every agent; then per round the same config again and a new one.
  std::string config = "global\n# bench config 0\n";
  PushFigure first = PushAndWait(config, "applied");
  if (!first.ms) {
    out.error = "the first push was acked by " + std::to_string(first.acked) + " of " +
                std::to_string(n_) + " agents within 60 s";
    return out;
  }
  for (int r = 1; r <= rounds && !g_interrupted; ++r) {
    out.unchanged.push_back(PushAndWait(config, "unchanged"));
    config = "global\n# bench config " + std::to_string(r) + "\n";
    out.fresh.push_back(PushAndWait(config, "applied"));
  }
  out.end = ReadStats(controller_);
  for (const Child& c : children_) out.clients_cpu_s += ReadStats(c.pid).cpu_s;
  out.clients_cpu_s -= clients_start_s;
  return out;
}

void Run::Cleanup() {
  for (Child& c : children_) {
    if (c.stop_fd >= 0) close(c.stop_fd);
    c.stop_fd = -1;
  }
  for (Child& c : children_) {
    // A child stops its clients when its pipe closes; SIGKILL after 10 s.
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (waitpid(c.pid, nullptr, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    if (c.ready_fd >= 0) close(c.ready_fd);
  }
  children_.clear();
  control_.reset();
  if (controller_ > 0) {
    kill(controller_, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (waitpid(controller_, nullptr, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        kill(controller_, SIGKILL);
        waitpid(controller_, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    controller_ = -1;
  }
  if (!dir_.empty() && std::getenv("LB_BENCH_KEEP") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  dir_.clear();
}

std::string Median(const std::vector<PushFigure>& figures, int n) {
  std::vector<int64_t> ms;
  for (const auto& f : figures) {
    if (!f.ms) {
      return "not all acked (" + std::to_string(f.acked) + "/" + std::to_string(n) + " in 60 s)";
    }
    ms.push_back(*f.ms);
  }
  if (ms.empty()) return "-";
  std::sort(ms.begin(), ms.end());
  std::ostringstream s;
  s << ms[ms.size() / 2] << " ms (" << ms.front() << "-" << ms.back() << ")";
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes = {100, 1000, 5000};
  int rounds = 3;
  int per_process = 1000;
  // The agents' default is 3 s. With 5,000 clients and the controller on two cores, beacons
  // came late and the clients reconnected in a storm (4,152 hellos in 18 s, never all
  // connected), which measures the CPU starvation of the clients, not the controller.
  milliseconds beacon_timeout(30000);
  std::string controller = LB_CONTROLLER_BINARY;
  // Every agent writes its fleet state file (fsync'd, file and directory) before it acks. On
  // one VM each agent syncs its own disk in parallel with the others; here 5,000 of them share
  // one, so `--dir /dev/shm` (tmpfs: fsync returns at once) measures the messaging alone.
  std::string root = "/tmp";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << arg << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--sizes") {
      sizes.clear();
      std::stringstream list(value());
      std::string item;
      while (std::getline(list, item, ',')) sizes.push_back(std::stoi(item));
    } else if (arg == "--rounds") {
      rounds = std::max(1, std::stoi(value()));
    } else if (arg == "--per-process") {
      per_process = std::max(1, std::stoi(value()));
    } else if (arg == "--beacon-timeout-ms") {
      beacon_timeout = milliseconds(std::max(100, std::stoi(value())));
    } else if (arg == "--connect-timeout-s") {
      g_connect_timeout_s = std::max(1, std::stoi(value()));
    } else if (arg == "--controller") {
      controller = value();
    } else if (arg == "--dir") {
      root = value();
    } else {
      std::cerr << "usage: fleet-fanout-bench [--sizes 100,1000,5000] [--rounds 3] "
                   "[--per-process 1000] [--beacon-timeout-ms 30000] "
                   "[--connect-timeout-s 180] [--controller PATH] [--dir /tmp]\n";
      return arg == "--help" ? 0 : 2;
    }
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  lb::common::SetLogLevel(lb::common::LogLevel::kWarning);
  // Each client process holds its agents' sockets (the controller raises its own limit).
  const std::size_t limit = lb::common::RaiseDescriptorLimit();

  std::cout << "fleet-fanout-bench: real lb-controller (" << controller
            << ") and real FleetClients with an instant reload, on ipc:// and state files in "
            << root << "; clients in child processes of at most " << per_process
            << " each (descriptor limit " << limit << "); agents' beacon_timeout "
            << beacon_timeout.count() << " ms; " << rounds
            << " rounds per size, median (min-max) of push -> last ack by the controller's "
               "received_ms\n\n";
  std::vector<SizeResult> results;
  int failed = 0;
  for (int n : sizes) {
    if (g_interrupted) break;
    SizeResult r;
    {
      Run run(controller, root, n, per_process, beacon_timeout);
      try {
        r = run.Go(rounds);
      } catch (const std::exception& e) {  // an unexpected reply: `run` still cleans up
        r.agents = n;
        r.error = std::string("failed: ") + e.what();
      }
    }
    if (!r.error.empty()) {
      std::cerr << "fleet-fanout-bench: " << n << " agents: " << r.error << "\n";
      ++failed;
    }
    results.push_back(r);
    std::cout << "  " << n << " agents done (" << r.processes << " client processes, connected in "
              << r.connect_s << " s)\n";
    std::cout.flush();
  }
  std::printf(
      "\n| agents | unchanged push -> last ack | new config push -> last ack | controller CPU s "
      "(pushes / whole run) | controller peak RSS MB | clients CPU s (pushes) "
      "|\n|---|---|---|---|---|---|\n");
  for (const auto& r : results) {
    std::printf("| %d | %s | %s | %.2f / %.2f | %.1f | %.1f |\n", r.agents,
                r.error.empty() ? Median(r.unchanged, r.agents).c_str() : r.error.c_str(),
                r.error.empty() ? Median(r.fresh, r.agents).c_str() : "-",
                r.end.cpu_s - r.push_phase_start.cpu_s, r.end.cpu_s, r.end.peak_rss_mb,
                r.clients_cpu_s);
  }
  for (const auto& r : results) {
    for (const auto* set : {&r.unchanged, &r.fresh}) {
      for (const auto& f : *set) {
        if (f.ms && f.expected_outcome != f.acked) {
          std::printf("note: %d agents: %zu of %zu acks had an unexpected outcome\n", r.agents,
                      f.acked - f.expected_outcome, f.acked);
        }
      }
    }
  }
  if (g_interrupted) return 130;
  return failed == 0 ? 0 : 1;
}
