// EtcdClient (controller/src/etcd_client.h) against a real 3-member etcd cluster started on
// loopback by the test: kv, compare-and-swap txns, leases, one member down, quorum lost; and
// against a misbehaving HTTP server, the reply limits. EtcdStore (etcd_store.h) against the
// cluster: a fleet state far above etcd's 1.5 MiB request limit, saved in blobs and read back.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "etcd_client.h"
#include "etcd_store.h"
#include "harness.h"
#include "state_dir.h"
#include "test_pki.h"

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

// `bytes` of text that does not compress (etcd's limit is on what it receives).
std::string RandomConfig(size_t bytes, unsigned seed) {
  std::mt19937 random(seed);
  std::string out = "# config " + std::to_string(seed) + "\n";
  while (out.size() < bytes) out.push_back(static_cast<char>('a' + random() % 26));
  return out;
}

controller::StoredPush Push(uint64_t version, const std::string& group,
                            std::shared_ptr<const nlohmann::json> args) {
  controller::StoredPush push;
  push.version = version;
  push.target = proto::FleetTarget::Group(group);
  push.cmd = "reload";
  push.args = std::move(args);
  push.ts_ms = 1700000000000 + static_cast<int64_t>(version);
  return push;
}

std::unique_ptr<controller::EtcdStore> LeadingStore(const std::vector<std::string>& endpoints,
                                                    const std::string& prefix) {
  controller::EtcdStoreOptions options;
  options.prefix = prefix;
  options.lease_ttl_s = 10;
  auto store = std::make_unique<controller::EtcdStore>(Client(endpoints), options, "ctl-test");
  std::atomic<bool> stop{false};
  auto epoch = store->Campaign(stop, [](const std::string& line) { std::cout << line << "\n"; });
  EXPECT_TRUE(epoch.ok()) << epoch.status().message();
  return epoch.ok() ? std::move(store) : nullptr;
}

// key -> {mod_revision, size} of every key under `prefix`.
std::map<std::string, std::pair<int64_t, size_t>> Pieces(EtcdClient& client,
                                                         const std::string& prefix) {
  std::map<std::string, std::pair<int64_t, size_t>> out;
  auto listed = client.List(prefix);
  EXPECT_TRUE(listed.ok()) << listed.status().message();
  if (listed.ok()) {
    for (const auto& kv : *listed) out[kv.key] = {kv.mod_revision, kv.value.size()};
  }
  return out;
}

size_t TotalBytes(const std::map<std::string, std::pair<int64_t, size_t>>& pieces) {
  size_t total = 0;
  for (const auto& [key, piece] : pieces) total += piece.second;
  return total;
}

TEST_F(EtcdTest, StoreSavesAFleetStateFarAboveEtcdsRequestLimitAndReadsItBackWhole) {
  auto client = Client(cluster_.client_urls());
  ASSERT_NE(client, nullptr);
  // The limit is real: one 2 MiB value does not go in (etcd refuses requests above 1.5 MiB).
  const std::string big = RandomConfig(2 * 1024 * 1024, 1);
  auto refused = client->Put("/t/one-key", big);
  ASSERT_FALSE(refused.ok());
  std::cout << "etcd refuses one 2 MiB value: " << refused.status().message() << "\n";

  // Three targets, 1.3 + 2.5 MiB of configs (one shared by two targets), a pending push.
  auto a = std::make_shared<const nlohmann::json>(
      nlohmann::json{{"config", RandomConfig(1300 * 1024, 2)}});
  auto b = std::make_shared<const nlohmann::json>(
      nlohmann::json{{"config", RandomConfig(2500 * 1024, 3)}});
  controller::PersistentState state;
  state.controller_id = "ctl-test";
  state.latest = 4;
  state.targets["group/a"].desired = Push(1, "a", a);
  state.targets["group/b"].desired = Push(2, "b", b);
  state.targets["group/c"].desired = Push(3, "c", a);
  state.targets["group/c"].pending = Push(4, "c", b);
  state.targets["group/c"].awaiting = {"lb1", "lb2"};
  state.agent_keys["lb1"] = std::string(40, 'k');
  const std::string expected = controller::EncodeState(state);

  auto leader = LeadingStore(cluster_.client_urls(), "/t/");
  ASSERT_NE(leader, nullptr);
  auto empty = leader->Load();
  ASSERT_TRUE(empty.ok()) << empty.status().message();
  EXPECT_EQ(empty->latest, 0u);
  const Clock::time_point start = Clock::now();
  const proto::Status saved = leader->Save(state);
  ASSERT_TRUE(saved.ok()) << saved.message();
  const auto before = Pieces(*client, "/t/blobs/");
  std::cout << "etcd store: " << expected.size() / 1024 << " KiB of state saved in "
            << MsSince(start) << " ms, as " << before.size() << " pieces\n";
  EXPECT_GE(TotalBytes(before), (1300 + 2500) * 1024u) << "a config is stored once";
  EXPECT_LT(TotalBytes(before), (1300 + 2500 + 64) * 1024u) << "a shared config is stored once";

  // Another controller (a standby that took over) reads the same state, byte for byte.
  controller::EtcdStore reader(Client(cluster_.client_urls()), {"/t/", 10, milliseconds(200)},
                               "ctl-other");
  auto loaded = reader.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(controller::EncodeState(*loaded), expected);
  // A shared config stays shared.
  EXPECT_EQ(loaded->targets["group/a"].desired->args, loaded->targets["group/c"].desired->args);

  // b's config replaced by a small one: b's pieces are deleted by the save that no longer names
  // it, and a's, unchanged, are not written again (same mod_revision).
  state.targets["group/b"].desired =
      Push(5, "b", std::make_shared<const nlohmann::json>(nlohmann::json{{"config", "small"}}));
  state.targets["group/c"].pending.reset();
  state.targets["group/c"].awaiting.clear();
  state.latest = 5;
  ASSERT_TRUE(leader->Save(state).ok());
  const auto after = Pieces(*client, "/t/blobs/");
  EXPECT_LT(TotalBytes(after), (1300 + 64) * 1024u) << "b's 2.5 MiB outlived the state naming it";
  std::vector<std::string> kept;  // a's pieces
  for (const auto& [key, piece] : after) {
    auto it = before.find(key);
    if (it != before.end() && it->second == piece) kept.push_back(key);
  }
  size_t kept_bytes = 0;
  for (const auto& key : kept) kept_bytes += after.at(key).second;
  EXPECT_GE(kept_bytes, 1300 * 1024u) << "a's config was written again";
  auto reloaded = reader.Load();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().message();
  EXPECT_EQ(controller::EncodeState(*reloaded), controller::EncodeState(state));

  // A piece changed behind the store's back is found, never loaded as a config.
  ASSERT_FALSE(kept.empty());
  ASSERT_TRUE(client->Put(kept.front(), "# not what was saved").ok());
  auto corrupt = reader.Load();
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.status().message().find("SHA-256"), std::string::npos)
      << corrupt.status().message();
}

