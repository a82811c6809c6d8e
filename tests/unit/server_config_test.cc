// ServerConfig: the servers a config declares as haproxy 2.6 runs them (default-server
// inheritance, templates, addresses, flags, `.if` blocks, references), and the skeleton that tells
// a server-only change from any other. Expected values were checked against a real haproxy 2.6
// (`show servers state`) where haproxy decides them: default-server applies to later servers only,
// a server-template gives every server the same address.
#include "server_config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace lb::agent {
namespace {

const DeclaredServer* FindServer(const DeclaredServers& d, const std::string& backend,
                                 const std::string& server) {
  const DeclaredBackend* b = d.Find(backend);
  return b ? b->Find(server) : nullptr;
}

// The server, or (with a failure) an empty one, so that a missing server fails the test
// instead of crashing the binary.
const DeclaredServer& Get(const DeclaredServers& d, const std::string& backend,
                          const std::string& server) {
  static const DeclaredServer kMissing;
  const DeclaredServer* s = FindServer(d, backend, server);
  if (s == nullptr) {
    ADD_FAILURE() << "no server " << backend << "/" << server;
    return kMissing;
  }
  return *s;
}

const DeclaredBackend& GetBackend(const DeclaredServers& d, const std::string& backend) {
  static const DeclaredBackend kMissing;
  const DeclaredBackend* b = d.Find(backend);
  if (b == nullptr) {
    ADD_FAILURE() << "no backend " << backend;
    return kMissing;
  }
  return *b;
}

std::vector<std::string> Names(const DeclaredBackend& b) {
  std::vector<std::string> out;
  for (const auto& s : b.servers) out.push_back(s.name);
  return out;
}

std::vector<std::string> BackendNames(const DeclaredServers& d) {
  std::vector<std::string> out;
  for (const auto& b : d.backends) out.push_back(b.name);
  return out;
}

// ---- sections, order, lines ----

TEST(ReadDeclaredServersTest, ReadsBackendAndListenSectionsInFileOrder) {
  const DeclaredServers d = ReadDeclaredServers(
      "global\n"                           // 1
      "    maxconn 100\n"                  // 2
      "frontend main\n"                    // 3
      "    bind :8080\n"                   // 4
      "    default_backend app\n"          // 5
      "backend app\n"                      // 6
      "    server web2 10.0.0.2:80\n"      // 7
      "    # server old 10.0.0.9:80\n"     // 8
      "    server web1 10.0.0.1:80\n"      // 9
      "listen stats\n"                     // 10
      "    bind :9000\n"                   // 11
      "    server local 127.0.0.1:9001\n"  // 12
      "backend empty\n");                  // 13
  EXPECT_EQ(BackendNames(d), (std::vector<std::string>{"app", "stats", "empty"}));
  ASSERT_NE(d.Find("app"), nullptr);
  EXPECT_EQ(Names(*d.Find("app")), (std::vector<std::string>{"web2", "web1"}));
  EXPECT_EQ(Names(*d.Find("stats")), (std::vector<std::string>{"local"}));
  EXPECT_TRUE(GetBackend(d, "empty").servers.empty());
  EXPECT_EQ(d.Find("main"), nullptr);  // a frontend is not a backend
  EXPECT_EQ(GetBackend(d, "app").Find("old"), nullptr);
  EXPECT_EQ(Get(d, "app", "web2").line, 7);
  EXPECT_EQ(Get(d, "app", "web1").line, 9);
  EXPECT_EQ(Get(d, "stats", "local").line, 12);
  EXPECT_TRUE(d.references.empty());
}

TEST(ReadDeclaredServersTest, UnknownNamesAreNotFound) {
  const DeclaredServers d = ReadDeclaredServers("backend app\n    server web1 10.0.0.1:80\n");
  EXPECT_EQ(d.Find("nope"), nullptr);
  EXPECT_EQ(GetBackend(d, "app").Find("web2"), nullptr);
  EXPECT_TRUE(ReadDeclaredServers("").backends.empty());
}

TEST(ReadDeclaredServersTest, ServerWithoutDefaultsHasHaproxysDefaults) {
  const DeclaredServers d = ReadDeclaredServers("backend app\n    server web1 10.0.0.1:80\n");
  const DeclaredServer* s = FindServer(d, "app", "web1");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->weight, 1);
  EXPECT_FALSE(s->backup);
  EXPECT_FALSE(s->disabled);
  EXPECT_FALSE(s->check);
  EXPECT_FALSE(s->agent_check);
  EXPECT_EQ(s->track, "");
  EXPECT_FALSE(s->from_template);
  EXPECT_FALSE(s->conditional);
  EXPECT_TRUE(s->params.empty());
  const DeclaredBackend* b = d.Find("app");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->balance, "roundrobin");
  EXPECT_EQ(b->hash_type, "");
  EXPECT_FALSE(b->has_default_server);
  EXPECT_FALSE(b->uses_stick);
  EXPECT_FALSE(b->uses_cookie);
  EXPECT_FALSE(b->has_conditional);
}

