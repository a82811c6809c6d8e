// lb_curve: certificates, allow-lists, endpoint classification, and the ZAP handler against
// real CURVE sockets on ipc:// (no haproxy).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <zmq.hpp>

#include "lb/common/allow_list.h"
#include "lb/common/curve_socket.h"
#include "lb/common/endpoint.h"
#include "test_util.h"

namespace lb::common {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(CurveTest, KeygenWritesAZcertPairThatReadsBack) {
  test_util::TempDir dir;
  auto cert = GenerateCertificate();
  ASSERT_TRUE(cert.ok()) << cert.status().message();
  const std::string base = (fs::path(dir.path()) / "agent").string();
  ASSERT_TRUE(WriteCertificate(base, *cert, "curve_test").ok());

  EXPECT_EQ(fs::status(base + "_secret").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(ReadAll(base).find("secret-key"), std::string::npos);
  EXPECT_NE(ReadAll(base).find("public-key = \"" + cert->public_key + "\""), std::string::npos);

  auto secret = ReadCertificate(base + "_secret", true);
  ASSERT_TRUE(secret.ok()) << secret.status().message();
  EXPECT_EQ(secret->public_key, cert->public_key);
  EXPECT_EQ(secret->secret_key, cert->secret_key);
  auto pub = ReadCertificate(base, false);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->public_key, cert->public_key);
  EXPECT_TRUE(pub->secret_key.empty());

  // Never overwritten: a second keygen to the same path fails and leaves the pair intact.
  auto other = GenerateCertificate();
  auto again = WriteCertificate(base, *other, "curve_test");
  EXPECT_FALSE(again.ok());
  EXPECT_NE(again.message().find("already exists"), std::string::npos) << again.message();
  EXPECT_EQ(ReadCertificate(base + "_secret", true)->secret_key, cert->secret_key);
}

TEST(CurveTest, SecretKeyFilesAreCheckedBeforeUse) {
  test_util::TempDir dir;
  auto cert = GenerateCertificate();
  const std::string base = (fs::path(dir.path()) / "k").string();
  ASSERT_TRUE(WriteCertificate(base, *cert, "curve_test").ok());

  auto pub_as_secret = ReadCertificate(base, true);
  ASSERT_FALSE(pub_as_secret.ok());
  EXPECT_NE(pub_as_secret.status().message().find("public certificate"), std::string::npos);

  fs::permissions(base + "_secret", fs::perms::others_read, fs::perm_options::add);
  auto world = ReadCertificate(base + "_secret", true);
  ASSERT_FALSE(world.ok());
  EXPECT_NE(world.status().message().find("chmod 600"), std::string::npos)
      << world.status().message();

  // A secret file whose public key was edited to another one is refused.
  auto other = GenerateCertificate();
  WriteFile(fs::path(dir.path()) / "mixed", "curve\n    public-key = \"" + other->public_key +
                                                "\"\n    secret-key = \"" + cert->secret_key +
                                                "\"\n");
  fs::permissions(fs::path(dir.path()) / "mixed", fs::perms::owner_read | fs::perms::owner_write);
  auto mixed = ReadCertificate((fs::path(dir.path()) / "mixed").string(), true);
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("does not match"), std::string::npos);

  WriteFile(fs::path(dir.path()) / "junk", "hello\n");
  EXPECT_FALSE(ReadCertificate((fs::path(dir.path()) / "junk").string(), false).ok());
  EXPECT_FALSE(ReadCertificate((fs::path(dir.path()) / "missing").string(), false).ok());
}

