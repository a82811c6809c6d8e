// EtcdClient (controller/src/etcd_client.h) against a real 3-member etcd cluster started on
// loopback by the test: kv, compare-and-swap txns, leases, one member down, quorum lost; and
// against a misbehaving HTTP server, the reply limits.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "etcd_client.h"
#include "harness.h"

namespace lb::testing {
namespace {

using controller::EtcdClient;
using controller::EtcdCompare;
using controller::EtcdOp;
using controller::EtcdOptions;
using controller::EtcdTxn;
using Clock = std::chrono::steady_clock;

long long MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

std::unique_ptr<EtcdClient> Client(std::vector<std::string> endpoints,
                                   milliseconds timeout = milliseconds(1000)) {
  EtcdOptions options;
  options.endpoints = std::move(endpoints);
  options.timeout = timeout;
  auto client = EtcdClient::Create(std::move(options));
  EXPECT_TRUE(client.ok()) << client.status().message();
  return client.ok() ? std::move(*client) : nullptr;
}

class EtcdTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(cluster_.Start()); }

  TempDir dir_;
  EtcdCluster cluster_{dir_.path()};
};

TEST_F(EtcdTest, KvAndCompareAndSwapAgainstThreeMembers) {
  auto client = Client(cluster_.client_urls());
  ASSERT_NE(client, nullptr);
  auto missing = client->Get("/t/state");
  ASSERT_TRUE(missing.ok()) << missing.status().message();
  EXPECT_FALSE(missing->has_value());

  // Bytes that are not text survive the base64 round trip.
  const std::string value("{\"latest\": 1}\0\xff", 15);
  auto put = client->Put("/t/state", value);
  ASSERT_TRUE(put.ok()) << put.status().message();
  auto got = client->Get("/t/state");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, value);
  EXPECT_EQ((*got)->mod_revision, *put);
  EXPECT_EQ((*got)->create_revision, *put);

  // A member other than the one written to sees it (through its own client).
  auto other = Client({cluster_.client_url(2)});
  auto seen = other->Get("/t/state");
  ASSERT_TRUE(seen.ok() && seen->has_value());
  EXPECT_EQ((*seen)->value, value);

  // Compare-and-swap: the write that saw the current mod_revision wins; the other one fails and
  // reads what is there instead.
  EtcdTxn cas;
  cas.compare = {{"/t/state", EtcdCompare::Target::kMod, *put}};
  cas.success = {EtcdOp::Put("/t/state", "v2")};
  cas.failure = {EtcdOp::Range("/t/state")};
  auto first = client->Txn(cas);
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_TRUE(first->succeeded);
  auto second = client->Txn(cas);
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->ranged.size(), 1u);
  EXPECT_EQ(second->ranged[0].value, "v2");
  EXPECT_EQ(second->ranged[0].mod_revision, first->revision);

  // create_revision == 0: only the first of two creators gets the key.
  EtcdTxn create;
  create.compare = {{"/t/leader", EtcdCompare::Target::kCreate, 0}};
  create.success = {EtcdOp::Put("/t/leader", "a")};
  create.failure = {EtcdOp::Range("/t/leader")};
  auto a = client->Txn(create);
  create.success = {EtcdOp::Put("/t/leader", "b")};
  auto b = other->Txn(create);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a->succeeded);
  EXPECT_FALSE(b->succeeded);
  ASSERT_EQ(b->ranged.size(), 1u);
  EXPECT_EQ(b->ranged[0].value, "a");
  EXPECT_EQ(b->ranged[0].create_revision, a->revision);
}

TEST_F(EtcdTest, LeaseKeepsItsKeysUntilRevokedOrExpired) {
  auto client = Client(cluster_.client_urls());
  ASSERT_NE(client, nullptr);
  auto lease = client->GrantLease(2);
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  EXPECT_EQ(lease->ttl_s, 2);
  ASSERT_TRUE(client->Put("/t/held", "x", lease->id).ok());
  auto ttl = client->KeepAlive(lease->id);
  ASSERT_TRUE(ttl.ok()) << ttl.status().message();
  EXPECT_EQ(*ttl, 2);
  auto held = client->Get("/t/held");
  ASSERT_TRUE(held.ok() && held->has_value());
  EXPECT_EQ((*held)->lease, lease->id);

  ASSERT_TRUE(client->Revoke(lease->id).ok());
  auto gone = client->Get("/t/held");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value()) << "a revoked lease's key must be deleted";
  auto after = client->KeepAlive(lease->id);
  ASSERT_TRUE(after.ok()) << after.status().message();
  EXPECT_EQ(*after, 0) << "keeping a revoked lease alive must say it is gone";

  // Not kept alive: etcd deletes the key once the TTL ran out.
  auto short_lease = client->GrantLease(1);
  ASSERT_TRUE(short_lease.ok());
  ASSERT_TRUE(client->Put("/t/expiring", "x", short_lease->id).ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = client->Get("/t/expiring");
        return r.ok() && !r->has_value();
      },
      milliseconds(10000)));
}

