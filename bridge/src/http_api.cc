// The one adapter around cpp-httplib in the bridge: every exception a handler lets escape is
// answered by the exception handler below as a JSON 500.
#include "http_api.h"

#include <httplib.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "event_stream.h"
#include "lb/common/log.h"
#include "lb/common/single_flight.h"
#include "lb/proto/backends.h"
#include "rest_api.h"
#include "security.h"

namespace lb::bridge {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;

// Connection limits (http_server.h). A request's head is small (curl's and browsers' are under
// 2 KiB); it has 10 s from its first byte. A reload upload of 16 MiB over a slow link fits in
// 30 s. An idle kept-alive connection costs a descriptor and a buffer, no thread: 30 s.
constexpr std::size_t kMaxHeadBytes = 16 * 1024;
constexpr std::size_t kMaxHeaders = 100;
constexpr std::chrono::seconds kHeadTimeout{10};
constexpr std::chrono::seconds kReadTimeout{30};
constexpr std::chrono::seconds kWriteTimeout{30};
constexpr std::chrono::seconds kIdleTimeout{30};
// The server refuses bodies above its own limit with a 413 before any handler runs. Its limit
// is set this far above max_body_bytes so that a body just above the limit, and a multipart
// upload whose config fits but whose framing does not, reach the handler, which answers with
// the exact size; the error handler gives the server's own 413 the JSON shape too.
constexpr size_t kPayloadSlack = 64 * 1024;

constexpr std::string_view kSuccessMessage = "Load Balancer up to date";

std::string Dump(const json& value) {
  // Configs and haproxy's messages may hold invalid UTF-8; never throw on them.
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

void SendError(httplib::Response& res, const Status& status) {
  SendJson(res, HttpStatusFor(status.code()), ErrorBody(status));
}

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "Multipart/Form-Data; boundary=x" -> "multipart/form-data".
std::string MediaType(const httplib::Request& req) {
  std::string value = req.get_header_value("Content-Type");
  std::string_view type(value);
  type = type.substr(0, type.find(';'));
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.front()))) {
    type.remove_prefix(1);
  }
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back()))) {
    type.remove_suffix(1);
  }
  return Lower(type);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding: '+' is a space, %XX a byte; a malformed escape is
