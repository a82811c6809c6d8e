// The reload path end to end: lb-agent in managed mode, a real haproxy, real HTTP backends.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

// Bodies of `n` GETs through haproxy's frontend.
std::multiset<std::string> Answers(int port, int n) {
  std::multiset<std::string> out;
  for (int i = 0; i < n; ++i) out.insert(HttpGetBody(port));
  return out;
}

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
    agent_.StartAgent();
  }

  HttpBackend a_{"backend-a"};
  HttpBackend b_{"backend-b"};
  HttpBackend c_{"backend-c"};
  AgentFixture agent_;
  int frontend_ = 0;
};

TEST_F(ReloadTest, ReloadOverZmqSendsTrafficToTheNewServers) {
  ASSERT_EQ(HttpGetBody(frontend_), "backend-a");
  std::string config = HaproxyConfig(frontend_, {{"b", b_.port()}, {"c", c_.port()}});
  json result = agent_.Ok("reload", {{"config", config}});
  EXPECT_EQ(result["outcome"], "applied");
  EXPECT_EQ(result["rolled_back"], false);
  EXPECT_EQ(ReadFile(agent_.config_path()), config);
  EXPECT_EQ(result["sha256"], agent_.Ok("get_config")["sha256"]);
  auto answers = Answers(frontend_, 20);
  EXPECT_EQ(answers.count("backend-a"), 0u);
  EXPECT_GT(answers.count("backend-b"), 0u);
  EXPECT_GT(answers.count("backend-c"), 0u);
}

TEST_F(ReloadTest, InvalidConfigNamesHaproxyComplaintAndChangesNothing) {
  const std::string before = ReadFile(agent_.config_path());
  const pid_t worker = agent_.HaproxyWorkerPid();
  std::string config = HaproxyConfig(frontend_, {{"b", b_.port()}});
  config += "    frobnicate the-backend\n";
  auto reply = agent_.Call("reload", {{"config", config}});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kInvalidConfig);
  EXPECT_NE(reply->status.message().find("frobnicate"), std::string::npos)
      << reply->status.message();
  EXPECT_NE(reply->status.message().find("haproxy.cfg:"), std::string::npos)
      << "the message should name the line: " << reply->status.message();
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
  EXPECT_EQ(agent_.HaproxyWorkerPid(), worker);
  EXPECT_EQ(HttpGetBody(frontend_), "backend-a");
}

TEST_F(ReloadTest, FailedReloadRollsBackToThePreviousConfig) {
  // A port already taken passes `haproxy -c` but fails when the new worker binds it.
  int taken_fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(taken_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(taken_fd, 1), 0);
  socklen_t len = sizeof addr;
  getsockname(taken_fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int taken = ntohs(addr.sin_port);

  const std::string before = ReadFile(agent_.config_path());
  std::string config = HaproxyConfig(frontend_, {{"b", b_.port()}});
  config += "frontend second\n    bind 127.0.0.1:" + std::to_string(taken) +
            "\n    default_backend scaling_nodes\n";
  auto reply = agent_.Call("reload", {{"config", config}});
  close(taken_fd);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kReloadFailed) << reply->status.ToString();
  EXPECT_EQ(reply->status.details().value("rolled_back", false), true);
  EXPECT_NE(reply->status.message().find("cannot bind"), std::string::npos)
      << reply->status.message();
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
  EXPECT_EQ(HttpGetBody(frontend_), "backend-a");
  // The agent is not stuck: the next good reload works.
  EXPECT_EQ(
      agent_.Ok("reload", {{"config", HaproxyConfig(frontend_, {{"b", b_.port()}})}})["outcome"],
      "applied");
  EXPECT_EQ(HttpGetBody(frontend_), "backend-b");
}

TEST_F(ReloadTest, SameConfigTwiceIsUnchangedWithoutAReload) {
  std::string config = HaproxyConfig(frontend_, {{"b", b_.port()}});
  EXPECT_EQ(agent_.Ok("reload", {{"config", config}, {"apply_via", "reload"}})["outcome"],
            "applied");
  const int reloads = agent_.HaproxyReloads();
  const pid_t worker = agent_.HaproxyWorkerPid();
  ASSERT_GE(reloads, 1);
  json second = agent_.Ok("reload", {{"config", config}});
  EXPECT_EQ(second["outcome"], "unchanged");
  EXPECT_EQ(second["reload_ms"], 0);
  EXPECT_EQ(agent_.HaproxyReloads(), reloads);
  EXPECT_EQ(agent_.HaproxyWorkerPid(), worker);
}

TEST_F(ReloadTest, ExpectSha256MismatchIsAConflictAndChangesNothing) {
  const std::string before = ReadFile(agent_.config_path());
  const int reloads = agent_.HaproxyReloads();
  std::string config = HaproxyConfig(frontend_, {{"b", b_.port()}});
  auto reply = agent_.Call("reload", {{"config", config}, {"expect_sha256", std::string(64, '0')}});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kConflict);
  EXPECT_EQ(reply->status.details()["sha256"], agent_.Ok("get_config")["sha256"]);
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
  EXPECT_EQ(agent_.HaproxyReloads(), reloads);
  // With the right sha256 it applies.
  std::string live = agent_.Ok("get_config")["sha256"];
  EXPECT_EQ(agent_.Ok("reload", {{"config", config}, {"expect_sha256", live}})["outcome"],
            "applied");
}