// ---- default-server inheritance ----

TEST(ReadDeclaredServersTest, ServersInheritTheDefaultServerOfTheLastDefaultsSection) {
  const DeclaredServers d = ReadDeclaredServers(
      "defaults\n"
      "    mode http\n"
      "    default-server weight 3 check\n"
      "    default-server backup\n"
      "backend app\n"
      "    server web1 10.0.0.1:80\n"
      "listen db\n"
      "    server db1 10.0.0.5:3306 weight 7\n");
  const DeclaredServer* web1 = FindServer(d, "app", "web1");
  ASSERT_NE(web1, nullptr);
  EXPECT_EQ(web1->weight, 3);
  EXPECT_TRUE(web1->check);
  EXPECT_TRUE(web1->backup);  // both default-server lines count
  EXPECT_TRUE(web1->params.empty()) << "params hold the server line's own words only";
  EXPECT_TRUE(GetBackend(d, "app").has_default_server);
  const DeclaredServer* db1 = FindServer(d, "db", "db1");
  ASSERT_NE(db1, nullptr);
  EXPECT_EQ(db1->weight, 7);  // its own keyword wins
  EXPECT_TRUE(db1->check);
  EXPECT_TRUE(GetBackend(d, "db").has_default_server);
}

TEST(ReadDeclaredServersTest, ALaterDefaultsSectionReplacesTheEarlierOne) {
  const DeclaredServers d = ReadDeclaredServers(
      "defaults\n"
      "    default-server weight 3 check\n"
      "backend first\n"
      "    server a 10.0.0.1:80\n"
      "defaults\n"
      "    mode http\n"
      "backend second\n"
      "    server b 10.0.0.2:80\n");
  EXPECT_EQ(Get(d, "first", "a").weight, 3);
  EXPECT_TRUE(Get(d, "first", "a").check);
  EXPECT_TRUE(GetBackend(d, "first").has_default_server);
  EXPECT_EQ(Get(d, "second", "b").weight, 1);
  EXPECT_FALSE(Get(d, "second", "b").check);
  EXPECT_FALSE(GetBackend(d, "second").has_default_server);
}

TEST(ReadDeclaredServersTest, BackendFromNamedDefaultsInheritsThatSection) {
  const DeclaredServers d = ReadDeclaredServers(
      "defaults base\n"
      "    balance leastconn\n"
      "    default-server weight 4 backup\n"
      "defaults other\n"
      "    default-server weight 9\n"
      "backend named\n"
      "    server a 10.0.0.1:80\n"
      "backend b from base\n"
      "    server s1 10.0.0.2:80\n"
      "listen l from base\n"
      "    server s2 10.0.0.3:80 no-backup\n");
  // Without `from`: the last defaults section, named or not.
  EXPECT_EQ(Get(d, "named", "a").weight, 9);
  EXPECT_FALSE(Get(d, "named", "a").backup);
  EXPECT_EQ(GetBackend(d, "named").balance, "roundrobin");
  // With `from base`: that section's default-server and balance.
  const DeclaredServer* s1 = FindServer(d, "b", "s1");
  ASSERT_NE(s1, nullptr);
  EXPECT_EQ(s1->weight, 4);
  EXPECT_TRUE(s1->backup);
  EXPECT_EQ(GetBackend(d, "b").balance, "leastconn");
  EXPECT_TRUE(GetBackend(d, "b").has_default_server);
  const DeclaredServer* s2 = FindServer(d, "l", "s2");
  ASSERT_NE(s2, nullptr);
  EXPECT_EQ(s2->weight, 4);
  EXPECT_FALSE(s2->backup);
}

