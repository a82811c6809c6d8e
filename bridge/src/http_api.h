// The bridge's HTTP API: the 2015 lb-agent's endpoints, answered by asking the agent.
//
// DESIGN: httplib runs each connection on a thread of its pool; every handler is a short,
// blocking translation "HTTP request -> one CommandClient::Call -> HTTP response", with no state
// of its own, so handlers need no locking (CommandClient::Call is thread-safe).
//
//   POST /reloadHaproxy, POST /reload   the body is the whole HAProxy configuration -> `reload`
//   GET|POST /getBackends               `status` of one backend, in the legacy list shape
//   GET /healthz                        `ping`
//   GET /events                         the agent's events as a stream (event_stream.h)
//   /v1/...                             the REST API (rest_api.h)
//   GET /metrics                        Prometheus text (metrics.h)
//
// Who may call which route (bearer tokens, the cross-site rule for reloads): security.h.
//
// Every answer is JSON with a boolean "success" (clients of the 2015 agent read it first).
// Unlike the 2015 agent, failures carry an HTTP error status (see HttpStatusFor) as well as
// {"success": false, "error": <message>, "code": <error code>, "details"?: {...}}.
// One line per request goes to stderr: remote address, method, path, status, milliseconds.
#pragma once

#include <httplib.h>  // CPPHTTPLIB_* definitions come with PkgConfig::HTTPLIB (see CMakeLists.txt)

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "http_server.h"
#include "lb/client/command_client.h"
#include "lb/common/settings.h"
#include "lb/proto/status.h"
#include "metrics.h"
#include "security.h"

namespace lb::bridge {

// Threads of the HTTP server's pool (http_server.h), which run the routes; the bridge keeps as
// many connections to the agent (AgentClientOptions).
inline constexpr std::size_t kRequestThreads = 128;

// The HTTP status the bridge answers with when the agent (or the bridge itself) reports `code`:
//   bad_request 400, conflict 409, superseded 409, too_large 413, invalid_config 422,
//   reload_failed / internal / unknown_command 500, haproxy_unavailable / unavailable 503,
//   timeout 504; ok is 200.
int HttpStatusFor(proto::ErrorCode code);

// {"success": false, "error": message, "code": name, "details": details (only when not null)}.
nlohmann::json ErrorBody(const proto::Status& status);

// The configuration a reload request carries, by Content-Type:
//   multipart/form-data                 the `config` field (400 without one);
//   application/x-www-form-urlencoded   the `config` field; without one, the raw body: `curl
//                                       --data-binary @haproxy.cfg` sends this type with a raw
//                                       config. (A raw config that starts with "config=" or holds
//                                       "&config=" would be misread; HAProxy's syntax makes that
//                                       an unlikely config.)
//   application/json                    {"config": "<text>"} (400 otherwise);
//   anything else, or none              the raw body, as the 2015 agent read it
//                                       (`requests.post(url, data=config_text)` sends no type).
// A body or config above `max_bytes` is too_large; an empty config is bad_request. Pure: reads
// only req.body, its headers and (multipart) req.files; safe on any input (fuzzed).
proto::Result<std::string> ConfigFromRequest(const httplib::Request& req, size_t max_bytes);

// `body` as the answer, application/json (invalid UTF-8 in it replaced, never thrown on).
void SendJson(httplib::Response& res, int status, const nlohmann::json& body);
// ErrorBody(status) with HttpStatusFor(status.code()).
void SendError(httplib::Response& res, const proto::Status& status);

// The query parameter ?force=true|false|1|0|yes|no|on|off; a bare ?force means true; absent is
// false; anything else is bad_request.
proto::Result<bool> ForceParam(const httplib::Request& req);

// One call to the agent from a route. A command_endpoint ZeroMQ cannot use is the bridge's own
// settings error (internal, 500), not the HTTP client's (bad_request, 400). Thread-safe.
proto::Result<proto::Reply> CallAgentFromBridge(client::CommandClient& agent,
                                                const std::string& cmd, const nlohmann::json& args);

// The options of the bridge's connection to the agent: [lb-agent] command_endpoint,
// agent_timeout for a whole call, two seconds at most to connect (503 sooner when the agent is
// down), the bridge's CURVE keys, and the bridge's names for its settings in messages.
client::CommandClientOptions AgentClientOptions(const common::Settings& settings,
                                                std::optional<common::CurveClientKeys> curve);

// Installs the routes, the access check of security.h (bearer tokens from `tokens` when the set
// is not empty, else the cross-site rule) in front of every route (GET /events included), the
// JSON answers for unknown routes and the server's own errors, the request log, the body size
// limit (settings.bridge.max_body_bytes) and the connection timeouts on `server`. Call before
// binding. `agent` must outlive `server`; `settings` is copied; `tokens` may be replaced while
// the server runs (SIGHUP). `metrics`, when given, counts every answered request and must
// outlive `server`.
void InstallHttpApi(HttpServer& server, client::CommandClient& agent,
                    const common::Settings& settings, std::shared_ptr<const TokenStore> tokens,
                    RequestMetrics* metrics = nullptr);
// The same with a fixed set of tokens (none: the cross-site rule).
inline void InstallHttpApi(HttpServer& server, client::CommandClient& agent,
                           const common::Settings& settings, TokenSet tokens = {}) {
  InstallHttpApi(server, agent, settings, std::make_shared<const TokenStore>(std::move(tokens)));
}

}  // namespace lb::bridge
