// EtcdClient: the part of etcd's v3 API that lb-controller uses, spoken as JSON over HTTP (the
// gRPC gateway of etcd 3.4, `/v3/...`) with cpp-httplib: kv range and put, txn, lease grant,
// keepalive and revoke. ARCHITECTURE.md ("A highly available controller") says what they serve.
//
// DESIGN: the request bodies and the reading of replies are pure functions (below the class),
// so that the mapping is unit-tested without an etcd; the class only moves them over HTTP.
//   - Every call has a deadline: connect, send and each read are bounded by `timeout`, and the
//     whole reply must have arrived within it. A call that fails on one endpoint (connection
//     refused or reset, deadline, an HTTP 5xx, a reply that is not JSON) is tried once on each
//     of the others, starting from the last endpoint that answered: one member down costs at
//     most one `timeout`. An answer of etcd itself (a failed compare, HTTP 4xx with etcd's
//     message) is final.
//   - A reply is untrusted: at most `max_reply_bytes` are read; every field used is checked
//     (numbers are int64 as JSON strings, bytes are base64, a false or zero field is absent,
//     as protobuf's JSON mapping does); anything else is kInternal naming the field.
// Errors: kUnavailable "etcd <path>: no member answered: <endpoint>: <why>; ..." when no member
// gave an answer (down, partitioned, too slow, no quorum to answer with): worth another try;
// kInternal "etcd <path>: <why>" for an answer that says no (HTTP 4xx with etcd's message, a
// reply too large or malformed): another try would get the same.
// Thread-safety: every call may run on any thread at the same time (each makes its own HTTP
// connection); the endpoint that answered last is shared under a mutex.
// Signals: an https:// call writing to a member that closed the connection raises SIGPIPE
// (OpenSSL writes with write(2)); the process must ignore it, as lb-controller does.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lb/proto/status.h"

namespace lb::controller {

struct EtcdOptions {
  // Client URLs of the members, "http://127.0.0.1:2379" or "https://etcd1:2379" (all the same
  // scheme). https:// verifies the member's certificate (against ca_file, else the system's
  // CAs) and its host name, and sends the client certificate when cert_file is set (etcd's
  // --client-cert-auth).
  std::vector<std::string> endpoints;
  std::string ca_file;    // PEM CA bundle that signed the members' certificates
  std::string cert_file;  // PEM client certificate, with key_file (both or neither)
  std::string key_file;
  // The deadline of one attempt on one endpoint (connect, send, the whole reply). Loopback etcd
  // answers in about a millisecond; a member that is down or partitioned costs this much once.
  std::chrono::milliseconds timeout{1000};
  // The largest reply read; more is an error. The state document holds whole configs.
  std::size_t max_reply_bytes = 128 * 1024 * 1024;
};

// One key as etcd returns it.
struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;  // the revision that created it (since its last deletion)
  int64_t mod_revision = 0;     // the revision of its last change
  int64_t version = 0;          // changes since it was created
  int64_t lease = 0;            // 0: none
};

// A compare of a txn: `key`'s create_revision, mod_revision or version EQUAL to `value` (0 for a
// key that does not exist).
struct EtcdCompare {
  enum class Target { kCreate, kMod, kVersion };
  std::string key;
  Target target = Target::kMod;
  int64_t value = 0;
};

// One operation of a txn branch.
struct EtcdOp {
  enum class Kind { kPut, kRange, kDelete };
  Kind kind = Kind::kRange;
  std::string key;
  std::string value;  // kPut
  int64_t lease = 0;  // kPut; 0: none

  static EtcdOp Put(std::string key, std::string value, int64_t lease = 0) {
    return {Kind::kPut, std::move(key), std::move(value), lease};
  }
  static EtcdOp Range(std::string key) { return {Kind::kRange, std::move(key), "", 0}; }
  static EtcdOp Delete(std::string key) { return {Kind::kDelete, std::move(key), "", 0}; }
};

struct EtcdTxn {
  std::vector<EtcdCompare> compare;  // all must hold
  std::vector<EtcdOp> success;       // run when they do
  std::vector<EtcdOp> failure;       // run when one does not
};

struct EtcdTxnResult {
  bool succeeded = false;
  int64_t revision = 0;  // the store's revision after the txn (the header's)
  // The keys the branch that ran read (its kRange ops, in order, the ranges concatenated).
  std::vector<EtcdKeyValue> ranged;
};

