// The one adapter around OpenSSL in the bridge (SHA-256, CRYPTO_memcmp, the TLS context).
#include "security.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "lb/common/file.h"

namespace lb::bridge {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

Status BadRequest(std::string message) {
  return Status(ErrorCode::kBadRequest, std::move(message));
}

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
  return s;
}

char LowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

std::array<unsigned char, 32> Sha256(std::string_view data) {
  std::array<unsigned char, 32> digest{};
  unsigned int length = 0;
  // EVP_Digest fails only when out of memory; a zero digest then matches no token's digest
  // unless the file's token hashing failed the same way, which ParseTokens checks for.
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    digest.fill(0);
  }
  return digest;
}

// The OpenSSL error queue as one line (and emptied), for start-up errors.
std::string OpenSslErrors() {
  std::string out;
  for (unsigned long e; (e = ERR_get_error()) != 0;) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof(buffer));
    if (!out.empty()) out += "; ";
    out += buffer;
  }
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

// Checks that `path` can be opened for reading: a clearer error than OpenSSL's own.
Status CheckReadable(const std::string& path, const std::string& what) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return BadRequest(what + " " + path + ": cannot read: " + std::strerror(errno));
  struct stat st {};
  int rc = fstat(fd, &st);
  close(fd);
  if (rc != 0 || !S_ISREG(st.st_mode)) return BadRequest(what + " " + path + ": not a file");
  return Status::Ok();
}

}  // namespace

// --- Bearer tokens ------------------------------------------------------------------------

Result<TokenSet> ParseTokens(std::string_view text, const std::string& origin) {
  if (text.size() > kMaxTokensFileBytes) {
    return BadRequest(origin + ": " + std::to_string(text.size()) + " bytes exceeds the limit of " +
                      std::to_string(kMaxTokensFileBytes) + " bytes for a tokens file");
  }
  TokenSet tokens;
  int line_number = 0;
  while (!text.empty()) {
    ++line_number;
    size_t end = text.find('\n');
    std::string_view line = Trim(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (line.empty() || line.front() == '#') continue;
    const std::string where = origin + ":" + std::to_string(line_number) + ": ";
    for (char c : line) {
      const auto byte = static_cast<unsigned char>(c);
      if (byte <= 0x20 || byte >= 0x7f) {
        return BadRequest(where +
                          "a token is one word of printable ASCII (no spaces, no control or "
                          "non-ASCII bytes); put comments on their own '#' line");
      }
    }
    if (line.size() < kMinTokenLength) {
      return BadRequest(where + "token of " + std::to_string(line.size()) +
                        " characters is too short to be secret (at least " +
                        std::to_string(kMinTokenLength) + "; e.g. `openssl rand -hex 32`)");
    }
    if (line.size() > kMaxTokenLength) {
      return BadRequest(where + "token of " + std::to_string(line.size()) +
                        " characters exceeds the limit of " + std::to_string(kMaxTokenLength));
    }
    tokens.digests.push_back(Sha256(line));
    if (tokens.digests.back() == std::array<unsigned char, 32>{}) {
      return Status(ErrorCode::kInternal, where + "SHA-256 failed (out of memory?)");
    }
  }
  if (tokens.empty()) {
    return BadRequest(origin +
                      ": no token in the file (one token per line; '#' lines are comments)");
  }
  return tokens;
}

Result<TokenSet> LoadTokensFile(const std::string& path) {
  const std::string what = "[security] bridge_tokens_file";
  if (Status s = common::CheckSecretFile(path); !s.ok())
    return BadRequest(what + " " + s.message());
  // One byte over the limit is enough for ParseTokens to name the limit.
  Result<std::string> text = common::ReadSmallFile(path, kMaxTokensFileBytes + 1);
  if (!text.ok() && text.status().code() != ErrorCode::kTooLarge) {
    return BadRequest(what + ": " + text.status().message());
  }
  if (!text.ok()) {
    return BadRequest(what + " " + path + ": exceeds the limit of " +
                      std::to_string(kMaxTokensFileBytes) + " bytes for a tokens file");
  }
  return ParseTokens(*text, what + " " + path);
}

std::optional<std::string_view> BearerToken(std::string_view authorization) {
  std::string_view value = Trim(authorization);
  constexpr std::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() ||
      !EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  std::string_view rest = value.substr(kScheme.size());
  if (rest.front() != ' ' && rest.front() != '\t') return std::nullopt;
  rest = Trim(rest);
  if (rest.empty()) return std::nullopt;
  return rest;
}

bool TokenMatches(const TokenSet& tokens, std::string_view presented) {
  const std::array<unsigned char, 32> digest = Sha256(presented);
  unsigned int matched = 0;
  for (const auto& candidate : tokens.digests) {
    // CRYPTO_memcmp's time depends only on the length, which is always 32.
    matched |= static_cast<unsigned int>(CRYPTO_memcmp(candidate.data(), digest.data(), 32) == 0);
  }
  return matched != 0;
}

// --- Cross-site requests ------------------------------------------------------------------

bool IsCorsSafelistedContentType(std::string_view value) {
  std::string_view type = Trim(value.substr(0, value.find(';')));
  const size_t slash = type.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == type.size()) return true;
  return EqualsIgnoreCase(type, "application/x-www-form-urlencoded") ||
         EqualsIgnoreCase(type, "multipart/form-data") || EqualsIgnoreCase(type, "text/plain");
}

