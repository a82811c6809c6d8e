// ServerState: parsing `show servers state`, what the server-state file carries across a reload
// (CarryServerState), and the comparison of running servers with the declared ones
// (VerifyServers), on answers of a real haproxy 2.6.
#include "server_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "server_config.h"

namespace lb::agent {
namespace {

using proto::ErrorCode;

constexpr char kHeader[] =
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
    "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
    "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port";

// haproxy 2.6.12's `@1 show servers state` for kRealConfig after `set server app/web2 weight 2`,
// `set server api/api1 state drain` and `set server app/web1 state maint`.
constexpr char kRealConfig[] = R"(backend app
    server web1 127.0.0.1:1 check inter 200ms
    server web2 127.0.0.1:2 weight 5
    server off 127.0.0.1:3 disabled
    server named localhost:4
backend api
    server api1 [::1]:8080 weight 3
)";
const std::string kRealState = std::string("1\n") + kHeader + "\n" +
                               "2 app 1 web1 127.0.0.1 0 1 1 1 1 8 2 0 14 0 0 0 - 1 - 0 0 - - 0\n"
                               "2 app 2 web2 127.0.0.1 2 0 2 5 1 1 0 2 0 0 0 0 - 2 - 0 0 - - 0\n"
                               "2 app 3 off 127.0.0.1 0 5 1 1 1 1 0 0 8 0 0 0 - 3 - 0 0 - - 0\n"
                               "2 app 4 named 127.0.0.1 2 0 1 1 1 1 0 2 0 0 0 0 localhost 4 - 0 0 "
                               "- - 0\n"
                               "3 api 1 api1 ::1 2 8 3 3 0 1 0 2 0 0 0 0 - 8080 - 0 0 - - 0\n"
                               "\n";

// One server of a synthetic `show servers state`.
struct Srv {
  std::string backend;
  std::string name;
  std::string addr;
  int port = 80;
  int admin = 0;
  int uweight = 1;
  int iweight = 1;
  std::string fqdn = "-";
  int op = 2;
};

// The line haproxy prints for `s` (health columns of an UP server with checks).
std::string Line(const Srv& s) {
  return "2 " + s.backend + " 1 " + s.name + " " + s.addr + " " + std::to_string(s.op) + " " +
         std::to_string(s.admin) + " " + std::to_string(s.uweight) + " " +
         std::to_string(s.iweight) + " 120 6 3 4 6 0 0 0 " + s.fqdn + " " + std::to_string(s.port) +
         " - 0 0 - - 0";
}

std::string StateText(const std::vector<Srv>& servers) {
  std::string out = std::string("1\n") + kHeader + "\n";
  for (const auto& s : servers) out += Line(s) + "\n";
  return out + "\n";
}

ServersState Parse(const std::string& text) {
  auto state = ParseServersState(text);
  if (!state.ok()) {
    ADD_FAILURE() << state.status().ToString();
    return ServersState();
  }
  return *state;
}

// The file CarryServerState should write: version, header, then these lines.
std::string FileWith(const std::vector<Srv>& servers) {
  std::string out = std::string("1\n") + kHeader + "\n";
  for (const auto& s : servers) out += Line(s) + "\n";
  return out;
}

bool Contains(const std::vector<std::string>& lines, const std::string& text) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(text) != std::string::npos; });
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out;
}

// ---- ParseServersState ----

TEST(ParseServersStateTest, ParsesHaproxy26Answer) {
  auto state = ParseServersState(kRealState);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(state->version, "1");
  EXPECT_EQ(state->header, kHeader);
  EXPECT_EQ(state->columns.size(), 25u);
  EXPECT_EQ(state->columns.at("be_name"), 1u);
  EXPECT_EQ(state->columns.at("srv_port"), 18u);
  ASSERT_EQ(state->servers.size(), 5u);

  const RunningServer* web1 = state->Find("app", "web1");
  ASSERT_NE(web1, nullptr);
  EXPECT_EQ(web1->addr, "127.0.0.1");
  EXPECT_EQ(web1->port, 1);
  EXPECT_EQ(web1->op_state, 0);
  EXPECT_EQ(web1->admin_state, 1);
  EXPECT_TRUE(web1->maint());
  EXPECT_EQ(web1->fqdn, "");
  EXPECT_EQ(web1->fields.size(), 25u);
  EXPECT_EQ(web1->fields[3], "web1");

  const RunningServer* web2 = state->Find("app", "web2");
  ASSERT_NE(web2, nullptr);
  EXPECT_EQ(web2->uweight, 2);
  EXPECT_EQ(web2->iweight, 5);
  EXPECT_FALSE(web2->maint());

  const RunningServer* off = state->Find("app", "off");
  ASSERT_NE(off, nullptr);
  EXPECT_EQ(off->admin_state, 5);  // `disabled`: FMAINT | CMAINT
  EXPECT_TRUE(off->maint());

  const RunningServer* named = state->Find("app", "named");
  ASSERT_NE(named, nullptr);
  EXPECT_EQ(named->fqdn, "localhost");
  EXPECT_EQ(named->addr, "127.0.0.1");
  EXPECT_EQ(named->port, 4);

  const RunningServer* api1 = state->Find("api", "api1");
  ASSERT_NE(api1, nullptr);
  EXPECT_EQ(api1->addr, "::1");
  EXPECT_EQ(api1->port, 8080);
  EXPECT_EQ(api1->admin_state, 8);  // DRAIN
  EXPECT_FALSE(api1->maint());
  EXPECT_EQ(api1->uweight, 3);

  EXPECT_EQ(state->Find("app", "api1"), nullptr);
  EXPECT_EQ(state->Find("nope", "web1"), nullptr);
}