TEST(CurveTest, AllowListTakesBareKeysZcertLinesAndDirectories) {
  auto a = GenerateCertificate();
  auto b = GenerateCertificate();
  auto c = GenerateCertificate();
  auto keys = ParseAllowList("# clients\n\n" + a->public_key + "  lbctl on ops-1\n" +
                                 "curve\n    public-key = \"" + b->public_key + "\"\n",
                             "list");
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  EXPECT_EQ(*keys, (std::set<std::string>{a->public_key, b->public_key}));

  auto bad = ParseAllowList("\n" + a->public_key + "\nnot-a-key\n", "list");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("list:3:"), std::string::npos) << bad.status().message();
  auto secret = ParseAllowList("secret-key = \"" + a->secret_key + "\"\n", "list");
  ASSERT_FALSE(secret.ok());
  EXPECT_NE(secret.status().message().find("secret key"), std::string::npos);

  test_util::TempDir dir;
  ASSERT_TRUE(WriteCertificate((fs::path(dir.path()) / "bridge").string(), *c, "t").ok());
  fs::remove(fs::path(dir.path()) / "bridge_secret");
  WriteFile(fs::path(dir.path()) / "ops.txt", a->public_key + "\n");
  auto from_dir = ReadAllowList(dir.path());
  ASSERT_TRUE(from_dir.ok()) << from_dir.status().message();
  EXPECT_EQ(*from_dir, (std::set<std::string>{a->public_key, c->public_key}));
}

TEST(CurveTest, OnlyLoopbackAndIpcEndpointsAreLocal) {
  for (const char* local : {"ipc:///tmp/x.sock", "inproc://a", "tcp://127.0.0.1:5555",
                            "tcp://127.1.2.3:1", "tcp://[::1]:5555", "tcp://localhost:5555"}) {
    EXPECT_TRUE(IsLocalEndpoint(local)) << local;
  }
  for (const char* remote :
       {"tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.0.0.1:5555", "tcp://eth0:5555",
        "tcp://[::]:5555", "tcp://127.evil.example:5555", "tcp://lb1.example.com:5555",
        "udp://127.0.0.1:1", "tcp://[::1", "tcp://10.0.0.2:1;127.0.0.1:2"}) {
    EXPECT_FALSE(IsLocalEndpoint(remote)) << remote;
  }
}

// A CURVE server (REP) on ipc:// with the ZAP handler; clients with listed and unlisted keys.
class ZapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_cert_ = *GenerateCertificate();
    allowed_ = *GenerateCertificate();
    stranger_ = *GenerateCertificate();
    allow_path_ = fs::path(dir_.path()) / "clients";
    WriteFile(allow_path_, allowed_.public_key + " allowed\n");
    auto zap =
        ZapHandler::Start(server_ctx_, allow_path_.string(), [this](const std::string& line) {
          std::lock_guard<std::mutex> lock(log_mutex_);
          log_ += line + "\n";
        });
    ASSERT_TRUE(zap.ok()) << zap.status().message();
    zap_ = std::move(*zap);
    server_ = zmq::socket_t(server_ctx_, zmq::socket_type::rep);
    server_.set(zmq::sockopt::linger, 0);
    MakeCurveServer(server_, server_cert_, *zap_, "test");
    endpoint_ = "ipc://" + (fs::path(dir_.path()) / "s.sock").string();
    server_.bind(endpoint_);
    echo_ = std::thread([this] {
      while (!stop_) {
        zmq::pollitem_t item{server_.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, 50ms);
        if (item.revents & ZMQ_POLLIN) {
          zmq::message_t m;
          if (server_.recv(m)) server_.send(m, zmq::send_flags::none);
        }
      }
    });
  }
  void TearDown() override {
    stop_ = true;
    if (echo_.joinable()) echo_.join();
    server_.close();
    zap_.reset();
  }

  // Sends "ping" with `client` keys; true when the echo came back within `wait`.
  bool Roundtrip(const CurveCertificate& client, const std::string& server_key,
                 std::chrono::milliseconds wait = 2000ms) {
    zmq::socket_t req(client_ctx_, zmq::socket_type::req);
    req.set(zmq::sockopt::linger, 0);
    MakeCurveClient(req, client, server_key);
    req.connect(endpoint_);
    req.send(zmq::str_buffer("ping"), zmq::send_flags::none);
    zmq::pollitem_t item{req.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, wait);
    if (!(item.revents & ZMQ_POLLIN)) return false;
    zmq::message_t m;
    return req.recv(m) && m.to_string() == "ping";
  }

  std::string Log() {
    std::lock_guard<std::mutex> lock(log_mutex_);
    return log_;
  }

  test_util::TempDir dir_;
  zmq::context_t server_ctx_;
  zmq::context_t client_ctx_;
  CurveCertificate server_cert_, allowed_, stranger_;
  fs::path allow_path_;
  std::unique_ptr<ZapHandler> zap_;
  zmq::socket_t server_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread echo_;
  std::mutex log_mutex_;
  std::string log_;
};

