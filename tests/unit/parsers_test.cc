// Parsers of haproxy's CLI output, fed with real haproxy 2.6 answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "haproxy_parsers.h"

namespace lb::agent {
namespace {

using proto::ErrorCode;

// `show stat` of haproxy 2.6.12: one frontend, a backend with a healthy and a refused server.
constexpr char kShowStat[] =
    R"(# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_err,h2_detected_strm_protocol_err,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_connections,
main,FRONTEND,,,0,0,9979,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
scaling_nodes,node1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,1,0,,1,3,1,,0,,2,0,,0,L4OK,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer4 check passed,,2,3,4,,,,127.0.0.1:18081,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
scaling_nodes,node2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,1,1,,1,3,2,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,3,0,,,,127.0.0.1:18089,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
scaling_nodes,BACKEND,0,0,0,0,998,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,1,0,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,

)";

// `show proc` on the master socket of haproxy 2.6.12 (trailing blanks and empty line included).
constexpr char kShowProc[] =
    "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"
    "2751            master          2 [failed: 1]   0d00h00m08s     2.6.12-1+deb12u4\n"
    "# workers\n"
    "2807            worker          1               0d00h00m07s     2.6.12-1+deb12u4\n"
    "2926            worker          0               1d02h03m04s     2.6.12-1+deb12u4\n"
    "# programs\n"
    "\n";

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

std::vector<std::string> SplitFields(const std::string& line) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    std::size_t comma = line.find(',', start);
    if (comma == std::string::npos) {
      out.push_back(line.substr(start));
      return out;
    }
    out.push_back(line.substr(start, comma - start));
    start = comma + 1;
  }
}

std::string JoinFields(const std::vector<std::string>& fields) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) out += (i ? "," : "") + fields[i];
  return out;
}

const StatRow* Find(const std::vector<StatRow>& rows, const std::string& px,
                    const std::string& sv) {
  for (const auto& row : rows) {
    if (row.pxname == px && row.svname == sv) return &row;
  }
  return nullptr;
}

void ExpectSameRow(const StatRow& a, const StatRow& b) {
  EXPECT_EQ(a.pxname, b.pxname);
  EXPECT_EQ(a.svname, b.svname);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.addr, b.addr);
  EXPECT_EQ(a.check_status, b.check_status);
  EXPECT_EQ(a.last_chk, b.last_chk);
  EXPECT_EQ(a.weight, b.weight);
  EXPECT_EQ(a.scur, b.scur);
  EXPECT_EQ(a.stot, b.stot);
  EXPECT_EQ(a.lastchg, b.lastchg);
  EXPECT_EQ(a.downtime, b.downtime);
  EXPECT_EQ(a.chkfail, b.chkfail);
  EXPECT_EQ(a.check_code, b.check_code);
  EXPECT_EQ(a.check_duration, b.check_duration);
  EXPECT_EQ(a.backup, b.backup);
}

bool SameRow(const StatRow& a, const StatRow& b) {
  return a.pxname == b.pxname && a.svname == b.svname && a.type == b.type && a.status == b.status &&
         a.addr == b.addr && a.check_status == b.check_status && a.last_chk == b.last_chk &&
         a.weight == b.weight && a.scur == b.scur && a.stot == b.stot && a.lastchg == b.lastchg &&
         a.downtime == b.downtime && a.chkfail == b.chkfail && a.check_code == b.check_code &&
         a.check_duration == b.check_duration && a.backup == b.backup;
}