TEST(ReadDeclaredServersTest, DefaultsFromDefaultsAddsToItsParent) {
  const DeclaredServers d = ReadDeclaredServers(
      "defaults base\n"
      "    default-server weight 4\n"
      "defaults child from base\n"
      "    default-server check\n"
      "backend b from child\n"
      "    server s 10.0.0.1:80\n"
      "backend c from base\n"
      "    server t 10.0.0.2:80\n");
  const DeclaredServer* s = FindServer(d, "b", "s");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->weight, 4);
  EXPECT_TRUE(s->check);
  const DeclaredServer* t = FindServer(d, "c", "t");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->weight, 4);
  EXPECT_FALSE(t->check) << "the child's default-server does not change its parent";
}

TEST(ReadDeclaredServersTest, NamedDefaultsWithoutDefaultServerGiveNone) {
  const DeclaredServers d = ReadDeclaredServers(
      "defaults plain\n"
      "    mode http\n"
      "defaults withds\n"
      "    default-server weight 5\n"
      "backend b from plain\n"
      "    server s 10.0.0.1:80\n");
  EXPECT_EQ(Get(d, "b", "s").weight, 1);
  EXPECT_FALSE(GetBackend(d, "b").has_default_server);
}

TEST(ReadDeclaredServersTest, BackendDefaultServerAppliesOnlyToLaterServers) {
  // haproxy 2.6: `server a` keeps weight 1, `server c` gets 5 (show servers state).
  const DeclaredServers d = ReadDeclaredServers(
      "defaults\n"
      "    default-server check\n"
      "backend b2\n"
      "    server a 10.0.0.1:80\n"
      "    default-server weight 5\n"
      "    server c 10.0.0.2:80\n"
      "    default-server disabled\n"
      "    server e 10.0.0.3:80\n");
  const DeclaredServer* a = FindServer(d, "b2", "a");
  const DeclaredServer* c = FindServer(d, "b2", "c");
  const DeclaredServer* e = FindServer(d, "b2", "e");
  ASSERT_TRUE(a && c && e);
  EXPECT_EQ(a->weight, 1);
  EXPECT_TRUE(a->check);  // from defaults
  EXPECT_FALSE(a->disabled);
  EXPECT_EQ(c->weight, 5);
  EXPECT_TRUE(c->check);
  EXPECT_FALSE(c->disabled);
  EXPECT_EQ(e->weight, 5);
  EXPECT_TRUE(e->disabled);
}

TEST(ReadDeclaredServersTest, BackendDefaultServerDoesNotLeakIntoTheNextBackend) {
  const DeclaredServers d = ReadDeclaredServers(
      "backend one\n"
      "    default-server weight 5\n"
      "    server a 10.0.0.1:80\n"
      "backend two\n"
      "    server b 10.0.0.2:80\n");
  EXPECT_EQ(Get(d, "one", "a").weight, 5);
  EXPECT_EQ(Get(d, "two", "b").weight, 1);
  EXPECT_FALSE(GetBackend(d, "two").has_default_server);
}

TEST(ReadDeclaredServersTest, DefaultServerAfterEveryServerStillMarksTheBackend) {
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    server a 10.0.0.1:80\n"
      "    default-server weight 5\n");
  EXPECT_EQ(Get(d, "app", "a").weight, 1);
  EXPECT_TRUE(GetBackend(d, "app").has_default_server);
}