struct EtcdLease {
  int64_t id = 0;
  int64_t ttl_s = 0;  // as granted
};

// ---- pure: request bodies and replies ----

// One key; with `range_end`, every key in [key, range_end) (EtcdPrefixEnd: a prefix's keys).
nlohmann::json EtcdRangeRequest(std::string_view key, std::string_view range_end = {},
                                bool keys_only = false);
// The range_end that makes a range of `prefix` cover every key starting with it (its last byte
// below 0xff plus one, as clientv3.GetPrefixRangeEnd).
std::string EtcdPrefixEnd(std::string_view prefix);
nlohmann::json EtcdPutRequest(std::string_view key, std::string_view value, int64_t lease);
nlohmann::json EtcdTxnRequest(const EtcdTxn& txn);
nlohmann::json EtcdLeaseGrantRequest(int64_t ttl_s);
nlohmann::json EtcdLeaseIdRequest(int64_t id);  // keepalive and revoke

// The `kvs` of a range reply (none: an empty list).
proto::Result<std::vector<EtcdKeyValue>> ParseEtcdRangeReply(const nlohmann::json& reply);
// The header's revision of a put (or any) reply.
proto::Result<int64_t> ParseEtcdRevision(const nlohmann::json& reply);
proto::Result<EtcdTxnResult> ParseEtcdTxnReply(const nlohmann::json& reply);
proto::Result<EtcdLease> ParseEtcdLeaseGrantReply(const nlohmann::json& reply);
// The lease's remaining TTL in seconds after a keepalive; 0 when the lease no longer exists
// (expired or revoked: etcd then leaves TTL out).
proto::Result<int64_t> ParseEtcdKeepAliveReply(const nlohmann::json& reply);

// "http://host:port" or "https://host:port" → {host, port, tls}; kBadRequest naming what is
// wrong (another scheme, no port, a path).
struct EtcdEndpoint {
  std::string host;
  int port = 0;
  bool tls = false;  // https://
};
proto::Result<EtcdEndpoint> ParseEtcdEndpoint(std::string_view url);

class EtcdClient {
 public:
  // kBadRequest when there is no endpoint, one is not http(s)://host:port, the schemes are
  // mixed, or a CA or certificate file is unreadable, half given or given for http://.
  static proto::Result<std::unique_ptr<EtcdClient>> Create(EtcdOptions options);

  // The key, or nullopt when it does not exist.
  proto::Result<std::optional<EtcdKeyValue>> Get(std::string_view key);
  // Every key starting with `prefix`, in key order (without values with `keys_only`).
  proto::Result<std::vector<EtcdKeyValue>> List(std::string_view prefix, bool keys_only = false);
  // Puts the key; the revision of the put.
  proto::Result<int64_t> Put(std::string_view key, std::string_view value, int64_t lease = 0);
  proto::Result<EtcdTxnResult> Txn(const EtcdTxn& txn);
  proto::Result<EtcdLease> GrantLease(int64_t ttl_s);
  // The remaining TTL; 0: the lease is gone (expired or revoked), keeping it alive is over.
  // `deadline` bounds the whole call, every member tried included (a keepalive that ends after
  // the lease is of no use, and must not hold up a controller that stops).
  using Clock = std::chrono::steady_clock;
  proto::Result<int64_t> KeepAlive(int64_t lease,
                                   std::optional<Clock::time_point> deadline = std::nullopt);
  proto::Status Revoke(int64_t lease, std::optional<Clock::time_point> deadline = std::nullopt);

  const EtcdOptions& options() const { return options_; }

 private:
  EtcdClient(EtcdOptions options, std::vector<EtcdEndpoint> endpoints);
  // POSTs `body` to `path` with failover (see the DESIGN); the reply's JSON object. With
  // `deadline`, no attempt runs past it and no member is tried after it.
  proto::Result<nlohmann::json> Call(const std::string& path, const nlohmann::json& body,
                                     std::optional<Clock::time_point> deadline = std::nullopt);

  const EtcdOptions options_;
  const std::vector<EtcdEndpoint> endpoints_;
  std::mutex mu_;
  std::size_t preferred_ = 0;  // guarded by mu_
};

}  // namespace lb::controller
