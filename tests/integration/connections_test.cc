// Descriptors (issue 14, point 5), against the real agent: a flood of local connections cannot
// use up the descriptors the agent needs. [lb-agent] max_connections caps the connections open
// on each server socket (a handshake beyond it is refused and closed); the clients already
// connected keep working and a reload still opens its files; the agent raises its descriptor
// limit to the hard one at start.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <zmq.hpp>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

constexpr int kCap = 8;

std::size_t OpenDescriptors(pid_t pid) {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// "Max open files" of /proc/PID/limits: {soft, hard}.
std::pair<std::string, std::string> OpenFilesLimit(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream words(line.substr(14));
    std::string soft, hard;
    words >> soft >> hard;
    return {soft, hard};
  }
  return {"", ""};
}

// A REQ socket that stays connected: one request at a time, a reply within `timeout` or "".
class Client {
 public:
  Client(zmq::context_t& context, const std::string& endpoint)
      : socket_(context, zmq::socket_type::req) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::rcvtimeo, 3000);
    // A REQ socket whose request got no answer cannot send again: let it try again at once.
    socket_.set(zmq::sockopt::req_relaxed, 1);
    socket_.set(zmq::sockopt::req_correlate, 1);
    socket_.connect(endpoint);
  }
  // The decoded reply, or an error status when none came.
  proto::Result<proto::Reply> Call(const std::string& cmd, const json& args = json::object()) {
    socket_.send(zmq::buffer(proto::EncodeRequest({json("c"), cmd, args})));
    zmq::message_t reply;
    if (!socket_.recv(reply)) return proto::Status(proto::ErrorCode::kTimeout, "no answer");
    return proto::DecodeReply(reply.to_string(), proto::DecodeLimits());
  }

 private:
  zmq::socket_t socket_;
};

class ConnectionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
  }

  HttpBackend a_{"a"};
  AgentFixture agent_{{}, {{"max_connections", std::to_string(kCap)}}};
  int frontend_ = 0;
  zmq::context_t context_;
};

TEST_F(ConnectionsTest, ConnectionsBeyondTheCapAreRefusedAndConnectedClientsKeepWorking) {
  agent_.StartAgent();
  const pid_t pid = agent_.Ok("info")["agent"]["pid"];
  // The fixture's own calls close their sockets; wait until the agent has counted them out.
  ASSERT_TRUE(WaitFor([&] { return agent_.Ok("info")["security"]["connections"]["command"] <= 1; },
                      milliseconds(10000)));

  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kCap; ++i) {
    clients.push_back(std::make_unique<Client>(context_, agent_.endpoint()));
    auto reply = clients.back()->Call("ping");
    ASSERT_TRUE(reply.ok() && reply->status.ok()) << "client " << i << " within the cap";
  }
  const std::size_t fds_at_cap = OpenDescriptors(pid);
  // The count follows the socket monitor's events, which may lag a loaded machine: wait until
  // the agent has counted the clients (asking through one of them).
  ASSERT_TRUE(WaitFor(
      [&] {
        auto info = clients[0]->Call("info");
        return info.ok() && info->status.ok() &&
               info->result["security"]["connections"]["command"] == kCap;
      },
      milliseconds(10000)));

  // Beyond the cap: a new client gets no answer (its handshake is refused, the connection
  // closed), and a flood of raw connections that finish the handshake is closed as well.
  Client extra(context_, agent_.endpoint());
  auto refused = extra.Call("ping");
  EXPECT_FALSE(refused.ok()) << "a connection beyond max_connections was answered";
  // ZeroMQ answers a refused handshake with an ERROR command and closes the connection when
  // the handshake interval (3 s) runs out, unless the peer closes first.
  {
    std::vector<std::unique_ptr<RawZmtp>> flood;
    for (int i = 0; i < 200; ++i) flood.push_back(std::make_unique<RawZmtp>(agent_.endpoint()));
    for (std::size_t i = 0; i < flood.size(); ++i) {
      EXPECT_TRUE(flood[i]->ClosedByPeer()) << "raw connection " << i << " stayed open";
    }
  }
  EXPECT_TRUE(WaitFor([&] { return OpenDescriptors(pid) <= fds_at_cap + 4; }, milliseconds(5000)))
      << "descriptors stayed up after the refused connections closed: " << OpenDescriptors(pid)
      << " against " << fds_at_cap;

  // Those within the cap still work, and a reload still opens and writes its files.
  auto info = clients[0]->Call("info");
  ASSERT_TRUE(info.ok() && info->status.ok());
  const json connections = info->result["security"]["connections"];
  EXPECT_EQ(connections["max"], kCap);
  EXPECT_GE(connections["refused"].get<int>(), 200) << connections.dump();
  const std::string next = HaproxyConfig(frontend_, {{"a", a_.port()}}) + "# after the flood\n";
  auto reload = clients[1]->Call("reload", {{"config", next}});
  ASSERT_TRUE(reload.ok());
  EXPECT_TRUE(reload->status.ok()) << reload->status.ToString();
  EXPECT_EQ(ReadFile(agent_.config_path()), next);
  EXPECT_EQ(HttpGetBody(frontend_), "a");

  // Once the clients go, new ones are admitted again.
  clients.clear();
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = AgentCall(agent_.endpoint(), "ping", json::object(), milliseconds(1000));
        return r.ok() && r->status.ok();
      },
      milliseconds(10000)))
      << "no connection admitted after the clients closed theirs";
}

TEST_F(ConnectionsTest, TheDescriptorLimitIsRaisedToTheHardLimitAtStart) {
  // Start the agent with a soft limit below the hard one (it inherits the test's), then put the
  // test's back.
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_GT(saved.rlim_max, 1024u) << "the hard limit leaves nothing to raise to";
  rlimit low = saved;
  low.rlim_cur = 1024;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  agent_.StartAgent();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  const pid_t pid = agent_.Ok("info")["agent"]["pid"];
  auto [soft, hard] = OpenFilesLimit(pid);
  EXPECT_EQ(soft, hard) << "soft limit " << soft << ", hard " << hard;
  EXPECT_NE(soft, "1024");
  EXPECT_NE(agent_.AgentLog().find("file descriptor limit raised from 1024"), std::string::npos)
      << agent_.AgentLog();
}

}  // namespace
}  // namespace lb::testing
