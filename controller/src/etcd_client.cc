#include "etcd_client.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "lb/common/base64.h"

namespace lb::controller {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;
using Clock = std::chrono::steady_clock;

Status Bad(const std::string& what) { return Status(ErrorCode::kInternal, what); }

// An int64 of protobuf's JSON mapping: a string of digits (or a JSON integer); absent is 0.
Result<int64_t> Int64Field(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return int64_t{0};
  if (it->is_number_integer()) return it->get<int64_t>();
  if (!it->is_string()) return Bad(std::string("\"") + key + "\" is not an integer");
  const std::string& text = it->get_ref<const std::string&>();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return Bad(std::string("\"") + key + "\" is not an integer: \"" + text.substr(0, 32) + "\"");
  }
  return value;
}

// Bytes: base64 in a string; absent is "".
Result<std::string> BytesField(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return std::string();
  if (!it->is_string()) return Bad(std::string("\"") + key + "\" is not a string");
  auto bytes = common::Base64Decode(it->get_ref<const std::string&>());
  if (!bytes) return Bad(std::string("\"") + key + "\" is not base64");
  return *bytes;
}

Result<EtcdKeyValue> ParseKeyValue(const json& kv) {
  if (!kv.is_object()) return Bad("a key-value is not an object");
  EtcdKeyValue out;
  auto key = BytesField(kv, "key");
  if (!key.ok()) return key.status();
  if (key->empty()) return Bad("a key-value has no \"key\"");
  out.key = std::move(*key);
  auto value = BytesField(kv, "value");
  if (!value.ok()) return value.status();
  out.value = std::move(*value);
  for (auto [name, field] : {std::pair{"create_revision", &out.create_revision},
                             std::pair{"mod_revision", &out.mod_revision},
                             std::pair{"version", &out.version}, std::pair{"lease", &out.lease}}) {
    auto n = Int64Field(kv, name);
    if (!n.ok()) return n.status();
    *field = *n;
  }
  return out;
}

Result<std::vector<EtcdKeyValue>> ParseKvs(const json& reply) {
  std::vector<EtcdKeyValue> out;
  auto it = reply.find("kvs");
  if (it == reply.end()) return out;
  if (!it->is_array()) return Bad("\"kvs\" is not a list");
  for (const auto& kv : *it) {
    auto parsed = ParseKeyValue(kv);
    if (!parsed.ok()) return parsed.status();
    out.push_back(std::move(*parsed));
  }
  return out;
}

json OpJson(const EtcdOp& op) {
  switch (op.kind) {
    case EtcdOp::Kind::kPut:
      return {{"request_put", EtcdPutRequest(op.key, op.value, op.lease)}};
    case EtcdOp::Kind::kRange:
      return {{"request_range", EtcdRangeRequest(op.key)}};
    case EtcdOp::Kind::kDelete:
      return {{"request_delete_range", {{"key", common::Base64Encode(op.key)}}}};
  }
  return json::object();
}

// etcd's own error in a reply: {"error": "...", "message": "...", "code": N} (or, from the
// streaming keepalive, {"error": {"message", "grpc_code", ...}}).
std::optional<std::string> EtcdError(const json& reply) {
  auto it = reply.find("error");
  if (it == reply.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("message") && (*it)["message"].is_string()) {
    return (*it)["message"].get<std::string>();
  }
  return std::string("an error etcd did not describe");
}

}  // namespace

json EtcdRangeRequest(std::string_view key, std::string_view range_end, bool keys_only) {
  json out = {{"key", common::Base64Encode(key)}};
  if (!range_end.empty()) out["range_end"] = common::Base64Encode(range_end);
  if (keys_only) out["keys_only"] = true;
  return out;
}

std::string EtcdPrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

json EtcdPutRequest(std::string_view key, std::string_view value, int64_t lease) {
  json out = {{"key", common::Base64Encode(key)}, {"value", common::Base64Encode(value)}};
  if (lease != 0) out["lease"] = std::to_string(lease);
  return out;
}