TEST(ParseShowStatTest, ParsesHaproxy26Output) {
  auto rows = ParseShowStat(kShowStat);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ((*rows)[0].svname, "FRONTEND");
  EXPECT_EQ((*rows)[0].type, StatRow::Type::kFrontend);
  EXPECT_EQ((*rows)[0].status, "OPEN");
  EXPECT_EQ((*rows)[3].svname, "BACKEND");
  EXPECT_EQ((*rows)[3].type, StatRow::Type::kBackend);
  EXPECT_EQ((*rows)[3].status, "UP");

  const StatRow* node1 = Find(*rows, "scaling_nodes", "node1");
  ASSERT_NE(node1, nullptr);
  EXPECT_EQ(node1->type, StatRow::Type::kServer);
  EXPECT_EQ(node1->status, "UP");
  EXPECT_EQ(node1->check_status, "L4OK");
  EXPECT_EQ(node1->addr, "127.0.0.1:18081");
  EXPECT_EQ(node1->last_chk, "");
  EXPECT_EQ(node1->chkfail, 0);
  EXPECT_FALSE(node1->backup);

  const StatRow* node2 = Find(*rows, "scaling_nodes", "node2");
  ASSERT_NE(node2, nullptr);
  EXPECT_EQ(node2->type, StatRow::Type::kServer);
  EXPECT_EQ(node2->status, "DOWN");
  EXPECT_EQ(node2->check_status, "L4CON");
  EXPECT_EQ(node2->last_chk, "Connection refused");
  EXPECT_EQ(node2->addr, "127.0.0.1:18089");
  EXPECT_EQ(node2->weight, 1);
  EXPECT_EQ(node2->lastchg, 1);
  EXPECT_EQ(node2->downtime, 1);
  EXPECT_EQ(node2->chkfail, 1);
  EXPECT_EQ(node2->scur, 0);
  EXPECT_EQ(node2->stot, 0);
  EXPECT_EQ(node2->check_code, -1);  // empty in the CSV
  EXPECT_EQ(node2->check_duration, 0);
  EXPECT_FALSE(node2->backup);
}

TEST(ParseShowStatTest, FindsColumnsByHeaderName) {
  // Reverse the order of the named columns. Data rows of 2.6 carry more (empty) fields than
  // the header names; those stay where they are.
  const std::size_t named = SplitFields(SplitLines(kShowStat)[0].substr(2)).size() - 1;
  std::string reordered;
  for (const std::string& line : SplitLines(kShowStat)) {
    if (line.empty()) continue;
    const bool header = line.rfind("# ", 0) == 0;
    std::vector<std::string> fields = SplitFields(header ? line.substr(2) : line);
    ASSERT_GT(fields.size(), named);
    std::reverse(fields.begin(), fields.begin() + static_cast<std::ptrdiff_t>(named));
    reordered += (header ? "# " : "") + JoinFields(fields) + "\n";
  }
  auto original = ParseShowStat(kShowStat);
  auto parsed = ParseShowStat(reordered);
  ASSERT_TRUE(original.ok());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_EQ(parsed->size(), original->size());
  for (std::size_t i = 0; i < parsed->size(); ++i) {
    SCOPED_TRACE((*original)[i].svname);
    ExpectSameRow((*parsed)[i], (*original)[i]);
  }
  const StatRow* node2 = Find(*parsed, "scaling_nodes", "node2");
  ASSERT_NE(node2, nullptr);
  EXPECT_EQ(node2->addr, "127.0.0.1:18089");
  EXPECT_EQ(node2->status, "DOWN");
}

TEST(ParseShowStatTest, ExtraUnknownColumnsAreIgnored) {
  std::string extended;
  for (const std::string& line : SplitLines(kShowStat)) {
    if (line.empty()) continue;
    const bool header = line.rfind("# ", 0) == 0;
    extended += (header ? "# future_col," + line.substr(2) : "42," + line) + "\n";
  }
  auto parsed = ParseShowStat(extended);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const StatRow* node2 = Find(*parsed, "scaling_nodes", "node2");
  ASSERT_NE(node2, nullptr);
  EXPECT_EQ(node2->status, "DOWN");
  EXPECT_EQ(node2->addr, "127.0.0.1:18089");
}

// The text of kShowStat up to node2's line, and node2's line itself.
void SplitAtNode2(std::string* before, std::string* node2_line) {
  const std::string all = kShowStat;
  std::size_t start = all.find("scaling_nodes,node2,");
  std::size_t end = all.find('\n', start);
  *before = all.substr(0, start);
  *node2_line = all.substr(start, end - start);
}