TEST(ParseServersStateTest, NoServersIsAnEmptyState) {
  auto state = ParseServersState(std::string("1\n") + kHeader + "\n\n");
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_TRUE(state->servers.empty());
  EXPECT_EQ(state->header, kHeader);
}

TEST(ParseServersStateTest, FindsColumnsByHeaderName) {
  // The same server with be_name/srv_name and srv_addr/srv_port swapped in header and line.
  const std::string text =
      "1\n# be_id srv_name srv_id be_name srv_port srv_op_state srv_admin_state srv_uweight "
      "srv_iweight srv_addr\n"
      "2 web1 1 app 8081 2 8 3 4 10.0.0.1\n\n";
  auto state = ParseServersState(text);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  const RunningServer* s = state->Find("app", "web1");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->addr, "10.0.0.1");
  EXPECT_EQ(s->port, 8081);
  EXPECT_EQ(s->admin_state, 8);
  EXPECT_EQ(s->uweight, 3);
  EXPECT_EQ(s->iweight, 4);
}

TEST(ParseServersStateTest, CutShortLineIsNeverHalfAServer) {
  const std::string full = kRealState;
  const std::size_t api_line = full.find("3 api 1 api1");
  // Cut inside api1's line, before its srv_port: fewer columns than the header names. Either
  // the answer is refused as cut short, or that server is left out.
  const std::string cut = full.substr(0, full.find(" 8080", api_line));
  auto state = ParseServersState(cut);
  if (!state.ok()) {
    EXPECT_EQ(state.status().code(), ErrorCode::kHaproxyUnavailable);
    return;
  }
  EXPECT_EQ(state->servers.size(), 4u);
  EXPECT_EQ(state->Find("api", "api1"), nullptr);
  EXPECT_NE(state->Find("app", "named"), nullptr);
}

TEST(ParseServersStateTest, CutAnywhereNeverYieldsAWrongServer) {
  // Wherever the answer is cut inside its last line, it is refused or that server is absent or
  // exactly right.
  // Its fields are written back into the server-state file, so a shortened last column (the
  // agent port 53971 read as 539) must never pass for a whole server.
  const std::string before = std::string("1\n") + kHeader + "\n";
  const std::string last = "3 be 1 a 127.0.0.1 2 0 1 1 1 1 0 2 0 22 0 0 - 8081 - 0 0 - - 53971";
  auto full = ParseServersState(before + last + "\n\n");
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(full->servers.size(), 1u);
  const std::vector<std::string> expected = full->servers[0].fields;
  std::vector<std::string> wrong;
  for (std::size_t cut = 1; cut <= last.size(); ++cut) {
    auto state = ParseServersState(before + last.substr(0, cut));
    if (!state.ok()) {  // refused as cut short: fine
      EXPECT_EQ(state.status().code(), ErrorCode::kHaproxyUnavailable);
      continue;
    }
    const RunningServer* s = state->Find("be", "a");
    if (s != nullptr && s->fields != expected) {
      wrong.push_back("\"..." + last.substr(cut > 20 ? cut - 20 : 0, cut > 20 ? 20 : cut) +
                      "\" gives srv_agent_port " + s->fields.back());
    }
  }
  EXPECT_TRUE(wrong.empty()) << wrong.size()
                             << " cut positions yield a wrong server:" << Joined(wrong);
}

TEST(ParseServersStateTest, MissingRequiredColumnIsAnError) {
  for (const char* column : {"be_name", "srv_name", "srv_addr", "srv_admin_state", "srv_uweight",
                             "srv_iweight", "srv_port"}) {
    SCOPED_TRACE(column);
    // The header without that column, and a server line without that field.
    std::string header = "#";
    std::string line;
    std::vector<std::string> fields;
    std::string rest = Line({"app", "web1", "10.0.0.1"});
    for (std::size_t pos = 0; pos <= rest.size();) {
      std::size_t end = std::min(rest.find(' ', pos), rest.size());
      fields.push_back(rest.substr(pos, end - pos));
      pos = end + 1;
    }
    std::size_t index = 0;
    std::string names = std::string(kHeader).substr(2) + " ";
    for (std::size_t pos = 0; pos < names.size(); ++index) {
      const std::size_t end = names.find(' ', pos);
      const std::string name = names.substr(pos, end - pos);
      pos = end + 1;
      if (name == column) continue;
      header += " " + name;
      line += (line.empty() ? "" : " ") + fields[index];
    }
    ASSERT_EQ(index, 25u);
    auto state = ParseServersState("1\n" + header + "\n" + line + "\n\n");
    ASSERT_FALSE(state.ok()) << header;
    EXPECT_EQ(state.status().code(), ErrorCode::kHaproxyUnavailable);
    EXPECT_NE(state.status().message().find(column), std::string::npos) << state.status().message();
  }
}

TEST(ParseServersStateTest, AnswerThatIsNotServersStateIsAnError) {
  for (const char* text : {"", "Unknown command.\n", "2\n# be_id be_name\n", "1\n",
                           "# pxname,svname,qcur\nmain,FRONTEND,0\n", "Permission denied\n\n"}) {
    auto state = ParseServersState(text);
    ASSERT_FALSE(state.ok()) << "accepted: \"" << text << "\"";
    EXPECT_EQ(state.status().code(), ErrorCode::kHaproxyUnavailable);
  }
}

