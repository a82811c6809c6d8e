// A network partition between the fleet controller and some agents, made with the kernel's own
// tools: each agent runs in its own network namespace, joined to the host by a veth pair with
// addresses from 10.200.<n>.0/30 (the test's own hosts; nothing else is touched). The
// controller binds tcp:// on the first pair's host-side address, with CURVE as in production
// (its allow-list holds every agent's key; each agent pins the controller's key); the agents'
// own command sockets stay ipc:// (the filesystem is shared), CURVE too.
//
// DESIGN. The partition is a silent drop, not a reject: a `pfifo limit 0` qdisc on both ends of
// a veth pair drops every packet before it leaves, so neither side ever sees a RST, a FIN or an
// ICMP error; TCP just stops hearing from the other side, as with a dead switch. (The faithful
// `tc qdisc ... netem loss 100%` needs the sch_netem module, which this kernel may lack; a
// zero-length FIFO needs nothing but sch_fifo.) While it lasts (30 s) the controller pushes;
// after it heals, the cut-off agents must converge within 10 s by themselves (beacon timeout,
// reconnect, hello), without a restart: same agent pid, same haproxy master.
//
// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): without it the test fails with a message; it is
// never skipped. Namespaces and veths are named after the test's pid and removed even when the
// test fails; ones left by a test that was SIGKILLed (its pid gone) are removed on the next run.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kPartition(30000);
constexpr milliseconds kHealDeadline(10000);

std::string LbctlBinary() { return LBCTL_BINARY; }

long long MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

std::string FindBinary(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    std::string path = std::string(dir) + name;
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

// Runs a command that must succeed; fails the test with its output when it does not.
bool Must(const std::vector<std::string>& argv) {
  CommandResult r = RunCommand(argv, milliseconds(20000));
  std::string line;
  for (const auto& a : argv) line += a + " ";
  EXPECT_EQ(r.exit_code, 0) << line << "\n" << r.Describe();
  return r.exit_code == 0;
}

// Runs a command whose failure does not matter (clean-up of what may not exist).
void Try(const std::vector<std::string>& argv) { RunCommand(argv, milliseconds(20000)); }

// SIGKILLs every process left in namespace `ns` (an agent or haproxy of a test that could not
// stop them).
void KillProcessesIn(const std::string& ip, const std::string& ns) {
  CommandResult r = RunCommand({ip, "netns", "pids", ns});
  std::istringstream pids(r.out);
  for (pid_t pid; pids >> pid;) {
    if (pid > 1 && pid != getpid()) kill(pid, SIGKILL);
  }
}

// Removes namespaces and veths of earlier runs of this test whose process is gone (a test
// killed by ctest's timeout cannot clean up after itself).
void RemoveLeftovers(const std::string& ip) {
  CommandResult r = RunCommand({ip, "netns", "list"});
  std::istringstream lines(r.out);
  const std::regex name("^lbtf([0-9]+)-([0-9]+)");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, name)) continue;
    const pid_t pid = std::stoi(m[1]);
    if (pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    KillProcessesIn(ip, m[0].str());
    Try({ip, "link", "del", "lfh" + m[1].str() + "x" + m[2].str()});
    Try({ip, "netns", "del", m[0].str()});
  }
}