TEST(ParseShowStatTest, CutOffLastLineIsSkipped) {
  std::string before, line;
  SplitAtNode2(&before, &line);
  // Cut in the middle of node2's status: "DOWN" arrives as "DO".
  std::string cut = before + line.substr(0, line.find("DOWN") + 2);
  auto rows = ParseShowStat(cut);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(Find(*rows, "scaling_nodes", "node2"), nullptr);
  EXPECT_NE(Find(*rows, "scaling_nodes", "node1"), nullptr);
  EXPECT_NE(Find(*rows, "main", "FRONTEND"), nullptr);
}

TEST(ParseShowStatTest, CutOffLastLineNeverYieldsWrongValues) {
  // Wherever the answer is cut inside node2's line, node2 is either absent or exactly right.
  std::string before, line;
  SplitAtNode2(&before, &line);
  auto full = ParseShowStat(kShowStat);
  ASSERT_TRUE(full.ok());
  const StatRow* expected = Find(*full, "scaling_nodes", "node2");
  ASSERT_NE(expected, nullptr);
  std::vector<std::string> wrong;
  for (std::size_t cut = 1; cut < line.size(); ++cut) {
    auto rows = ParseShowStat(before + line.substr(0, cut));
    ASSERT_TRUE(rows.ok()) << "cut at " << cut << ": " << rows.status().ToString();
    EXPECT_NE(Find(*rows, "scaling_nodes", "node1"), nullptr) << "cut at " << cut;
    const StatRow* node2 = Find(*rows, "scaling_nodes", "node2");
    if (node2 != nullptr && !SameRow(*node2, *expected)) {
      wrong.push_back("cut after \"..." +
                      line.substr(cut > 30 ? cut - 30 : 0, cut > 30 ? 30 : cut) + "\": addr=\"" +
                      node2->addr + "\" status=\"" + node2->status + "\"");
    }
  }
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " cut positions yield a node2 row with wrong "
                             << "values, e.g.\n  " << wrong.front() << "\n  " << wrong.back();
}

TEST(ParseShowStatTest, AnswerWithoutHeaderIsAnError) {
  for (const char* text : {"", "Unknown command.\n", "main,FRONTEND,,,0,0\n"}) {
    auto rows = ParseShowStat(text);
    EXPECT_FALSE(rows.ok()) << "accepted: \"" << text << "\"";
  }
}

TEST(ParseShowStatTest, HeaderWithoutRequiredColumnsIsAnError) {
  auto rows = ParseShowStat("# pxname,svname,scur\nmain,FRONTEND,0\n");
  EXPECT_FALSE(rows.ok());
}

TEST(BackendsFromStatsTest, GroupsServersOfOneBackend) {
  auto rows = ParseShowStat(kShowStat);
  ASSERT_TRUE(rows.ok());
  auto backends = BackendsFromStats(*rows, "scaling_nodes");
  ASSERT_TRUE(backends.ok()) << backends.status().ToString();
  ASSERT_EQ(backends->size(), 1u);
  const proto::BackendStatus& b = (*backends)[0];
  EXPECT_EQ(b.name, "scaling_nodes");
  EXPECT_EQ(b.status, "UP");
  ASSERT_EQ(b.servers.size(), 2u);
  EXPECT_EQ(b.servers[0].name, "node1");
  EXPECT_EQ(b.servers[0].status, "UP");
  EXPECT_EQ(b.servers[0].address, "127.0.0.1:18081");
  EXPECT_EQ(b.servers[0].check_status, "L4OK");
  const proto::ServerStatus& node2 = b.servers[1];
  EXPECT_EQ(node2.name, "node2");
  EXPECT_EQ(node2.status, "DOWN");
  EXPECT_EQ(node2.address, "127.0.0.1:18089");
  EXPECT_EQ(node2.check_status, "L4CON");
  EXPECT_EQ(node2.last_chk, "Connection refused");
  EXPECT_EQ(node2.weight, 1);
  EXPECT_EQ(node2.seconds_since_change, 1);
  EXPECT_EQ(node2.downtime_s, 1);
  EXPECT_EQ(node2.check_failures, 1);
  EXPECT_FALSE(node2.backup);
}