json EtcdTxnRequest(const EtcdTxn& txn) {
  json compare = json::array();
  for (const EtcdCompare& c : txn.compare) {
    json one = {{"key", common::Base64Encode(c.key)}, {"result", "EQUAL"}};
    switch (c.target) {
      case EtcdCompare::Target::kCreate:
        one["target"] = "CREATE";
        one["create_revision"] = std::to_string(c.value);
        break;
      case EtcdCompare::Target::kMod:
        one["target"] = "MOD";
        one["mod_revision"] = std::to_string(c.value);
        break;
      case EtcdCompare::Target::kVersion:
        one["target"] = "VERSION";
        one["version"] = std::to_string(c.value);
        break;
    }
    compare.push_back(std::move(one));
  }
  json success = json::array();
  for (const EtcdOp& op : txn.success) success.push_back(OpJson(op));
  json failure = json::array();
  for (const EtcdOp& op : txn.failure) failure.push_back(OpJson(op));
  return {{"compare", compare}, {"success", success}, {"failure", failure}};
}

json EtcdLeaseGrantRequest(int64_t ttl_s) { return {{"TTL", std::to_string(ttl_s)}}; }

json EtcdLeaseIdRequest(int64_t id) { return {{"ID", std::to_string(id)}}; }

Result<std::vector<EtcdKeyValue>> ParseEtcdRangeReply(const json& reply) {
  if (!reply.is_object()) return Bad("the reply is not an object");
  return ParseKvs(reply);
}

Result<int64_t> ParseEtcdRevision(const json& reply) {
  if (!reply.is_object()) return Bad("the reply is not an object");
  auto header = reply.find("header");
  if (header == reply.end() || !header->is_object()) return Bad("the reply has no \"header\"");
  auto revision = Int64Field(*header, "revision");
  if (!revision.ok()) return revision.status();
  if (*revision <= 0) return Bad("the reply's header has no revision");
  return *revision;
}

Result<EtcdTxnResult> ParseEtcdTxnReply(const json& reply) {
  EtcdTxnResult out;
  auto revision = ParseEtcdRevision(reply);
  if (!revision.ok()) return revision.status();
  out.revision = *revision;
  // A false field is left out: no "succeeded" means the compare did not hold.
  if (auto it = reply.find("succeeded"); it != reply.end()) {
    if (!it->is_boolean()) return Bad("\"succeeded\" is not a boolean");
    out.succeeded = it->get<bool>();
  }
  auto responses = reply.find("responses");
  if (responses == reply.end()) return out;
  if (!responses->is_array()) return Bad("\"responses\" is not a list");
  for (const auto& response : *responses) {
    if (!response.is_object()) return Bad("a txn response is not an object");
    auto range = response.find("response_range");
    if (range == response.end()) continue;
    if (!range->is_object()) return Bad("\"response_range\" is not an object");
    auto kvs = ParseKvs(*range);
    if (!kvs.ok()) return kvs.status();
    for (auto& kv : *kvs) out.ranged.push_back(std::move(kv));
  }
  return out;
}

Result<EtcdLease> ParseEtcdLeaseGrantReply(const json& reply) {
  if (!reply.is_object()) return Bad("the reply is not an object");
  if (auto error = EtcdError(reply)) return Bad(*error);
  EtcdLease out;
  auto id = Int64Field(reply, "ID");
  if (!id.ok()) return id.status();
  auto ttl = Int64Field(reply, "TTL");
  if (!ttl.ok()) return ttl.status();
  if (*id == 0 || *ttl <= 0) return Bad("the lease grant has no ID or TTL");
  out.id = *id;
  out.ttl_s = *ttl;
  return out;
}

Result<int64_t> ParseEtcdKeepAliveReply(const json& reply) {
  if (!reply.is_object()) return Bad("the reply is not an object");
  if (auto error = EtcdError(reply)) return Bad(*error);
  // The gateway streams keepalive answers: {"result": {...}}.
  auto result = reply.find("result");
  if (result == reply.end() || !result->is_object()) return Bad("the reply has no \"result\"");
  auto ttl = Int64Field(*result, "TTL");
  if (!ttl.ok()) return ttl.status();
  return std::max<int64_t>(*ttl, 0);
}