TEST(ReadDeclaredServersTest, ServerKeywordsOverrideDefaultServer) {
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    default-server weight 3 backup disabled check agent-check agent-port 9\n"
      "    server a 10.0.0.1:80 weight 7 no-backup enabled no-check no-agent-check\n"
      "    server b 10.0.0.2:80\n");
  const DeclaredServer* a = FindServer(d, "app", "a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->weight, 7);
  EXPECT_FALSE(a->backup);
  EXPECT_FALSE(a->disabled);
  EXPECT_FALSE(a->check);
  EXPECT_FALSE(a->agent_check);
  EXPECT_EQ(a->params, (std::vector<std::string>{"weight", "7", "no-backup", "enabled", "no-check",
                                                 "no-agent-check"}));
  const DeclaredServer* b = FindServer(d, "app", "b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->weight, 3);
  EXPECT_TRUE(b->backup);
  EXPECT_TRUE(b->disabled);
  EXPECT_TRUE(b->check);
  EXPECT_TRUE(b->agent_check);
}

// ---- server flags ----

TEST(ReadDeclaredServersTest, ReadsWeightBackupDisabledChecksAndTrack) {
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    server w0 10.0.0.1:80 weight 0\n"
      "    server w2 10.0.0.2:80 weight 20 weight 256\n"
      "    server bk 10.0.0.3:80 backup\n"
      "    server nb 10.0.0.4:80 backup no-backup\n"
      "    server off 10.0.0.5:80 disabled\n"
      "    server on 10.0.0.6:80 disabled enabled\n"
      "    server hc 10.0.0.7:80 check inter 2s\n"
      "    server ag 10.0.0.8:80 agent-check agent-port 9999\n"
      "    server tr 10.0.0.9:80 track hc\n"
      "    server tr2 10.0.0.10:80 check track other/x\n");
  EXPECT_EQ(Get(d, "app", "w0").weight, 0);
  EXPECT_EQ(Get(d, "app", "w2").weight, 256);  // the last one wins
  EXPECT_TRUE(Get(d, "app", "bk").backup);
  EXPECT_FALSE(Get(d, "app", "nb").backup);
  EXPECT_TRUE(Get(d, "app", "off").disabled);
  EXPECT_FALSE(Get(d, "app", "on").disabled);
  EXPECT_TRUE(Get(d, "app", "hc").check);
  EXPECT_FALSE(Get(d, "app", "hc").agent_check);
  EXPECT_TRUE(Get(d, "app", "ag").agent_check);
  EXPECT_FALSE(Get(d, "app", "ag").check);
  EXPECT_EQ(Get(d, "app", "tr").track, "hc");
  EXPECT_EQ(Get(d, "app", "tr2").track, "other/x");
  EXPECT_EQ(Get(d, "app", "hc").params, (std::vector<std::string>{"check", "inter", "2s"}));
}

TEST(ReadDeclaredServersTest, WeightWithoutANumberIsIgnored) {
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    server a 10.0.0.1:80 weight 4 weight x\n"
      "    server b 10.0.0.2:80 weight\n");
  EXPECT_EQ(Get(d, "app", "a").weight, 4);
  EXPECT_EQ(Get(d, "app", "b").weight, 1);
}

TEST(ReadDeclaredServersTest, KeywordArgumentsAreNotKeywords) {
  // haproxy reads the word after `cookie`, `agent-send` or `track` as that keyword's argument,
  // whatever it spells: a cookie value "backup" does not make a backup server.
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    cookie SRV insert\n"
      "    server check 10.0.0.1:80\n"
      "    server s1 10.0.0.2:80 cookie backup\n"
      "    server s2 10.0.0.3:80 cookie disabled\n"
      "    server s3 10.0.0.4:80 track check\n");
  EXPECT_FALSE(Get(d, "app", "s1").backup);
  EXPECT_FALSE(Get(d, "app", "s2").disabled);
  EXPECT_EQ(Get(d, "app", "s3").track, "check");
  EXPECT_FALSE(Get(d, "app", "s3").check);
}

// ---- addresses ----

struct AddressCase {
  const char* written;  // the address word of the server line, as haproxy reads it
  const char* ip;       // expected `ip` ("" when not a literal)
  int port;
};