TEST(BackendsFromStatsTest, StarListsEveryBackendButNoFrontend) {
  auto rows = ParseShowStat(kShowStat);
  ASSERT_TRUE(rows.ok());
  auto all = BackendsFromStats(*rows, "*");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].name, "scaling_nodes");
  EXPECT_EQ((*all)[0].status, "UP");
  EXPECT_EQ((*all)[0].servers.size(), 2u);

  // A second backend "other" with one server in maintenance, made from the real rows.
  std::string text = kShowStat;
  const std::string all_text = kShowStat;
  std::size_t s1 = all_text.find("scaling_nodes,node1,");
  std::string server = all_text.substr(s1, all_text.find('\n', s1) - s1);
  server.replace(0, std::string("scaling_nodes,node1").size(), "other,s1");
  server.replace(server.find(",UP,"), 4, ",MAINT,");
  std::size_t b = all_text.find("scaling_nodes,BACKEND,");
  std::string backend = all_text.substr(b, all_text.find('\n', b) - b);
  backend.replace(0, std::string("scaling_nodes").size(), "other");
  text.replace(text.rfind("\n\n"), 2, "\n" + server + "\n" + backend + "\n\n");
  auto more = ParseShowStat(text);
  ASSERT_TRUE(more.ok()) << more.status().ToString();
  auto both = BackendsFromStats(*more, "*");
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  ASSERT_EQ(both->size(), 2u);
  EXPECT_EQ((*both)[0].name, "scaling_nodes");
  EXPECT_EQ((*both)[0].servers.size(), 2u);
  EXPECT_EQ((*both)[1].name, "other");
  EXPECT_EQ((*both)[1].status, "UP");
  ASSERT_EQ((*both)[1].servers.size(), 1u);
  EXPECT_EQ((*both)[1].servers[0].name, "s1");
  EXPECT_EQ((*both)[1].servers[0].status, "MAINT");
}

TEST(BackendsFromStatsTest, UnknownBackendNamesTheKnownOnes) {
  auto rows = ParseShowStat(kShowStat);
  ASSERT_TRUE(rows.ok());
  auto backends = BackendsFromStats(*rows, "nope");
  ASSERT_FALSE(backends.ok());
  EXPECT_EQ(backends.status().code(), ErrorCode::kBadRequest);
  EXPECT_NE(backends.status().message().find("nope"), std::string::npos)
      << backends.status().message();
  EXPECT_NE(backends.status().message().find("scaling_nodes"), std::string::npos)
      << backends.status().message();
}

TEST(BackendsFromStatsTest, FrontendNameIsNotABackend) {
  auto rows = ParseShowStat(kShowStat);
  ASSERT_TRUE(rows.ok());
  EXPECT_FALSE(BackendsFromStats(*rows, "main").ok());
}

TEST(ParseShowProcTest, ParsesHaproxy26MasterAndWorkers) {
  auto proc = ParseShowProc(kShowProc);
  ASSERT_TRUE(proc.ok()) << proc.status().ToString();
  EXPECT_EQ(proc->master.pid, 2751);
  EXPECT_EQ(proc->master.type, "master");
  EXPECT_EQ(proc->master.reloads, 2);
  EXPECT_EQ(proc->master.failed, 1);
  EXPECT_EQ(proc->master.uptime_s, 8);
  EXPECT_EQ(proc->master.version, "2.6.12-1+deb12u4");
  ASSERT_EQ(proc->workers.size(), 2u);
  EXPECT_EQ(proc->workers[0].pid, 2926);
  EXPECT_EQ(proc->workers[0].reloads, 0);
  EXPECT_EQ(proc->workers[0].uptime_s, 93784);
  EXPECT_EQ(proc->workers[0].version, "2.6.12-1+deb12u4");
  EXPECT_EQ(proc->workers[1].pid, 2807);
  EXPECT_EQ(proc->workers[1].reloads, 1);
  EXPECT_EQ(proc->workers[1].uptime_s, 7);
}