// kept as it is.
std::string FormDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexDigit(s[i + 1]) >= 0 &&
               HexDigit(s[i + 2]) >= 0) {
      out += static_cast<char>(HexDigit(s[i + 1]) * 16 + HexDigit(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The first `key` field of a url-encoded form body, or nullopt. The body is parsed here rather
// than read from req.params, which mixes form fields with the query string.
std::optional<std::string> FormField(std::string_view body, std::string_view key) {
  while (!body.empty()) {
    size_t end = body.find('&');
    std::string_view pair = body.substr(0, end);
    size_t eq = pair.find('=');
    if (FormDecode(pair.substr(0, eq)) == key) {
      return eq == std::string_view::npos ? std::string() : FormDecode(pair.substr(eq + 1));
    }
    if (end == std::string_view::npos) break;
    body.remove_prefix(end + 1);
  }
  return std::nullopt;
}

Status TooLarge(size_t size, size_t limit) {
  return Status(ErrorCode::kTooLarge, "configuration of " + std::to_string(size) +
                                          " bytes exceeds the limit of " + std::to_string(limit) +
                                          " bytes (max_body_bytes)");
}

}  // namespace

proto::Result<bool> ForceParam(const httplib::Request& req) {
  if (!req.has_param("force")) return false;
  const std::string value = Lower(req.get_param_value("force"));
  if (value.empty() || value == "1" || value == "true" || value == "yes" || value == "on") {
    return true;
  }
  if (value == "0" || value == "false" || value == "no" || value == "off") return false;
  return Status(ErrorCode::kBadRequest, "query parameter force must be true or false, got \"" +
                                            req.get_param_value("force") + "\"");
}

namespace {

// Thread-local because HttpServer runs a request's pre-routing handler, route and logger on one
// pool thread, and its head check and the answers it writes itself on its I/O thread: set when
// the request is checked, used and cleared by the logger once the answer is built. A request
// that was never checked (a malformed request line) logs "-".
thread_local std::optional<std::chrono::steady_clock::time_point> request_start;
// The request carried a valid bearer token.
thread_local bool request_authenticated = false;

void SendRefusal(httplib::Response& res, const AccessDecision& decision) {
  res.status = RefusalStatus(decision);
  if (decision.verdict == AccessDecision::Verdict::kUnauthorized) {
    res.set_header("WWW-Authenticate", WwwAuthenticate(decision));
  }
  res.set_content(RefusalBody(decision), "application/json");
}

// One line per refused request: who, what, why; never the token.
void LogRefusal(const httplib::Request& req, const AccessDecision& decision) {
  auto field = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  std::string why = decision.verdict == AccessDecision::Verdict::kUnauthorized
                        ? (decision.bad_token                ? "invalid bearer token"
                           : req.has_header("Authorization") ? "Authorization is not a bearer token"
                                                             : "no bearer token")
                        : "possible cross-site request (no token, only simple headers)";
  common::LogWarning() << field(req.remote_addr) << " " << field(req.method) << " "
                       << field(req.path) << " refused (" << RefusalStatus(decision)
                       << "): " << why;
}

void LogRequest(const httplib::Request& req, const httplib::Response& res) {
  std::string ms = "-";
  if (request_start) {
    ms = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - *request_start)
                            .count());
    request_start.reset();
  }
  request_authenticated = false;
  auto field = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  // A read that went well is not worth a line at the default level (a poller would write one
  // per second forever); changes and every failure are.
  const bool read = req.method == "GET" || req.method == "HEAD" || req.path == "/getBackends";
  common::LogLine line(read && res.status < 400 ? common::LogLevel::kDebug
                                                : common::LogLevel::kInfo);
  line << field(req.remote_addr) << " " << field(req.method) << " " << field(req.path) << " "
       << res.status << " " << ms << " ms";
}

class Handlers {
 public:
  Handlers(client::CommandClient& agent, const common::Settings& settings,
           std::shared_ptr<const TokenStore> tokens)
      : agent_(agent),
        tokens_(std::move(tokens)),
        default_backend_(settings.haproxy.default_backend),
        instance_prefix_(settings.bridge.instance_prefix),
        max_body_bytes_(settings.bridge.max_body_bytes) {}

  void Reload(const httplib::Request& req, httplib::Response& res) const {
    proto::Result<std::string> config = ConfigFromRequest(req, max_body_bytes_);
    if (!config.ok()) return SendError(res, config.status());
    proto::Result<bool> force = ForceParam(req);
    if (!force.ok()) return SendError(res, force.status());
    json args = {{"config", std::move(config).value()}};
    if (*force) args["force"] = true;
    if (req.has_param("expect_sha256")) {
      args["expect_sha256"] = req.get_param_value("expect_sha256");
    }

    proto::Result<proto::Reply> reply = CallAgent("reload", std::move(args));
    if (!reply.ok()) return SendError(res, reply.status());
    if (!reply->status.ok()) return SendError(res, reply->status);
    json body = reply->result.is_object() ? std::move(reply->result) : json::object();
    body["success"] = true;
    body["message"] = kSuccessMessage;
    SendJson(res, 200, body);
  }

  void GetBackends(const httplib::Request& req, httplib::Response& res) const {
    std::string backend = req.has_param("backend") ? req.get_param_value("backend") : "";
    if (backend.empty()) backend = default_backend_;
    if (backend == "*") {
      return SendError(res, Status(ErrorCode::kBadRequest,
                                   "/getBackends lists one backend; name it in ?backend="));
    }
    std::shared_ptr<const Answer> answer = SharedBackendsAnswer(backend);
    res.status = answer->status;
    res.set_content(answer->body, "application/json");
  }

  // With tokens on, a health check without a valid token learns only whether the agent is up.
  void Healthz(const httplib::Request&, httplib::Response& res) const {
    proto::Result<proto::Reply> reply = CallAgent("ping", json::object());
    Status status = reply.ok() ? reply->status : reply.status();
    if (!tokens_->Get()->empty() && !request_authenticated) {
      return SendJson(res, status.ok() ? 200 : HttpStatusFor(status.code()),
                      {{"success", status.ok()}, {"agent", status.ok() ? "up" : "down"}});
    }
    if (!status.ok()) {
      json body = ErrorBody(status);
      body["agent"] = "down";
      return SendJson(res, HttpStatusFor(status.code()), body);
    }
    json body = {{"success", true}, {"agent", "up"}, {"endpoint", agent_.endpoint()}};
    if (reply->result.is_object() && reply->result.contains("version")) {
      body["agent_version"] = reply->result["version"];
    }
    SendJson(res, 200, body);
  }

  // Decides whether the request may reach its route (security.h), from its head alone: a refusal
  // is answered before any body is read (HttpServer closes the connection after it, so a body
  // left unread cannot be parsed as a next request). Returns true when the request has been
  // answered.
  bool CheckAccess(const httplib::Request& req, httplib::Response& res) const {
    AccessDecision decision = DecideAccess(req.method, req.path, req.headers, *tokens_->Get());
    request_authenticated = decision.authenticated;
    if (decision.allowed()) return false;
    LogRefusal(req, decision);
    SendRefusal(res, decision);
    return true;
  }

  // Gives every error the server answers by itself (no route, a body above its limit, a
  // malformed or too slow request) the same JSON shape as the handlers' errors. Answers the
  // handlers wrote are kept.
  httplib::Server::HandlerResponse Error(const httplib::Request& req,
                                         httplib::Response& res) const {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    json body;
    switch (res.status) {
      case 404:
        body = {{"success", false},
                {"error", "no route for " + req.method + " " + req.path +
                              "; routes: POST /reload, POST /reloadHaproxy, GET|POST "
                              "/getBackends, GET /healthz, GET /events, GET /metrics, /v1/... "
                              "(GET /v1/openapi.json describes them)"},
                {"code", "not_found"}};
        break;
      case 413:
        body = ErrorBody(Status(ErrorCode::kTooLarge, "request body exceeds the limit of " +
                                                          std::to_string(max_body_bytes_) +
                                                          " bytes (max_body_bytes)"));
        break;
      case 431:
        body =
            ErrorBody(Status(ErrorCode::kTooLarge,
                             "request head too large: at most " + std::to_string(kMaxHeadBytes) +
                                 " bytes and " + std::to_string(kMaxHeaders) + " header fields"));
        break;
      case 408:
        body = ErrorBody(Status(ErrorCode::kTimeout,
                                "the request did not arrive in time (its head within " +
                                    std::to_string(kHeadTimeout.count()) + " s, its body within " +
                                    std::to_string(kReadTimeout.count()) + " s)"));
        break;
      default:
        body = ErrorBody(Status(res.status < 500 ? ErrorCode::kBadRequest : ErrorCode::kInternal,
                                "request failed with HTTP status " + std::to_string(res.status)));
        break;
    }
    res.set_content(Dump(body), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }

 private:
  proto::Result<proto::Reply> CallAgent(const std::string& cmd, json args) const {
    return CallAgentFromBridge(agent_, cmd, args);
  }

  // A response shared by the requests of one flight.
  struct Answer {
    int status = 500;
    std::string body;
  };
  static Answer ErrorAnswer(const Status& status) {
    return {HttpStatusFor(status.code()), Dump(ErrorBody(status))};
  }

  // /getBackends of `backend`, from one `status` call to the agent.
  Answer BackendsAnswer(const std::string& backend) const {
    proto::Result<proto::Reply> reply = CallAgent("status", {{"backend", backend}});
    if (!reply.ok()) return ErrorAnswer(reply.status());
    if (!reply->status.ok()) return ErrorAnswer(reply->status);
    const json& result = reply->result;
    auto backends = result.is_object() ? result.find("backends") : result.end();
    if (backends != result.end() && backends->is_array()) {
      for (const json& entry : *backends) {
        if (entry.is_object() && entry.value("name", json()) == json(backend)) {
          return {200, Dump({{"success", true},
                             {"message", proto::LegacyBackendList(entry, instance_prefix_)}})};
        }
      }
    }
    return ErrorAnswer(Status(ErrorCode::kInternal,
                              "the agent's status result holds no backend \"" + backend + "\""));
  }

  // Concurrent /getBackends of one backend share one agent call that started after each of
  // them arrived, and its serialized answer (single_flight.h): 64 pollers cost the agent one or
  // two `status` at a time. Backend names come from clients, so the flights kept are bounded;
  // past the bound a name gets a flight of its own (no sharing, same answer).
  std::shared_ptr<const Answer> SharedBackendsAnswer(const std::string& backend) const {
    common::SingleFlight<Answer>* flight = nullptr;
    {
      std::lock_guard<std::mutex> lock(flights_mu_);
      auto it = flights_.find(backend);
      if (it == flights_.end() && flights_.size() < kMaxSharedFlights) {
        it = flights_
                 .emplace(backend, std::make_unique<common::SingleFlight<Answer>>(
                                       [this, backend] { return BackendsAnswer(backend); }))
                 .first;
      }
      if (it != flights_.end()) flight = it->second.get();  // never erased: stays valid
    }
    if (flight != nullptr) return flight->Get();
    return std::make_shared<const Answer>(BackendsAnswer(backend));
  }
  static constexpr std::size_t kMaxSharedFlights = 64;

  client::CommandClient& agent_;
  const std::shared_ptr<const TokenStore> tokens_;
  const std::string default_backend_;
  const std::string instance_prefix_;
  const size_t max_body_bytes_;
  mutable std::mutex flights_mu_;
  mutable std::map<std::string, std::unique_ptr<common::SingleFlight<Answer>>> flights_;
};

std::string ExceptionMessage(std::exception_ptr ep) {
  try {
    if (ep) std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
  }
  return "unknown exception";
}

}  // namespace

proto::Result<proto::Reply> CallAgentFromBridge(client::CommandClient& agent,
                                                const std::string& cmd, const json& args) {
  proto::Result<proto::Reply> reply = agent.Call(cmd, args);
  if (!reply.ok() && reply.status().code() == ErrorCode::kBadRequest) {
    return Status(ErrorCode::kInternal,
                  reply.status().message() + " ([lb-agent] command_endpoint)");
  }
  return reply;
}

int HttpStatusFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return 200;
    case ErrorCode::kBadRequest:
      return 400;
    case ErrorCode::kConflict:
    case ErrorCode::kSuperseded:
      return 409;
    case ErrorCode::kTooLarge:
      return 413;
    case ErrorCode::kInvalidConfig:
      return 422;
    case ErrorCode::kReloadFailed:
    case ErrorCode::kInternal:
    case ErrorCode::kUnknownCommand:
      return 500;
    case ErrorCode::kHaproxyUnavailable:
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kTimeout:
      return 504;
  }
  return 500;
}