Result<EtcdEndpoint> ParseEtcdEndpoint(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return Status(ErrorCode::kBadRequest, "etcd endpoint \"" + std::string(url) + "\": " + why);
  };
  constexpr std::string_view kHttp = "http://";
  constexpr std::string_view kHttps = "https://";
  const bool tls = url.substr(0, kHttps.size()) == kHttps;
  if (!tls && url.substr(0, kHttp.size()) != kHttp)
    return bad("must start with http:// or https://");
  std::string_view rest = url.substr(tls ? kHttps.size() : kHttp.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) return bad("must not have a path");
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) return bad("needs a port (http://host:2379)");
  std::string_view host = rest.substr(0, colon);
  std::string_view port_text = rest.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find_first_of("[]:") != std::string_view::npos) {
    return bad("an IPv6 address goes in brackets, with the port after: http://[fd00::5]:2379");
  }
  if (host.empty() || host == "[]") return bad("has no host");
  int port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port <= 0 ||
      port > 65535) {
    return bad("the port must be 1 to 65535");
  }
  return EtcdEndpoint{std::string(host), port, tls};
}

namespace {

// Loads the CA bundle, the client certificate and its key as the TLS client will, and checks
// that the key is the certificate's. kBadRequest naming the file and OpenSSL's reason.
Status CheckTlsFiles(const EtcdOptions& options) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) return Status(ErrorCode::kInternal, "OpenSSL could not make a TLS context");
  auto refused = [](const std::string& file, const std::string& what) {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    char reason[256] = {};
    ERR_error_string_n(code, reason, sizeof reason);
    return Status(ErrorCode::kBadRequest, file + ": " + what + " (" + reason + ")");
  };
  ERR_clear_error();
  if (!options.ca_file.empty() &&
      SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr) != 1) {
    return refused(options.ca_file, "not a PEM CA certificate bundle");
  }
  if (options.cert_file.empty()) return Status::Ok();
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), options.cert_file.c_str()) != 1) {
    return refused(options.cert_file, "not a PEM certificate");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return refused(options.key_file, "not the PEM private key of " + options.cert_file);
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return refused(options.key_file, "not the PEM private key of " + options.cert_file);
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<EtcdClient>> EtcdClient::Create(EtcdOptions options) {
  if (options.endpoints.empty()) {
    return Status(ErrorCode::kBadRequest, "no etcd endpoint given");
  }
  std::vector<EtcdEndpoint> endpoints;
  for (const auto& url : options.endpoints) {
    auto endpoint = ParseEtcdEndpoint(url);
    if (!endpoint.ok()) return endpoint.status();
    if (!endpoints.empty() && endpoint->tls != endpoints.front().tls) {
      return Status(ErrorCode::kBadRequest,
                    "etcd endpoints mix http:// and https://: one cluster speaks one of them");
    }
    endpoints.push_back(std::move(*endpoint));
  }
  const bool tls = endpoints.front().tls;
  if (options.cert_file.empty() != options.key_file.empty()) {
    return Status(ErrorCode::kBadRequest,
                  "an etcd client certificate needs both its certificate and its key file");
  }
  if (!tls && (!options.ca_file.empty() || !options.cert_file.empty())) {
    return Status(ErrorCode::kBadRequest,
                  "etcd CA and client certificate files are for https:// endpoints");
  }
  // Unreadable or unusable files are refused now, with their names, not at every call as a
  // handshake that fails for no stated reason.
  for (const std::string* file : {&options.ca_file, &options.cert_file, &options.key_file}) {
    if (!file->empty() && access(file->c_str(), R_OK) != 0) {
      return Status(ErrorCode::kBadRequest, "cannot read " + *file + ": " + std::strerror(errno));
    }
  }
  if (tls) {
    if (Status usable = CheckTlsFiles(options); !usable.ok()) return usable;
  }
  return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(options), std::move(endpoints)));
}

EtcdClient::EtcdClient(EtcdOptions options, std::vector<EtcdEndpoint> endpoints)
    : options_(std::move(options)), endpoints_(std::move(endpoints)) {}