TEST(ReadDeclaredServersTest, ReadsEveryAddressFormIntoALiteralOrNot) {
  const AddressCase cases[] = {
      {"10.0.0.1:80", "10.0.0.1", 80},
      {"127.0.0.2:65535", "127.0.0.2", 65535},
      {"[::1]:8080", "::1", 8080},
      {"[2001:DB8:0:0::1]:443", "2001:db8::1", 443},  // canonical form, as haproxy prints it
      {"ipv4@10.0.0.2:81", "10.0.0.2", 81},
      {"ipv6@::1:82", "::1", 82},
      {"ipv6@[::1]:83", "::1", 83},
      {"ipv6@2001:db8::2:84", "2001:db8::2", 84},
      {"app.example.com:80", "", 0},  // a host name
      {"localhost:80", "", 0},
      {"10.0.0.1", "", 0},  // no port
      {"[::1]", "", 0},
      {"10.0.0.1:", "", 0},
      {"10.0.0.1:80-90", "", 0},  // a port range
      {"10.0.0.1:+1000", "", 0},  // a port offset
      {"10.0.0.1:-1000", "", 0},
      {"10.0.0.1:0", "", 0},
      {"10.0.0.1:65536", "", 0},
      {"10.0.0.256:80", "", 0},
      {":80", "", 0},
      {"*:80", "", 0},
      {"unix@/run/app.sock", "", 0},
      {"/run/app.sock", "", 0},
      {"abns@app", "", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.written);
    const DeclaredServers d =
        ReadDeclaredServers(std::string("backend app\n    server s ") + c.written + " check\n");
    const DeclaredServer* s = FindServer(d, "app", "s");
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->address, c.written);
    EXPECT_EQ(s->ip, c.ip);
    EXPECT_EQ(s->port, c.port);
    EXPECT_EQ(s->literal(), std::string(c.ip) != "");
    EXPECT_EQ(s->params, (std::vector<std::string>{"check"}));
  }
}

TEST(ReadDeclaredServersTest, AddressFromAnEnvironmentVariableIsNotALiteral) {
  // haproxy expands "$VAR" inside double quotes from an environment the agent cannot know.
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    server a \"${BACKEND_IP}:80\"\n"
      "    server b \"10.0.0.1:${PORT}\"\n"
      "    server c \"$HOST\"\n"
      "    server d \"10.0.0.4:80\"\n");
  for (const char* name : {"a", "b", "c"}) {
    SCOPED_TRACE(name);
    const DeclaredServer* s = FindServer(d, "app", name);
    ASSERT_NE(s, nullptr);
    EXPECT_FALSE(s->literal());
    EXPECT_EQ(s->port, 0);
  }
  EXPECT_EQ(Get(d, "app", "a").address, "${BACKEND_IP}:80");
  // Quotes without a variable are only quotes.
  EXPECT_EQ(Get(d, "app", "d").ip, "10.0.0.4");
  EXPECT_EQ(Get(d, "app", "d").port, 80);
}

// ---- server-template ----

TEST(ReadDeclaredServersTest, ServerTemplateExpandsToNumberedServers) {
  // haproxy 2.6 gives every templated server the template's address.
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    server-template web 3 10.0.0.1:80 check\n"
      "    server-template api 5-6 [::1]:81 weight 4\n"
      "    server plain 10.0.0.9:80\n");
  const DeclaredBackend* b = d.Find("app");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Names(*b), (std::vector<std::string>{"web1", "web2", "web3", "api5", "api6", "plain"}));
  for (const char* name : {"web1", "web2", "web3"}) {
    SCOPED_TRACE(name);
    const DeclaredServer* s = b->Find(name);
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(s->from_template);
    EXPECT_EQ(s->address, "10.0.0.1:80");
    EXPECT_EQ(s->ip, "10.0.0.1");
    EXPECT_EQ(s->port, 80);
    EXPECT_TRUE(s->check);
    EXPECT_EQ(s->line, 2);
    EXPECT_EQ(s->params, (std::vector<std::string>{"check"}));
  }
  EXPECT_EQ(Get(d, "app", "api5").ip, "::1");
  EXPECT_EQ(Get(d, "app", "api6").weight, 4);
  EXPECT_TRUE(Get(d, "app", "api6").from_template);
  EXPECT_FALSE(Get(d, "app", "plain").from_template);
}