TEST(ParseServersStateTest, LineWithNonNumericStateIsLeftOut) {
  auto state = ParseServersState(std::string("1\n") + kHeader + "\n" +
                                 "2 app 1 bad 10.0.0.1 2 x 1 1 1 1 0 2 0 0 0 0 - 80 - 0 0 - - 0\n" +
                                 Line({"app", "good", "10.0.0.2"}) + "\n\n");
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(state->Find("app", "bad"), nullptr);
  EXPECT_NE(state->Find("app", "good"), nullptr);
}

TEST(RunningServerTest, MaintIsTheForcedMaintenanceBit) {
  RunningServer s;
  for (int admin : {1, 5, 1 | 8, 0x21}) {
    s.admin_state = admin;
    EXPECT_TRUE(s.maint()) << admin;
  }
  for (int admin : {0, 4, 8, 0x10}) {
    s.admin_state = admin;
    EXPECT_FALSE(s.maint()) << admin;
  }
}

// ---- CarryServerState ----

constexpr char kLive[] = R"(backend app
    server web1 10.0.0.1:80 check
    server web2 10.0.0.2:80 check weight 5
    server off 10.0.0.3:80 disabled
    server named app.example.com:80 check
backend api
    server api1 [::1]:8080
)";

// What haproxy runs for kLive, with nothing set by hand.
std::vector<Srv> LiveRunning() {
  return {
      {"app", "web1", "10.0.0.1", 80},
      {"app", "web2", "10.0.0.2", 80, 0, 5, 5},
      {"app", "off", "10.0.0.3", 80, 5},
      {"app", "named", "192.0.2.10", 80, 0, 1, 1, "app.example.com"},
      {"api", "api1", "::1", 8080},
  };
}

