// The bridge's /v1 REST API, beside the 2015 routes of http_api.h (which it leaves unchanged).
// Its contract is bridge/openapi.json, compiled into the binary and served at
// GET /v1/openapi.json; tests/integration/rest_api_contract_test.cc calls every route of that
// document against a real agent and haproxy and checks each answer against it.
//
//   GET  /v1/backends             `status` of every backend, as the agent answers it
//   GET  /v1/backends/{name}      one backend; 404 not_found naming the backends that exist
//   GET  /v1/info                 `info`
//   GET  /v1/config               the live config as text/plain; ETag "<sha256>", If-None-Match
//                                 -> 304; 404 not_found when there is no live file
//   PUT  /v1/config               the body is the whole config -> `reload`; If-Match "<sha256>"
//                                 is expect_sha256 (a mismatch is 412 conflict, nothing
//                                 changed); ?force=true, ?apply_via=reload. 200: the agent's
//                                 result (outcome, applied_via, verified, sha256, timings,
//                                 warnings) and the new ETag.
//   POST /v1/config/validate      the body is a config -> `validate`; changes nothing
//   GET  /v1/events               the event stream (event_stream.h installs its GET)
//   GET  /v1/openapi.json         the OpenAPI 3.1 document
//   GET  /healthz                 (http_api.h installs its GET)
// Any other method on one of these paths is 405 with an Allow header. Every error is
// http_api.h's ErrorBody: {"success": false, "error", "code" (proto/PROTOCOL.md's codes, and
// the bridge's own not_found, method_not_allowed, unauthorized, forbidden), "details"?}.
//
// DESIGN: one table (kRoutes in rest_api.cc), one row per path: its pattern, its methods and
// their handlers. Every method httplib can route is registered for every row, so a wrong method
// reaches the table and is answered 405 from the row's own list, never from a second list.
// Handlers are stateless translations "HTTP request -> one CommandClient::Call -> HTTP
// response", like http_api.cc's, and thread-safe for the same reason. The access check
// (security.h) runs before any of them, in http_api.cc's pre-routing handler.
#pragma once

#include <httplib.h>  // CPPHTTPLIB_* definitions come with PkgConfig::HTTPLIB (see CMakeLists.txt)

#include <memory>
#include <string_view>

#include "http_server.h"
#include "lb/client/command_client.h"
#include "lb/common/settings.h"

namespace lb::bridge {

// The OpenAPI 3.1 document of the /v1 API (bridge/openapi.json, embedded at build time).
std::string_view OpenApiDocument();

// Installs the table's routes on `server`. Called by InstallHttpApi (http_api.h), which owns
// the access check, the logging and the error handler around them. `agent` must outlive
// `server`; `settings` is copied.
void InstallRestApi(HttpServer& server, client::CommandClient& agent,
                    const common::Settings& settings);

}  // namespace lb::bridge