// One network namespace with a veth pair to the host: host side 10.200.<n>.1/30, namespace
// side 10.200.<n>.2/30, default route through the host side. Removed by the destructor.
class NetNs {
 public:
  NetNs(std::string ip, std::string tc, int k, int subnet)
      : ip_(std::move(ip)), tc_(std::move(tc)) {
    const std::string pid = std::to_string(getpid());
    name_ = "lbtf" + pid + "-" + std::to_string(k);
    host_if_ = "lfh" + pid + "x" + std::to_string(k);
    ns_if_ = "lfn" + pid + "x" + std::to_string(k);
    prefix_ = "10.200." + std::to_string(subnet) + ".";
    ok_ = Must({ip_, "netns", "add", name_}) &&
          Must({ip_, "link", "add", host_if_, "type", "veth", "peer", "name", ns_if_}) &&
          Must({ip_, "link", "set", ns_if_, "netns", name_}) &&
          Must({ip_, "addr", "add", host_address() + "/30", "dev", host_if_}) &&
          Must({ip_, "link", "set", host_if_, "up"}) &&
          Must({ip_, "-n", name_, "addr", "add", ns_address() + "/30", "dev", ns_if_}) &&
          Must({ip_, "-n", name_, "link", "set", ns_if_, "up"}) &&
          Must({ip_, "-n", name_, "link", "set", "lo", "up"}) &&
          Must({ip_, "-n", name_, "route", "add", "default", "via", host_address()});
  }
  ~NetNs() {
    KillProcessesIn(ip_, name_);          // none, unless an agent could not be stopped
    Try({ip_, "link", "del", host_if_});  // deletes the peer too
    Try({ip_, "netns", "del", name_});
  }
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;

  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }
  std::string host_address() const { return prefix_ + "1"; }
  std::string ns_address() const { return prefix_ + "2"; }
  std::vector<std::string> ExecPrefix() const { return {ip_, "netns", "exec", name_}; }

  // Drops every packet in both directions, silently (see DESIGN).
  bool Cut() {
    return Must({tc_, "qdisc", "add", "dev", host_if_, "root", "pfifo", "limit", "0"}) &&
           Must({ip_, "netns", "exec", name_, tc_, "qdisc", "add", "dev", ns_if_, "root", "pfifo",
                 "limit", "0"});
  }
  bool Heal() {
    return Must({tc_, "qdisc", "del", "dev", host_if_, "root"}) &&
           Must({ip_, "netns", "exec", name_, tc_, "qdisc", "del", "dev", ns_if_, "root"});
  }
  // Packets the two qdiscs dropped (tc -s), summed; -1 when unreadable.
  long long Dropped() {
    long long total = 0;
    for (auto argv : {std::vector<std::string>{tc_, "-s", "qdisc", "show", "dev", host_if_},
                      std::vector<std::string>{ip_, "netns", "exec", name_, tc_, "-s", "qdisc",
                                               "show", "dev", ns_if_}}) {
      CommandResult r = RunCommand(argv);
      std::smatch m;
      if (!std::regex_search(r.out, m, std::regex("dropped ([0-9]+)"))) return -1;
      total += std::stoll(m[1]);
    }
    return total;
  }

 private:
  std::string ip_, tc_, name_, host_if_, ns_if_, prefix_;
  bool ok_ = false;
};

// A /24 under 10.200 that no interface of this host uses, starting from one derived from the
// pid so that parallel runs do not try the same ones.
std::vector<int> FreeSubnets(const std::string& ip, int count) {
  CommandResult r = RunCommand({ip, "-4", "-o", "addr", "show"});
  std::vector<int> out;
  const int start = 10 + (getpid() % 70) * 3;
  for (int step = 0; step < 240 && static_cast<int>(out.size()) < count; ++step) {
    const int n = 10 + (start - 10 + step) % 240;
    if (r.out.find("10.200." + std::to_string(n) + ".") == std::string::npos) out.push_back(n);
  }
  return out;
}

std::string Sha(AgentFixture& agent) {
  auto r = AgentCall(agent.endpoint(), "get_config", json::object(), milliseconds(5000),
                     agent.client_keys());
  if (!r.ok() || !r->status.ok()) return "";
  return r->result.value("sha256", "");
}

int AgentPid(AgentFixture& agent) {
  auto r =
      AgentCall(agent.endpoint(), "info", json::object(), milliseconds(5000), agent.client_keys());
  if (!r.ok() || !r->status.ok()) return 0;
  return r->result["agent"].value("pid", 0);
}