std::string Replaced(std::string text, const std::string& from, const std::string& to) {
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

StateCarry Carry(const std::vector<Srv>& running, const std::string& next,
                 bool keep_operator_state = true, const std::string& live = kLive) {
  return CarryServerState(Parse(StateText(running)), ReadDeclaredServers(live),
                          ReadDeclaredServers(next), keep_operator_state);
}

void ExpectExpectation(const StateCarry& carry, const std::string& key, int weight, bool maint) {
  auto it = carry.expect.find(key);
  ASSERT_NE(it, carry.expect.end()) << key;
  EXPECT_EQ(it->second.weight, weight) << key;
  EXPECT_EQ(it->second.maint, maint) << key;
}

TEST(CarryServerStateTest, UnchangedServersAreCarriedAsTheyRun) {
  const StateCarry carry = Carry(LiveRunning(), kLive);
  EXPECT_EQ(carry.file_text, FileWith(LiveRunning()));
  EXPECT_TRUE(carry.left_out.empty()) << Joined(carry.left_out);
  EXPECT_EQ(carry.expect.size(), 5u);
  ExpectExpectation(carry, "app/web1", 1, false);
  ExpectExpectation(carry, "app/web2", 5, false);
  ExpectExpectation(carry, "app/off", 1, true);
  ExpectExpectation(carry, "app/named", 1, false);
  ExpectExpectation(carry, "api/api1", 1, false);
  for (const auto& [key, e] : carry.expect) {
    EXPECT_EQ(e.why_weight, "") << key;
    EXPECT_EQ(e.why_maint, "") << key;
  }
}

TEST(CarryServerStateTest, RealHaproxyStateKeepsWhatTheOperatorSet) {
  // kRealState: web1 MAINT by hand, web2 weight 2 by hand, api1 DRAIN by hand, `off` disabled.
  const StateCarry carry = CarryServerState(Parse(kRealState), ReadDeclaredServers(kRealConfig),
                                            ReadDeclaredServers(kRealConfig), true);
  EXPECT_TRUE(carry.left_out.empty()) << Joined(carry.left_out);
  const std::string file = std::string("1\n") + kHeader + "\n" +
                           "2 app 1 web1 127.0.0.1 0 1 1 1 1 8 2 0 14 0 0 0 - 1 - 0 0 - - 0\n"
                           "2 app 2 web2 127.0.0.1 2 0 2 5 1 1 0 2 0 0 0 0 - 2 - 0 0 - - 0\n"
                           "2 app 3 off 127.0.0.1 0 5 1 1 1 1 0 0 8 0 0 0 - 3 - 0 0 - - 0\n"
                           "2 app 4 named 127.0.0.1 2 0 1 1 1 1 0 2 0 0 0 0 localhost 4 - 0 0 - "
                           "- 0\n"
                           "3 api 1 api1 ::1 2 8 3 3 0 1 0 2 0 0 0 0 - 8080 - 0 0 - - 0\n";
  EXPECT_EQ(carry.file_text, file);
  ExpectExpectation(carry, "app/web1", 1, true);
  ExpectExpectation(carry, "app/web2", 2, false);
  ExpectExpectation(carry, "app/off", 1, true);
  ExpectExpectation(carry, "api/api1", 3, false);
}

TEST(CarryServerStateTest, ServerWhoseAddressChangesIsLeftOut) {
  const StateCarry carry =
      Carry(LiveRunning(), Replaced(kLive, "web1 10.0.0.1:80", "web1 10.0.0.9:80"));
  std::vector<Srv> kept = LiveRunning();
  kept.erase(kept.begin());
  EXPECT_EQ(carry.file_text, FileWith(kept));
  ASSERT_EQ(carry.left_out.size(), 1u);
  EXPECT_NE(carry.left_out[0].find("app/web1"), std::string::npos) << carry.left_out[0];
  EXPECT_NE(carry.left_out[0].find("address"), std::string::npos) << carry.left_out[0];
  EXPECT_NE(carry.left_out[0].find("10.0.0.1:80"), std::string::npos) << carry.left_out[0];
  EXPECT_NE(carry.left_out[0].find("10.0.0.9:80"), std::string::npos) << carry.left_out[0];
  ExpectExpectation(carry, "app/web1", 1, false);
}

TEST(CarryServerStateTest, ServerWhosePortChangesIsLeftOut) {
  // The trap of issue 9: `node1 127.0.0.1:8081` becomes `127.0.0.1:8091`.
  const StateCarry carry =
      Carry(LiveRunning(), Replaced(kLive, "web2 10.0.0.2:80", "web2 10.0.0.2:8091"));
  EXPECT_EQ(carry.file_text.find(" web2 "), std::string::npos) << carry.file_text;
  ASSERT_EQ(carry.left_out.size(), 1u);
  EXPECT_NE(carry.left_out[0].find("app/web2"), std::string::npos) << carry.left_out[0];
  EXPECT_NE(carry.file_text.find(" web1 "), std::string::npos);
}

TEST(CarryServerStateTest, Ipv6ServerWhosePortChangesIsLeftOut) {
  const StateCarry carry =
      Carry(LiveRunning(), Replaced(kLive, "api1 [::1]:8080", "api1 [::1]:8081"));
  EXPECT_EQ(carry.file_text.find(" api1 "), std::string::npos) << carry.file_text;
  EXPECT_TRUE(Contains(carry.left_out, "api/api1")) << Joined(carry.left_out);
}

TEST(CarryServerStateTest, SameEndpointWrittenDifferentlyIsCarried) {
  const StateCarry carry =
      Carry(LiveRunning(), Replaced(Replaced(kLive, "web1 10.0.0.1:80", "web1 ipv4@10.0.0.1:80"),
                                    "api1 [::1]:8080", "api1 ipv6@0:0::1:8080"));
  EXPECT_EQ(carry.file_text, FileWith(LiveRunning()));
  EXPECT_TRUE(carry.left_out.empty()) << Joined(carry.left_out);
}

TEST(CarryServerStateTest, AddressSetByHandOnAnUnchangedServerIsLeftOut) {
  // `set server app/web1 addr 10.0.0.7`: the config did not change, but the file would keep
  // haproxy on an address the config does not say.
  std::vector<Srv> running = LiveRunning();
  running[0].addr = "10.0.0.7";
  const StateCarry carry = Carry(running, kLive);
  EXPECT_EQ(carry.file_text.find(" web1 "), std::string::npos) << carry.file_text;
  EXPECT_TRUE(Contains(carry.left_out, "app/web1")) << Joined(carry.left_out);
}

TEST(CarryServerStateTest, HostNamesAreComparedByTheLiveConfigsText) {
  // Unchanged text: carried, whatever the name resolved to.
  EXPECT_NE(Carry(LiveRunning(), kLive).file_text.find(" named 192.0.2.10 "), std::string::npos);
  // Another name (even one that resolves to the same address): left out.
  const StateCarry renamed = Carry(
      LiveRunning(), Replaced(kLive, "named app.example.com:80", "named app2.example.com:80"));
  EXPECT_EQ(renamed.file_text.find(" named "), std::string::npos) << renamed.file_text;
  EXPECT_TRUE(Contains(renamed.left_out, "app/named")) << Joined(renamed.left_out);
  // Same name, another port.
  const StateCarry port =
      Carry(LiveRunning(), Replaced(kLive, "named app.example.com:80", "named app.example.com:81"));
  EXPECT_EQ(port.file_text.find(" named "), std::string::npos);
  // A name becomes a literal equal to what runs: carried (compared with what runs).
  const StateCarry literal =
      Carry(LiveRunning(), Replaced(kLive, "named app.example.com:80", "named 192.0.2.10:80"));
  EXPECT_NE(literal.file_text.find(" named 192.0.2.10 "), std::string::npos);
}

TEST(CarryServerStateTest, RunningServerUnknownToTheLiveConfigIsCarriedOnlyForALiteral) {
  // A server running but not in the live file (added by hand), now in the config.
  std::vector<Srv> running = LiveRunning();
  running.push_back({"app", "extra", "10.0.0.8", 80});
  running.push_back({"app", "extraname", "192.0.2.11", 80, 0, 1, 1, "x.example.com"});
  const std::string next = std::string(kLive) +
                           "backend other\n"
                           "    server z 10.0.0.99:80\n";
  const std::string next_app = Replaced(next, "    server off",
                                        "    server extra 10.0.0.8:80\n"
                                        "    server extraname x.example.com:80\n"
                                        "    server off");
  const StateCarry carry = Carry(running, next_app);
  EXPECT_NE(carry.file_text.find(" extra 10.0.0.8 "), std::string::npos) << carry.file_text;
  EXPECT_EQ(carry.file_text.find(" extraname "), std::string::npos) << carry.file_text;
  EXPECT_TRUE(Contains(carry.left_out, "app/extraname"));
  ExpectExpectation(carry, "other/z", 1, false);  // declared, not running: expected all the same
}

TEST(CarryServerStateTest, ServerEnteringMaintenanceIsLeftOut) {
  const StateCarry carry = Carry(
      LiveRunning(), Replaced(kLive, "web1 10.0.0.1:80 check", "web1 10.0.0.1:80 check disabled"));
  EXPECT_EQ(carry.file_text.find(" web1 "), std::string::npos) << carry.file_text;
  ASSERT_EQ(carry.left_out.size(), 1u) << Joined(carry.left_out);
  EXPECT_NE(carry.left_out[0].find("app/web1"), std::string::npos);
  EXPECT_NE(carry.left_out[0].find("enters maintenance"), std::string::npos) << carry.left_out[0];
  ExpectExpectation(carry, "app/web1", 1, true);
}

TEST(CarryServerStateTest, ServerLeavingMaintenanceIsLeftOut) {
  const StateCarry carry =
      Carry(LiveRunning(), Replaced(kLive, "off 10.0.0.3:80 disabled", "off 10.0.0.3:80"));
  EXPECT_EQ(carry.file_text.find(" off "), std::string::npos) << carry.file_text;
  ASSERT_EQ(carry.left_out.size(), 1u) << Joined(carry.left_out);
  EXPECT_NE(carry.left_out[0].find("app/off"), std::string::npos);
  EXPECT_NE(carry.left_out[0].find("leaves maintenance"), std::string::npos) << carry.left_out[0];
  ExpectExpectation(carry, "app/off", 1, false);
}

TEST(CarryServerStateTest, TheConfigsNewWeightWins) {
  // The config changes web2's weight 5 -> 8; an operator had set 2 by hand: the config wins.
  std::vector<Srv> running = LiveRunning();
  running[1].uweight = 2;
  const StateCarry carry = Carry(running, Replaced(kLive, "web2 10.0.0.2:80 check weight 5",
                                                   "web2 10.0.0.2:80 check "
                                                   "weight 8"));
  std::vector<Srv> want = LiveRunning();
  want[1].uweight = 8;
  want[1].iweight = 8;  // haproxy applies a file's uweight only when iweight is the config's
  EXPECT_EQ(carry.file_text, FileWith(want));
  ExpectExpectation(carry, "app/web2", 8, false);
  EXPECT_EQ(carry.expect.at("app/web2").why_weight, "");
  EXPECT_TRUE(carry.left_out.empty()) << Joined(carry.left_out);
}

TEST(CarryServerStateTest, AWeightRemovedFromTheConfigGoesBackToOne) {
  const StateCarry carry = Carry(
      LiveRunning(), Replaced(kLive, "web2 10.0.0.2:80 check weight 5", "web2 10.0.0.2:80 check"));
  std::vector<Srv> want = LiveRunning();
  want[1].uweight = 1;
  want[1].iweight = 1;
  EXPECT_EQ(carry.file_text, FileWith(want));
  ExpectExpectation(carry, "app/web2", 1, false);
}

TEST(CarryServerStateTest, AnOperatorsWeightIsKeptWhileTheConfigsStaysTheSame) {
  std::vector<Srv> running = LiveRunning();
  running[1].uweight = 2;  // `set server app/web2 weight 2`; the config still says 5
  const StateCarry carry = Carry(running, kLive);
  EXPECT_EQ(carry.file_text, FileWith(running));  // uweight 2, iweight 5
  ExpectExpectation(carry, "app/web2", 2, false);
  EXPECT_NE(carry.expect.at("app/web2").why_weight, "");
  EXPECT_TRUE(carry.left_out.empty()) << Joined(carry.left_out);
}

TEST(CarryServerStateTest, AnOperatorsWeightIsDroppedWithoutKeepOperatorState) {
  std::vector<Srv> running = LiveRunning();
  running[1].uweight = 2;
  const StateCarry carry = Carry(running, kLive, /*keep_operator_state=*/false);
  EXPECT_EQ(carry.file_text, FileWith(LiveRunning()));  // uweight 5 again
  ExpectExpectation(carry, "app/web2", 5, false);
  EXPECT_EQ(carry.expect.at("app/web2").why_weight, "");
}

TEST(CarryServerStateTest, AnOperatorsMaintenanceIsKeptOnAServerEnabledInBothConfigs) {
  std::vector<Srv> running = LiveRunning();
  running[0].admin = 1;  // `set server app/web1 state maint`
  const StateCarry carry = Carry(running, kLive);
  EXPECT_EQ(carry.file_text, FileWith(running));
  ExpectExpectation(carry, "app/web1", 1, true);
  EXPECT_NE(carry.expect.at("app/web1").why_maint, "");
  EXPECT_TRUE(carry.left_out.empty()) << Joined(carry.left_out);
}

TEST(CarryServerStateTest, AnOperatorsMaintenanceIsDroppedWithoutKeepOperatorState) {
  std::vector<Srv> running = LiveRunning();
  running[0].admin = 1;
  const StateCarry carry = Carry(running, kLive, /*keep_operator_state=*/false);
  EXPECT_EQ(carry.file_text.find(" web1 "), std::string::npos) << carry.file_text;
  EXPECT_TRUE(Contains(carry.left_out, "app/web1")) << Joined(carry.left_out);
  ExpectExpectation(carry, "app/web1", 1, false);
  EXPECT_EQ(carry.expect.at("app/web1").why_maint, "");
}

TEST(CarryServerStateTest, AnOperatorsMaintenanceEndsWhenTheConfigDisablesTheServer) {
  // MAINT by hand, and now the config says `disabled` too: the config's maintenance, with CMAINT.
  std::vector<Srv> running = LiveRunning();
  running[0].admin = 1;
  const StateCarry carry =
      Carry(running, Replaced(kLive, "web1 10.0.0.1:80 check", "web1 10.0.0.1:80 check disabled"));
  ExpectExpectation(carry, "app/web1", 1, true);
  EXPECT_EQ(carry.expect.at("app/web1").why_maint, "");
  std::vector<Srv> want = LiveRunning();
  want[0].admin = 5;
  EXPECT_EQ(carry.file_text, FileWith(want));
}

TEST(CarryServerStateTest, DrainIsKeptAndDroppedWithoutKeepOperatorState) {
  std::vector<Srv> running = LiveRunning();
  running[0].admin = 8;  // `set server app/web1 state drain`
  const StateCarry kept = Carry(running, kLive);
  EXPECT_EQ(kept.file_text, FileWith(running));
  ExpectExpectation(kept, "app/web1", 1, false);
  EXPECT_TRUE(kept.left_out.empty()) << Joined(kept.left_out);

  const StateCarry dropped = Carry(running, kLive, /*keep_operator_state=*/false);
  EXPECT_EQ(dropped.file_text, FileWith(LiveRunning()));  // still carried, admin 0
  EXPECT_TRUE(dropped.left_out.empty()) << Joined(dropped.left_out);
}

TEST(CarryServerStateTest, ConfigMaintenanceBitFollowsTheNewConfig) {
  // `off` was disabled by a runtime apply (`set server state maint` gives FMAINT only, 1); the
  // file says `disabled`: the carried line gets CMAINT as a reload of the file would.
  std::vector<Srv> running = LiveRunning();
  running[2].admin = 1;
  const StateCarry carry = Carry(running, kLive);
  EXPECT_EQ(carry.file_text, FileWith(LiveRunning()));  // admin 5
  ExpectExpectation(carry, "app/off", 1, true);

  // CMAINT on a server the config enables is cleared; the operator's FMAINT stays.
  running = LiveRunning();
  running[0].admin = 5;
  const StateCarry cleared = Carry(running, kLive);
  std::vector<Srv> want = LiveRunning();
  want[0].admin = 1;
  EXPECT_EQ(cleared.file_text, FileWith(want));
  ExpectExpectation(cleared, "app/web1", 1, true);
}

TEST(CarryServerStateTest, ServersGoneFromTheConfigAreNotCarried) {
  const std::string next =
      Replaced(Replaced(kLive, "    server web2 10.0.0.2:80 check weight 5\n", ""),
               "backend api\n    server api1 [::1]:8080\n", "");
  const StateCarry carry = Carry(LiveRunning(), next);
  std::vector<Srv> want = LiveRunning();
  want.erase(want.begin() + 4);
  want.erase(want.begin() + 1);
  EXPECT_EQ(carry.file_text, FileWith(want));
  EXPECT_EQ(carry.expect.count("app/web2"), 0u);
  EXPECT_EQ(carry.expect.count("api/api1"), 0u);
  EXPECT_EQ(carry.expect.size(), 3u);
}

TEST(CarryServerStateTest, ServerAddedToTheConfigIsExpectedWithItsConfig) {
  const StateCarry carry = Carry(LiveRunning(), Replaced(kLive, "    server off",
                                                         "    server web3 10.0.0.4:80 weight "
                                                         "7 disabled\n    server off"));
  ExpectExpectation(carry, "app/web3", 7, true);
  EXPECT_EQ(carry.file_text, FileWith(LiveRunning()));
}

// ---- VerifyServers ----

constexpr char kVerifyConfig[] = R"(backend app
    server web1 10.0.0.1:8091 check
    server web2 10.0.0.2:80 weight 5
    server spare 10.0.0.3:80 backup
    server off 10.0.0.4:80 disabled
    server named app.example.com:80
    server v6 [::1]:8080
)";

