// RuntimePlan: which server-only changes go through haproxy's runtime API (and the exact
// commands), which fall back to a reload (and the reason given); RuntimeRefusals on haproxy 2.6's
// real answers to those commands.
#include "runtime_plan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime_apply.h"

namespace lb::agent {
namespace {

using Commands = std::vector<std::string>;

constexpr char kApp[] =
    "    balance roundrobin\n"
    "    server web1 10.0.0.1:80 check\n"
    "    server web2 10.0.0.2:80 check weight 2\n";

constexpr char kApi[] =
    "    balance leastconn\n"
    "    server api1 10.0.1.1:8080\n";

// A whole config with these bodies for backends `app` and `api`.
std::string Config(const std::string& app, const std::string& api = kApi,
                   const std::string& defaults_extra = "") {
  return "global\n"
         "    stats socket /run/haproxy/admin.sock mode 600 level admin\n"
         "\n"
         "defaults\n"
         "    mode http\n"
         "    timeout connect 5s\n"
         "    timeout client 30s\n"
         "    timeout server 30s\n" +
         defaults_extra +
         "\n"
         "frontend main\n"
         "    bind :8080\n"
         "    default_backend app\n"
         "\n"
         "backend app\n" +
         app +
         "\n"
         "backend api\n" +
         api;
}

// The plan from the standard live config to one whose `app` (and `api`) bodies are these.
RuntimePlan Plan(const std::string& app, const std::string& api = kApi) {
  return PlanRuntime(Config(kApp, kApi), Config(app, api));
}

// Expects a reload whose reason contains every one of `parts`.
void ExpectReload(const RuntimePlan& plan, const std::vector<std::string>& parts) {
  EXPECT_FALSE(plan.runtime) << "commands: " << plan.commands.size();
  EXPECT_TRUE(plan.commands.empty());
  EXPECT_TRUE(plan.removals.empty());
  for (const auto& part : parts) {
    EXPECT_NE(plan.reason.find(part), std::string::npos)
        << "reason \"" << plan.reason << "\" lacks \"" << part << "\"";
  }
}

void ExpectRuntime(const RuntimePlan& plan, const Commands& commands) {
  EXPECT_TRUE(plan.runtime) << plan.reason;
  EXPECT_EQ(plan.reason, "");
  EXPECT_EQ(plan.commands, commands);
}

std::vector<std::string> Removals(const RuntimePlan& plan) {
  std::vector<std::string> out;
  for (const auto& r : plan.removals) out.push_back(r.backend + "/" + r.server);
  return out;
}

// ---- no change ----

TEST(PlanRuntimeTest, IdenticalConfigIsARuntimePlanWithNoCommand) {
  const RuntimePlan plan = Plan(kApp);
  ExpectRuntime(plan, {});
  EXPECT_TRUE(plan.removals.empty());
  EXPECT_TRUE(plan.backends.empty());
}

TEST(PlanRuntimeTest, CommentAndSpacingChangeIsARuntimePlanWithNoCommand) {
  const std::string live = Config(kApp);
  std::string changed = "# pushed by the fleet controller\n" + live;
  changed.replace(changed.find("    server web1 10.0.0.1:80 check"), 33,
                  "\tserver   web1\t10.0.0.1:80   check   # the first one");
  changed.replace(changed.find("    timeout connect 5s"), 22, "  timeout  connect  5s\n\n");
  const RuntimePlan plan = PlanRuntime(live, changed);
  ExpectRuntime(plan, {});
  EXPECT_TRUE(plan.backends.empty());
}

TEST(PlanRuntimeTest, ServerLineOrderChangeIsARuntimePlanWithNoCommand) {
  ExpectRuntime(Plan("    balance roundrobin\n"
                     "    server web2 10.0.0.2:80 check weight 2\n"
                     "    server web1 10.0.0.1:80 check\n"),
                {});
}

TEST(PlanRuntimeTest, SameEndpointWrittenDifferentlyHasNoCommand) {
  ExpectRuntime(Plan("    balance roundrobin\n"
                     "    server web1 ipv4@10.0.0.1:80 check\n"
                     "    server web2 10.0.0.2:80 check weight 2\n"),
                {});
}

// ---- commands ----

TEST(PlanRuntimeTest, WeightChangeSetsTheWeight) {
  const RuntimePlan plan = Plan(
      "    balance roundrobin\n"
      "    server web1 10.0.0.1:80 check\n"
      "    server web2 10.0.0.2:80 check weight 7\n");
  ExpectRuntime(plan, {"set server app/web2 weight 7"});
  EXPECT_TRUE(plan.removals.empty());
  EXPECT_EQ(plan.backends, (std::vector<std::string>{"app"}));
}

TEST(PlanRuntimeTest, WeightRemovedGoesBackToOne) {
  ExpectRuntime(Plan("    balance roundrobin\n"
                     "    server web1 10.0.0.1:80 check\n"
                     "    server web2 10.0.0.2:80 check\n"),
                {"set server app/web2 weight 1"});
}

TEST(PlanRuntimeTest, WeightRemovedGoesBackToTheDefaultServers) {
  const std::string live = Config(
      "    balance roundrobin\n"
      "    default-server weight 3\n"
      "    server web1 10.0.0.1:80 check weight 5\n");
  const std::string next = Config(
      "    balance roundrobin\n"
      "    default-server weight 3\n"
      "    server web1 10.0.0.1:80 check\n");
  ExpectRuntime(PlanRuntime(live, next), {"set server app/web1 weight 3"});
}

TEST(PlanRuntimeTest, AddedServerIsAddedAndEnabled) {
  const RuntimePlan plan = Plan(std::string(kApp) + "    server web3 10.0.0.3:80\n");
  ExpectRuntime(plan, {"add server app/web3 10.0.0.3:80", "enable server app/web3"});
  EXPECT_TRUE(plan.removals.empty());
  EXPECT_EQ(plan.backends, (std::vector<std::string>{"app"}));
}

TEST(PlanRuntimeTest, AddedServerWithCheckEnablesHealthBeforeTheServer) {
  ExpectRuntime(Plan(std::string(kApp) + "    server web3 10.0.0.3:80 check weight 3 inter 2s\n"),
                {"add server app/web3 10.0.0.3:80 check weight 3 inter 2s",
                 "enable health app/web3", "enable server app/web3"});
}

TEST(PlanRuntimeTest, AddedServerWithAgentCheckEnablesTheAgent) {
  ExpectRuntime(
      Plan(std::string(kApp) + "    server web3 10.0.0.3:80 check agent-check agent-port 9999\n"),
      {"add server app/web3 10.0.0.3:80 check agent-check agent-port 9999",
       "enable health app/web3", "enable agent app/web3", "enable server app/web3"});
  ExpectRuntime(Plan(std::string(kApp) + "    server web3 10.0.0.3:80 agent-check agent-port 9\n"),
                {"add server app/web3 10.0.0.3:80 agent-check agent-port 9",
                 "enable agent app/web3", "enable server app/web3"});
}

TEST(PlanRuntimeTest, AddedDisabledServerStaysInMaintenance) {
  ExpectRuntime(Plan(std::string(kApp) + "    server web3 10.0.0.3:80 check disabled\n"),
                {"add server app/web3 10.0.0.3:80 check disabled", "enable health app/web3"});
}

TEST(PlanRuntimeTest, AddedIpv6ServerKeepsItsBrackets) {
  ExpectRuntime(Plan(std::string(kApp) + "    server web3 [::1]:8080 backup\n"),
                {"add server app/web3 [::1]:8080 backup", "enable server app/web3"});
}

TEST(PlanRuntimeTest, RemovedServerGoesToMaintenanceThenIsDeleted) {
  const RuntimePlan plan = Plan(
      "    balance roundrobin\n"
      "    server web1 10.0.0.1:80 check\n");
  ExpectRuntime(plan, {"set server app/web2 state maint"});
  EXPECT_EQ(Removals(plan), (std::vector<std::string>{"app/web2"}));
  EXPECT_EQ(plan.backends, (std::vector<std::string>{"app"}));
}

TEST(PlanRuntimeTest, RemovedServerWithAgentCheckHasItsAgentDisabledFirst) {
  const std::string live =
      Config(std::string(kApp) + "    server web3 10.0.0.3:80 check agent-check agent-port 9\n");
  const RuntimePlan plan = PlanRuntime(live, Config(kApp));
  ExpectRuntime(plan, {"disable agent app/web3", "set server app/web3 state maint"});
  EXPECT_EQ(Removals(plan), (std::vector<std::string>{"app/web3"}));
}

TEST(PlanRuntimeTest, AddressChangeSetsAddressAndPort) {
  ExpectRuntime(Plan("    balance roundrobin\n"
                     "    server web1 10.0.0.9:80 check\n"
                     "    server web2 10.0.0.2:80 check weight 2\n"),
                {"set server app/web1 addr 10.0.0.9 port 80"});
}

TEST(PlanRuntimeTest, PortChangeSetsAddressAndPort) {
  ExpectRuntime(Plan("    balance roundrobin\n"
                     "    server web1 10.0.0.1:8091 check\n"
                     "    server web2 10.0.0.2:80 check weight 2\n"),
                {"set server app/web1 addr 10.0.0.1 port 8091"});
}

TEST(PlanRuntimeTest, AddressPortAndWeightChangeTogether) {
  ExpectRuntime(Plan("    balance roundrobin\n"
                     "    server web1 127.0.0.2:8091 check weight 4\n"
                     "    server web2 [::1]:81 check weight 2\n"),
                {"set server app/web1 addr 127.0.0.2 port 8091", "set server app/web1 weight 4",
                 "set server app/web2 addr ::1 port 81"});
}

TEST(PlanRuntimeTest, DisabledTogglesMaintenance) {
  ExpectRuntime(Plan("    balance roundrobin\n"
                     "    server web1 10.0.0.1:80 check disabled\n"
                     "    server web2 10.0.0.2:80 check weight 2\n"),
                {"set server app/web1 state maint"});
  const std::string live = Config(
      "    balance roundrobin\n"
      "    server web1 10.0.0.1:80 check disabled\n"
      "    server web2 10.0.0.2:80 check weight 2\n");
  ExpectRuntime(PlanRuntime(live, Config(kApp)), {"set server app/web1 state ready"});
  // `enabled` written out is the same as nothing.
  ExpectRuntime(PlanRuntime(live, Config("    balance roundrobin\n"
                                         "    server web1 10.0.0.1:80 check enabled\n"
                                         "    server web2 10.0.0.2:80 check weight 2\n")),
                {"set server app/web1 state ready"});
}

TEST(PlanRuntimeTest, RenamedServerIsAddedThenTheOldOneRemoved) {
  const RuntimePlan plan = Plan(
      "    balance roundrobin\n"
      "    server web1 10.0.0.1:80 check\n"
      "    server web2b 10.0.0.2:80 check weight 2\n");
  ExpectRuntime(plan, {"add server app/web2b 10.0.0.2:80 check weight 2", "enable health app/web2b",
                       "enable server app/web2b", "set server app/web2 state maint"});
  EXPECT_EQ(Removals(plan), (std::vector<std::string>{"app/web2"}));
}

TEST(PlanRuntimeTest, AdditionsComeFirstThenChangesThenRemovalsAcrossBackends) {
  const RuntimePlan plan = Plan(
      "    balance roundrobin\n"
      "    server web2 10.0.0.2:80 check weight 2\n"
      "    server web3 10.0.0.3:80\n",
      "    balance leastconn\n"
      "    server api1 10.0.1.1:8080 weight 4\n"
      "    server api2 10.0.1.2:8080\n");
  ExpectRuntime(plan, {"add server app/web3 10.0.0.3:80", "enable server app/web3",
                       "add server api/api2 10.0.1.2:8080", "enable server api/api2",
                       "set server api/api1 weight 4", "set server app/web1 state maint"});
  EXPECT_EQ(Removals(plan), (std::vector<std::string>{"app/web1"}));
  EXPECT_EQ(plan.backends, (std::vector<std::string>{"app", "api"}));
}

TEST(PlanRuntimeTest, ServersOfAListenSectionChangeAtRuntime) {
  const std::string live = Config(kApp) + "\nlisten db\n    bind :3306\n    mode tcp\n" +
                           "    server db1 10.0.2.1:3306 check\n";
  const std::string next = Config(kApp) + "\nlisten db\n    bind :3306\n    mode tcp\n" +
                           "    server db1 10.0.2.1:3306 check weight 9\n" +
                           "    server db2 10.0.2.2:3306 check\n";
  const RuntimePlan plan = PlanRuntime(live, next);
  ExpectRuntime(plan, {"add server db/db2 10.0.2.2:3306 check", "enable health db/db2",
                       "enable server db/db2", "set server db/db1 weight 9"});
  EXPECT_EQ(plan.backends, (std::vector<std::string>{"db"}));
}

TEST(PlanRuntimeTest, WeightAndAddressChangeWithDefaultServerStayRuntime) {
  // default-server only stops additions: a changed server keeps what it inherited.
  const std::string app =
      "    balance roundrobin\n"
      "    default-server check inter 2s\n"
      "    server web1 10.0.0.1:80\n";
  const std::string live = Config(app);
  const std::string next = Config(
      "    balance roundrobin\n"
      "    default-server check inter 2s\n"
      "    server web1 10.0.0.5:81 weight 3\n");
  ExpectRuntime(PlanRuntime(live, next),
                {"set server app/web1 addr 10.0.0.5 port 81", "set server app/web1 weight 3"});
}

TEST(PlanRuntimeTest, UnchangedStaticBackendDoesNotStopAChangeElsewhere) {
  const std::string live = Config(
      "    balance static-rr\n"
      "    server web1 10.0.0.1:80\n");
  const std::string next = Config(
      "    balance static-rr\n"
      "    server web1 10.0.0.1:80\n",
      "    balance leastconn\n"
      "    server api1 10.0.1.1:8080 weight 9\n");
  ExpectRuntime(PlanRuntime(live, next), {"set server api/api1 weight 9"});
}

TEST(PlanRuntimeTest, ConsistentHashingIsDynamic) {
  for (const char* balance :
       {"source", "uri", "url_param userid", "hdr(host)", "rdp-cookie", "hash req.hdr(x-tenant)"}) {
    SCOPED_TRACE(balance);
    const std::string app = std::string("    balance ") + balance +
                            "\n"
                            "    hash-type consistent\n"
                            "    server web1 10.0.0.1:80\n";
    ExpectRuntime(PlanRuntime(Config(app), Config(app + "    server web2 10.0.0.2:80\n")),
                  {"add server app/web2 10.0.0.2:80", "enable server app/web2"});
  }
  // hash-type consistent from defaults.
  const std::string app = "    balance source\n    server web1 10.0.0.1:80\n";
  ExpectRuntime(PlanRuntime(Config(app, kApi, "    hash-type consistent\n"),
                            Config(app + "    server web2 10.0.0.2:80\n", kApi,
                                   "    hash-type consistent\n")),
                {"add server app/web2 10.0.0.2:80", "enable server app/web2"});
}

TEST(PlanRuntimeTest, DynamicAlgorithmsAllowAdditions) {
  for (const char* balance : {"roundrobin", "leastconn", "random", "random(2)"}) {
    SCOPED_TRACE(balance);
    const std::string app =
        std::string("    balance ") + balance + "\n    server web1 10.0.0.1:80\n";
    EXPECT_TRUE(PlanRuntime(Config(app), Config(app + "    server web2 10.0.0.2:80\n")).runtime);
  }
}

// ---- fallbacks to a reload ----

TEST(PlanRuntimeTest, NonServerChangeNamesTheFirstDifference) {
  const std::string live = Config(kApp);
  std::string next = live;
  next.replace(next.find("timeout server 30s"), 18, "timeout server 60s");
  ExpectReload(PlanRuntime(live, next), {"not limited to server lines",
                                         "\"timeout server 30s\" becomes \"timeout server 60s\""});
}

TEST(PlanRuntimeTest, NonServerChangeTogetherWithAServerChangeIsAReload) {
  std::string next = Config(std::string(kApp) + "    server web3 10.0.0.3:80\n");
  next.replace(next.find("bind :8080"), 10, "bind :8081");
  ExpectReload(PlanRuntime(Config(kApp), next),
               {"not limited to server lines", "\"bind :8080\" becomes \"bind :8081\""});
}

TEST(PlanRuntimeTest, AddedLineAtTheEndIsNamed) {
  const std::string live = Config(kApp);
  ExpectReload(PlanRuntime(live, live + "\nbackend extra\n    server x 10.0.0.9:80\n"),
               {"not limited to server lines", "(end of file)", "backend extra"});
}

TEST(PlanRuntimeTest, DefaultServerChangeIsNotAServerLine) {
  ExpectReload(Plan("    balance roundrobin\n"
                    "    default-server inter 3s\n"
                    "    server web1 10.0.0.1:80 check\n"
                    "    server web2 10.0.0.2:80 check weight 2\n"),
               {"not limited to server lines"});
}

TEST(PlanRuntimeTest, StaticRoundRobinIsAReload) {
  const std::string app =
      "    balance static-rr\n"
      "    server web1 10.0.0.1:80\n";
  // A weight change and an addition alike.
  ExpectReload(PlanRuntime(Config(app), Config("    balance static-rr\n"
                                               "    server web1 10.0.0.1:80 weight 4\n")),
               {"backend app uses balance static-rr, a static algorithm"});
  ExpectReload(PlanRuntime(Config(app), Config(app + "    server web2 10.0.0.2:80\n")),
               {"backend app uses balance static-rr, a static algorithm"});
  // Inherited from defaults.
  const std::string plain = "    server web1 10.0.0.1:80\n";
  ExpectReload(
      PlanRuntime(Config(plain, kApi, "    balance static-rr\n"),
                  Config(plain + "    server web2 10.0.0.2:80\n", kApi, "    balance static-rr\n")),
      {"backend app uses balance static-rr"});
}

TEST(PlanRuntimeTest, MapBasedHashIsAReload) {
  const std::string app =
      "    balance source\n"
      "    hash-type map-based\n"
      "    server web1 10.0.0.1:80\n";
  ExpectReload(PlanRuntime(Config(app), Config(app + "    server web2 10.0.0.2:80\n")),
               {"backend app uses hash-type map-based, a static algorithm"});
}

TEST(PlanRuntimeTest, HashingWithoutConsistentIsAReload) {
  for (const char* balance : {"source", "uri", "url_param userid", "hdr(host)", "rdp-cookie",
                              "rdp-cookie(mstshash)", "hash req.hdr(x-tenant)"}) {
    SCOPED_TRACE(balance);
    const std::string app =
        std::string("    balance ") + balance + "\n    server web1 10.0.0.1:80\n";
    const std::string first_word = std::string(balance).substr(0, std::string(balance).find(' '));
    ExpectReload(PlanRuntime(Config(app), Config(app + "    server web2 10.0.0.2:80\n")),
                 {"backend app uses balance " + first_word, "without hash-type consistent"});
  }
}

TEST(PlanRuntimeTest, DefaultServerIsAReloadWhenAdding) {
  const std::string own =
      "    balance roundrobin\n"
      "    default-server check\n"
      "    server web1 10.0.0.1:80\n";
  const std::string reason =
      "backend app has default-server settings, which a server added at runtime would not "
      "inherit";
  ExpectReload(PlanRuntime(Config(own), Config(own + "    server web2 10.0.0.2:80 check\n")),
               {reason});
  // From defaults.
  const std::string plain = "    server web1 10.0.0.1:80\n";
  ExpectReload(PlanRuntime(Config(plain, kApi, "    default-server inter 2s\n"),
                           Config(plain + "    server web2 10.0.0.2:80\n", kApi,
                                  "    default-server inter 2s\n")),
               {reason});
  // Below every server line, it still applies to none of them but marks the backend.
  const std::string below = "    server web1 10.0.0.1:80\n    default-server check\n";
  ExpectReload(PlanRuntime(Config(below), Config("    server web1 10.0.0.1:80\n"
                                                 "    server web2 10.0.0.2:80\n"
                                                 "    default-server check\n")),
               {reason});
}

TEST(PlanRuntimeTest, KeywordTheAgentDoesNotWhitelistIsAReload) {
  // `cookie` is refused by haproxy 2.6's add server, `ssl`/`verify` read files or depend on
  // global settings, `id` and `source` are not in the agent's list.
  for (const char* params : {"cookie w3", "ssl verify none", "id 42", "source 10.0.0.100",
                             "resolvers dns", "init-addr none", "no-check"}) {
    SCOPED_TRACE(params);
    const std::string first = std::string(params).substr(0, std::string(params).find(' '));
    ExpectReload(Plan(std::string(kApp) + "    server web3 10.0.0.3:80 " + params + "\n"),
                 {"server app/web3 uses \"" + first +
                  "\", which this agent does not apply with add server"});
  }
}

TEST(PlanRuntimeTest, KeywordWithoutItsArgumentIsAReload) {
  ExpectReload(Plan(std::string(kApp) + "    server web3 10.0.0.3:80 check inter\n"),
               {"server app/web3", "\"inter\" lacks its argument"});
}

TEST(PlanRuntimeTest, ArgumentTheCliCannotCarryIsAReload) {
  ExpectReload(Plan(std::string(kApp) + "    server web3 10.0.0.3:80 agent-send \"hello;x\"\n"),
               {"server app/web3", "argument of \"agent-send\"", "cannot carry"});
  ExpectReload(Plan(std::string(kApp) + "    server web3 10.0.0.3:80 agent-send \"a b\"\n"),
               {"server app/web3", "argument of \"agent-send\""});
}

TEST(PlanRuntimeTest, NameTheCliCannotCarryIsAReload) {
  ExpectReload(Plan(std::string(kApp) + "    server \"web 3\" 10.0.0.3:80\n"),
               {"server app/web 3", "cannot carry"});
  const std::string live = Config(std::string(kApp) + "    server \"web;4\" 10.0.0.4:80\n");
  ExpectReload(PlanRuntime(live, Config(kApp)), {"server app/web;4", "cannot carry"});
}

TEST(PlanRuntimeTest, AddedHostNameIsAReload) {
  ExpectReload(Plan(std::string(kApp) + "    server web3 app.example.com:80 check\n"),
               {"server app/web3 has no IP address with a port (\"app.example.com:80\")"});
}

TEST(PlanRuntimeTest, AddedServerWithoutALiteralPortIsAReload) {
  for (const char* address :
       {"10.0.0.3", "10.0.0.3:8000-8010", "10.0.0.3:+1", "unix@/run/x.sock", "\"${WEB3}:80\""}) {
    SCOPED_TRACE(address);
    ExpectReload(Plan(std::string(kApp) + "    server web3 " + address + "\n"),
                 {"server app/web3 has no IP address with a port"});
  }
}

TEST(PlanRuntimeTest, AddedServerWithTrackIsAReload) {
  ExpectReload(Plan(std::string(kApp) + "    server web3 10.0.0.3:80 track web1\n"),
               {"server app/web3", "track"});
}

TEST(PlanRuntimeTest, TrackOnAChangedServerIsAReload) {
  // Gaining track, or changing the weight of a server that tracks.
  ExpectReload(Plan("    balance roundrobin\n"
                    "    server web1 10.0.0.1:80 check\n"
                    "    server web2 10.0.0.2:80 check weight 2 track web1\n"),
               {"server app/web2 uses track"});
  const std::string tracking =
      "    balance roundrobin\n"
      "    server web1 10.0.0.1:80 check\n"
      "    server web2 10.0.0.2:80 track web1 weight 2\n";
  ExpectReload(PlanRuntime(Config(tracking), Config("    balance roundrobin\n"
                                                    "    server web1 10.0.0.1:80 check\n"
                                                    "    server web2 10.0.0.2:80 track web1 "
                                                    "weight 3\n")),
               {"server app/web2 uses track"});
}

TEST(PlanRuntimeTest, BackupChangeIsAReload) {
  ExpectReload(Plan("    balance roundrobin\n"
                    "    server web1 10.0.0.1:80 check\n"
                    "    server web2 10.0.0.2:80 check weight 2 backup\n"),
               {"server app/web2", "backup"});
  const std::string live = Config(
      "    balance roundrobin\n"
      "    server web1 10.0.0.1:80 check backup\n");
  ExpectReload(PlanRuntime(live, Config("    balance roundrobin\n"
                                        "    server web1 10.0.0.1:80 check\n")),
               {"server app/web1", "backup"});
}

TEST(PlanRuntimeTest, ParamsChangeBeyondAddressWeightOrDisabledIsAReload) {
  ExpectReload(Plan("    balance roundrobin\n"
                    "    server web1 10.0.0.1:80 check inter 5s\n"
                    "    server web2 10.0.0.2:80 check weight 2\n"),
               {"server app/web1 changes more than its address, weight or disabled (\"check\" "
                "becomes \"check inter 5s\")"});
  ExpectReload(Plan("    balance roundrobin\n"
                    "    server web1 10.0.0.1:80\n"
                    "    server web2 10.0.0.2:80 check weight 2\n"),
               {"server app/web1 changes more than its address, weight or disabled"});
}

TEST(PlanRuntimeTest, AddressThatIsNotALiteralIsAReload) {
  ExpectReload(Plan("    balance roundrobin\n"
                    "    server web1 app.example.com:80 check\n"
                    "    server web2 10.0.0.2:80 check weight 2\n"),
               {"server app/web1 changes an address that is not an IP literal with a port "
                "(\"10.0.0.1:80\" becomes \"app.example.com:80\")"});
  const std::string named = Config(
      "    balance roundrobin\n"
      "    server web1 app.example.com:80 check\n");
  ExpectReload(PlanRuntime(named, Config("    balance roundrobin\n"
                                         "    server web1 app2.example.com:80 check\n")),
               {"server app/web1 changes an address that is not an IP literal"});
}

TEST(PlanRuntimeTest, RemovedServerNamedByUseServerIsAReload) {
  const std::string live = Config(
      "    balance roundrobin\n"
      "    use-server web2 if { path_beg /admin }\n"
      "    server web1 10.0.0.1:80 check\n"
      "    server web2 10.0.0.2:80 check\n");
  ExpectReload(PlanRuntime(live, Config("    balance roundrobin\n"
                                        "    use-server web2 if { path_beg /admin }\n"
                                        "    server web1 10.0.0.1:80 check\n")),
               {"server app/web2 is named by a use-server or track line"});
}

TEST(PlanRuntimeTest, RemovedServerNamedByTrackIsAReload) {
  // Tracked from another backend (whose line does not change).
  const std::string api_tracking =
      "    balance leastconn\n"
      "    server api1 10.0.1.1:8080 track app/web2\n";
  ExpectReload(PlanRuntime(Config(kApp, api_tracking), Config("    balance roundrobin\n"
                                                              "    server web1 10.0.0.1:80 check\n",
                                                              api_tracking)),
               {"server app/web2 is named by a use-server or track line"});
  // A removed server that tracks another.
  const std::string tracking = std::string(kApp) + "    server web3 10.0.0.3:80 track web1\n";
  ExpectReload(PlanRuntime(Config(tracking), Config(kApp)), {"server app/web3 uses track"});
}

TEST(PlanRuntimeTest, BalanceFirstKeepsIdsOrIsAReload) {
  const std::string app =
      "    balance first\n"
      "    server web1 10.0.0.1:80 maxconn 10\n"
      "    server web2 10.0.0.2:80 maxconn 10\n";
  const std::string reason =
      "backend app changes the order of its servers (balance first picks servers in id order)";
  // At the end, a runtime server gets the id a reload would give it (the lowest free one).
  ExpectRuntime(PlanRuntime(Config(app), Config(app + "    server web3 10.0.0.3:80 maxconn 10\n")),
                {"add server app/web3 10.0.0.3:80 maxconn 10", "enable server app/web3"});
  ExpectRuntime(PlanRuntime(Config(app), Config("    balance first\n"
                                                "    server web1 10.0.0.1:80 maxconn 10\n")),
                {"set server app/web2 state maint"});
  // Elsewhere the ids would differ from a reload's.
  ExpectReload(PlanRuntime(Config(app), Config("    balance first\n"
                                               "    server web2 10.0.0.2:80 maxconn 10\n")),
               {reason});
  ExpectReload(PlanRuntime(Config(app), Config("    balance first\n"
                                               "    server web0 10.0.0.9:80 maxconn 10\n" +
                                               app.substr(app.find("    server")))),
               {reason});
  // A weight change keeps ids and order.
  ExpectRuntime(PlanRuntime(Config(app), Config("    balance first\n"
                                                "    server web1 10.0.0.1:80 maxconn 10\n"
                                                "    server web2 10.0.0.2:80 maxconn 10 "
                                                "weight 5\n")),
                {"set server app/web2 weight 5"});
}

TEST(PlanRuntimeTest, StickTablesKeepIdsOrAreAReload) {
  const std::string app =
      "    balance roundrobin\n"
      "    stick-table type ip size 100k expire 30m\n"
      "    stick on src\n"
      "    server web1 10.0.0.1:80\n"
      "    server web2 10.0.0.2:80\n";
  const std::string reason =
      "backend app changes the order of its servers (stick tables refer to servers by id)";
  ExpectRuntime(PlanRuntime(Config(app), Config(app + "    server web3 10.0.0.3:80\n")),
                {"add server app/web3 10.0.0.3:80", "enable server app/web3"});
  std::string removed = app;
  removed.erase(removed.find("    server web1"),
                removed.find("    server web2") - removed.find("    server web1"));
  ExpectReload(PlanRuntime(Config(app), Config(removed)), {reason});
  // A stick rule on another backend's table counts too.
  const std::string rule =
      "    balance roundrobin\n"
      "    stick match src table api\n"
      "    server web1 10.0.0.1:80\n";
  ExpectReload(PlanRuntime(Config(rule + "    server web2 10.0.0.2:80\n"),
                           Config("    balance roundrobin\n"
                                  "    stick match src table api\n"
                                  "    server web2 10.0.0.2:80\n")),
               {"stick tables refer to servers by id"});
  // A disabled toggle keeps ids.
  ExpectRuntime(PlanRuntime(Config(app), Config("    balance roundrobin\n"
                                                "    stick-table type ip size 100k expire 30m\n"
                                                "    stick on src\n"
                                                "    server web1 10.0.0.1:80 disabled\n"
                                                "    server web2 10.0.0.2:80\n")),
                {"set server app/web1 state maint"});
}

TEST(PlanRuntimeTest, ServerTemplateIsAReload) {
  const std::string app =
      "    balance roundrobin\n"
      "    server-template web 2 10.0.0.1:80 check\n";
  ExpectReload(PlanRuntime(Config(app), Config("    balance roundrobin\n"
                                               "    server-template web 3 10.0.0.1:80 check\n")),
               {"server app/web3 comes from a server-template line"});
  ExpectReload(PlanRuntime(Config(app), Config("    balance roundrobin\n"
                                               "    server-template web 1 10.0.0.1:80 check\n")),
               {"server app/web2 comes from a server-template line"});
  ExpectReload(PlanRuntime(Config(app), Config("    balance roundrobin\n"
                                               "    server-template web 2 10.0.0.1:80 check "
                                               "weight 3\n")),
               {"comes from a server-template line"});
  // Into a template from a plain server of the same name.
  ExpectReload(PlanRuntime(Config("    balance roundrobin\n"
                                  "    server web1 10.0.0.1:80 check\n"),
                           Config("    balance roundrobin\n"
                                  "    server-template web 1 10.0.0.2:80 check\n")),
               {"server app/web1 comes from a server-template line"});
}

TEST(PlanRuntimeTest, ServerInsideAnIfBlockIsAReload) {
  const std::string app =
      "    balance roundrobin\n"
      "    server web1 10.0.0.1:80 check\n"
      ".if defined(CANARY)\n"
      "    server canary 10.0.0.50:80\n"
      ".endif\n";
  // Changed inside the block.
  ExpectReload(PlanRuntime(Config(app), Config("    balance roundrobin\n"
                                               "    server web1 10.0.0.1:80 check\n"
                                               ".if defined(CANARY)\n"
                                               "    server canary 10.0.0.50:80 weight 5\n"
                                               ".endif\n")),
               {"server app/canary is inside an .if block"});
  // Added inside the block.
  ExpectReload(PlanRuntime(Config(app), Config("    balance roundrobin\n"
                                               "    server web1 10.0.0.1:80 check\n"
                                               ".if defined(CANARY)\n"
                                               "    server canary 10.0.0.50:80\n"
                                               "    server canary2 10.0.0.51:80\n"
                                               ".endif\n")),
               {"server app/canary2 is inside an .if block"});
  // Removed from inside the block.
  ExpectReload(PlanRuntime(Config(app), Config("    balance roundrobin\n"
                                               "    server web1 10.0.0.1:80 check\n"
                                               ".if defined(CANARY)\n"
                                               ".endif\n")),
               {"server app/canary is inside an .if block"});
  // A server outside the block changes at runtime as anywhere else.
  ExpectRuntime(PlanRuntime(Config(app), Config("    balance roundrobin\n"
                                                "    server web1 10.0.0.1:80 check weight 2\n"
                                                ".if defined(CANARY)\n"
                                                "    server canary 10.0.0.50:80\n"
                                                ".endif\n")),
                {"set server app/web1 weight 2"});
}

TEST(PlanRuntimeTest, MovingAServerAboveABackendDefaultServerChangesWhatItInherits) {
  // haproxy applies a backend's default-server to the server lines below it only (checked on
  // 2.6: `server a` above `default-server weight 5` runs with weight 1). Moving `a` below that
  // line leaves the skeleton and a's own words unchanged, yet a reload gives it weight 5: a
  // plan with no command would leave haproxy on weight 1 while the file says 5.
  const std::string live = Config(
      "    balance roundrobin\n"
      "    server a 10.0.0.1:80\n"
      "    default-server weight 5\n"
      "    server c 10.0.0.2:80\n");
  const std::string next = Config(
      "    balance roundrobin\n"
      "    default-server weight 5\n"
      "    server a 10.0.0.1:80\n"
      "    server c 10.0.0.2:80\n");
  const RuntimePlan plan = PlanRuntime(live, next);
  if (plan.runtime) {
    EXPECT_EQ(plan.commands, (Commands{"set server app/a weight 5"}));
  } else {
    EXPECT_NE(plan.reason, "");
  }
}

TEST(PlanRuntimeTest, ServerMovedOutOfAnIfBlockIsAReload) {
  // Same name, address and words, but outside the block now: haproxy runs it whatever the
  // condition says, where the live worker may not run it at all.
  const std::string inside =
      "    balance roundrobin\n"
      "    server web1 10.0.0.1:80 check\n"
      ".if defined(CANARY)\n"
      "    server canary 10.0.0.50:80\n"
      ".endif\n";
  const std::string outside =
      "    balance roundrobin\n"
      "    server web1 10.0.0.1:80 check\n"
      "    server canary 10.0.0.50:80\n"
      ".if defined(CANARY)\n"
      ".endif\n";
  ExpectReload(PlanRuntime(Config(inside), Config(outside)), {"app/canary", ".if"});
  ExpectReload(PlanRuntime(Config(outside), Config(inside)), {"app/canary", ".if"});
}

TEST(PlanRuntimeTest, ServerOrderChangeWhereIdsDecideIsAReload) {
  // Server ids follow the order of the lines (haproxy 2.6, without `id`): `balance first`
  // picks by id, and consistent hashing places each server on the ring by id. A reload of the
  // reordered file routes differently; the running worker cannot renumber its servers.
  for (const char* head :
       {"    balance first\n", "    balance source\n    hash-type consistent\n"}) {
    SCOPED_TRACE(head);
    const std::string live = Config(std::string(head) +
                                    "    server web1 10.0.0.1:80\n"
                                    "    server web2 10.0.0.2:80\n");
    const std::string next = Config(std::string(head) +
                                    "    server web2 10.0.0.2:80\n"
                                    "    server web1 10.0.0.1:80\n");
    const RuntimePlan plan = PlanRuntime(live, next);
    EXPECT_FALSE(plan.runtime) << "a plan with " << plan.commands.size() << " commands";
    EXPECT_NE(plan.reason, "");
  }
}

TEST(PlanRuntimeTest, RemovingAServerBeforeOthersFromAConsistentHashBackendIsAReload) {
  // Measured on haproxy 2.6: `del server be/web2` leaves web3 with id 3; a reload of the file
  // without web2 gives web3 id 2. The ring (keyed by id in 2.6, no `hash-key`) differs.
  const std::string head = "    balance source\n    hash-type consistent\n";
  const std::string live = Config(head +
                                  "    server web1 10.0.0.1:80\n"
                                  "    server web2 10.0.0.2:80\n"
                                  "    server web3 10.0.0.3:80\n");
  const std::string next = Config(head +
                                  "    server web1 10.0.0.1:80\n"
                                  "    server web3 10.0.0.3:80\n");
  const RuntimePlan plan = PlanRuntime(live, next);
  EXPECT_FALSE(plan.runtime) << "commands: " << plan.commands.size();
  EXPECT_NE(plan.reason, "");
}

TEST(PlanRuntimeTest, AddingAServerBeforeOthersInAConsistentHashBackendIsAReload) {
  // `add server` takes the lowest free id (3 here); a reload gives web1b id 2 and web2 id 3.
  const std::string head = "    balance source\n    hash-type consistent\n";
  const std::string live = Config(head +
                                  "    server web1 10.0.0.1:80\n"
                                  "    server web2 10.0.0.2:80\n");
  const std::string next = Config(head +
                                  "    server web1 10.0.0.1:80\n"
                                  "    server web1b 10.0.0.5:80\n"
                                  "    server web2 10.0.0.2:80\n");
  const RuntimePlan plan = PlanRuntime(live, next);
  EXPECT_FALSE(plan.runtime) << "commands: " << plan.commands.size();
  EXPECT_NE(plan.reason, "");
}

// ---- RuntimeRefusals, on haproxy 2.6.12's answers ----

TEST(RuntimeRefusalsTest, SuccessAnswersAreNoRefusal) {
  for (const char* answer : {
           "",
           "\n",
           "\n\n",
           "New server registered.\n\n",
           "Server deleted.\n",
           "IP changed from '10.0.0.1' to '10.0.0.2', port changed from '80' to '81' by 'stats "
           "socket command'\n\n",
           "no need to change the addr, port changed from '81' to '82' by 'stats socket "
           "command'\n\n",
           "IP changed from '10.0.0.2' to '10.0.0.3', no need to change the port by 'stats "
           "socket command'\n\n",
           "no need to change the addr, no need to change the port by 'stats socket command'\n\n",
           "New server registered.\r\n\r\n",
           "Server deleted.  \n",
       }) {
    EXPECT_EQ(RuntimeRefusals(answer), std::vector<std::string>{}) << "\"" << answer << "\"";
  }
}

TEST(RuntimeRefusalsTest, RefusalsAreReportedVerbatim) {
  for (const char* refusal : {
           "No such server.",
           "Absolute weight can only be between 0 and 256 inclusive.",
           "Health check was not configured on this server, cannot enable.",
           "Agent was not configured on this server, cannot enable.",
           "Only servers in maintenance mode can be deleted.",
           "Server still has connections attached to it, cannot remove it.",
           "'cookie' option is not accepted for dynamic server",
           "unable to use be/a for tracking as it does not have any check nor agent enabled.",
           "Permission denied",
       }) {
    EXPECT_EQ(RuntimeRefusals(std::string(refusal) + "\n\n"), std::vector<std::string>{refusal});
  }
}

TEST(RuntimeRefusalsTest, OneRefusalInABatchIsFound) {
  // `set server be/a weight 2; set server be/zz weight 3; add server be/m 10.0.0.6:80` on one
  // connection, as haproxy 2.6 answered it.
  EXPECT_EQ(RuntimeRefusals("\nNo such server.\n\nNew server registered.\n\n"),
            std::vector<std::string>{"No such server."});
}

TEST(RuntimeRefusalsTest, EveryLineOfAMultiLineRefusalIsReported) {
  const std::vector<std::string> refusals = RuntimeRefusals(
      "Unknown command, but maybe one of the following ones is a better match:\n"
      "  add map                                 : add a map entry\n"
      "  add server                              : create a new server\n\n");
  ASSERT_EQ(refusals.size(), 3u);
  EXPECT_EQ(refusals[0], "Unknown command, but maybe one of the following ones is a better match:");
  EXPECT_EQ(refusals[2], "  add server                              : create a new server");
}

TEST(RuntimeRefusalsTest, ASuccessMessageMustBeTheWholeLine) {
  EXPECT_EQ(RuntimeRefusals("Not a New server registered.\n"),
            std::vector<std::string>{"Not a New server registered."});
  EXPECT_EQ(RuntimeRefusals("Server deleted. But not really\n"),
            std::vector<std::string>{"Server deleted. But not really"});
}

TEST(RuntimeRefusalsTest, LongRefusalIsCutTo200Characters) {
  const std::string line(5000, 'x');
  const std::vector<std::string> refusals = RuntimeRefusals(line + "\n");
  ASSERT_EQ(refusals.size(), 1u);
  EXPECT_EQ(refusals[0], line.substr(0, 200));
}

}  // namespace
}  // namespace lb::agent