TEST_F(EtcdTest, StoreReadsAStateSavedAsOneKeyByAnEarlierVersionAndMovesItToBlobs) {
  auto client = Client(cluster_.client_urls());
  ASSERT_NE(client, nullptr);
  controller::PersistentState state;
  state.latest = 7;
  state.targets["group/web"].desired =
      Push(7, "web", std::make_shared<const nlohmann::json>(nlohmann::json{{"config", "old"}}));
  ASSERT_TRUE(client->Put("/old/state", controller::EncodeState(state)).ok());

  auto leader = LeadingStore(cluster_.client_urls(), "/old/");
  ASSERT_NE(leader, nullptr);
  auto loaded = leader->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(controller::EncodeState(*loaded), controller::EncodeState(state));
  state.latest = 8;
  ASSERT_TRUE(leader->Save(state).ok());
  auto pointer = client->Get("/old/state");
  ASSERT_TRUE(pointer.ok() && pointer->has_value());
  EXPECT_EQ(nlohmann::json::parse((*pointer)->value).value("layout", ""), "blobs");
  EXPECT_FALSE(Pieces(*client, "/old/blobs/").empty());
  auto moved = leader->Load();
  ASSERT_TRUE(moved.ok()) << moved.status().message();
  EXPECT_EQ(controller::EncodeState(*moved), controller::EncodeState(state));
}

// etcd with TLS for clients and --client-cert-auth: certificates from a test PKI.
class EtcdTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // As in lb-controller (DaemonSignals): a TLS write to a member that has closed the
    // connection (one that refused the client certificate) raises SIGPIPE, which must be an
    // error return, not the end of the process.
    signal(SIGPIPE, SIG_IGN);
    std::filesystem::create_directories(dir_.File("pki"));
    pki_ = MakeTestPki(dir_.File("pki"));
    ASSERT_FALSE(HasFailure()) << "no test PKI";
    cluster_.UseTls(pki_);
    ASSERT_NO_FATAL_FAILURE(cluster_.Start());
  }
  std::unique_ptr<EtcdClient> TlsClient(std::vector<std::string> endpoints, std::string ca,
                                        std::string cert, std::string key) {
    EtcdOptions options;
    options.endpoints = std::move(endpoints);
    options.timeout = milliseconds(2000);
    options.ca_file = std::move(ca);
    options.cert_file = std::move(cert);
    options.key_file = std::move(key);
    auto client = EtcdClient::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status().message();
    return client.ok() ? std::move(*client) : nullptr;
  }

  TempDir dir_;
  TestPki pki_;
  EtcdCluster cluster_{dir_.path()};
};