std::vector<Srv> VerifyRunning() {
  return {
      {"app", "web1", "10.0.0.1", 8091},
      {"app", "web2", "10.0.0.2", 80, 0, 5, 5},
      {"app", "spare", "10.0.0.3", 80},
      {"app", "off", "10.0.0.4", 80, 5},
      {"app", "named", "192.0.2.10", 80, 0, 1, 1, "app.example.com"},
      {"app", "v6", "::1", 8080},
  };
}

StatRow Stat(const std::string& backend, const std::string& server, bool backup) {
  StatRow row;
  row.pxname = backend;
  row.svname = server;
  row.type = StatRow::Type::kServer;
  row.backup = backup;
  return row;
}

std::vector<StatRow> VerifyStats() {
  std::vector<StatRow> rows;
  StatRow backend_row = Stat("app", "BACKEND", false);
  backend_row.type = StatRow::Type::kBackend;
  rows.push_back(backend_row);
  for (const auto& s : VerifyRunning()) rows.push_back(Stat(s.backend, s.name, s.name == "spare"));
  return rows;
}

std::vector<std::string> Verify(const std::vector<Srv>& running,
                                const std::vector<StatRow>& stats = VerifyStats(),
                                const std::map<std::string, ServerExpectation>& expect = {},
                                const std::string& config = kVerifyConfig) {
  return VerifyServers(ReadDeclaredServers(config), expect, Parse(StateText(running)), stats);
}