TEST(ReadDeclaredServersTest, ServerTemplateWithAHostNameIsNotALiteral) {
  const DeclaredServers d =
      ReadDeclaredServers("backend app\n    server-template srv 2 app.example.com:80 check\n");
  const DeclaredBackend* b = d.Find("app");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Names(*b), (std::vector<std::string>{"srv1", "srv2"}));
  EXPECT_FALSE(Get(d, "app", "srv1").literal());
  EXPECT_EQ(Get(d, "app", "srv2").address, "app.example.com:80");
}

TEST(ReadDeclaredServersTest, ServerTemplateInheritsDefaultServer) {
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    default-server weight 6 disabled\n"
      "    server-template web 2 10.0.0.1:80\n");
  EXPECT_EQ(Get(d, "app", "web2").weight, 6);
  EXPECT_TRUE(Get(d, "app", "web2").disabled);
}

// ---- .if blocks ----

TEST(ReadDeclaredServersTest, ServersInsideIfBlocksAreConditional) {
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    server before 10.0.0.1:80\n"
      ".if defined(BLUE)\n"
      "    server blue 10.0.0.2:80\n"
      ".elif defined(GREEN)\n"
      "    server green 10.0.0.3:80\n"
      "  .if streq(\"a\",\"a\")\n"
      "    server nested 10.0.0.4:80\n"
      "  .endif\n"
      "    server still 10.0.0.5:80\n"
      ".else\n"
      "    server other 10.0.0.6:80\n"
      ".endif\n"
      "    server after 10.0.0.7:80\n"
      "backend plain\n"
      "    server p 10.0.0.8:80\n");
  EXPECT_FALSE(Get(d, "app", "before").conditional);
  for (const char* name : {"blue", "green", "nested", "still", "other"}) {
    SCOPED_TRACE(name);
    ASSERT_NE(FindServer(d, "app", name), nullptr);
    EXPECT_TRUE(FindServer(d, "app", name)->conditional);
  }
  EXPECT_FALSE(Get(d, "app", "after").conditional);
  EXPECT_TRUE(GetBackend(d, "app").has_conditional);
  EXPECT_FALSE(GetBackend(d, "plain").has_conditional);
  EXPECT_FALSE(Get(d, "plain", "p").conditional);
}

TEST(ReadDeclaredServersTest, IfBlockAroundTheWholeBackendMarksItsServers) {
  const DeclaredServers d = ReadDeclaredServers(
      ".if defined(CANARY)\n"
      "backend canary\n"
      "    server c1 10.0.0.1:80\n"
      ".endif\n"
      "backend app\n"
      "    server a 10.0.0.2:80\n");
  EXPECT_TRUE(Get(d, "canary", "c1").conditional);
  EXPECT_TRUE(GetBackend(d, "canary").has_conditional);
  EXPECT_FALSE(Get(d, "app", "a").conditional);
}

// ---- balance, hash-type, stick, cookie ----

TEST(ReadDeclaredServersTest, ReadsTheAlgorithmInheritedFromDefaults) {
  const DeclaredServers d = ReadDeclaredServers(
      "defaults\n"
      "    balance source\n"
      "    hash-type consistent sdbm avalanche\n"
      "    cookie SRV insert indirect\n"
      "backend inherits\n"
      "    server a 10.0.0.1:80\n"
      "backend own\n"
      "    balance hdr(host) use_domain_only\n"
      "    hash-type map-based\n"
      "    server b 10.0.0.2:80\n"
      "backend rr\n"
      "    balance static-rr\n"
      "    stick-table type ip size 1k\n"
      "    stick on src\n");
  const DeclaredBackend* inherits = d.Find("inherits");
  ASSERT_NE(inherits, nullptr);
  EXPECT_EQ(inherits->balance, "source");
  EXPECT_EQ(inherits->hash_type, "consistent");
  EXPECT_TRUE(inherits->uses_cookie);
  EXPECT_FALSE(inherits->uses_stick);
  const DeclaredBackend* own = d.Find("own");
  ASSERT_NE(own, nullptr);
  EXPECT_EQ(own->balance, "hdr(host)");
  EXPECT_EQ(own->hash_type, "map-based");
  const DeclaredBackend* rr = d.Find("rr");
  ASSERT_NE(rr, nullptr);
  EXPECT_EQ(rr->balance, "static-rr");
  EXPECT_TRUE(rr->uses_stick);
}