Result<json> EtcdClient::Call(const std::string& path, const json& body,
                              std::optional<Clock::time_point> call_deadline) {
  const std::string text = body.dump();
  size_t first = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first = preferred_;
  }
  std::string failures;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    const size_t index = (first + i) % endpoints_.size();
    const EtcdEndpoint& endpoint = endpoints_[index];
    const std::string& name = options_.endpoints[index];
    auto failed = [&](const std::string& why) {
      failures += (failures.empty() ? "" : "; ") + name + ": " + why;
    };
    const Clock::time_point now = Clock::now();
    if (call_deadline && now >= *call_deadline) {
      failed("not tried: the call's deadline passed");
      break;
    }
    const Clock::time_point deadline =
        call_deadline ? std::min(now + options_.timeout, *call_deadline) : now + options_.timeout;
    const auto attempt =
        std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now),
                 std::chrono::milliseconds(1));
    // https: the server's certificate is verified (against ca_file, else the system's CAs) and
    // must name the endpoint's host; the client certificate is sent when one is set. (Host and
    // port given apart: httplib's URL form takes no IPv6 address with letters in it.)
    std::unique_ptr<httplib::ClientImpl> owned;
    httplib::SSLClient* tls_client = nullptr;
    if (endpoint.tls) {
      auto tls = std::make_unique<httplib::SSLClient>(endpoint.host, endpoint.port,
                                                      options_.cert_file, options_.key_file);
      tls->enable_server_certificate_verification(true);
      if (!options_.ca_file.empty()) tls->set_ca_cert_path(options_.ca_file);
      tls_client = tls.get();
      owned = std::move(tls);
    } else {
      owned = std::make_unique<httplib::ClientImpl>(endpoint.host, endpoint.port);
    }
    httplib::ClientImpl& client = *owned;
    client.set_connection_timeout(attempt);
    client.set_read_timeout(attempt);
    client.set_write_timeout(attempt);
    client.set_keep_alive(false);
    httplib::Request request;
    request.method = "POST";
    request.path = path;
    request.body = text;
    request.set_header("Content-Type", "application/json");
    std::string reply;
    bool too_big = false;
    bool late = false;
    request.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      if (Clock::now() > deadline) {
        late = true;
        return false;
      }
      if (reply.size() + n > options_.max_reply_bytes) {
        too_big = true;
        return false;
      }
      reply.append(data, n);
      return true;
    };
    httplib::Response response;
    httplib::Error error = httplib::Error::Success;
    const bool sent = client.send(request, response, error);
    if (too_big) {
      return Bad("etcd " + path + ": " + name + " sent a reply above " +
                 std::to_string(options_.max_reply_bytes) + " bytes");
    }
    if (late || (sent && Clock::now() > deadline)) {
      failed("no whole reply within " + std::to_string(options_.timeout.count()) + " ms");
      continue;
    }
    if (!sent) {
      if ((error == httplib::Error::Read || error == httplib::Error::Write) &&
          Clock::now() < deadline) {
        // Closed before a reply: with TLS, how a member that requires a client certificate
        // (--client-cert-auth) turns away one it does not accept, after the handshake (TLS 1.3
        // ends the handshake before the member checks it, so the request's write or the read of
        // the reply finds the connection closed).
        failed(endpoint.tls ? "closed the connection without a reply (a member that requires a "
                              "client certificate refuses this one, or none: etcd_cert_file)"
                            : "closed the connection without a reply");
      } else if (error == httplib::Error::Read || error == httplib::Error::ConnectionTimeout) {
        failed("no reply within " + std::to_string(attempt.count()) + " ms (" +
               httplib::to_string(error) + ")");
      } else if (error == httplib::Error::SSLServerVerification) {
        failed("its TLS certificate is not trusted: " +
               std::string(X509_verify_cert_error_string(
                   tls_client != nullptr ? tls_client->get_openssl_verify_result() : 0)) +
               (options_.ca_file.empty() ? " (no etcd_ca_file: the system's CAs)"
                                         : " (CA " + options_.ca_file + ")"));
      } else if (error == httplib::Error::SSLConnection) {
        failed("TLS handshake failed (it refused this client, or does not speak TLS there)");
      } else {
        failed(httplib::to_string(error));
      }
      continue;
    }
    json parsed = json::parse(reply, nullptr, /*allow_exceptions=*/false);
    if (response.status >= 500 || parsed.is_discarded() || !parsed.is_object()) {
      std::string why = "HTTP " + std::to_string(response.status);
      if (!parsed.is_discarded() && parsed.is_object()) {
        if (auto message = EtcdError(parsed)) why += ": " + *message;
      } else {
        why += ", a reply that is not a JSON object";
      }
      failed(why);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      preferred_ = index;
    }
    if (response.status != 200) {
      return Bad("etcd " + path + ": " + name + " refused it (HTTP " +
                 std::to_string(response.status) +
                 "): " + EtcdError(parsed).value_or("no message"));
    }
    return parsed;
  }
  return Status(ErrorCode::kUnavailable, "etcd " + path + ": no member answered: " + failures);
}

