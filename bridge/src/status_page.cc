// The status page's routes: the compiled-in files, and /ui/status built from two agent calls.
#include "status_page.h"

#include <httplib.h>

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "http_api.h"
#include "http_server.h"
#include "web_assets.h"

namespace lb::bridge {
namespace {

using nlohmann::json;

void SetPageHeaders(httplib::Response& res) {
  res.set_header("Content-Security-Policy", std::string(kStatusPageCsp));
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("X-Frame-Options", "DENY");
}

// A compiled-in file. no-cache: a browser asks again each time, so a new lb-bridge's page is
// never mixed with an old script.
httplib::Server::Handler ServeAsset(std::string_view content, const char* type) {
  return [content, type](const httplib::Request&, httplib::Response& res) {
    SetPageHeaders(res);
    res.set_header("Cache-Control", "no-cache");
    res.set_content(content.data(), content.size(), type);
  };
}

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

void SendJson(httplib::Response& res, int status, const json& body) {
  SetPageHeaders(res);
  res.set_header("Cache-Control", "no-store");
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

// The agent's answer to `cmd`, or the error it (or the connection to it) gave.
proto::Result<json> Ask(client::CommandClient& agent, const char* cmd, const json& args) {
  proto::Result<proto::Reply> reply = agent.Call(cmd, args);
  if (!reply.ok()) return reply.status();
  if (!reply->status.ok()) return reply->status;
  if (!reply->result.is_object()) {
    return proto::Status(proto::ErrorCode::kInternal,
                         std::string("the agent's ") + cmd + " result is not an object");
  }
  return std::move(reply->result);
}

// `from[key]` when present, else null: the page shows "–" for what the agent does not report.
json Field(const json& from, std::string_view key) {
  if (!from.is_object()) return nullptr;
  auto it = from.find(key);
  return it == from.end() ? json(nullptr) : *it;
}

json Pick(const json& from, std::initializer_list<std::string_view> keys) {
  json out = json::object();
  for (std::string_view key : keys) {
    json value = Field(from, key);
    if (!value.is_null()) out[std::string(key)] = std::move(value);
  }
  return out;
}

void ServeStatus(client::CommandClient& agent, httplib::Response& res) {
  // status first: it is what the page is for; info adds the config and the last reload.
  proto::Result<json> status = Ask(agent, "status", {{"backend", "*"}});
  if (!status.ok())
    return SendJson(res, HttpStatusFor(status.status().code()), ErrorBody(status.status()));
  proto::Result<json> info = Ask(agent, "info", json::object());
  if (!info.ok())
    return SendJson(res, HttpStatusFor(info.status().code()), ErrorBody(info.status()));
  json backends = Field(*status, "backends");
  SendJson(res, 200,
           {{"success", true},
            {"backends", backends.is_array() ? backends : json::array()},
            {"config", Pick(Field(*info, "config"), {"sha256"})},
            {"last_reload", Field(*info, "last_reload")},
            {"haproxy", Pick(Field(*info, "haproxy"),
                             {"running", "version", "pid", "reloads", "uptime_s", "error"})},
            {"agent", Pick(Field(*info, "agent"), {"version"})}});
}

}  // namespace

void InstallStatusPage(HttpServer& server, client::CommandClient& agent) {
  server.Get("/", ServeAsset(web::kIndexHtml, "text/html; charset=utf-8"));
  server.Get("/ui/app.js", ServeAsset(web::kAppJs, "text/javascript; charset=utf-8"));
  server.Get("/ui/app.css", ServeAsset(web::kAppCss, "text/css; charset=utf-8"));
  server.Get("/ui/icon.svg", ServeAsset(web::kIconSvg, "image/svg+xml"));
  server.Get("/ui/status", [&agent](const httplib::Request&, httplib::Response& res) {
    ServeStatus(agent, res);
  });
}

}  // namespace lb::bridge
