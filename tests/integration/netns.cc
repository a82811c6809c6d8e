#include "netns.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <regex>
#include <sstream>

#include "harness.h"

namespace lb::testing {
namespace {

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

// SIGKILLs every process left in namespace `ns` (an agent, haproxy or controller of a test that
// could not stop them).
void KillProcessesIn(const std::string& ip, const std::string& ns) {
  CommandResult r = RunCommand({ip, "netns", "pids", ns});
  std::istringstream pids(r.out);
  for (pid_t pid; pids >> pid;) {
    if (pid > 1 && pid != getpid()) kill(pid, SIGKILL);
  }
}

// Held from choosing a subnet until its address is on the host side: two tests that start at
// once (ctest -j runs FleetPartitionTest and ControllerSplitBrainTest side by side) would
// otherwise both find a /30 free and both take it. A fixed path, not $TMPDIR: every run on this
// host must see the same lock. Without /run/lock there is no lock, and FreeSubnet's pid-derived
// start makes a clash merely unlikely.
class SubnetLock {
 public:
  SubnetLock() {
    fd_ = open("/run/lock/lb-test-netns.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    while (fd_ >= 0 && flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~SubnetLock() {
    if (fd_ >= 0) close(fd_);  // releases the lock
  }
  SubnetLock(const SubnetLock&) = delete;
  SubnetLock& operator=(const SubnetLock&) = delete;

 private:
  int fd_ = -1;
};

// n of a 10.200.<n>.0/24 that no interface of this host uses, trying from one derived from the
// pid so that parallel runs do not start from the same one; 0 when none is free.
int FreeSubnet(const std::string& ip) {
  CommandResult r = RunCommand({ip, "-4", "-o", "addr", "show"});
  const int start = 10 + (getpid() % 70) * 3;
  for (int step = 0; step < 240; ++step) {
    const int n = 10 + (start - 10 + step) % 240;
    if (r.out.find("10.200." + std::to_string(n) + ".") == std::string::npos) return n;
  }
  return 0;
}

}  // namespace

NetTools FindNetTools(const std::string& test) {
  EXPECT_EQ(geteuid(), 0u)
      << test
      << " needs root (it creates network namespaces, veth pairs and tc "
         "qdiscs, iptables rules in its namespaces); run it as root, as CI does";
  NetTools tools{FindBinary("ip"), FindBinary("tc"), FindBinary("iptables-legacy")};
  EXPECT_FALSE(tools.ip.empty()) << "`ip` not found in /usr/sbin, /sbin, /usr/bin, /bin: install "
                                    "iproute2";
  EXPECT_FALSE(tools.tc.empty()) << "`tc` not found: install iproute2";
  EXPECT_FALSE(tools.iptables.empty()) << "`iptables-legacy` not found: install iptables";
  return tools;
}

void RemoveLeftovers(const NetTools& tools) {
  CommandResult r = RunCommand({tools.ip, "netns", "list"});
  std::istringstream lines(r.out);
  const std::regex name("^lbt([a-z])([0-9]+)-([0-9]+)");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, name)) continue;
    const pid_t pid = std::stoi(m[2]);
    if (pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    KillProcessesIn(tools.ip, m[0].str());
    Try({tools.ip, "link", "del", "l" + m[1].str() + "h" + m[2].str() + "x" + m[3].str()});
    Try({tools.ip, "netns", "del", m[0].str()});
  }
}

NetNs::NetNs(NetTools tools, char tag, int k) : tools_(std::move(tools)) {
  const std::string pid = std::to_string(getpid());
  name_ = std::string("lbt") + tag + pid + "-" + std::to_string(k);
  host_if_ = std::string("l") + tag + "h" + pid + "x" + std::to_string(k);
  ns_if_ = std::string("l") + tag + "n" + pid + "x" + std::to_string(k);
  const std::string& ip = tools_.ip;
  const SubnetLock lock;
  const int subnet = FreeSubnet(ip);
  EXPECT_NE(subnet, 0) << "no free 10.200.x.0/24 for namespace " << name_;
  if (subnet == 0) return;
  prefix_ = "10.200." + std::to_string(subnet) + ".";
  ok_ = Must({ip, "netns", "add", name_}) &&
        Must({ip, "link", "add", host_if_, "type", "veth", "peer", "name", ns_if_}) &&
        Must({ip, "link", "set", ns_if_, "netns", name_}) &&
        Must({ip, "addr", "add", host_address() + "/30", "dev", host_if_}) &&
        Must({ip, "link", "set", host_if_, "up"}) &&
        Must({ip, "-n", name_, "addr", "add", ns_address() + "/30", "dev", ns_if_}) &&
        Must({ip, "-n", name_, "link", "set", ns_if_, "up"}) &&
        Must({ip, "-n", name_, "link", "set", "lo", "up"}) &&
        Must({ip, "-n", name_, "route", "add", "default", "via", host_address()});
}

NetNs::~NetNs() {
  KillProcessesIn(tools_.ip, name_);          // none, unless a test could not stop them
  Try({tools_.ip, "link", "del", host_if_});  // deletes the peer too
  Try({tools_.ip, "netns", "del", name_});
}

bool NetNs::Cut() {
  return Must({tools_.ip, "netns", "exec", name_, tools_.tc, "qdisc", "add", "dev", ns_if_, "root",
               "pfifo", "limit", "0"}) &&
         Must({tools_.ip, "netns", "exec", name_, tools_.iptables, "-A", "INPUT", "-i", ns_if_,
               "-j", "DROP"});
}

bool NetNs::Heal() {
  return Must({tools_.ip, "netns", "exec", name_, tools_.tc, "qdisc", "del", "dev", ns_if_,
               "root"}) &&
         Must({tools_.ip, "netns", "exec", name_, tools_.iptables, "-D", "INPUT", "-i", ns_if_,
               "-j", "DROP"});
}

long long NetNs::Dropped() const {
  CommandResult qdisc = RunCommand(
      {tools_.ip, "netns", "exec", name_, tools_.tc, "-s", "qdisc", "show", "dev", ns_if_});
  CommandResult rule = RunCommand(
      {tools_.ip, "netns", "exec", name_, tools_.iptables, "-L", "INPUT", "-v", "-x", "-n"});
  std::smatch sent, received;
  // `iptables -L -v -x`: "<pkts> <bytes> DROP all -- <in> ..." for the rule Cut() added.
  if (!std::regex_search(qdisc.out, sent, std::regex("dropped ([0-9]+)")) ||
      !std::regex_search(rule.out, received, std::regex("\\n\\s*([0-9]+)\\s+[0-9]+\\s+DROP"))) {
    return -1;
  }
  return std::stoll(sent[1]) + std::stoll(received[1]);
}

}  // namespace lb::testing
