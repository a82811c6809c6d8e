// lb-bridge's access control ([security] in lb-agent.cfg, SECURITY.md): bearer tokens, the
// cross-site request rule, HTTPS, and the bridge's CURVE keys towards the agent.
//
// DESIGN: every decision here is a pure function of the settings, a file's text or a request's
// method, path and headers, so that it is unit tested and fuzzed on its own; http_api.cc only
// applies the verdict (DecideAccess) before a request reaches its route, and main.cc only calls
// the loaders once at start-up, where any problem is one clear line and a non-zero exit.
//
// Who may do what:
//   tokens on ([security] bridge_tokens_file set)
//     GET|HEAD /healthz        anyone (a load balancer's health check); without a valid token
//                              the answer says only whether the agent is up.
//     GET|HEAD /, /ui/app.js, /ui/app.css, /ui/icon.svg
//                              anyone: the status page and its files hold no data; the page
//                              asks for a token and sends it on its data requests
//                              (status_page.h, IsPublicPageAsset).
//     everything else          "Authorization: Bearer <token>" with a token of the file, else
//                              401 {"success": false, "error": ..., "code": "unauthorized"} and
//                              WWW-Authenticate: Bearer. GET /events included.
//   tokens off
//     GET|HEAD, POST /getBackends   anyone (they change nothing; a browser on another site
//                                   cannot read the answers: no CORS headers are ever sent).
//     any other request (POST /reload, /reloadHaproxy, and any route that changes state) must
//     not be something a web page on another site can make a browser send. Accepted when
//       (a) it carries a header a browser sends cross-site only after a CORS preflight, which
//           the bridge never grants: X-Requested-With (any value), or a Content-Type that is not
//           CORS-safelisted (e.g. application/json, application/octet-stream); or
//       (b) it looks like no browser at all: no Content-Type, no Origin and no Sec-Fetch-*
//           header (the 2015 clients: `requests.post(url, data=config_text)`).
//     Anything else (an HTML form post, text/plain, curl -d without -H 'X-Requested-With: ...',
//     any request with an Origin or Sec-Fetch-* header and only simple headers) is refused:
//     403 {"success": false, "error": ..., "code": "forbidden"}. The residual risk is a browser
//     so old that it sends a cross-site POST without Origin and without a Content-Type.
#pragma once

#include <httplib.h>  // CPPHTTPLIB_* definitions come with PkgConfig::HTTPLIB (see CMakeLists.txt)

#include <array>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http_server.h"
#include "lb/common/curve_socket.h"
#include "lb/common/settings.h"
#include "lb/proto/status.h"