TEST(VerifyServersTest, MatchingStateHasNoDifference) {
  EXPECT_EQ(Verify(VerifyRunning()), std::vector<std::string>{});
  // Without show stat rows, backup is not compared.
  EXPECT_EQ(Verify(VerifyRunning(), {}), std::vector<std::string>{});
}

TEST(VerifyServersTest, MissingServerIsNamed) {
  std::vector<Srv> running = VerifyRunning();
  running.erase(running.begin() + 1);
  EXPECT_EQ(Verify(running), (std::vector<std::string>{
                                 "backend app, server web2: not running, the config declares it "
                                 "(line 3)"}));
}

TEST(VerifyServersTest, ExtraRunningServerIsNamed) {
  std::vector<Srv> running = VerifyRunning();
  running.push_back({"app", "web9", "10.0.0.9", 80});
  EXPECT_EQ(Verify(running),
            (std::vector<std::string>{"backend app, server web9: running, the config does not "
                                      "declare it"}));
}

TEST(VerifyServersTest, AddressDifferenceIsNamed) {
  std::vector<Srv> running = VerifyRunning();
  running[0].addr = "10.0.0.7";
  EXPECT_EQ(Verify(running),
            (std::vector<std::string>{
                "backend app, server web1: address is 10.0.0.7, the config says 10.0.0.1"}));
}

