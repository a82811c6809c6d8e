// Untrusted input on the command socket, and a slow reload that must not hold up status.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

long RssKiB(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

class RobustnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
    agent_.StartAgent();
  }

  // The error code of the agent's answer to a raw frame; fails if there is no valid answer.
  std::string RawErrorCode(const std::string& frame) {
    std::string reply = AgentRaw(agent_.endpoint(), frame);
    EXPECT_FALSE(reply.empty()) << "no answer";
    proto::DecodeLimits limits;
    auto decoded = proto::DecodeReply(reply, limits);
    EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
    if (!decoded.ok()) return "";
    EXPECT_FALSE(decoded->status.message().empty());
    return std::string(proto::ErrorCodeName(decoded->status.code()));
  }

  HttpBackend a_{"a"};
  AgentFixture agent_;
  int frontend_ = 0;
};

TEST_F(RobustnessTest, BadFramesGetClearErrorsAndTheAgentKeepsAnswering) {
  EXPECT_EQ(RawErrorCode("this is not msgpack \xc1\xc1"), "bad_request");
  EXPECT_EQ(RawErrorCode(proto::EncodeMsgpack(json::array({1, 2, 3}))), "bad_request");
  EXPECT_EQ(RawErrorCode(proto::EncodeMsgpack(42)), "bad_request");
  EXPECT_EQ(RawErrorCode(proto::EncodeMsgpack({{"v", 1}, {"id", 7}})), "bad_request");
  EXPECT_EQ(RawErrorCode(proto::EncodeMsgpack({{"v", 1}, {"cmd", 5}})), "bad_request");
  EXPECT_EQ(RawErrorCode(proto::EncodeMsgpack({{"v", 1}, {"cmd", "reboot"}})), "unknown_command");
  EXPECT_EQ(RawErrorCode(proto::EncodeMsgpack({{"v", 1}, {"cmd", "reload"}, {"args", 3}})),
            "bad_request");
  EXPECT_EQ(RawErrorCode(proto::EncodeMsgpack({{"v", 1}, {"cmd", "reload"}})), "bad_request");
  // A map header claiming 2^31 entries: must not make the agent allocate for them.
  EXPECT_EQ(RawErrorCode(std::string("\xdf\x80\x00\xc2\x00", 5)).empty(), false);
  EXPECT_TRUE(agent_.Ok("ping")["pong"]);
  // The id is echoed even on errors, so clients can match answers.
  std::string reply = AgentRaw(agent_.endpoint(), proto::EncodeMsgpack({{"v", 1}, {"id", "x-9"}}));
  auto decoded = proto::DecodeReply(reply, proto::DecodeLimits{});
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->id, "x-9");
}

TEST_F(RobustnessTest, OversizedConfigIsTooLargeAndChangesNothing) {
  const std::string before = ReadFile(agent_.config_path());
  // Above max_config_bytes (16 MiB by default) but inside a frame: answered `too_large`.
  std::string huge = HaproxyConfig(frontend_, {{"a", a_.port()}});
  huge += "# " + std::string(16 * 1024 * 1024, 'x') + "\n";
  auto reply = agent_.Call("reload", {{"config", huge}});
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kTooLarge);
  EXPECT_NE(reply->status.message().find("bytes"), std::string::npos);
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
  // Above the frame limit, ZeroMQ cuts the connection at the frame's header: no answer, and
  // the agent reads no more of it.
  const std::string frame =
      proto::EncodeRequest({json(1), "reload", {{"config", std::string(20 * 1024 * 1024, 'x')}}});
  EXPECT_EQ(AgentRaw(agent_.endpoint(), frame, milliseconds(1000)), "");
  EXPECT_EQ(ReadFile(agent_.config_path()), before);
  EXPECT_TRUE(agent_.Ok("ping")["pong"]);
}

