// The /v1 routes: the table, its dispatcher, and one handler per operation.
#include "rest_api.h"

#include <httplib.h>

#include <cctype>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http_api.h"

namespace lb::bridge {

// Generated from bridge/openapi.json at build time (bridge/CMakeLists.txt).
extern const char kOpenApiJson[];
extern const std::size_t kOpenApiJsonSize;

std::string_view OpenApiDocument() { return std::string_view(kOpenApiJson, kOpenApiJsonSize); }

namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;

// An error of the bridge's own (not_found, method_not_allowed): ErrorBody's shape.
void SendBridgeError(httplib::Response& res, int http_status, std::string_view code,
                     std::string message, json details = nullptr) {
  json body = {{"success", false}, {"error", std::move(message)}, {"code", code}};
  if (!details.is_null()) body["details"] = std::move(details);
  SendJson(res, http_status, body);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "\"<sha256>\"": an ETag is the config's sha256, quoted (RFC 9110 section 8.8.3).
std::string EntityTag(std::string_view sha256) { return "\"" + std::string(sha256) + "\""; }

// One entity-tag of an If-Match / If-None-Match list.
struct EntityTagRef {
  bool weak = false;
  std::string opaque;  // without the quotes
};

// Parses "*" (no tags, `any` set) or a comma-separated list of entity-tags (`any` cleared). A
// value that is neither is bad_request: a client that sends a bare sha256 learns the syntax
// instead of silently never matching.
proto::Result<std::vector<EntityTagRef>> ParseEntityTags(std::string_view value,
                                                         std::string_view header, bool& any) {
  any = false;
  std::vector<EntityTagRef> tags;
  value = Trim(value);
  if (value == "*") {
    any = true;
    return tags;
  }
  auto bad = [&] {
    return Status(ErrorCode::kBadRequest,
                  std::string(header) +
                      " must be \"*\" or entity-tags as the ETag header gives them, quoted: " +
                      std::string(header) + ": \"<sha256>\"");
  };
  while (true) {
    value = Trim(value);
    EntityTagRef tag;
    if (value.starts_with("W/")) {
      tag.weak = true;
      value.remove_prefix(2);
    }
    if (value.size() < 2 || value.front() != '"') return bad();
    const size_t close = value.find('"', 1);
    if (close == std::string_view::npos) return bad();
    tag.opaque = std::string(value.substr(1, close - 1));
    tags.push_back(std::move(tag));
    value = Trim(value.substr(close + 1));
    if (value.empty()) break;
    if (value.front() != ',') return bad();
    value.remove_prefix(1);
  }
  return tags;
}

using Handler = std::function<void(const httplib::Request&, httplib::Response&,
                                   const std::vector<std::string>& captures)>;

// One path of the API: the methods it answers (HEAD comes with GET), and their handlers. A
// method whose handler is empty is installed elsewhere (GET /healthz, GET /v1/events).
struct Route {
  Route(std::string path_pattern, std::vector<std::pair<std::string, Handler>> handlers)
      : path(std::move(path_pattern)), pattern(path), methods(std::move(handlers)) {}

  std::string path;  // a regular expression matched against the whole path, as httplib does
  std::regex pattern;
  std::vector<std::pair<std::string, Handler>> methods;

  std::string Allow() const {
    std::string allow;
    for (const auto& [method, handler] : methods) {
      if (!allow.empty()) allow += ", ";
      allow += method;
      if (method == "GET") allow += ", HEAD";
    }
    return allow;
  }
};

class Api final {
 public:
  Api(client::CommandClient& agent, const common::Settings& settings)
      : agent_(agent), max_body_bytes_(settings.bridge.max_body_bytes) {
    auto bind = [this](void (Api::*method)(const httplib::Request&, httplib::Response&,
                                           const std::vector<std::string>&) const) -> Handler {
      return [this, method](const httplib::Request& req, httplib::Response& res,
                            const std::vector<std::string>& captures) {
        (this->*method)(req, res, captures);
      };
    };
    // The table. An empty handler: the method is installed elsewhere (see Route).
    routes_ = {
        {"/v1/backends", {{"GET", bind(&Api::GetBackends)}}},
        {R"(/v1/backends/([^/]+))", {{"GET", bind(&Api::GetBackend)}}},
        {"/v1/info", {{"GET", bind(&Api::GetInfo)}}},
        {"/v1/config", {{"GET", bind(&Api::GetConfig)}, {"PUT", bind(&Api::PutConfig)}}},
        {"/v1/config/validate", {{"POST", bind(&Api::ValidateConfig)}}},
        {R"(/v1/openapi\.json)", {{"GET", bind(&Api::GetOpenApi)}}},
        {"/v1/events", {{"GET", Handler()}}},  // event_stream.h
        {"/healthz", {{"GET", Handler()}}},    // http_api.h
    };
  }

  void Install(HttpServer& server, std::shared_ptr<const Api> self) const {
    auto dispatch = [self](const httplib::Request& req, httplib::Response& res) {
      self->Dispatch(req, res);
    };
    for (const Route& route : routes_) {
      const std::string& pattern = route.path;
      bool get_elsewhere = false;
      for (const auto& [method, handler] : route.methods) {
        if (method == "GET" && !handler) get_elsewhere = true;
      }
      if (!get_elsewhere) server.Get(pattern, dispatch);
      server.Post(pattern, dispatch);
      server.Put(pattern, dispatch);
      server.Patch(pattern, dispatch);
      server.Delete(pattern, dispatch);
      server.Options(pattern, dispatch);
    }
  }

 private:
  // Finds the request's row and method; a method the row does not list is 405.
  void Dispatch(const httplib::Request& req, httplib::Response& res) const {
    for (const Route& route : routes_) {
      std::smatch match;
      if (!std::regex_match(req.path, match, route.pattern)) continue;
      std::vector<std::string> captures;
      for (size_t i = 1; i < match.size(); ++i) captures.push_back(match[i].str());
      const std::string method = req.method == "HEAD" ? "GET" : req.method;
      for (const auto& [name, handler] : route.methods) {
        if (name == method && handler) return handler(req, res, captures);
      }
      res.set_header("Allow", route.Allow());
      return SendBridgeError(
          res, 405, "method_not_allowed",
          req.method + " is not allowed on " + req.path + "; allowed: " + route.Allow());
    }
    SendBridgeError(res, 404, "not_found", "no route for " + req.method + " " + req.path);
  }

  // One call; the Status of a failed call or of the agent's error reply, else the result.
  proto::Result<json> Call(const std::string& cmd, json args) const {
    proto::Result<proto::Reply> reply = CallAgentFromBridge(agent_, cmd, args);
    if (!reply.ok()) return reply.status();
    if (!reply->status.ok()) return reply->status;
    return reply->result.is_object() ? std::move(reply->result) : json::object();
  }

  void GetBackends(const httplib::Request&, httplib::Response& res,
                   const std::vector<std::string>&) const {
    proto::Result<json> result = Call("status", {{"backend", "*"}});
    if (!result.ok()) return SendError(res, result.status());
    SendJson(res, 200, *result);
  }

  // Asks for every backend and picks one, rather than asking for `name`: an unknown name is then
  // told apart from any other bad_request without reading the agent's message.
  void GetBackend(const httplib::Request&, httplib::Response& res,
                  const std::vector<std::string>& captures) const {
    const std::string& name = captures.at(0);
    proto::Result<json> result = Call("status", {{"backend", "*"}});
    if (!result.ok()) return SendError(res, result.status());
    json names = json::array();
    auto backends = result->find("backends");
    if (backends != result->end() && backends->is_array()) {
      for (json& backend : *backends) {
        if (!backend.is_object()) continue;
        if (backend.value("name", json()) == json(name)) {
          backend["seq"] = result->value("seq", json());
          backend["epoch"] = result->value("epoch", json());
          return SendJson(res, 200, backend);
        }
        names.push_back(backend.value("name", json()));
      }
    }
    SendBridgeError(
        res, 404, "not_found",
        "no backend \"" + name + "\" in haproxy's running config; backends: " +
            (names.empty() ? std::string("none")
                           : names.dump(-1, ' ', false, json::error_handler_t::replace)),
        {{"backends", names}});
  }

  void GetInfo(const httplib::Request&, httplib::Response& res,
               const std::vector<std::string>&) const {
    proto::Result<json> result = Call("info", json::object());
    if (!result.ok()) return SendError(res, result.status());
    SendJson(res, 200, *result);
  }

  void GetConfig(const httplib::Request& req, httplib::Response& res,
                 const std::vector<std::string>&) const {
    bool any = false;
    std::vector<EntityTagRef> tags;
    if (req.has_header("If-None-Match")) {
      auto parsed = ParseEntityTags(req.get_header_value("If-None-Match"), "If-None-Match", any);
      if (!parsed.ok()) return SendError(res, parsed.status());
      tags = std::move(parsed).value();
    }
    proto::Result<json> result = Call("get_config", json::object());
    if (!result.ok()) return SendError(res, result.status());
    if (!result->value("exists", false)) {
      return SendBridgeError(res, 404, "not_found",
                             "there is no live config: " + result->value("path", std::string()) +
                                 " does not exist (PUT /v1/config writes one)");
    }
    const std::string sha256 = result->value("sha256", std::string());
    res.set_header("ETag", EntityTag(sha256));
    res.set_header("Cache-Control", "no-cache");
    // If-None-Match compares weakly (RFC 9110 section 13.1.2): W/"x" matches "x".
    bool matched = any;
    for (const EntityTagRef& tag : tags) matched = matched || tag.opaque == sha256;
    if (matched) {
      res.status = 304;
      return;
    }
    res.status = 200;
    res.set_content(result->value("config", std::string()), "text/plain; charset=utf-8");
  }

  // The body of a PUT or validate: the config text, whatever its type, except the two types
  // that would carry it wrapped (http_api.cc's routes unwrap them; this API does not).
  proto::Result<std::string> ConfigBody(const httplib::Request& req) const {
    if (req.body.size() > max_body_bytes_) {
      return Status(ErrorCode::kTooLarge, "configuration of " + std::to_string(req.body.size()) +
                                              " bytes exceeds the limit of " +
                                              std::to_string(max_body_bytes_) +
                                              " bytes (max_body_bytes)");
    }
    std::string type = Lower(Trim(req.get_header_value("Content-Type")));
    type = std::string(Trim(std::string_view(type).substr(0, type.find(';'))));
    if (type == "multipart/form-data" || type == "application/json") {
      return Status(ErrorCode::kBadRequest, "the body is the HAProxy configuration itself, not " +
                                                type +
                                                ": send it as text/plain (curl -T haproxy.cfg)");
    }
    if (req.body.empty()) {
      return Status(ErrorCode::kBadRequest,
                    "no configuration: send the HAProxy configuration as the request body");
    }
    return req.body;
  }

  void PutConfig(const httplib::Request& req, httplib::Response& res,
                 const std::vector<std::string>&) const {
    json args = json::object();
    if (req.has_header("If-Match")) {
      bool any = false;
      auto tags = ParseEntityTags(req.get_header_value("If-Match"), "If-Match", any);
      if (!tags.ok()) return SendError(res, tags.status());
      if (!any) {
        // If-Match compares strongly: a weak tag never matches. The agent takes one expected
        // sha256, so a list is refused rather than half honoured.
        if (tags->size() != 1) {
          return SendError(res, Status(ErrorCode::kBadRequest,
                                       "If-Match takes one entity-tag here (the sha256 of the "
                                       "config the change was made on)"));
        }
        if (tags->front().weak) {
          return SendJson(res, 412,
                          ErrorBody(Status(ErrorCode::kConflict,
                                           "If-Match holds a weak entity-tag, which never "
                                           "matches: send the ETag of GET /v1/config as it is")));
        }
        args["expect_sha256"] = tags->front().opaque;
      }
    }
    proto::Result<bool> force = ForceParam(req);
    if (!force.ok()) return SendError(res, force.status());
    if (*force) args["force"] = true;
    if (req.has_param("apply_via")) {
      const std::string via = req.get_param_value("apply_via");
      if (via != "auto" && via != "reload") {
        return SendError(
            res, Status(ErrorCode::kBadRequest,
                        "query parameter apply_via must be auto or reload, got \"" + via + "\""));
      }
      args["apply_via"] = via;
    }
    proto::Result<std::string> config = ConfigBody(req);
    if (!config.ok()) return SendError(res, config.status());
    args["config"] = std::move(config).value();

    proto::Result<json> result = Call("reload", std::move(args));
    if (!result.ok()) {
      // A failed precondition is 412 (RFC 9110 section 13.1.1), not the legacy routes' 409.
      const int http = result.status().code() == ErrorCode::kConflict
                           ? 412
                           : HttpStatusFor(result.status().code());
      return SendJson(res, http, ErrorBody(result.status()));
    }
    if (result->contains("sha256") && (*result)["sha256"].is_string()) {
      res.set_header("ETag", EntityTag((*result)["sha256"].get<std::string>()));
    }
    SendJson(res, 200, *result);
  }

  void ValidateConfig(const httplib::Request& req, httplib::Response& res,
                      const std::vector<std::string>&) const {
    proto::Result<bool> force = ForceParam(req);
    if (!force.ok()) return SendError(res, force.status());
    proto::Result<std::string> config = ConfigBody(req);
    if (!config.ok()) return SendError(res, config.status());
    json args = {{"config", std::move(config).value()}};
    if (*force) args["force"] = true;
    proto::Result<json> result = Call("validate", std::move(args));
    if (!result.ok()) return SendError(res, result.status());
    SendJson(res, 200, *result);
  }

  void GetOpenApi(const httplib::Request&, httplib::Response& res,
                  const std::vector<std::string>&) const {
    res.status = 200;
    res.set_content(std::string(OpenApiDocument()), "application/json");
  }

  client::CommandClient& agent_;
  const size_t max_body_bytes_;
  std::vector<Route> routes_;
};

}  // namespace

void InstallRestApi(HttpServer& server, client::CommandClient& agent,
                    const common::Settings& settings) {
  auto api = std::make_shared<const Api>(agent, settings);
  api->Install(server, api);
}

}  // namespace lb::bridge
