#include "metrics.h"

#include <httplib.h>

#include <algorithm>

#include "http_server.h"
#include "lb/common/log.h"

namespace lb::bridge {
namespace {

using prometheus::Family;
using prometheus::MetricType;

struct RouteRow {
  std::string_view path;  // exact path, or a prefix when it ends in '/'
  std::string_view route;
};

// Every route the bridge serves. A row ending in '/' matches one more path segment.
constexpr std::array<RouteRow, 14> kRoutes = {{
    {"/", "/"},
    {"/reload", "/reload"},
    {"/reloadHaproxy", "/reloadHaproxy"},
    {"/getBackends", "/getBackends"},
    {"/healthz", "/healthz"},
    {"/events", "/events"},
    {"/metrics", "/metrics"},
    {"/v1/backends", "/v1/backends"},
    {"/v1/backends/", "/v1/backends/{name}"},
    {"/v1/info", "/v1/info"},
    {"/v1/config", "/v1/config"},
    {"/v1/config/validate", "/v1/config/validate"},
    {"/v1/events", "/v1/events"},
    {"/v1/openapi.json", "/v1/openapi.json"},
}};

Family Counter(std::string name, std::string help) {
  return Family{std::move(name), std::move(help), MetricType::kCounter, {}};
}

Family Gauge(std::string name, std::string help) {
  return Family{std::move(name), std::move(help), MetricType::kGauge, {}};
}

Family ByLabel(Family family, const std::string& label,
               const std::map<std::string, uint64_t>& counts) {
  for (const auto& [value, count] : counts)
    family.Add({{label, value}}, static_cast<double>(count));
  return family;
}

}  // namespace

std::string_view RouteTemplate(std::string_view path) {
  for (const RouteRow& row : kRoutes) {
    if (row.path.size() > 1 && row.path.back() == '/') {
      if (path.size() > row.path.size() && path.substr(0, row.path.size()) == row.path &&
          path.find('/', row.path.size()) == std::string_view::npos) {
        return row.route;
      }
    } else if (path == row.path) {
      return row.route;
    }
  }
  return "other";
}

void RequestMetrics::Count(std::string_view path, int status) {
  const std::string route(RouteTemplate(path));
  const int code = status >= 100 && status <= 599 ? status : 0;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, count] : counts_) {
    if (key.first == route && key.second == code) {
      ++count;
      return;
    }
  }
  counts_.push_back({{route, code}, 1});
}

Family RequestMetrics::Family() const {
  prometheus::Family family =
      Counter("lbagent_bridge_requests_total",
              "HTTP requests lb-bridge answered, by route template and status code.");
  std::vector<std::pair<std::pair<std::string, int>, uint64_t>> counts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    counts = counts_;
  }
  std::sort(counts.begin(), counts.end());
  for (const auto& [key, count] : counts) {
    family.Add(
        {{"route", key.first}, {"code", key.second == 0 ? "other" : std::to_string(key.second)}},
        static_cast<double>(count));
  }
  return family;
}