TEST(ReadDeclaredServersTest, StickRuleWithoutATableMarksTheBackend) {
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    stick match src table other\n"
      "    server a 10.0.0.1:80\n"
      "backend cookies\n"
      "    cookie SRV insert\n"
      "    server b 10.0.0.2:80 cookie b\n");
  EXPECT_TRUE(GetBackend(d, "app").uses_stick);
  EXPECT_FALSE(GetBackend(d, "app").uses_cookie);
  EXPECT_TRUE(GetBackend(d, "cookies").uses_cookie);
  EXPECT_FALSE(GetBackend(d, "cookies").uses_stick);
}

// ---- references ----

TEST(ReadDeclaredServersTest, UseServerAndTrackTargetsAreReferences) {
  const DeclaredServers d = ReadDeclaredServers(
      "backend app\n"
      "    use-server web1 if { path_beg /admin }\n"
      "    server web1 10.0.0.1:80 check\n"
      "    server web2 10.0.0.2:80 track web1\n"
      "backend api\n"
      "    server api1 10.0.0.3:80 track app/web2\n");
  std::vector<std::string> refs = d.references;
  std::sort(refs.begin(), refs.end());
  EXPECT_EQ(refs, (std::vector<std::string>{"app/web1", "app/web1", "app/web2"}));
}

// ---- IsIpLiteral ----

TEST(IsIpLiteralTest, AcceptsIpv4AndIpv6LiteralsOnly) {
  for (const char* yes : {"10.0.0.1", "127.0.0.1", "0.0.0.0", "::1", "::", "2001:db8::1",
                          "::ffff:10.0.0.1", "FE80::1"}) {
    EXPECT_TRUE(IsIpLiteral(yes)) << yes;
  }
  for (const char* no : {"", "localhost", "app.example.com", "10.0.0.256", "10.0.0", "[::1]",
                         "10.0.0.1:80", "::1:80:x", " 10.0.0.1", "10.0.0.1 ", "ipv4@10.0.0.1"}) {
    EXPECT_FALSE(IsIpLiteral(no)) << "\"" << no << "\"";
  }
}

// ---- ConfigSkeleton ----

constexpr char kSkeletonBase[] = R"(global
    maxconn 1000
    stats socket /run/haproxy.sock mode 600 level admin

defaults
    mode http
    timeout connect 5s

frontend main
    bind :8080
    default_backend app

backend app
    balance roundrobin
    server web1 10.0.0.1:80 check
    server web2 10.0.0.2:80 check weight 2

listen db
    bind :3306
    server-template db 3 10.0.1.1:3306 check
)";

TEST(ConfigSkeletonTest, EqualWhenOnlyServerLinesDiffer) {
  const std::string changed = R"(global
    maxconn 1000
    stats socket /run/haproxy.sock mode 600 level admin

defaults
    mode http
    timeout connect 5s

frontend main
    bind :8080
    default_backend app

backend app
    balance roundrobin
    server web2 10.0.0.22:8080 weight 9 disabled
    server web3 10.0.0.3:80 check
    server web4 app.example.com:80

listen db
    bind :3306
    server-template db 5 10.0.1.2:3306
    server extra 10.0.1.9:3306
)";
  EXPECT_EQ(ConfigSkeleton(kSkeletonBase), ConfigSkeleton(changed));
  EXPECT_FALSE(ConfigSkeleton(kSkeletonBase).empty());
}