TEST(FleetPartitionTest, CutOffAgentsConvergeWithinSecondsOfHealingWithoutRestart) {
  ASSERT_EQ(geteuid(), 0u) << "FleetPartitionTest needs root (it creates network namespaces, "
                              "veth pairs and tc qdiscs); run it as root, as CI does";
  const std::string ip = FindBinary("ip");
  const std::string tc = FindBinary("tc");
  ASSERT_FALSE(ip.empty()) << "`ip` not found in /usr/sbin, /sbin, /usr/bin, /bin: install "
                              "iproute2";
  ASSERT_FALSE(tc.empty()) << "`tc` not found: install iproute2";
  RemoveLeftovers(ip);

  // ns 0 stays connected; ns 1 and 2 are cut off. Declared first: removed last.
  constexpr int kAgents = 3;
  const auto subnets = FreeSubnets(ip, kAgents);
  ASSERT_EQ(subnets.size(), static_cast<std::size_t>(kAgents)) << "no free 10.200.x.0/30";
  std::vector<std::unique_ptr<NetNs>> ns;
  for (int k = 0; k < kAgents; ++k) {
    ns.push_back(std::make_unique<NetNs>(ip, tc, k, subnets[k]));
    ASSERT_TRUE(ns.back()->ok()) << "could not set up namespace " << ns.back()->name();
  }

  TempDir dir;
  FleetController::Options options;
  options.lbctl = LbctlBinary();
  options.dir = dir.path();
  options.pub = "tcp://" + ns[0]->host_address() + ":" + std::to_string(FreePort());
  options.router = "tcp://" + ns[0]->host_address() + ":" + std::to_string(FreePort());
  options.beacon_interval_s = 0.2;
  // Over a real (virtual) network, as in production: CURVE between the controller and the
  // agents (SECURITY.md). The controller allow-lists every agent's public certificate.
  auto controller_cert = common::GenerateCertificate();
  ASSERT_TRUE(controller_cert.ok());
  ASSERT_TRUE(
      common::WriteCertificate(dir.File("controller"), *controller_cert, "lb-agent tests").ok());
  std::filesystem::create_directory(dir.File("agents"));
  options.curve_secret_key = dir.File("controller_secret");
  options.curve_clients = dir.File("agents");
  FleetController controller(options);

  const int shared_port = FreePort();
  std::vector<std::unique_ptr<AgentFixture>> agents;
  for (int k = 0; k < kAgents; ++k) {
    auto agent = std::make_unique<AgentFixture>(
        Keys{}, Keys{{"agent_id", "p" + std::to_string(k)}, {"poll_interval", "1"}},
        Keys{{"controller_pub", controller.pub()},
             {"controller_router", controller.router()},
             {"controller_public_key", dir.File("controller")},
             {"groups", k == 0 ? "connected" : "cut"},
             {"state_file", "fleet-state.json"},
             {"beacon_timeout", "1"}});
    CurveFiles files = WriteCurveFiles(agent->dir());
    agent->SetSecurityKeys(files.SecurityKeys());
    agent->SetClientKeys(files.client);
    std::filesystem::copy_file(files.agent_public, dir.File("agents/p" + std::to_string(k)));
    agent->SetCommandPrefix(ns[k]->ExecPrefix());
    // Servers on the namespace's own loopback, where nothing listens: no checks, so no matter.
    WriteFile(agent->config_path(), HaproxyConfig(FreePort(), {{"web", 9, ""}}));
    agents.push_back(std::move(agent));
  }
  controller.Start();
  ASSERT_FALSE(HasFailure());
  for (int k = 0; k < kAgents; ++k) {
    agents[k]->StartAgent();
    ASSERT_FALSE(HasFailure()) << "agent in " << ns[k]->name() << " did not start";
  }
  auto config = [&](const std::string& tag) {
    return HaproxyConfig(shared_port, {{"web-" + tag, 9, ""}});
  };
  auto push = [&](const std::string& text, const std::string& timeout_s) {
    static int n = 0;
    const std::string file = dir.File("push-" + std::to_string(n++) + ".cfg");
    WriteFile(file, text);
    return controller.Lbctl({"push", file, "--all", "--expect", std::to_string(kAgents),
                             "--timeout", timeout_s, "--json"});
  };
  auto sha_of = [&](const std::string& text) {
    return agents[0]->Ok("validate", {{"config", text}}).value("sha256", "");
  };
  auto wait_sha = [&](std::vector<int> which, const std::string& sha, milliseconds timeout) {
    return WaitFor(
        [&] {
          for (int k : which) {
            if (Sha(*agents[k]) != sha) return false;
          }
          return true;
        },
        timeout);
  };

  // Connected: a push reaches all three over TCP.
  const std::string sha1 = sha_of(config("v1"));
  CommandResult p1 = push(config("v1"), "30");
  ASSERT_EQ(p1.exit_code, 0) << p1.Describe();
  ASSERT_TRUE(wait_sha({0, 1, 2}, sha1, milliseconds(10000)));
  std::vector<int> agent_pids;
  std::vector<std::string> masters;
  for (int k = 0; k < kAgents; ++k) {
    agent_pids.push_back(AgentPid(*agents[k]));
    masters.push_back(ReadFile(agents[k]->dir().File("haproxy.pid")));
    ASSERT_GT(agent_pids.back(), 0);
  }

  // Cut ns 1 and 2 off; push twice while they are away.
  const auto cut_at = Clock::now();
  ASSERT_TRUE(ns[1]->Cut());
  ASSERT_TRUE(ns[2]->Cut());
  std::this_thread::sleep_for(milliseconds(1000));
  const std::string sha2 = sha_of(config("v2"));
  CommandResult p2 = push(config("v2"), "5");
  std::cout << "[partition] push during the partition exited " << p2.exit_code << " after "
            << p2.elapsed.count() << " ms\n"
            << p2.out << p2.err << std::endl;
  EXPECT_TRUE(p2.exit_code == 4 || p2.exit_code == 5)
      << "two of three agents cannot ack: partial failure or timeout expected\n"
      << p2.Describe();
  EXPECT_TRUE(wait_sha({0}, sha2, milliseconds(10000))) << "the connected agent missed v2";
  // The report names who did not answer: the operator's first question after a timeout.
  {
    json report = json::parse(p2.out, nullptr, false);
    std::map<std::string, std::string> outcome;
    if (report.is_object() && report.contains("agents") && report["agents"].is_array()) {
      for (const auto& a : report["agents"]) outcome[a.value("agent", "")] = a.value("outcome", "");
    }
    EXPECT_EQ(outcome["p0"], "applied") << p2.out;
    for (const char* cut : {"p1", "p2"}) {
      EXPECT_EQ(outcome[cut], "pending")
          << cut << " is known to the controller and matches --all, yet the --json report of "
          << "the timed-out push does not list it as pending:\n"
          << p2.out;
    }
  }

  std::this_thread::sleep_for(milliseconds(10000));
  const std::string sha3 = sha_of(config("v3"));
  CommandResult p3 = push(config("v3"), "5");
  EXPECT_TRUE(p3.exit_code == 4 || p3.exit_code == 5) << p3.Describe();
  EXPECT_TRUE(wait_sha({0}, sha3, milliseconds(10000))) << "the connected agent missed v3";
  for (int k : {1, 2}) {
    EXPECT_EQ(Sha(*agents[k]), sha1) << "agent p" << k << " changed while cut off: the "
                                     << "partition is not a partition";
  }

  std::this_thread::sleep_for(kPartition - (Clock::now() - cut_at));
  const long long dropped = ns[1]->Dropped() + ns[2]->Dropped();
  ASSERT_TRUE(ns[1]->Heal());
  ASSERT_TRUE(ns[2]->Heal());
  const auto healed_at = Clock::now();
  std::cout << "[partition] cut for " << MsSince(cut_at) << " ms; " << dropped
            << " packets dropped by the qdiscs" << std::endl;
  EXPECT_GT(dropped, 0) << "the qdiscs dropped nothing: the agents were not talking?";

  const bool converged = wait_sha({1, 2}, sha3, kHealDeadline);
  const long long took = MsSince(healed_at);
  std::cout << "[partition] cut-off agents " << (converged ? "converged" : "did NOT converge")
            << " " << took << " ms after healing" << std::endl;
  EXPECT_TRUE(converged) << "agents p1/p2 not on v3 " << kHealDeadline.count()
                         << " ms after the partition healed: p1=" << Sha(*agents[1]).substr(0, 12)
                         << " p2=" << Sha(*agents[2]).substr(0, 12) << " (v3=" << sha3.substr(0, 12)
                         << ")";
  for (int k = 0; k < kAgents; ++k) {
    EXPECT_TRUE(agents[k]->AgentRunning()) << "agent p" << k << " exited";
    EXPECT_EQ(AgentPid(*agents[k]), agent_pids[k]) << "agent p" << k << " was restarted";
    EXPECT_EQ(ReadFile(agents[k]->dir().File("haproxy.pid")), masters[k])
        << "haproxy of p" << k << " was restarted instead of reloaded";
  }

  // And the fleet works as a whole again.
  const std::string sha4 = sha_of(config("v4"));
  CommandResult p4 = push(config("v4"), "30");
  EXPECT_EQ(p4.exit_code, 0) << p4.Describe();
  EXPECT_TRUE(wait_sha({0, 1, 2}, sha4, milliseconds(10000)));

  // Agents first (they live in the namespaces), then the controller, then the namespaces.
  agents.clear();
}

}  // namespace
}  // namespace lb::testing