TEST(VerifyServersTest, PortDifferenceIsNamed) {
  // The trap of issue 9: the state file kept the old port.
  std::vector<Srv> running = VerifyRunning();
  running[0].port = 8081;
  EXPECT_EQ(
      Verify(running),
      (std::vector<std::string>{"backend app, server web1: port is 8081, the config says 8091"}));
}

TEST(VerifyServersTest, AddressAndPortDifferencesAreBothNamed) {
  std::vector<Srv> running = VerifyRunning();
  running[5].addr = "::2";
  running[5].port = 8081;
  EXPECT_EQ(Verify(running),
            (std::vector<std::string>{"backend app, server v6: address is ::2, the config says ::1",
                                      "backend app, server v6: port is 8081, the config says "
                                      "8080"}));
}

TEST(VerifyServersTest, HostNameServerIsComparedByNameOnly) {
  std::vector<Srv> running = VerifyRunning();
  running[4].addr = "198.51.100.7";
  running[4].port = 8080;
  EXPECT_EQ(Verify(running), std::vector<std::string>{});
}

TEST(VerifyServersTest, WeightDifferenceIsNamed) {
  std::vector<Srv> running = VerifyRunning();
  running[1].uweight = 3;
  EXPECT_EQ(Verify(running),
            (std::vector<std::string>{"backend app, server web2: weight is 3, the config says 5"}));
}

TEST(VerifyServersTest, ServerInMaintenanceTheConfigEnablesIsNamed) {
  std::vector<Srv> running = VerifyRunning();
  running[0].admin = 1;
  EXPECT_EQ(Verify(running),
            (std::vector<std::string>{
                "backend app, server web1: in maintenance, the config says enabled"}));
}

TEST(VerifyServersTest, ServerNotInMaintenanceTheConfigDisablesIsNamed) {
  std::vector<Srv> running = VerifyRunning();
  running[3].admin = 0;
  EXPECT_EQ(Verify(running),
            (std::vector<std::string>{
                "backend app, server off: not in maintenance, the config says disabled"}));
}

TEST(VerifyServersTest, DrainIsNotMaintenance) {
  std::vector<Srv> running = VerifyRunning();
  running[0].admin = 8;
  EXPECT_EQ(Verify(running), std::vector<std::string>{});
}

TEST(VerifyServersTest, BackupServerTheConfigDoesNotDeclareBackupIsNamed) {
  std::vector<StatRow> stats = VerifyStats();
  for (auto& row : stats) {
    if (row.svname == "web1") row.backup = true;
  }
  EXPECT_EQ(Verify(VerifyRunning(), stats),
            (std::vector<std::string>{
                "backend app, server web1: is a backup server, the config says not backup"}));
}

TEST(VerifyServersTest, ActiveServerTheConfigDeclaresBackupIsNamed) {
  std::vector<StatRow> stats = VerifyStats();
  for (auto& row : stats) {
    if (row.svname == "spare") row.backup = false;
  }
  EXPECT_EQ(Verify(VerifyRunning(), stats),
            (std::vector<std::string>{
                "backend app, server spare: is not a backup server, the config says backup"}));
}

TEST(VerifyServersTest, EveryDifferenceIsReported) {
  std::vector<Srv> running = VerifyRunning();
  running[0].port = 8081;
  running[1].uweight = 1;
  running[3].admin = 0;
  running.push_back({"app", "ghost", "10.0.0.66", 80});
  const std::vector<std::string> diffs = Verify(running);
  EXPECT_EQ(diffs.size(), 4u) << Joined(diffs);
  EXPECT_TRUE(Contains(diffs, "server web1: port")) << Joined(diffs);
  EXPECT_TRUE(Contains(diffs, "server web2: weight")) << Joined(diffs);
  EXPECT_TRUE(Contains(diffs, "server off: not in maintenance")) << Joined(diffs);
  EXPECT_TRUE(Contains(diffs, "server ghost: running")) << Joined(diffs);
}

TEST(VerifyServersTest, ExpectationsOverrideTheConfigsWeightAndMaintenance) {
  std::map<std::string, ServerExpectation> expect = {
      {"app/web2", {2, false, "set through the runtime API", ""}},
      {"app/web1", {1, true, "", "MAINT set through the runtime API"}},
  };
  std::vector<Srv> running = VerifyRunning();
  running[1].uweight = 2;
  running[0].admin = 1;
  EXPECT_EQ(Verify(running, VerifyStats(), expect), std::vector<std::string>{});

  // The config's weight where another was expected: named with the expectation.
  running[1].uweight = 5;
  EXPECT_EQ(
      Verify(running, VerifyStats(), expect),
      (std::vector<std::string>{
          "backend app, server web2: weight is 5, expected 2 (set through the runtime API)"}));
}

