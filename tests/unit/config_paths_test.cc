// ConfigPaths: the files and sockets a config names, the allowed_paths policy, what may be
// replaced at a path, and haproxy's messages reduced so that they quote no other file.
#include "config_paths.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test_util.h"

namespace lb::agent {
namespace {

using proto::ErrorCode;
using test_util::TempDir;
using test_util::WriteFile;
using Use = ConfigPath::Use;

std::vector<std::string> Written(const std::vector<ConfigPath>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) out.push_back(p.keyword + " " + p.written);
  return out;
}

const ConfigPath* Find(const std::vector<ConfigPath>& paths, const std::string& written) {
  for (const auto& p : paths) {
    if (p.written == written) return &p;
  }
  return nullptr;
}

TEST(ReadConfigPathsTest, FindsEveryKeywordThatNamesAFile) {
  const std::string config =
      "global\n"
      "    chroot /var/lib/haproxy\n"
      "    pidfile /run/haproxy.pid\n"
      "    stats socket /run/haproxy/admin.sock mode 660 level admin\n"
      "    stats socket ipv4@127.0.0.1:9999\n"
      "    server-state-file state\n"
      "    log /dev/log local0\n"
      "    log 127.0.0.1:514 local0\n"
      "    crt-base /etc/ssl/private\n"
      "    ca-base /etc/ssl/certs\n"
      "defaults\n"
      "    errorfile 503 /etc/haproxy/errors/503.http\n"
      "frontend f\n"
      "    bind :443 ssl crt site.pem crt-list list.txt ca-file ca.pem\n"
      "    bind unix@/run/haproxy/fe.sock\n"
      "    acl bad src -f /etc/haproxy/bad.lst\n"
      "    http-request deny if { src,map_ip(maps/ip.map) -m found }\n"
      "    http-request set-map(/etc/haproxy/x.map) %[src] %[req.hdr(host)]\n"
      "    http-request return status 200 content-type text/plain file /etc/haproxy/ok.txt\n"
      "    filter spoe engine e config /etc/haproxy/spoe.conf\n"
      "    use_backend %[req.hdr(host),lower,map_str(hosts.map,b)]\n"
      "backend b\n"
      "    server s1 unix@/run/app.sock\n"
      "    server s2 10.0.0.2:443 ssl ca-file ca2.pem crt client.pem\n";
  auto paths = ReadConfigPaths(config, "/etc/haproxy");
  EXPECT_EQ(Written(paths), (std::vector<std::string>{"chroot /var/lib/haproxy",
                                                      "pidfile /run/haproxy.pid",
                                                      "stats socket /run/haproxy/admin.sock",
                                                      "server-state-file state",
                                                      "log /dev/log",
                                                      "crt-base /etc/ssl/private",
                                                      "ca-base /etc/ssl/certs",
                                                      "errorfile /etc/haproxy/errors/503.http",
                                                      "bind crt site.pem",
                                                      "bind crt-list list.txt",
                                                      "bind ca-file ca.pem",
                                                      "bind /run/haproxy/fe.sock",
                                                      "acl -f /etc/haproxy/bad.lst",
                                                      "map_ip() maps/ip.map",
                                                      "set-map() /etc/haproxy/x.map",
                                                      "http-request file /etc/haproxy/ok.txt",
                                                      "filter config /etc/haproxy/spoe.conf",
                                                      "map_str() hosts.map",
                                                      "server /run/app.sock",
                                                      "server ca-file ca2.pem",
                                                      "server crt client.pem"}));
  EXPECT_EQ(Find(paths, "site.pem")->resolved, "/etc/ssl/private/site.pem") << "crt-base";
  EXPECT_EQ(Find(paths, "ca.pem")->resolved, "/etc/ssl/certs/ca.pem") << "ca-base";
  EXPECT_EQ(Find(paths, "maps/ip.map")->resolved, "/etc/haproxy/maps/ip.map");
  EXPECT_EQ(Find(paths, "state")->use, Use::kState);
  EXPECT_EQ(Find(paths, "/run/haproxy/admin.sock")->use, Use::kSocket);
  EXPECT_EQ(Find(paths, "/dev/log")->use, Use::kLog);
  EXPECT_EQ(Find(paths, "/run/app.sock")->use, Use::kConnect);
  EXPECT_EQ(Find(paths, "/var/lib/haproxy")->use, Use::kDir);
  EXPECT_EQ(Find(paths, "/run/haproxy.pid")->use, Use::kPid);
}

TEST(ReadConfigPathsTest, ResolvesDotDotAndSymlinks) {
  TempDir tmp;
  std::filesystem::create_directories(tmp.File("etc"));
  std::filesystem::create_symlink("/etc", tmp.File("etc/link"));
  auto paths = ReadConfigPaths(
      "global\n    server-state-file ../../../../../../../etc/shadow\n"
      "frontend f\n    acl x src -f link/passwd\n    errorfile 503 \"a b/../../c\"\n",
      tmp.File("etc"));
  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(paths[0].resolved, "/etc/shadow");
  EXPECT_EQ(paths[1].resolved, "/etc/passwd") << "the symlink is followed";
  EXPECT_EQ(paths[2].resolved, tmp.File("c"));
}

TEST(ReadConfigPathsTest, EnvironmentWordsHaveNoResolvedPath) {
  auto paths = ReadConfigPaths("global\n    server-state-file \"${HOME}/state\"\n", "/etc/haproxy");
  ASSERT_EQ(paths.size(), 1u);
  EXPECT_TRUE(paths[0].resolved.empty());
  auto refused = CheckConfigPaths(paths, {"/etc/haproxy"});
  EXPECT_EQ(refused.code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(refused.message().find("environment variable"), std::string::npos) << refused.message();
}

TEST(ReadConfigPathsTest, UrlPathsAreNotFiles) {
  auto paths = ReadConfigPaths(
      "backend b\n    option httpchk GET /health\n    http-request set-path /api\n"
      "    http-request redirect location /login\n    server s 10.0.0.1:80\n",
      "/etc/haproxy");
  EXPECT_TRUE(paths.empty()) << Written(paths).size();
}

TEST(ReadConfigPathsTest, AnyWordNamingAnExistingFileIsMentioned) {
  TempDir tmp;
  WriteFile(tmp.File("secret"), "x\n");
  auto paths = ReadConfigPaths("frontend f\n    some-new-keyword " + tmp.File("secret") + "\n",
                               "/etc/haproxy");
  ASSERT_EQ(paths.size(), 1u);
  EXPECT_EQ(paths[0].use, Use::kMention);
  EXPECT_TRUE(CheckConfigPaths(paths, {"/etc/haproxy"}).ok()) << "mentions are not judged";
}

TEST(CheckConfigPathsTest, RefusesWhatIsOutsideAndNamesLineKeywordAndRule) {
  auto paths = ReadConfigPaths(
      "global\n    stats socket /run/haproxy/admin.sock\n    log /dev/log local0\n"
      "frontend f\n    filter spoe engine e config /etc/shadow\n",
      "/etc/haproxy");
  auto s = CheckConfigPaths(paths, {"/etc/haproxy", "/run/haproxy"});
  ASSERT_EQ(s.code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(s.message().find("line 5: filter config \"/etc/shadow\" is /etc/shadow, outside"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("allowed_paths"), std::string::npos);
  // /dev/log as a log target, and paths inside, pass.
  paths.pop_back();
  EXPECT_TRUE(CheckConfigPaths(paths, {"/etc/haproxy", "/run/haproxy"}).ok());
  // A prefix is not a parent: /etc/haproxy2 is not inside /etc/haproxy.
  auto sibling = ReadConfigPaths("frontend f\n    errorfile 503 /etc/haproxy2/503.http\n", "/x");
  EXPECT_FALSE(CheckConfigPaths(sibling, {"/etc/haproxy"}).ok());
  // /dev/log is a log target only.
  auto devlog = ReadConfigPaths("frontend f\n    errorfile 503 /dev/log\n", "/x");
  EXPECT_FALSE(CheckConfigPaths(devlog, {"/etc/haproxy"}).ok());
}

TEST(CheckPathTargetsTest, OnlyReplacesWhatTheAgentOrHaproxyWould) {
  TempDir tmp;
  WriteFile(tmp.File("notes.txt"), "precious\n");
  WriteFile(tmp.File("state"), "1\n# be_id be_name\n");
  auto check = [&](const std::string& config) {
    return CheckPathTargets(ReadConfigPaths(config, tmp.path()));
  };
  EXPECT_EQ(check("global\n    server-state-file notes.txt\n").code(), ErrorCode::kInvalidConfig);
  EXPECT_TRUE(check("global\n    server-state-file state\n").ok());
  EXPECT_TRUE(check("global\n    server-state-file absent\n").ok());
  auto socket_over_file = check("global\n    stats socket notes.txt\n");
  EXPECT_EQ(socket_over_file.code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(socket_over_file.message().find("is not a socket"), std::string::npos);
  // A real socket there is what haproxy replaces on every start.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", tmp.File("s.sock").c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  close(fd);
  EXPECT_TRUE(check("global\n    stats socket s.sock\n").ok());
  std::filesystem::create_directory(tmp.File("dir"));
  EXPECT_FALSE(check("global\n    pidfile dir\n").ok());
}

// What haproxy 2.6.12 printed for these configs (measured), and what the agent returns.
TEST(ReduceMessageTest, MessagesThatQuoteAnotherFileAreReduced) {
  const std::string secret = "root:x:0:0:root:/root:/bin/bash";
  const auto paths = ReadConfigPaths(
      "global\n"
      "defaults\n"
      "  mode http\n"
      "frontend f\n"
      "  bind 127.0.0.1:19999\n"
      "  default_backend b\n"
      "  filter spoe engine e config /tmp/p/secret.txt\n"
      "  acl x src -f /tmp/p/secret.txt\n"
      "  http-request deny if { src,map_ip(/tmp/p/secret.txt) -m found }\n"
      "  bind 127.0.0.1:19998 ssl crt-list /tmp/p/secret.txt\n",
      "/etc/haproxy");
  const std::vector<std::string> haproxy = {
      "[ALERT]    (8214) : config : parsing [/tmp/p/secret.txt:1]: unknown keyword '" + secret +
          "' out of section.",
      "[ALERT]    (8218) : config : parsing [haproxy.cfg:8] : error detected while parsing ACL "
      "'x' : '" +
          secret + "' is not a valid IPv4 or IPv6 address at line 1 of file '/tmp/p/secret.txt'.",
      "[ALERT]    (8222) : config : parsing [haproxy.cfg:9] : error detected while parsing an "
      "'http-request deny' condition : invalid args in converter 'map_ip' : '" +
          secret + "' is not a valid IPv4 or IPv6 address at line 1 of file '/tmp/p/secret.txt'",
      "[ALERT]    (8238) : config : parsing [haproxy.cfg:10] : 'bind 127.0.0.1:19998' in section "
      "'frontend' : 'crt-list' : unable to stat SSL certificate from file '" +
          secret + "' : No such file or directory."};
  for (const auto& line : haproxy) {
    const std::string reduced = ReduceMessage(line, "haproxy.cfg", paths);
    EXPECT_EQ(reduced.find("root:x"), std::string::npos) << reduced;
    EXPECT_EQ(reduced.rfind("[ALERT]", 0), 0u) << reduced;
  }
  EXPECT_EQ(ReduceMessage(haproxy[0], "haproxy.cfg", paths),
            "[ALERT] /tmp/p/secret.txt line 1 is invalid (haproxy's message is withheld: it "
            "quotes that file)");
  EXPECT_EQ(ReduceMessage(haproxy[1], "haproxy.cfg", paths),
            "[ALERT] parsing [haproxy.cfg:8] : haproxy refused this line, which names acl -f "
            "\"/tmp/p/secret.txt\": /tmp/p/secret.txt line 1 is invalid (haproxy's message is "
            "withheld: it may quote the file)");
}

TEST(ReduceMessageTest, OtherMessagesAreKeptAsHaproxyWroteThem) {
  const auto paths = ReadConfigPaths("frontend f\n    acl x src -f /etc/haproxy/a.lst\n", "/x");
  for (const std::string line :
       {"[ALERT]    (1) : config : parsing [haproxy.cfg:1] : unknown keyword 'frobnicate'",
        "[ALERT]    (1) : Starting frontend main: cannot bind socket (Address already in use) "
        "[127.0.0.1:8080]",
        "[ALERT]    (1) : Starting proxy x: cannot bind socket [:::80]",
        "[ALERT]    (1) : config : Fatal errors found in configuration."}) {
    EXPECT_EQ(ReduceMessage(line, "haproxy.cfg", paths), line);
  }
}

}  // namespace
}  // namespace lb::agent