TEST(ParseShowProcTest, EmptyOrGarbageIsAnError) {
  for (const char* text : {"", "\n", "Unknown command.\n", "# workers\n# programs\n",
                           "2807 worker 1 0d00h00m07s 2.6.12\n"}) {
    auto proc = ParseShowProc(text);
    EXPECT_FALSE(proc.ok()) << "accepted: \"" << text << "\"";
  }
}

// Fuzz input fuzz/corpus/show_proc/crash-uptime-overflow: a run of digits in the uptime
// overflowed int64_t (undefined behaviour). Absurd uptimes are capped, the line still parses.
TEST(ParseShowProcTest, HugeUptimeIsCappedNotOverflowed) {
  auto proc = ParseShowProc(
      "1 master 0 [failed: 0] 99999999999999999999999999d99999999999999999999h1s 2.6.12\n");
  ASSERT_TRUE(proc.ok()) << proc.status().ToString();
  EXPECT_EQ(proc->master.pid, 1);
  EXPECT_GT(proc->master.uptime_s, int64_t{1} << 30);
  EXPECT_LE(proc->master.uptime_s, int64_t{1} << 40);
  EXPECT_EQ(proc->master.version, "2.6.12");
}

TEST(ParseShowInfoTest, ReadsKeyValueLines) {
  auto info = ParseShowInfo(
      "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nRelease_date: 2023/12/14\nPid: 2807\n"
      "Uptime: 0d 0h00m07s\nUptime_sec: 7\nnot a pair\n\n");
  EXPECT_EQ(info["Name"], "HAProxy");
  EXPECT_EQ(info["Version"], "2.6.12-1+deb12u4");
  EXPECT_EQ(info["Pid"], "2807");
  EXPECT_EQ(info["Uptime"], "0d 0h00m07s");
  EXPECT_EQ(info["Uptime_sec"], "7");
  EXPECT_EQ(info.count("not a pair"), 0u);
  EXPECT_EQ(info.size(), 6u);
}

TEST(ParseShowInfoTest, EmptyTextGivesNothing) { EXPECT_TRUE(ParseShowInfo("").empty()); }

}  // namespace
}  // namespace lb::agent

namespace lb::agent {
namespace {

TEST(ParseCompleteShowStatTest, AnswerWithoutTheClosingBlankLineIsCutShort) {
  const std::string full = std::string(kShowStat);
  const std::string complete = full.back() == '\n' ? full + "\n" : full + "\n\n";
  ASSERT_TRUE(ParseCompleteShowStat(complete).ok());
  // Cut at a line boundary, the way a stopping worker cuts it: a shorter list, not an answer.
  const std::string cut = complete.substr(0, complete.find("scaling_nodes,node2"));
  auto rows = ParseCompleteShowStat(cut);
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), proto::ErrorCode::kHaproxyUnavailable);
  EXPECT_TRUE(ParseShowStat(cut).ok()) << "the plain parser still reads what is there";
}

