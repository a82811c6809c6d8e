// EtcdClient's pure half: the JSON bodies it sends to etcd's v3 gateway and how it reads (and
// refuses) replies, with no etcd. The client against a real 3-member etcd is
// tests/integration/etcd_test.cc.
#include "etcd_client.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "lb/common/base64.h"

namespace lb::controller {
namespace {

using nlohmann::json;

std::string B64(std::string_view s) { return common::Base64Encode(s); }

TEST(EtcdClientTest, RequestsCarryKeysAndValuesInBase64AndNumbersAsStrings) {
  EXPECT_EQ(EtcdRangeRequest("/lb/state"), json({{"key", B64("/lb/state")}}));
  EXPECT_EQ(EtcdPutRequest("k", std::string("v\0\xff", 3), 0),
            json({{"key", B64("k")}, {"value", B64(std::string("v\0\xff", 3))}}));
  EXPECT_EQ(EtcdPutRequest("k", "v", 7587)["lease"], "7587");
  EXPECT_EQ(EtcdLeaseGrantRequest(3), json({{"TTL", "3"}}));
  EXPECT_EQ(EtcdLeaseIdRequest(-5), json({{"ID", "-5"}}));
}

TEST(EtcdClientTest, TxnRequestNamesEachCompareTargetAndBranch) {
  EtcdTxn txn;
  txn.compare = {{"/lb/leader", EtcdCompare::Target::kCreate, 0},
                 {"/lb/state", EtcdCompare::Target::kMod, 41},
                 {"/lb/x", EtcdCompare::Target::kVersion, 2}};
  txn.success = {EtcdOp::Put("/lb/state", "{}", 9), EtcdOp::Delete("/lb/x")};
  txn.failure = {EtcdOp::Range("/lb/leader")};
  const json body = EtcdTxnRequest(txn);
  ASSERT_EQ(body["compare"].size(), 3u);
  EXPECT_EQ(body["compare"][0], json({{"key", B64("/lb/leader")},
                                      {"result", "EQUAL"},
                                      {"target", "CREATE"},
                                      {"create_revision", "0"}}));
  EXPECT_EQ(body["compare"][1]["target"], "MOD");
  EXPECT_EQ(body["compare"][1]["mod_revision"], "41");
  EXPECT_EQ(body["compare"][2]["target"], "VERSION");
  EXPECT_EQ(body["compare"][2]["version"], "2");
  EXPECT_EQ(body["success"][0]["request_put"]["lease"], "9");
  EXPECT_EQ(body["success"][1]["request_delete_range"]["key"], B64("/lb/x"));
  EXPECT_EQ(body["failure"][0]["request_range"]["key"], B64("/lb/leader"));
}

TEST(EtcdClientTest, ReadsRangeRepliesAsEtcdWritesThem) {
  // Measured on etcd 3.4: numbers as strings, false and zero fields left out.
  const json reply = json::parse(R"({"header":{"revision":"2"},"kvs":[{"key":")" + B64("/x/l") +
                                 R"(","create_revision":"2","mod_revision":"3","version":"2",)"
                                 R"("value":")" +
                                 B64("hi") +
                                 R"(","lease":"4111120418152589831"}],)"
                                 R"("count":"1"})");
  auto kvs = ParseEtcdRangeReply(reply);
  ASSERT_TRUE(kvs.ok()) << kvs.status().message();
  ASSERT_EQ(kvs->size(), 1u);
  EXPECT_EQ((*kvs)[0].key, "/x/l");
  EXPECT_EQ((*kvs)[0].value, "hi");
  EXPECT_EQ((*kvs)[0].create_revision, 2);
  EXPECT_EQ((*kvs)[0].mod_revision, 3);
  EXPECT_EQ((*kvs)[0].version, 2);
  EXPECT_EQ((*kvs)[0].lease, 4111120418152589831);
  // No key: no "kvs" at all.
  auto none = ParseEtcdRangeReply(json::parse(R"({"header":{"revision":"3"}})"));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  // A key with an empty value: "value" left out.
  auto empty = ParseEtcdRangeReply({{"kvs", {{{"key", B64("k")}, {"mod_revision", "4"}}}}});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ((*empty)[0].value, "");
}

TEST(EtcdClientTest, RefusesMalformedReplies) {
  for (const char* text : {
           R"([])",
           R"({"kvs": {}})",
           R"({"kvs": [{"value": "aGk="}]})",                       // no key
           R"({"kvs": [{"key": "!!!"}]})",                          // not base64
           R"({"kvs": [{"key": "aGk=", "mod_revision": "12x"}]})",  // not a number
           R"({"kvs": [{"key": "aGk=", "mod_revision": true}]})",
           R"({"kvs": [{"key": 5}]})",
       }) {
    EXPECT_FALSE(ParseEtcdRangeReply(json::parse(text)).ok()) << text;
  }
  EXPECT_FALSE(ParseEtcdRevision(json::parse(R"({})")).ok());
  EXPECT_FALSE(ParseEtcdRevision(json::parse(R"({"header": {}})")).ok());
  EXPECT_FALSE(
      ParseEtcdTxnReply(json::parse(R"({"header":{"revision":"2"},"succeeded":"yes"})")).ok());
  EXPECT_FALSE(
      ParseEtcdTxnReply(json::parse(R"({"header":{"revision":"2"},"responses":{}})")).ok());
  EXPECT_FALSE(ParseEtcdLeaseGrantReply(json::parse(R"({"header":{"revision":"2"}})")).ok());
  EXPECT_FALSE(ParseEtcdLeaseGrantReply(json::parse(R"({"ID":"12","TTL":"0"})")).ok());
  EXPECT_FALSE(ParseEtcdKeepAliveReply(json::parse(R"({"ID":"12","TTL":"3"})")).ok());
  EXPECT_FALSE(
      ParseEtcdKeepAliveReply(json::parse(R"({"error":{"grpc_code":14,"message":"unavailable"}})"))
          .ok());
}

