// Network partitions made with the kernel's own tools, for the tests that cut a process off the
// network while it keeps its ipc:// sockets (FleetPartitionTest, ControllerSplitBrainTest): a
// network namespace joined to the host by a veth pair with addresses from 10.200.<n>.0/30 (the
// tests' own; nothing else is touched). A process started under ExecPrefix() has no route out
// but the veth; its path-based unix sockets (ipc://) still work, as the file system is shared.
//
// DESIGN. The partition is a silent drop, not a reject, and it happens beyond the host, as with a
// dead switch: what the namespace sends is dropped by a `pfifo limit 0` qdisc on its end of the
// veth pair, and what the host sends into it leaves the host and is dropped on arrival (an
// iptables INPUT DROP rule in the namespace, iptables-legacy). Neither side ever sees a RST, a
// FIN or an ICMP error; TCP just stops hearing from the other side. Dropping the host's packets
// on arrival rather than at the host's own qdisc matters: Linux takes a packet its own qdisc
// drops for local congestion, so a keepalive probe dropped there is retried every 0.5 s and never
// counted, and a dead peer's idle connection would never be closed. (`tc qdisc ... netem loss
// 100%` and tc's ingress filters need modules this kernel lacks.)
//
// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): FindNetTools fails the test without it; it is never
// skipped. Namespaces and veths are named after the test's pid and a letter per test, and
// removed by ~NetNs even when the test fails; ones left by a test that was SIGKILLed (its pid
// gone) are removed by the next RemoveLeftovers, whichever test calls it.
#pragma once

#include <string>
#include <vector>

namespace lb::testing {

// iproute2's binaries, by path.
struct NetTools {
  std::string ip;
  std::string tc;
  std::string iptables;  // iptables-legacy
};
// Finds `ip`, `tc` and `iptables-legacy` in /usr/sbin, /sbin, /usr/bin, /bin. Fails the test
// (ADD_FAILURE, so the caller checks HasFailure()) when `test` does not run as root or iproute2 is
// missing, saying so.
NetTools FindNetTools(const std::string& test);

// Removes the namespaces and veths of earlier runs whose process is gone (a test killed by
// ctest's timeout cannot clean up after itself), SIGKILLing what still runs inside them.
void RemoveLeftovers(const NetTools& tools);

// One network namespace, lbt<tag><pid>-<k>, with a veth pair to the host: host side
// 10.200.<n>.1/30, namespace side 10.200.<n>.2/30, default route through the host side, for a
// /30 no interface of this host uses. Removed by the destructor, with every process left in it.
class NetNs {
 public:
  // `tag`: a lower-case letter that is the test's own ('f' FleetPartitionTest, 's'
  // ControllerSplitBrainTest); `k`: this namespace's number within the test. A failure fails
  // the test; ok() says whether the namespace is usable.
  NetNs(NetTools tools, char tag, int k);
  ~NetNs();
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;

  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }
  std::string host_address() const { return prefix_ + "1"; }
  std::string ns_address() const { return prefix_ + "2"; }
  // Words to put before a command so that it runs in the namespace. `ip netns exec` execs the
  // command in place: the pid that the caller forked is the command's.
  std::vector<std::string> ExecPrefix() const { return {tools_.ip, "netns", "exec", name_}; }

  // Drops every packet in both directions, silently (see DESIGN); Heal() undoes it.
  bool Cut();
  bool Heal();
  // Packets the qdisc and the INPUT rule dropped, summed; -1 when unreadable.
  long long Dropped() const;

 private:
  NetTools tools_;
  std::string name_, host_if_, ns_if_, prefix_;
  bool ok_ = false;
};

}  // namespace lb::testing