Result<std::optional<EtcdKeyValue>> EtcdClient::Get(std::string_view key) {
  const std::string path = "/v3/kv/range";
  auto reply = Call(path, EtcdRangeRequest(key));
  if (!reply.ok()) return reply.status();
  auto kvs = ParseEtcdRangeReply(*reply);
  if (!kvs.ok()) return Bad("etcd " + path + ": " + kvs.status().message());
  if (kvs->empty()) return std::optional<EtcdKeyValue>();
  return std::optional<EtcdKeyValue>(std::move(kvs->front()));
}

Result<std::vector<EtcdKeyValue>> EtcdClient::List(std::string_view prefix, bool keys_only) {
  const std::string path = "/v3/kv/range";
  auto reply = Call(path, EtcdRangeRequest(prefix, EtcdPrefixEnd(prefix), keys_only));
  if (!reply.ok()) return reply.status();
  auto kvs = ParseEtcdRangeReply(*reply);
  if (!kvs.ok()) return Bad("etcd " + path + ": " + kvs.status().message());
  return kvs;
}

Result<int64_t> EtcdClient::Put(std::string_view key, std::string_view value, int64_t lease) {
  const std::string path = "/v3/kv/put";
  auto reply = Call(path, EtcdPutRequest(key, value, lease));
  if (!reply.ok()) return reply.status();
  auto revision = ParseEtcdRevision(*reply);
  if (!revision.ok()) return Bad("etcd " + path + ": " + revision.status().message());
  return *revision;
}

Result<EtcdTxnResult> EtcdClient::Txn(const EtcdTxn& txn) {
  const std::string path = "/v3/kv/txn";
  auto reply = Call(path, EtcdTxnRequest(txn));
  if (!reply.ok()) return reply.status();
  auto result = ParseEtcdTxnReply(*reply);
  if (!result.ok()) return Bad("etcd " + path + ": " + result.status().message());
  return result;
}

Result<EtcdLease> EtcdClient::GrantLease(int64_t ttl_s) {
  const std::string path = "/v3/lease/grant";
  auto reply = Call(path, EtcdLeaseGrantRequest(ttl_s));
  if (!reply.ok()) return reply.status();
  auto lease = ParseEtcdLeaseGrantReply(*reply);
  if (!lease.ok()) return Bad("etcd " + path + ": " + lease.status().message());
  return lease;
}

Result<int64_t> EtcdClient::KeepAlive(int64_t lease, std::optional<Clock::time_point> deadline) {
  const std::string path = "/v3/lease/keepalive";
  auto reply = Call(path, EtcdLeaseIdRequest(lease), deadline);
  if (!reply.ok()) return reply.status();
  auto ttl = ParseEtcdKeepAliveReply(*reply);
  if (!ttl.ok()) return Bad("etcd " + path + ": " + ttl.status().message());
  return ttl;
}

Status EtcdClient::Revoke(int64_t lease, std::optional<Clock::time_point> deadline) {
  const std::string path = "/v3/lease/revoke";
  auto reply = Call(path, EtcdLeaseIdRequest(lease), deadline);
  if (!reply.ok()) return reply.status();
  if (auto error = EtcdError(*reply)) return Bad("etcd " + path + ": " + *error);
  return Status::Ok();
}

}  // namespace lb::controller