TEST_F(EtcdTlsTest, VerifiedMembersAndAClientCertificateGoThroughAndAnythingLessIsRefused) {
  ASSERT_EQ(cluster_.client_url(0).rfind("https://127.0.0.1:", 0), 0u);
  auto good = TlsClient(cluster_.client_urls(), pki_.ca, pki_.client_cert, pki_.client_key);
  ASSERT_NE(good, nullptr);
  auto put = good->Put("/tls/k", "over TLS");
  ASSERT_TRUE(put.ok()) << put.status().message();
  auto got = good->Get("/tls/k");
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status().message();
  EXPECT_EQ((*got)->value, "over TLS");

  // One member only, so that each refusal is that member's.
  const std::vector<std::string> one = {cluster_.client_url(0)};
  // A member whose certificate another CA signed (a man in the middle): not trusted.
  auto stranger = TlsClient(one, pki_.other_ca, pki_.client_cert, pki_.client_key);
  ASSERT_NE(stranger, nullptr);
  auto refused = stranger->Get("/tls/k");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("its TLS certificate is not trusted"),
            std::string::npos)
      << refused.status().message();
  // No client certificate: etcd lets nobody in without one.
  auto anonymous = TlsClient(one, pki_.ca, "", "");
  ASSERT_NE(anonymous, nullptr);
  auto no_cert = anonymous->Get("/tls/k");
  ASSERT_FALSE(no_cert.ok());
  EXPECT_NE(no_cert.status().message().find("refuses this one, or none: etcd_cert_file"),
            std::string::npos)
      << no_cert.status().message();
  // A key that is not the certificate's is refused before any connection, naming both files.
  EtcdOptions mismatched;
  mismatched.endpoints = one;
  mismatched.ca_file = pki_.ca;
  mismatched.cert_file = pki_.client_cert;
  mismatched.key_file = pki_.server_key;
  auto created = EtcdClient::Create(mismatched);
  ASSERT_FALSE(created.ok());
  EXPECT_NE(created.status().message().find(pki_.server_key + ": not the PEM private key of " +
                                            pki_.client_cert),
            std::string::npos)
      << created.status().message();
  // Plaintext to a TLS member: no answer is taken for one.
  auto plaintext = Client({"http://127.0.0.1:" + one[0].substr(one[0].rfind(':') + 1)});
  EXPECT_FALSE(plaintext->Get("/tls/k").ok());
}

TEST_F(EtcdTlsTest, ControllerLeadsOverTlsAndKeepsItsStateThere) {
  FleetController::Options options;
  options.lbctl = LBCTL_BINARY;
  options.dir = dir_.File("ctl");
  std::filesystem::create_directories(options.dir);
  options.id = "ctl-tls";
  options.etcd_endpoints = cluster_.endpoints();
  options.etcd_ca_file = pki_.ca;
  options.etcd_cert_file = pki_.client_cert;
  options.etcd_key_file = pki_.client_key;
  FleetController controller(options);
  ASSERT_NO_FATAL_FAILURE(controller.Start());  // it serves: it won the election over TLS
  const std::string config = dir_.File("push.cfg");
  WriteFile(config, "global\n  log stdout format raw local0\n");
  CommandResult pushed = controller.Lbctl(
      {"push", config, "--group", "web", "--allow-no-match", "--json", "--timeout", "10"},
      milliseconds(30000));
  ASSERT_EQ(pushed.exit_code, 0) << pushed.Describe();
  auto reader = TlsClient(cluster_.client_urls(), pki_.ca, pki_.client_cert, pki_.client_key);
  auto state = reader->Get("/lb-controller/state");
  ASSERT_TRUE(state.ok() && state->has_value()) << state.status().message();
  EXPECT_EQ(nlohmann::json::parse((*state)->value).value("layout", ""), "blobs");
  auto leader = reader->Get("/lb-controller/leader");
  ASSERT_TRUE(leader.ok() && leader->has_value());
  EXPECT_NE((*leader)->value.find("ctl-tls"), std::string::npos) << (*leader)->value;
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
    for (const char* hangs : {"/v3/lease/keepalive", "/v3/lease/revoke"}) {
      server_.Post(hangs, [](const httplib::Request&, httplib::Response& res) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        res.set_content("{}", "application/json");
      });
    }
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

TEST(EtcdClientLimitsTest, ACallsOwnDeadlineBoundsItOverEveryMember) {
  // Three members that hang (a silent partition): without a deadline a keepalive would cost
  // etcd_timeout on each, 3 s, longer than the lease it keeps.
  BadMember a, b, c;
  EtcdOptions options;
  options.endpoints = {a.url(), b.url(), c.url()};
  options.timeout = milliseconds(1000);
  auto client = EtcdClient::Create(options);
  ASSERT_TRUE(client.ok());
  const auto start = Clock::now();
  auto ttl = (*client)->KeepAlive(7, start + milliseconds(300));
  const long long took = MsSince(start);
  ASSERT_FALSE(ttl.ok());
  EXPECT_EQ(ttl.status().code(), proto::ErrorCode::kUnavailable) << ttl.status().message();
  EXPECT_NE(ttl.status().message().find("deadline passed"), std::string::npos)
      << ttl.status().message();
  EXPECT_LT(took, 800) << "the keepalive outlived its deadline: " << ttl.status().message();
  const auto revoke_start = Clock::now();
  EXPECT_FALSE((*client)->Revoke(7, revoke_start + milliseconds(300)).ok());
  EXPECT_LT(MsSince(revoke_start), 800);
}

}  // namespace
}  // namespace lb::testing
