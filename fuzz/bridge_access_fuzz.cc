// Fuzz target: lb-bridge's access control (bridge/src/security.h): the tokens file parser and
// the verdict for one request (bearer token, cross-site rule).
//
// Input layout, readable text:
//   <tokens file text>\0<METHOD> <path>\n<Name>: <value>\n<Name>: <value>...
// Without a NUL the whole input is the tokens file and the request is a bare POST /reload.
// The request is judged twice: with the parsed tokens (when the file parses) and with tokens
// off. Properties checked, from the header's contract:
//   - with tokens on, only GET|HEAD of /healthz and of the status page's files (/, /ui/app.js,
//     /ui/app.css, /ui/icon.svg: no data in them) pass without a valid token;
//   - an allowed request with tokens on is `authenticated` exactly when it was not one of
//     those passing without one;
//   - with tokens off, a state-changing request from something that looks like a browser and
//     carries only simple headers is never allowed.
#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "security.h"

namespace {

using lb::bridge::AccessDecision;

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  std::string_view file = input.substr(0, nul);
  std::string_view request =
      nul == std::string_view::npos ? std::string_view("POST /reload") : input.substr(nul + 1);

  auto tokens = lb::bridge::ParseTokens(file, "tokens");
  if (tokens.ok()) Check(!tokens->empty());  // "no token at all" is an error

  // Request line, then headers.
  size_t nl = request.find('\n');
  std::string_view line = request.substr(0, nl);
  std::string_view rest =
      nl == std::string_view::npos ? std::string_view() : request.substr(nl + 1);
  const size_t space = line.find(' ');
  const std::string method(line.substr(0, space));
  const std::string path(space == std::string_view::npos ? std::string_view()
                                                         : line.substr(space + 1));
  httplib::Headers headers;
  while (!rest.empty()) {
    nl = rest.find('\n');
    std::string_view header = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    const size_t colon = header.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = header.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    headers.emplace(std::string(header.substr(0, colon)), std::string(value));
  }

  for (const auto& [name, value] : headers) {
    if (name == "Authorization") {
      auto token = lb::bridge::BearerToken(value);
      if (token && tokens.ok()) (void)lb::bridge::TokenMatches(*tokens, *token);
    } else if (name == "Content-Type") {
      (void)lb::bridge::IsCorsSafelistedContentType(value);
    }
  }
  (void)lb::bridge::CheckCrossSite(headers);

  if (tokens.ok()) {
    AccessDecision on = lb::bridge::DecideAccess(method, path, headers, *tokens);
    // Written out here rather than asked of security.h, so that a route made public by
    // mistake there fails this property.
    const bool public_path = path == "/healthz" || path == "/" || path == "/ui/app.js" ||
                             path == "/ui/app.css" || path == "/ui/icon.svg";
    const bool public_request = (method == "GET" || method == "HEAD") && public_path;
    if (on.allowed() && !on.authenticated) Check(public_request);
    if (!on.allowed()) {
      Check(lb::bridge::RefusalStatus(on) == 401 || lb::bridge::RefusalStatus(on) == 403);
      (void)lb::bridge::RefusalBody(on);
      (void)lb::bridge::WwwAuthenticate(on);
    }
  }
  lb::bridge::TokenSet none;
  AccessDecision off = lb::bridge::DecideAccess(method, path, headers, none);
  Check(!off.authenticated);
  if (off.allowed() && !lb::bridge::IsReadOnlyRequest(method, path)) {
    Check(lb::bridge::CheckCrossSite(headers) != lb::bridge::CrossSiteVerdict::kRefused);
  }
  if (!off.allowed()) (void)lb::bridge::RefusalBody(off);
  return 0;
}