CrossSiteVerdict CheckCrossSite(const httplib::Headers& headers) {
  // httplib::Headers compares names case-insensitively.
  if (headers.count("X-Requested-With") > 0) return CrossSiteVerdict::kNonSimpleHeader;
  auto content_types = headers.equal_range("Content-Type");
  bool has_content_type = content_types.first != content_types.second;
  if (has_content_type) {
    // Every Content-Type line must be non-safelisted: a browser sends exactly one.
    bool all_non_simple = true;
    for (auto it = content_types.first; it != content_types.second; ++it) {
      all_non_simple = all_non_simple && !IsCorsSafelistedContentType(it->second);
    }
    return all_non_simple ? CrossSiteVerdict::kNonSimpleHeader : CrossSiteVerdict::kRefused;
  }
  if (headers.count("Origin") > 0) return CrossSiteVerdict::kRefused;
  for (const auto& [name, value] : headers) {
    if (name.size() >= 10 && EqualsIgnoreCase(std::string_view(name).substr(0, 10), "sec-fetch-")) {
      return CrossSiteVerdict::kRefused;
    }
  }
  return CrossSiteVerdict::kNotABrowser;
}

bool IsReadOnlyRequest(std::string_view method, std::string_view path) {
  return method == "GET" || method == "HEAD" || (method == "POST" && path == "/getBackends");
}

bool IsPublicPageAsset(std::string_view method, std::string_view path) {
  return (method == "GET" || method == "HEAD") &&
         (path == "/" || path == "/ui/app.js" || path == "/ui/app.css" || path == "/ui/icon.svg");
}

// --- The verdict --------------------------------------------------------------------------

AccessDecision DecideAccess(std::string_view method, std::string_view path,
                            const httplib::Headers& headers, const TokenSet& tokens) {
  AccessDecision decision;
  if (!tokens.empty()) {
    auto authorization = headers.find("Authorization");
    std::optional<std::string_view> token;
    if (authorization != headers.end()) token = BearerToken(authorization->second);
    decision.authenticated = token.has_value() && TokenMatches(tokens, *token);
    const bool health_check = (method == "GET" || method == "HEAD") && path == "/healthz";
    if (decision.authenticated || health_check || IsPublicPageAsset(method, path)) {
      return decision;
    }
    decision.verdict = AccessDecision::Verdict::kUnauthorized;
    if (authorization == headers.end()) {
      decision.reason = "this bridge needs a bearer token: send \"Authorization: Bearer <token>\"";
    } else if (!token) {
      decision.reason =
          "the Authorization header is not \"Bearer <token>\"; this bridge takes bearer tokens";
    } else {
      decision.reason = "the bearer token is not valid for this bridge";
      decision.bad_token = true;
    }
    return decision;
  }
  if (IsReadOnlyRequest(method, path)) return decision;
  if (CheckCrossSite(headers) != CrossSiteVerdict::kRefused) return decision;
  decision.verdict = AccessDecision::Verdict::kForbidden;
  decision.reason =
      std::string(method) + " " + std::string(path) +
      " refused: it could have been sent by a web browser from another site (it has a "
      "form-like Content-Type, or an Origin or Sec-Fetch-* header, and only simple headers). "
      "Add the header X-Requested-With: <anything> (curl -H 'X-Requested-With: curl'), or "
      "send Content-Type: application/json, or use a bearer token ([security] "
      "bridge_tokens_file)";
  return decision;
}