TEST(ParseShowStatTest, CheckInProgressMarkIsNotPartOfTheStatus) {
  std::string text = std::string(kShowStat);
  const std::string from = ",L4CON,";
  text.replace(text.find(from), from.size(), ",* L4CON,");
  auto rows = ParseShowStat(text);
  ASSERT_TRUE(rows.ok());
  bool seen = false;
  for (const auto& r : *rows) {
    if (r.svname == "node2") {
      EXPECT_EQ(r.check_status, "L4CON");
      seen = true;
    }
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace lb::agent

// ---- haproxy's CSV quoting ----

namespace lb::agent {
namespace {

// `show stat` of haproxy 2.6.12 whose node1 has an agent check answering `up #say "hi", ok`:
// haproxy quotes last_agt and doubles its quotes (fuzz/corpus/show_stat/quoted_last_agt).
constexpr char kShowStatQuotedAgent[] =
    R"csv(# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
main,FRONTEND,,,0,0,9978,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
scaling_nodes,node1,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1,1,0,,,0,,,1,3,1,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,"via agent : up (say ""hi"", ok)",0,0,0,0,L7OK,0,0,,Layer7 check passed,,,,1,1,1,127.0.0.1:1,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
scaling_nodes,node2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/3,1,1,0,0,0,0,0,,1,3,2,,0,,2,0,,0,INI,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Initializing,,2,3,2,,,,127.0.0.1:2,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
scaling_nodes,BACKEND,0,0,0,0,998,0,0,0,0,0,,0,0,0,0,UP,2,2,0,,0,0,0,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,2,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,

)csv";

// kShowStat with node2's last_chk ("Connection refused") written as `csv_field` instead.
std::string WithNode2LastChk(const std::string& csv_field) {
  std::string text = kShowStat;
  const std::string from = ",Connection refused,";
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos);
  text.replace(at, from.size(), "," + csv_field + ",");
  return text;
}

// node2 of kShowStat as ParseShowStat reads it, with `last_chk` instead.
StatRow Node2With(const std::string& last_chk) {
  auto rows = ParseShowStat(kShowStat);
  EXPECT_TRUE(rows.ok());
  const StatRow* node2 = rows.ok() ? Find(*rows, "scaling_nodes", "node2") : nullptr;
  EXPECT_NE(node2, nullptr);
  StatRow row = node2 ? *node2 : StatRow();
  row.last_chk = last_chk;
  return row;
}

TEST(ParseShowStatTest, QuotedFieldWithACommaKeepsEveryLaterColumn) {
  auto rows = ParseShowStat(WithNode2LastChk("\"up, 75%\""));
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 4u);
  const StatRow* node2 = Find(*rows, "scaling_nodes", "node2");
  ASSERT_NE(node2, nullptr);
  EXPECT_EQ(node2->last_chk, "up, 75%");
  EXPECT_EQ(node2->addr, "127.0.0.1:18089");
  ExpectSameRow(*node2, Node2With("up, 75%"));
  // The rows around it are untouched.
  auto original = ParseShowStat(kShowStat);
  ASSERT_TRUE(original.ok());
  for (const char* name : {"node1", "BACKEND"}) {
    const StatRow* got = Find(*rows, "scaling_nodes", name);
    const StatRow* want = Find(*original, "scaling_nodes", name);
    ASSERT_TRUE(got && want) << name;
    ExpectSameRow(*got, *want);
  }
  // And the status the agent reports takes the address from the right column.
  auto backends = BackendsFromStats(*rows, "scaling_nodes");
  ASSERT_TRUE(backends.ok());
  ASSERT_EQ((*backends)[0].servers.size(), 2u);
  EXPECT_EQ((*backends)[0].servers[1].address, "127.0.0.1:18089");
  EXPECT_EQ((*backends)[0].servers[1].last_chk, "up, 75%");
}

TEST(ParseShowStatTest, DoubledQuoteIsOneQuote) {
  auto rows = ParseShowStat(WithNode2LastChk("\"say \"\"hi\"\", ok\""));
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  const StatRow* node2 = Find(*rows, "scaling_nodes", "node2");
  ASSERT_NE(node2, nullptr);
  ExpectSameRow(*node2, Node2With("say \"hi\", ok"));
  // Quotes only: `""""` is one quote; `""` is empty.
  rows = ParseShowStat(WithNode2LastChk("\"\"\"\""));
  ASSERT_TRUE(rows.ok());
  node2 = Find(*rows, "scaling_nodes", "node2");
  ASSERT_NE(node2, nullptr);
  ExpectSameRow(*node2, Node2With("\""));
  rows = ParseShowStat(WithNode2LastChk("\"\""));
  ASSERT_TRUE(rows.ok());
  node2 = Find(*rows, "scaling_nodes", "node2");
  ASSERT_NE(node2, nullptr);
  ExpectSameRow(*node2, Node2With(""));
}

TEST(ParseShowStatTest, QuotedFieldMaySpanLines) {
  auto rows = ParseShowStat(WithNode2LastChk("\"first line\nsecond, line\n\""));
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 4u);
  const StatRow* node2 = Find(*rows, "scaling_nodes", "node2");
  ASSERT_NE(node2, nullptr);
  ExpectSameRow(*node2, Node2With("first line\nsecond, line\n"));
  // The record after it starts where it should.
  const StatRow* backend = Find(*rows, "scaling_nodes", "BACKEND");
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->type, StatRow::Type::kBackend);
  EXPECT_EQ(backend->status, "UP");
}