TEST_F(ZapTest, ListedKeyIsServedUnlistedKeyAndWrongServerKeyAreNot) {
  EXPECT_TRUE(Roundtrip(allowed_, server_cert_.public_key));
  EXPECT_FALSE(Roundtrip(stranger_, server_cert_.public_key, 500ms));
  // A client pinned to another server key never completes the handshake.
  EXPECT_FALSE(Roundtrip(allowed_, stranger_.public_key, 500ms));
  EXPECT_EQ(zap_->accepted(), 1u);
  EXPECT_GE(zap_->refused(), 1u);
  EXPECT_NE(Log().find(stranger_.public_key), std::string::npos) << Log();

  // A plaintext client gets nothing either.
  zmq::socket_t plain(client_ctx_, zmq::socket_type::req);
  plain.set(zmq::sockopt::linger, 0);
  plain.connect(endpoint_);
  plain.send(zmq::str_buffer("ping"), zmq::send_flags::none);
  zmq::pollitem_t item{plain.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, 500ms);
  EXPECT_FALSE(item.revents & ZMQ_POLLIN);
}

TEST_F(ZapTest, AllowListChangesApplyWithoutRestart) {
  EXPECT_FALSE(Roundtrip(stranger_, server_cert_.public_key, 300ms));
  // Add the stranger, revoke the first client.
  WriteFile(allow_path_, stranger_.public_key + "\n");
  auto deadline = std::chrono::steady_clock::now() + 10s;
  bool admitted = false;
  while (!admitted && std::chrono::steady_clock::now() < deadline) {
    admitted = Roundtrip(stranger_, server_cert_.public_key, 500ms);
  }
  EXPECT_TRUE(admitted) << Log();
  EXPECT_FALSE(Roundtrip(allowed_, server_cert_.public_key, 500ms));

  // A broken list keeps the previous one.
  WriteFile(allow_path_, "garbage\n");
  deadline = std::chrono::steady_clock::now() + 10s;
  while (Log().find("not reloaded") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    Roundtrip(allowed_, server_cert_.public_key, 300ms);
  }
  EXPECT_NE(Log().find("not reloaded"), std::string::npos) << Log();
  EXPECT_TRUE(Roundtrip(stranger_, server_cert_.public_key));
}

// SIGHUP's path: Reload() reads the list at once, changed or not, and says so; a list that fails
// to load keeps the previous one and Reload() returns why.
TEST_F(ZapTest, ReloadReadsTheAllowListAtOnce) {
  WriteFile(allow_path_, allowed_.public_key + "\n" + stranger_.public_key + "\n");
  auto reloaded = zap_->Reload();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().message();
  EXPECT_EQ(*reloaded, 2u);
  EXPECT_TRUE(Roundtrip(stranger_, server_cert_.public_key));
  auto again = zap_->Reload();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 2u);
  const std::string log = Log();
  std::size_t said = 0;
  for (auto at = log.find("2 client key(s)"); at != std::string::npos;
       at = log.find("2 client key(s)", at + 1)) {
    ++said;
  }
  EXPECT_EQ(said, 2u) << "said even when unchanged: " << log;

  WriteFile(allow_path_, "garbage\n");
  auto broken = zap_->Reload();
  EXPECT_FALSE(broken.ok());
  EXPECT_NE(Log().find("keeping the previous 2 key(s)"), std::string::npos) << Log();
  EXPECT_TRUE(Roundtrip(stranger_, server_cert_.public_key)) << "the previous list stays";
}

}  // namespace
}  // namespace lb::common