std::vector<Family> AgentFamilies(const proto::AgentMetrics& m) {
  std::vector<Family> out;
  out.push_back(
      Gauge("lbagent_agent_up", "1 when lb-agent answered the bridge's metrics call.").Add({}, 1));
  out.push_back(ByLabel(Counter("lbagent_reloads_total",
                                "Reload requests answered by lb-agent, by outcome (applied, "
                                "unchanged, rolled_back, or the error code)."),
                        "outcome", m.reloads));
  out.push_back(ByLabel(Counter("lbagent_updates_total",
                                "Configs applied or found unchanged, by how they reached haproxy."),
                        "via", m.updates));
  Family duration{"lbagent_reload_duration_seconds",
                  "Time lb-agent took to apply one reload request, whatever its outcome.",
                  MetricType::kHistogram,
                  {}};
  duration.AddHistogram({}, m.reload_duration.bounds, m.reload_duration.cumulative,
                        m.reload_duration.sum, m.reload_duration.count);
  out.push_back(std::move(duration));
  out.push_back(ByLabel(Counter("lbagent_rollbacks_total",
                                "Rollbacks to a previous config, by trigger (automatic after a "
                                "failed reload, or the rollback command)."),
                        "trigger", m.rollbacks));
  out.push_back(Gauge("lbagent_haproxy_up", "1 when an haproxy worker serves.")
                    .Add({}, m.haproxy_up ? 1 : 0));
  if (m.old_workers) {
    out.push_back(Gauge("lbagent_haproxy_old_workers",
                        "haproxy workers of earlier reloads still finishing their connections.")
                      .Add({}, static_cast<double>(*m.old_workers)));
  }
  Family config =
      Gauge("lbagent_config_info", "The live haproxy config, by its sha256 (always 1).");
  if (!m.config_sha256.empty()) config.Add({{"sha256", m.config_sha256}}, 1);
  out.push_back(std::move(config));
  out.push_back(ByLabel(Counter("lbagent_events_published_total",
                                "Messages lb-agent published on its event socket, by type."),
                        "type", m.events_published));
  out.push_back(Gauge("lbagent_event_seq", "seq of the last event lb-agent published.")
                    .Add({}, static_cast<double>(m.event_seq)));
  if (m.fleet_enabled) {
    out.push_back(
        Gauge("lbagent_fleet_applied_version", "Newest fleet controller push this agent processed.")
            .Add({}, static_cast<double>(m.fleet_applied_version)));
    out.push_back(Gauge("lbagent_fleet_synced_version",
                        "Newest fleet version the controller confirmed to this agent.")
                      .Add({}, static_cast<double>(m.fleet_synced_version)));
    out.push_back(Gauge("lbagent_fleet_controller_connected",
                        "1 when a fleet controller beacon arrived within beacon_timeout.")
                      .Add({}, m.controller_connected ? 1 : 0));
  }
  out.push_back(Gauge("lbagent_start_time_seconds", "Start time of lb-agent, Unix seconds.")
                    .Add({}, m.start_time_seconds));
  return out;
}

std::string MetricsPage(const proto::AgentMetrics* agent, const RequestMetrics& requests,
                        std::size_t sse_streams) {
  std::vector<Family> families;
  if (agent != nullptr) {
    families = AgentFamilies(*agent);
  } else {
    families.push_back(
        Gauge("lbagent_agent_up", "1 when lb-agent answered the bridge's metrics call.")
            .Add({}, 0));
  }
  families.push_back(requests.Family());
  families.push_back(Gauge("lbagent_bridge_sse_streams", "Event streams (GET /events) open now.")
                         .Add({}, static_cast<double>(sse_streams)));
  return prometheus::Encode(families);
}

void InstallMetrics(HttpServer& server, client::CommandClient& agent, const EventHub& hub,
                    const RequestMetrics& requests) {
  server.Get("/metrics", [&agent, &hub, &requests](const httplib::Request&,
                                                   httplib::Response& res) {
    proto::Result<proto::Reply> reply = agent.Call("metrics", nlohmann::json::object());
    proto::Status status = reply.ok() ? reply->status : reply.status();
    proto::Result<proto::AgentMetrics> parsed = status;
    if (status.ok()) parsed = proto::AgentMetricsFromJson(reply->result);
    // One line when the agent stops answering scrapes and one when it answers again, not one
    // per scrape.
    static std::atomic<bool> agent_was_up{true};
    if (agent_was_up.exchange(parsed.ok()) != parsed.ok()) {
      if (parsed.ok()) {
        common::LogInfo() << "GET /metrics: lb-agent's metrics are read again";
      } else {
        common::LogWarning() << "GET /metrics: lb-agent's metrics not read (lbagent_agent_up 0): "
                             << parsed.status().message();
      }
    }
    res.status = 200;
    res.set_content(
        MetricsPage(parsed.ok() ? &*parsed : nullptr, requests, hub.subscription_count()),
        std::string(prometheus::kContentType));
  });
}

}  // namespace lb::bridge
