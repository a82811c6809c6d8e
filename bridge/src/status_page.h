// GET /: lb-bridge's live status page, and the one route that feeds it.
//
//   GET /             the page (bridge/web/index.html)         public: holds no data
//   GET /ui/app.js    its script                               public
//   GET /ui/app.css   its style sheet                          public
//   GET /ui/icon.svg  its icon                                 public
//   GET /ui/status    what the page shows, JSON:               the token rules of every route
//     {"backends": [<status "*" of the agent: every backend, every server>],
//      "config": {"sha256"}, "last_reload": <info's last_reload, or null>,
//      "haproxy": {"running", "version", "pid", "reloads", "uptime_s", "error"},
//      "agent": {"version"}}
//     or the bridge's usual error body when the agent cannot answer (503, 504, ...).
//
// DESIGN: the page is four files under bridge/web/, compiled into the binary by
// bridge/CMakeLists.txt (web_assets.h), so lb-bridge serves it with nothing on disk and nothing
// fetched from elsewhere. The page is read-only: it sends GET requests only. It follows GET
// /events and reads /ui/status again after each event (debounced in the page), so what it shows
// is always a whole snapshot from the agent, never a state patched together from events. The
// page and its assets hold no data and are served to anyone (security.h, IsPublicPageAsset);
// with tokens on, the page asks for a token and sends it as "Authorization: Bearer" on its two
// data requests (SECURITY.md, "Status page").
//
// Every answer of these routes carries a Content-Security-Policy that allows scripts, styles
// and connections from the bridge itself only (no inline script, no framing, no form target),
// X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer.
#pragma once

#include <string_view>

#include "lb/client/command_client.h"

namespace lb::bridge {

class HttpServer;

// The Content-Security-Policy of every page route.
inline constexpr std::string_view kStatusPageCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// Installs the routes above. Call before listening; `agent` must outlive `server`. The
// access check in front of them is InstallHttpApi's.
void InstallStatusPage(HttpServer& server, client::CommandClient& agent);

}  // namespace lb::bridge