TEST(ConfigSkeletonTest, EqualWhenOnlyCommentsBlankLinesAndSpacingDiffer) {
  const std::string respaced =
      "# managed by lb-agent\n"
      "global\n"
      "\tmaxconn\t1000   # raised in 2024\n"
      "  stats   socket /run/haproxy.sock mode 600 level admin\n"
      "\n\n"
      "defaults\n"
      "  mode http\n"
      "  timeout connect 5s\n"
      "frontend main\n"
      "  bind :8080\n"
      "  # the only backend\n"
      "  default_backend app\n"
      "backend app\n"
      "  balance   roundrobin\n"
      "  server web1 10.0.0.1:80 check\n"
      "  server web2 10.0.0.2:80 check weight 2\n"
      "listen db\n"
      "  bind :3306\n"
      "  server-template db 3 10.0.1.1:3306 check\n";
  EXPECT_EQ(ConfigSkeleton(kSkeletonBase), ConfigSkeleton(respaced));
}

TEST(ConfigSkeletonTest, UnequalWhenAnyOtherDirectiveDiffers) {
  const std::string base = kSkeletonBase;
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string out = base;
    const std::size_t at = out.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    out.replace(at, from.size(), to);
    return out;
  };
  const std::vector<std::string> others = {
      replaced("maxconn 1000", "maxconn 2000"),
      replaced("timeout connect 5s", "timeout connect 6s"),
      replaced("bind :8080", "bind :8081"),
      replaced("balance roundrobin", "balance leastconn"),
      replaced("    balance roundrobin\n", "    balance roundrobin\n    default-server check\n"),
      replaced("    balance roundrobin\n", ""),
      replaced("backend app\n", "backend app2\n"),
      replaced("listen db\n", "backend db\n"),
      base + "\nbackend extra\n    server x 10.0.0.9:80\n",
      replaced("    server web1 10.0.0.1:80 check\n",
               ".if defined(X)\n    server web1 10.0.0.1:80 check\n.endif\n"),
      replaced("    server web1", "    use-server web1 if TRUE\n    server web1"),
  };
  for (const std::string& other : others) {
    EXPECT_NE(ConfigSkeleton(base), ConfigSkeleton(other)) << other;
  }
}

TEST(ConfigSkeletonTest, ServerLinesOutsideBackendsCount) {
  // `server` also appears in peers, resolvers-less rings and so on: those are not backend
  // servers and the runtime API does not change them.
  const std::string a =
      "peers mypeers\n    peer lb1 10.0.0.1:10000\n    server lb2 10.0.0.2:10000\n";
  const std::string b =
      "peers mypeers\n    peer lb1 10.0.0.1:10000\n    server lb2 10.0.0.3:10000\n";
  EXPECT_NE(ConfigSkeleton(a), ConfigSkeleton(b));
  const std::string ring_a = "ring logs\n    format rfc5424\n    server log1 10.0.0.1:514\n";
  const std::string ring_b = "ring logs\n    format rfc5424\n    server log1 10.0.0.2:514\n";
  EXPECT_NE(ConfigSkeleton(ring_a), ConfigSkeleton(ring_b));
}

TEST(ConfigSkeletonTest, WordBoundariesAndQuotingCount) {
  // One quoted word "a b" is not the two words a b, and a "$VAR" that haproxy expands is not
  // the same text unquoted (kept as written).
  EXPECT_NE(ConfigSkeleton("frontend f\n    http-request set-header X \"a b\"\n"),
            ConfigSkeleton("frontend f\n    http-request set-header X a b\n"));
  EXPECT_NE(ConfigSkeleton("global\n    setenv A \"$HOME\"\n"),
            ConfigSkeleton("global\n    setenv A '$HOME'\n"));
  // Quotes that change nothing are nothing.
  EXPECT_EQ(ConfigSkeleton("global\n    maxconn \"100\"\n"),
            ConfigSkeleton("global\n    maxconn 100\n"));
}

TEST(ConfigSkeletonTest, EmptyConfigHasAnEmptySkeleton) {
  EXPECT_TRUE(ConfigSkeleton("").empty());
  EXPECT_TRUE(ConfigSkeleton("\n  # only a comment\n\n").empty());
}

}  // namespace
}  // namespace lb::agent