TEST_F(ReloadTest, DefaultBackendWithoutServersIsRefusedUnlessForced) {
  const std::string before = ReadFile(agent_.config_path());
  std::string empty = HaproxyConfig(frontend_, {});
  auto reply = agent_.Call("reload", {{"config", empty}});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kInvalidConfig);
  EXPECT_NE(reply->status.message().find("force"), std::string::npos) << reply->status.message();
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
  EXPECT_EQ(agent_.Ok("reload", {{"config", empty}, {"force", true}})["outcome"], "applied");
}

TEST_F(ReloadTest, ConcurrentReloadsAreCoalesced) {
  const int reloads_before = agent_.HaproxyReloads();
  constexpr int kClients = 20;
  std::vector<std::string> configs;
  for (int i = 0; i < kClients; ++i) {
    configs.push_back(HaproxyConfig(frontend_, {{"b", b_.port()}}) + "# client " +
                      std::to_string(i) + "\n");
  }
  struct Answer {
    bool ok = false;
    std::string code;
    std::string sha256;
    std::chrono::steady_clock::time_point at;
  };
  std::vector<Answer> answers(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      auto r = agent_.Call("reload", {{"config", configs[i]}, {"apply_via", "reload"}});
      Answer& a = answers[i];
      a.at = std::chrono::steady_clock::now();
      if (!r.ok()) {
        a.code = "transport: " + r.status().ToString();
        return;
      }
      a.ok = r->status.ok();
      a.code = std::string(proto::ErrorCodeName(r->status.code()));
      a.sha256 = a.ok ? r->result.value("sha256", "") : r->status.details().value("sha256", "");
    });
  }
  for (auto& t : clients) t.join();

  int applied = 0, superseded = 0;
  const Answer* last_applied = nullptr;
  for (const auto& a : answers) {
    if (a.ok) {
      ++applied;
      if (last_applied == nullptr || a.at > last_applied->at) last_applied = &a;
    } else {
      EXPECT_EQ(a.code, "superseded");
      ++superseded;
    }
  }
  EXPECT_EQ(applied + superseded, kClients);
  ASSERT_NE(last_applied, nullptr);
  const std::string live_sha = agent_.Ok("get_config")["sha256"];
  EXPECT_EQ(last_applied->sha256, live_sha);
  for (const auto& a : answers) {
    if (!a.ok) {
      EXPECT_FALSE(a.sha256.empty()) << "superseded answers name the winner";
    }
  }
  const int reloads = agent_.HaproxyReloads() - reloads_before;
  EXPECT_EQ(reloads, applied);
  EXPECT_LT(reloads, kClients / 2)
      << "only " << superseded << " of " << kClients << " were coalesced";
}

TEST_F(ReloadTest, ServiceStyleConfigRunsInManagedMode) {
  // The 2015 agent's template: chroot, user/group, daemon, pidfile, a system stats socket.
  std::string config =
      "global\n"
      "    log         127.0.0.1 local2\n"
      "    chroot      /var/lib/haproxy\n"
      "    pidfile     " +
      agent_.dir().File("service.pid") +
      "\n"
      "    maxconn     4000\n"
      "    user        haproxy\n"
      "    group       haproxy\n"
      "    daemon\n"
      "    stats socket " +
      agent_.dir().File("service-stats.sock") +
      "\n"
      "defaults\n"
      "    mode http\n"
      "    timeout connect 10s\n"
      "    timeout client 1m\n"
      "    timeout server 1m\n"
      "frontend main\n"
      "    bind 127.0.0.1:" +
      std::to_string(frontend_) +
      "\n"
      "    default_backend scaling_nodes\n"
      "backend scaling_nodes\n"
      "    balance roundrobin\n"
      "    server node1 127.0.0.1:" +
      std::to_string(c_.port()) + " check\n";
  auto reply = agent_.Call("reload", {{"config", config}});
  ASSERT_TRUE(reply.ok());
  if (geteuid() == 0) {
    ASSERT_TRUE(reply->status.ok()) << reply->status.ToString();
    EXPECT_EQ(reply->result["outcome"], "applied");
    EXPECT_EQ(HttpGetBody(frontend_), "backend-c");
    EXPECT_GT(agent_.HaproxyWorkerPid(), 0) << "-db kept haproxy under the agent despite daemon";
  } else {
    EXPECT_EQ(reply->status.code(), proto::ErrorCode::kInvalidConfig);
    EXPECT_NE(reply->status.message().find("chroot"), std::string::npos);
  }
}

TEST_F(ReloadTest, ValidateChecksWithoutChangingAnything) {
  const std::string before = ReadFile(agent_.config_path());
  const int reloads = agent_.HaproxyReloads();
  std::string good = HaproxyConfig(frontend_, {{"b", b_.port()}});
  json result = agent_.Ok("validate", {{"config", good}});
  EXPECT_EQ(result["valid"], true);
  EXPECT_EQ(agent_.ErrorCode("validate", {{"config", good + "    bogus-keyword\n"}}),
            "invalid_config");
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
  EXPECT_EQ(agent_.HaproxyReloads(), reloads);
}

TEST_F(ReloadTest, HistoryKeepsThePreviousVersion) {
  const std::string before = ReadFile(agent_.config_path());
  agent_.Ok("reload", {{"config", HaproxyConfig(frontend_, {{"b", b_.port()}})}});
  int found = 0;
  for (const auto& e : std::filesystem::directory_iterator(agent_.dir().File("history"))) {
    if (ReadFile(e.path()) == before) ++found;
  }
  EXPECT_EQ(found, 1);
}

}  // namespace
}  // namespace lb::testing