TEST(EtcdClientTest, TxnReplyWithoutSucceededIsAFailedCompare) {
  // Measured: a compare that did not hold leaves "succeeded" out; the failure branch's range
  // comes back in "responses".
  const json failed = json::parse(R"({"header":{"revision":"7"},"responses":[{"response_range":)"
                                  R"({"header":{"revision":"7"},"kvs":[{"key":")" +
                                  B64("/lb/leader") + R"(","create_revision":"5"}]}}]})");
  auto result = ParseEtcdTxnReply(failed);
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_FALSE(result->succeeded);
  EXPECT_EQ(result->revision, 7);
  ASSERT_EQ(result->ranged.size(), 1u);
  EXPECT_EQ(result->ranged[0].create_revision, 5);

  auto won = ParseEtcdTxnReply(json::parse(
      R"({"header":{"revision":"8"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"8"}}}]})"));
  ASSERT_TRUE(won.ok());
  EXPECT_TRUE(won->succeeded);
  EXPECT_EQ(won->revision, 8);
  EXPECT_TRUE(won->ranged.empty());
}

TEST(EtcdClientTest, LeaseRepliesGiveIdAndTtlAndAGoneLeaseIsZero) {
  auto lease = ParseEtcdLeaseGrantReply(
      json::parse(R"({"header":{"revision":"1"},"ID":"4111120418152589829","TTL":"3"})"));
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  EXPECT_EQ(lease->id, 4111120418152589829);
  EXPECT_EQ(lease->ttl_s, 3);
  auto alive = ParseEtcdKeepAliveReply(
      json::parse(R"({"result":{"header":{"revision":"1"},"ID":"41","TTL":"3"}})"));
  ASSERT_TRUE(alive.ok());
  EXPECT_EQ(*alive, 3);
  // Measured: the keepalive of a revoked or expired lease answers without TTL.
  auto gone =
      ParseEtcdKeepAliveReply(json::parse(R"({"result":{"header":{"revision":"3"},"ID":"41"}})"));
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(*gone, 0);
}

TEST(EtcdClientTest, EndpointsMustBeHttpOrHttpsHostPort) {
  auto ok = ParseEtcdEndpoint("http://127.0.0.1:2379");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->host, "127.0.0.1");
  EXPECT_EQ(ok->port, 2379);
  EXPECT_FALSE(ok->tls);
  EXPECT_EQ(ParseEtcdEndpoint("http://[::1]:2379/")->host, "::1");
  auto tls = ParseEtcdEndpoint("https://etcd1.example:2379");
  ASSERT_TRUE(tls.ok());
  EXPECT_EQ(tls->host, "etcd1.example");
  EXPECT_TRUE(tls->tls);
  EXPECT_EQ(ParseEtcdEndpoint("https://[fd00::5]:2379")->host, "fd00::5");
  for (const char* bad : {"127.0.0.1:2379", "ftp://h:2379", "http://h", "http://h:0",
                          "http://fe80::1", "http://[]:2379", "http://fd00::5:2379",
                          "http://h:99999", "http://:2379", "http://h:2379/v3", "http://h:23x"}) {
    auto parsed = ParseEtcdEndpoint(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_NE(parsed.status().message().find(bad), std::string::npos);
    }
  }
  EXPECT_FALSE(EtcdClient::Create({}).ok());
}

TEST(EtcdClientTest, TlsSettingsAreCheckedBeforeAnyConnection) {
  auto create = [](std::vector<std::string> endpoints, std::string ca, std::string cert,
                   std::string key) {
    EtcdOptions options;
    options.endpoints = std::move(endpoints);
    options.ca_file = std::move(ca);
    options.cert_file = std::move(cert);
    options.key_file = std::move(key);
    return EtcdClient::Create(std::move(options));
  };
  // Usable files are checked in EtcdTlsTest (real certificates); here, nothing is connected to.
  EXPECT_TRUE(create({"https://h1:2379", "https://h2:2379"}, "", "", "").ok())
      << "the system's CAs, no client certificate";
  struct Case {
    std::vector<std::string> endpoints;
    std::string ca, cert, key, message;
  };
  for (const Case& c : std::vector<Case>{
           {{"http://h1:2379", "https://h2:2379"}, "", "", "", "mix http:// and https://"},
           {{"https://h1:2379"}, "", "/dev/null", "", "both its certificate and its key"},
           {{"http://h1:2379"}, "/dev/null", "", "", "are for https:// endpoints"},
           {{"https://h1:2379"}, "/nonexistent/ca.pem", "", "", "cannot read /nonexistent/ca.pem"},
           {{"https://h1:2379"}, "/dev/null", "", "", "/dev/null: not a PEM CA certificate bundle"},
           {{"https://h1:2379"}, "", "/dev/null", "/dev/null", "/dev/null: not a PEM certificate"},
       }) {
    auto created = create(c.endpoints, c.ca, c.cert, c.key);
    ASSERT_FALSE(created.ok()) << c.message;
    EXPECT_NE(created.status().message().find(c.message), std::string::npos)
        << created.status().message();
  }
}

}  // namespace
}  // namespace lb::controller