TEST(ParseShowStatTest, RealQuotedAgentAnswerKeepsEveryColumn) {
  auto rows = ParseShowStat(kShowStatQuotedAgent);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 4u);
  const StatRow* node1 = Find(*rows, "scaling_nodes", "node1");
  ASSERT_NE(node1, nullptr);
  EXPECT_EQ(node1->type, StatRow::Type::kServer);
  EXPECT_EQ(node1->status, "no check");
  EXPECT_EQ(node1->addr, "127.0.0.1:1");
  EXPECT_EQ(node1->weight, 1);
  EXPECT_EQ(node1->check_status, "");
  EXPECT_EQ(node1->last_chk, "");
  EXPECT_FALSE(node1->backup);
  const StatRow* node2 = Find(*rows, "scaling_nodes", "node2");
  ASSERT_NE(node2, nullptr);
  EXPECT_EQ(node2->status, "UP 1/3");
  EXPECT_EQ(node2->check_status, "INI");
  EXPECT_EQ(node2->addr, "127.0.0.1:2");
  const StatRow* backend = Find(*rows, "scaling_nodes", "BACKEND");
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->status, "UP");
  EXPECT_EQ(backend->weight, 2);
  EXPECT_TRUE(ParseCompleteShowStat(kShowStatQuotedAgent).ok());
}

TEST(ParseShowStatTest, CutInsideAQuotedFieldDropsTheRecord) {
  const std::string full = kShowStatQuotedAgent;
  const std::string cut = full.substr(0, full.find("\"\"hi\"\"") + 3);
  auto rows = ParseShowStat(cut);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(Find(*rows, "scaling_nodes", "node1"), nullptr);
  EXPECT_NE(Find(*rows, "main", "FRONTEND"), nullptr);
  EXPECT_FALSE(ParseCompleteShowStat(cut).ok());
}

TEST(ParseShowStatTest, CutAnywhereInAQuotedRecordNeverYieldsWrongValues) {
  // node2 with a quoted, comma-holding, line-spanning last_chk, cut at every position.
  const std::string text = WithNode2LastChk("\"say \"\"hi\"\",\nup, 75%\"");
  const std::size_t start = text.find("scaling_nodes,node2,");
  const std::size_t end = text.find("scaling_nodes,BACKEND");
  const StatRow expected = Node2With("say \"hi\",\nup, 75%");
  std::vector<std::string> wrong;
  for (std::size_t cut = start + 1; cut < end; ++cut) {
    auto rows = ParseShowStat(text.substr(0, cut));
    ASSERT_TRUE(rows.ok()) << "cut at " << cut << ": " << rows.status().ToString();
    EXPECT_NE(Find(*rows, "scaling_nodes", "node1"), nullptr) << "cut at " << cut;
    const StatRow* node2 = Find(*rows, "scaling_nodes", "node2");
    if (node2 != nullptr && !SameRow(*node2, expected)) {
      wrong.push_back("cut at " + std::to_string(cut - start) + ": addr=\"" + node2->addr +
                      "\" last_chk=\"" + node2->last_chk + "\"");
    }
  }
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " cut positions yield a wrong node2, e.g. "
                             << (wrong.empty() ? "" : wrong.front());
}

}  // namespace
}  // namespace lb::agent