TEST_F(EtcdTest, OneMemberDownIsSkippedAndTheClusterGoesOn) {
  auto client = Client(cluster_.client_urls());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Put("/t/k", "1").ok());
  cluster_.KillMember(0);  // the endpoint the client tries first (perhaps raft's leader)
  // If it led, writes wait for an election (up to twice the 1 s election timeout): no member
  // answers meanwhile, and the client says so as worth another try.
  const auto killed = Clock::now();
  bool written = WaitFor(
      [&] {
        auto put = client->Put("/t/k", "2");
        EXPECT_TRUE(put.ok() || put.status().code() == proto::ErrorCode::kUnavailable)
            << put.status().message();
        return put.ok();
      },
      milliseconds(15000));
  ASSERT_TRUE(written) << "two members of three did not take a write";
  std::cout << "one member SIGKILLed: writes again after " << MsSince(killed) << " ms\n";
  // From then on every call succeeds, and the dead member costs nothing (connection refused).
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    auto got = client->Get("/t/k");
    ASSERT_TRUE(got.ok() && got->has_value()) << got.status().message();
    EXPECT_EQ((*got)->value, "2");
    EXPECT_LT(Clock::now() - start, milliseconds(900)) << "the dead member was waited for";
  }
  // The member comes back and catches up.
  cluster_.StartMember(0);
  auto back = Client({cluster_.client_url(0)});
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = back->Get("/t/k");
        return r.ok() && r->has_value() && (*r)->value == "2";
      },
      milliseconds(20000)));
}

TEST_F(EtcdTest, QuorumLostFailsEveryCallWithinItsDeadlines) {
  auto client = Client(cluster_.client_urls(), milliseconds(500));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Put("/t/k", "1").ok());
  cluster_.KillMember(1);
  cluster_.KillMember(2);
  const auto start = Clock::now();
  auto put = client->Put("/t/k", "2");
  const auto took = Clock::now() - start;
  ASSERT_FALSE(put.ok()) << "a write without quorum must fail";
  EXPECT_EQ(put.status().code(), proto::ErrorCode::kUnavailable) << "worth another try";
  EXPECT_NE(put.status().message().find("no member answered"), std::string::npos)
      << put.status().message();
  EXPECT_NE(put.status().message().find(cluster_.client_url(0)), std::string::npos)
      << put.status().message();
  // Three endpoints, each at most its deadline (0.5 s), plus slack for a loaded machine.
  EXPECT_LT(took, std::chrono::seconds(4));
  auto lease = client->GrantLease(2);
  EXPECT_FALSE(lease.ok());
}

// A server that speaks HTTP but not etcd: oversized, slow and malformed replies.
class BadMember {
 public:
  BadMember() {
    server_.Post("/v3/kv/range", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(4096, 'x'), "application/json");
    });
    server_.Post("/v3/kv/put", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the member hangs
      res.set_content("{}", "application/json");
    });
    server_.Post("/v3/lease/grant", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"header":{"revision":"1"},"ID":"x","TTL":"2"})", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    WaitFor([this] { return server_.is_running(); }, milliseconds(5000));
  }
  ~BadMember() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

TEST(EtcdClientLimitsTest, RefusesOversizedAndMalformedRepliesAndMovesOnFromAHangingMember) {
  BadMember bad;
  EtcdOptions options;
  options.endpoints = {bad.url()};
  options.timeout = milliseconds(300);
  options.max_reply_bytes = 1024;
  auto client = EtcdClient::Create(options);
  ASSERT_TRUE(client.ok());
  auto big = (*client)->Get("/k");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("above 1024 bytes"), std::string::npos)
      << big.status().message();
  const auto start = Clock::now();
  auto slow = (*client)->Put("/k", "v");
  ASSERT_FALSE(slow.ok());
  EXPECT_NE(slow.status().message().find("within 300 ms"), std::string::npos)
      << slow.status().message();
  EXPECT_LT(Clock::now() - start, milliseconds(1400)) << "the deadline was not kept";
  auto lease = (*client)->GrantLease(2);
  ASSERT_FALSE(lease.ok());
  EXPECT_NE(lease.status().message().find("\"ID\" is not an integer"), std::string::npos)
      << lease.status().message();
}

}  // namespace
}  // namespace lb::testing