json ErrorBody(const Status& status) {
  json body = {{"success", false},
               {"error", status.message()},
               {"code", std::string(proto::ErrorCodeName(status.code()))}};
  if (!status.details().is_null()) body["details"] = status.details();
  return body;
}

proto::Result<std::string> ConfigFromRequest(const httplib::Request& req, size_t max_bytes) {
  if (req.body.size() > max_bytes) return TooLarge(req.body.size(), max_bytes);
  const std::string type = MediaType(req);
  std::string config;
  if (type == "multipart/form-data") {
    if (!req.has_file("config")) {
      return Status(ErrorCode::kBadRequest, "multipart request has no \"config\" field");
    }
    config = req.get_file_value("config").content;
  } else if (type == "application/x-www-form-urlencoded") {
    std::optional<std::string> field = FormField(req.body, "config");
    config = field ? std::move(*field) : req.body;
  } else if (type == "application/json") {
    json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) {
      return Status(ErrorCode::kBadRequest,
                    "request body is not valid JSON (Content-Type is "
                    "application/json; send {\"config\": \"...\"})");
    }
    auto it = body.is_object() ? body.find("config") : body.end();
    if (it == body.end() || !it->is_string()) {
      return Status(ErrorCode::kBadRequest,
                    "JSON request body must be an object with a string \"config\"");
    }
    config = it->get<std::string>();
  } else {
    config = req.body;
  }
  if (config.size() > max_bytes) return TooLarge(config.size(), max_bytes);
  if (config.empty()) {
    return Status(ErrorCode::kBadRequest,
                  "no configuration: send the HAProxy configuration as the request body");
  }
  return config;
}