// Log injection (issue 14): a line break in `cmd` and in `id` is escaped in the agent's log
// line, so a client cannot write a line of its own into the log.
TEST_F(RobustnessTest, ALineBreakInACommandCannotForgeALogLine) {
  const std::string forged = "ts=2020-01-01T00:00:00Z level=error prog=lb-agent msg=forged";
  const std::string frame = proto::EncodeMsgpack(
      json{{"v", 1}, {"id", "x\n" + forged}, {"cmd", "nope\n" + forged + "\r\x1b[2J"}});
  EXPECT_EQ(RawErrorCode(frame), "unknown_command");
  ASSERT_TRUE(WaitFor([&] { return agent_.AgentLog().find("forged") != std::string::npos; },
                      milliseconds(5000)))
      << "the request was not logged:\n"
      << agent_.AgentLog();
  std::istringstream lines(agent_.AgentLog());
  for (std::string line; std::getline(lines, line);) {
    EXPECT_NE(line.rfind("ts=2020", 0), 0u) << "forged line: " << line;
    EXPECT_EQ(line.find_first_of("\r\x1b"), std::string::npos) << "raw control in: " << line;
  }
}

TEST_F(RobustnessTest, MemoryStaysFlatUnderBadInput) {
  const int pid = agent_.Ok("info")["agent"]["pid"];
  const std::string bomb("\xdf\x80\x00\xc2\x00", 5);
  const std::string big =
      proto::EncodeRequest({json(1), "reload", {{"config", std::string(18 * 1024 * 1024, 'x')}}});
  auto round = [&] {
    for (int i = 0; i < 50; ++i) {
      AgentRaw(agent_.endpoint(), bomb);
      AgentRaw(agent_.endpoint(), "garbage");
    }
    AgentRaw(agent_.endpoint(), big, milliseconds(500));  // cut off: no answer
  };
  round();  // warm up allocator pools
  const long before = RssKiB(pid);
  for (int i = 0; i < 5; ++i) round();
  const long after = RssKiB(pid);
  ASSERT_GT(before, 0);
  EXPECT_LT(after - before, 24 * 1024)
      << "RSS grew from " << before << " KiB to " << after << " KiB";
  EXPECT_TRUE(agent_.Ok("ping")["pong"]);
}

TEST(SlowReloadTest, StatusDoesNotWaitBehindASlowReload) {
  HttpBackend a("a");
  AgentFixture agent(Keys{{"haproxy_binary", "./slow-haproxy"}});
  // `haproxy -c` takes 3 s through this wrapper; starting haproxy does not.
  WriteFile(agent.dir().File("slow-haproxy"),
            "#!/bin/sh\n[ \"$1\" = -c ] && sleep 3\nexec " + HaproxyBinary() + " \"$@\"\n");
  chmod(agent.dir().File("slow-haproxy").c_str(), 0755);
  const int frontend = FreePort();
  WriteFile(agent.config_path(), HaproxyConfig(frontend, {{"a", a.port()}}));
  agent.StartAgent();

  auto reload = std::async(std::launch::async, [&] {
    // A change beyond server lines: a reload, with its (slow) haproxy -c.
    return agent.Call("reload", {{"config", HaproxyConfig(frontend, {{"a", a.port()}},
                                                          "scaling_nodes", "    maxconn 999\n")}});
  });
  // Wait until the reload is running (the agent has written its candidate file).
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& e : std::filesystem::directory_iterator(agent.dir().path())) {
          if (e.path().filename().string().rfind(".lb-agent-tmp.", 0) == 0) return true;
        }
        return false;
      },
      milliseconds(5000)));
  const auto start = std::chrono::steady_clock::now();
  auto status = agent.Call("status");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(status.ok() && status->status.ok());
  EXPECT_EQ(reload.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "status was answered before the reload finished";
  EXPECT_LT(took, std::chrono::milliseconds(1500));
  auto reloaded = reload.get();
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(reloaded->result["outcome"], "applied");
}

}  // namespace
}  // namespace lb::testing