TEST(VerifyServersTest, ExpectedMaintenanceMissingIsNotBlamedOnTheConfig) {
  // An operator's MAINT was carried (why_maint set) but the server runs out of maintenance. The
  // config says enabled and the server is enabled, so "the config says enabled" explains
  // nothing: the message must say maintenance was expected (as the weight message does).
  std::map<std::string, ServerExpectation> expect = {
      {"app/web1", {1, true, "", "MAINT set through the runtime API"}},
  };
  const std::vector<std::string> diffs = Verify(VerifyRunning(), VerifyStats(), expect);
  ASSERT_EQ(diffs.size(), 1u) << Joined(diffs);
  EXPECT_NE(diffs[0].find("backend app, server web1: not in maintenance"), std::string::npos)
      << diffs[0];
  EXPECT_EQ(diffs[0].find("the config says enabled"), std::string::npos) << diffs[0];
  EXPECT_NE(diffs[0].find("expected"), std::string::npos) << diffs[0];
}

TEST(VerifyServersTest, ConditionalServersAreSkipped) {
  const std::string config = std::string(kVerifyConfig) +
                             ".if defined(CANARY)\n"
                             "    server canary 10.0.0.50:80\n"
                             ".endif\n";
  // Declared in an .if block and not running: no difference.
  EXPECT_EQ(Verify(VerifyRunning(), VerifyStats(), {}, config), std::vector<std::string>{});
  // Running with other values: not compared either.
  std::vector<Srv> running = VerifyRunning();
  running.push_back({"app", "canary", "10.0.0.51", 81, 1, 9, 9});
  EXPECT_EQ(Verify(running, VerifyStats(), {}, config), std::vector<std::string>{});
  // In a backend with an .if block, a running server the file does not name may be one the
  // condition declares: not reported.
  running.push_back({"app", "unknown", "10.0.0.52", 80});
  EXPECT_EQ(Verify(running, VerifyStats(), {}, config), std::vector<std::string>{});
  // The other servers of that backend are still compared.
  running[0].port = 1;
  EXPECT_EQ(
      Verify(running, VerifyStats(), {}, config),
      (std::vector<std::string>{"backend app, server web1: port is 1, the config says 8091"}));
}

TEST(VerifyServersTest, ServersOfABackendTheConfigDoesNotDeclareAreNamed) {
  // haproxy runs a backend the applied file does not have (the reload did not take).
  std::vector<Srv> running = VerifyRunning();
  running.push_back({"old", "x1", "10.0.0.80", 80});
  const std::vector<std::string> diffs = Verify(running);
  EXPECT_EQ(diffs,
            (std::vector<std::string>{
                "backend old, server x1: running, the config does not declare the backend"}));
}

TEST(VerifyServersTest, EveryBackendIsCompared) {
  const std::string config = std::string(kVerifyConfig) +
                             "backend api\n"
                             "    server api1 10.0.1.1:8080 weight 3\n";
  std::vector<Srv> running = VerifyRunning();
  running.push_back({"api", "api1", "10.0.1.1", 8080, 0, 3, 3});
  EXPECT_EQ(Verify(running, VerifyStats(), {}, config), std::vector<std::string>{});
  running.back().uweight = 1;
  EXPECT_EQ(Verify(running, VerifyStats(), {}, config),
            (std::vector<std::string>{"backend api, server api1: weight is 1, the config says 3"}));
  // The same server name in another backend does not stand in for it.
  running.pop_back();
  running.push_back({"app", "api1", "10.0.1.1", 8080, 0, 3, 3});
  const std::vector<std::string> diffs = Verify(running, VerifyStats(), {}, config);
  EXPECT_TRUE(Contains(diffs, "backend api, server api1: not running")) << Joined(diffs);
  EXPECT_TRUE(Contains(diffs, "backend app, server api1: running, the config does not declare"))
      << Joined(diffs);
}

TEST(VerifyServersTest, CarriedStateVerifiesAfterAPortChange) {
  // The whole chain of the issue: the config moves web1 to another port. The state carried
  // leaves web1 out, so haproxy starts it from the config; verification against the carried
  // expectations then passes, and would have failed had the old port stuck.
  const std::string live = Replaced(kVerifyConfig, "10.0.0.1:8091", "10.0.0.1:8081");
  std::vector<Srv> before = VerifyRunning();
  before[0].port = 8081;
  before[1].uweight = 2;  // by hand
  const StateCarry carry = CarryServerState(Parse(StateText(before)), ReadDeclaredServers(live),
                                            ReadDeclaredServers(kVerifyConfig), true);
  EXPECT_EQ(carry.file_text.find(" web1 "), std::string::npos);
  std::vector<Srv> after = VerifyRunning();
  after[1].uweight = 2;
  EXPECT_EQ(Verify(after, VerifyStats(), carry.expect), std::vector<std::string>{});
  after[0].port = 8081;  // the trap: the old port applied over the config
  EXPECT_EQ(Verify(after, VerifyStats(), carry.expect),
            (std::vector<std::string>{"backend app, server web1: port is 8081, the config says "
                                      "8091"}));
}

}  // namespace
}  // namespace lb::agent