namespace lb::bridge {

// --- Bearer tokens ------------------------------------------------------------------------

// Limits on a tokens file. A token is 16 to 4096 printable ASCII characters without spaces
// (`openssl rand -hex 32` makes a good one); shorter ones are refused as guessable.
inline constexpr std::size_t kMaxTokensFileBytes = 1024 * 1024;
inline constexpr std::size_t kMinTokenLength = 16;
inline constexpr std::size_t kMaxTokenLength = 4096;

// The accepted tokens, kept only as SHA-256 digests. Empty: tokens are off.
struct TokenSet {
  std::vector<std::array<unsigned char, 32>> digests;
  bool empty() const { return digests.empty(); }
  std::size_t size() const { return digests.size(); }
};

// The tokens the routes check, replaced while requests run when SIGHUP re-reads the file. A
// request holds the set it started with. Thread-safe.
class TokenStore {
 public:
  explicit TokenStore(TokenSet tokens = {})
      : tokens_(std::make_shared<const TokenSet>(std::move(tokens))) {}
  std::shared_ptr<const TokenSet> Get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return tokens_;
  }
  void Set(TokenSet tokens) {
    auto fresh = std::make_shared<const TokenSet>(std::move(tokens));
    std::lock_guard<std::mutex> lock(mutex_);
    tokens_ = std::move(fresh);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const TokenSet> tokens_;
};

// Parses a tokens file's text: one token per line; blank lines and lines whose first non-blank
// character is '#' are ignored; surrounding blanks (and a CR) are trimmed. Errors, as
// "<origin>:<line>: ...": a token with inner whitespace or a control or non-ASCII byte, a token
// shorter than kMinTokenLength or longer than kMaxTokenLength, a text above kMaxTokensFileBytes,
// and no token at all. Never echoes a token in an error.
proto::Result<TokenSet> ParseTokens(std::string_view text, const std::string& origin);

// Reads and parses `path`. Also refuses a file that is not a regular file, cannot be read, or
// is readable by other users (mode & 0004): tokens are secrets.
proto::Result<TokenSet> LoadTokensFile(const std::string& path);

// The token of an Authorization header value "Bearer <token>" (scheme case-insensitive, blanks
// around the token ignored), or nullopt for any other value.
std::optional<std::string_view> BearerToken(std::string_view authorization);

// True when `presented` is one of `tokens`. Constant time with respect to the tokens: the
// presented token is hashed once and compared with every digest by CRYPTO_memcmp, and the
// results are combined without a short-circuit, so the time taken depends on neither which
// token matched nor where a wrong token first differs.
bool TokenMatches(const TokenSet& tokens, std::string_view presented);

// --- Cross-site requests ------------------------------------------------------------------

// True for a Content-Type value a browser may send cross-site without a CORS preflight: its
// media type (before ';', trimmed, case-insensitive) is application/x-www-form-urlencoded,
// multipart/form-data or text/plain. A value that is not a type/subtype pair counts as
// safelisted here (refused, never trusted).
bool IsCorsSafelistedContentType(std::string_view value);

enum class CrossSiteVerdict {
  kNonSimpleHeader,  // accepted: X-Requested-With or a non-safelisted Content-Type
  kNotABrowser,      // accepted: no Content-Type, no Origin, no Sec-Fetch-*
  kRefused,          // a browser could have sent it from another site
};
// The rule of the header comment, (a) then (b), on a request's headers.
CrossSiteVerdict CheckCrossSite(const httplib::Headers& headers);

// True for the requests that change nothing and so need no cross-site check: GET, HEAD, and
// POST /getBackends (the 2015 clients post to it).
bool IsReadOnlyRequest(std::string_view method, std::string_view path);

// True for GET|HEAD of the status page's files (status_page.h): the same text for everyone, no
// data in them, so they need no token. The data the page shows (/ui/status, /events) does.
bool IsPublicPageAsset(std::string_view method, std::string_view path);

// --- The verdict for one request ----------------------------------------------------------

struct AccessDecision {
  enum class Verdict { kAllowed, kUnauthorized, kForbidden };
  Verdict verdict = Verdict::kAllowed;
  // A valid bearer token came with the request (always false with tokens off).
  bool authenticated = false;
  // Why it was refused: for the log line and the error body. Never holds token text.
  std::string reason;
  // For kUnauthorized: a token was presented but is not one of the file's ("invalid_token").
  bool bad_token = false;

  bool allowed() const { return verdict == Verdict::kAllowed; }
};

// The whole policy of the header comment. `tokens` empty: tokens off.
AccessDecision DecideAccess(std::string_view method, std::string_view path,
                            const httplib::Headers& headers, const TokenSet& tokens);

// The HTTP status (401, 403) and JSON body {"success": false, "error", "code"} of a refusal.
int RefusalStatus(const AccessDecision& decision);
std::string RefusalBody(const AccessDecision& decision);
// The WWW-Authenticate value of a 401 (RFC 6750): Bearer realm="lb-bridge"[, error=...].
std::string WwwAuthenticate(const AccessDecision& decision);

// --- HTTPS ----------------------------------------------------------------------------------

// The server lb-bridge listens with: HTTPS when [security] bridge_tls_cert and bridge_tls_key
// are set (options().tls), plain HTTP when neither is. Fails with one clear line when a file
// cannot be read, is not PEM, or the key does not belong to the certificate. TLS 1.2 is the
// oldest version accepted.
proto::Result<std::unique_ptr<HttpServer>> MakeHttpServer(const common::SecuritySettings& security);

// --- CURVE towards the agent ----------------------------------------------------------------

// The bridge's CURVE keys for its command and event sockets, or nullopt when CURVE is off.
//   curve_secret_key set (the agent uses CURVE): bridge_curve_secret_key is required;
//   bridge_curve_secret_key set: agent_public_key is required (it defaults to curve_secret_key
//   without "_secret"), and both files must be readable certificates (LoadClientKeys).
proto::Result<std::optional<common::CurveClientKeys>> BridgeCurveKeys(
    const common::SecuritySettings& security);

// --- Start-up warnings ----------------------------------------------------------------------

// True for a listen address only this host can reach: 127.x.y.z, ::1, localhost.
bool IsLoopbackHost(std::string_view host);

}  // namespace lb::bridge