client::CommandClientOptions AgentClientOptions(const common::Settings& settings,
                                                std::optional<common::CurveClientKeys> curve) {
  client::CommandClientOptions options;
  options.endpoint = settings.agent.command_endpoint;
  options.timeout = settings.bridge.agent_timeout;
  options.connect_timeout = std::chrono::milliseconds(2000);
  // The agent's replies are small next to the codec's default limit (a status of thousands of
  // servers is ~150 KB).
  options.max_reply_bytes = proto::DecodeLimits().max_frame_bytes;
  options.curve = std::move(curve);
  // One connected socket per request thread stays open between requests: a new socket and
  // handshake per request cost more than a status.
  options.keep_connections = kRequestThreads;
  options.wording.client = "lb-bridge";
  options.wording.own_key = "[security] bridge_curve_secret_key";
  options.wording.server_key = "[security] agent_public_key";
  options.wording.keys_unset.clear();
  return options;
}

void InstallHttpApi(HttpServer& server, client::CommandClient& agent,
                    const common::Settings& settings, std::shared_ptr<const TokenStore> tokens,
                    RequestMetrics* metrics) {
  InstallRestApi(server, agent, settings);
  auto handlers = std::make_shared<const Handlers>(agent, settings, std::move(tokens));
  auto reload = [handlers](const httplib::Request& req, httplib::Response& res) {
    handlers->Reload(req, res);
  };
  auto get_backends = [handlers](const httplib::Request& req, httplib::Response& res) {
    handlers->GetBackends(req, res);
  };
  server.Post("/reloadHaproxy", reload);
  server.Post("/reload", reload);
  server.Post("/getBackends", get_backends);
  server.Get("/getBackends", get_backends);
  server.Get("/healthz", [handlers](const httplib::Request& req, httplib::Response& res) {
    handlers->Healthz(req, res);
  });

  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [handlers](const httplib::Request& req, httplib::Response& res) {
        return handlers->Error(req, res);
      }));
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        SendError(res, Status(ErrorCode::kInternal, "bridge failed: " + ExceptionMessage(ep)));
      });
  // The access check runs twice: on the head, on the I/O thread, so that a refusal reads no
  // body; and before the route, on its pool thread, where it sets request_authenticated for the
  // route and the logger (the tokens may also have been replaced in between).
  auto check = [handlers](const httplib::Request& req, httplib::Response& res) {
    request_start = std::chrono::steady_clock::now();
    request_authenticated = false;
    return handlers->CheckAccess(req, res) ? httplib::Server::HandlerResponse::Handled
                                           : httplib::Server::HandlerResponse::Unhandled;
  };
  server.set_head_check(check);
  server.set_pre_routing_handler(check);
  server.set_logger([metrics](const httplib::Request& req, const httplib::Response& res) {
    if (metrics != nullptr) metrics->Count(req.path, res.status);
    LogRequest(req, res);
  });

  HttpServerOptions& options = server.options();
  options.max_body_bytes = settings.bridge.max_body_bytes + kPayloadSlack;
  options.max_head_bytes = kMaxHeadBytes;
  options.max_headers = kMaxHeaders;
  options.head_timeout = kHeadTimeout;
  options.body_timeout = kReadTimeout;
  options.write_timeout = kWriteTimeout;
  options.idle_timeout = kIdleTimeout;
  options.threads = kRequestThreads;
}

}  // namespace lb::bridge