int RefusalStatus(const AccessDecision& decision) {
  switch (decision.verdict) {
    case AccessDecision::Verdict::kAllowed:
      return 200;
    case AccessDecision::Verdict::kUnauthorized:
      return 401;
    case AccessDecision::Verdict::kForbidden:
      return 403;
  }
  return 403;
}

std::string RefusalBody(const AccessDecision& decision) {
  const char* code =
      decision.verdict == AccessDecision::Verdict::kUnauthorized ? "unauthorized" : "forbidden";
  nlohmann::json body = {{"success", false}, {"error", decision.reason}, {"code", code}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string WwwAuthenticate(const AccessDecision& decision) {
  std::string value = "Bearer realm=\"lb-bridge\"";
  if (decision.bad_token) value += ", error=\"invalid_token\"";
  return value;
}

// --- HTTPS ----------------------------------------------------------------------------------

Result<std::unique_ptr<HttpServer>> MakeHttpServer(const common::SecuritySettings& security) {
  const std::string& cert = security.bridge_tls_cert;
  const std::string& key = security.bridge_tls_key;
  if (cert.empty() && key.empty()) return std::make_unique<HttpServer>();
  if (cert.empty() || key.empty()) {
    return BadRequest("[security] bridge_tls_cert and bridge_tls_key go together");
  }
  if (Status s = CheckReadable(cert, "[security] bridge_tls_cert"); !s.ok()) return s;
  if (Status s = CheckReadable(key, "[security] bridge_tls_key"); !s.ok()) return s;

  std::string error;
  auto setup = [&](SSL_CTX& ctx) {
    ERR_clear_error();
    SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) != 1) {
      error = "cannot require TLS 1.2: " + OpenSslErrors();
      return false;
    }
    if (SSL_CTX_use_certificate_chain_file(&ctx, cert.c_str()) != 1) {
      error = "[security] bridge_tls_cert " + cert +
              ": not a PEM certificate (chain): " + OpenSslErrors();
      return false;
    }
    if (SSL_CTX_use_PrivateKey_file(&ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      error = "[security] bridge_tls_key " + key +
              ": not a PEM private key matching bridge_tls_cert " + cert + ": " + OpenSslErrors();
      return false;
    }
    if (SSL_CTX_check_private_key(&ctx) != 1) {
      error = "[security] bridge_tls_key " + key + " does not belong to bridge_tls_cert " + cert +
              ": " + OpenSslErrors();
      return false;
    }
    return true;
  };
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) return BadRequest("cannot create a TLS context: " + OpenSslErrors());
  if (!setup(*ctx)) {
    if (error.empty()) error = "cannot create a TLS context: " + OpenSslErrors();
    return BadRequest(error);
  }
  HttpServerOptions options;
  options.tls = std::move(ctx);
  return std::make_unique<HttpServer>(std::move(options));
}

// --- CURVE towards the agent ----------------------------------------------------------------

Result<std::optional<common::CurveClientKeys>> BridgeCurveKeys(
    const common::SecuritySettings& security) {
  if (security.bridge_curve_secret_key.empty()) {
    if (security.curve()) {
      return BadRequest(
          "[security] curve_secret_key is set, so the agent accepts only CURVE clients: "
          "lb-bridge needs its own certificate in bridge_curve_secret_key (`lbctl keygen "
          "<path>` writes one; add its public half to curve_clients)");
    }
    return std::optional<common::CurveClientKeys>();
  }
  if (security.agent_public_key.empty()) {
    return BadRequest(
        "[security] bridge_curve_secret_key is set but agent_public_key is not: lb-bridge "
        "needs the agent's public certificate");
  }
  Result<common::CurveClientKeys> keys = common::LoadClientKeys(
      common::CurveClientFiles{security.bridge_curve_secret_key, security.agent_public_key});
  if (!keys.ok()) {
    return BadRequest("[security] bridge_curve_secret_key, agent_public_key: " +
                      keys.status().message());
  }
  return std::optional<common::CurveClientKeys>(std::move(keys).value());
}

// --- Start-up warnings ----------------------------------------------------------------------

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  if (!host.starts_with("127.")) return false;
  // 127.x.y.z with digits only (a name such as 127.example.com is not loopback).
  int dots = 0;
  for (char c : host) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

}  // namespace lb::bridge
