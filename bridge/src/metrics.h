// GET /metrics: the agent's own counters (its `metrics` command, lb/proto/metrics.h) and the
// bridge's (requests by route and code, open event streams), in the Prometheus text format
// (prometheus_text.h). The metric list is in proto/PROTOCOL.md, "metrics".
//
// DESIGN: each scrape is one `metrics` call to the agent, so what Prometheus stores is what the
// agent counted, never the bridge's guess. When the agent does not answer, the scrape still
// succeeds with the bridge's own families and lbagent_agent_up 0, so that an agent that is down
// is a value to alert on rather than a failed scrape. Access is the same as every read route
// (security.h: bearer tokens when configured).
//
// Request labels are route templates from a fixed table (RouteTemplate), never the raw path:
// a client cannot create a time series by asking for a new URL.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "event_hub.h"
#include "lb/client/command_client.h"
#include "lb/proto/metrics.h"
#include "prometheus_text.h"

namespace lb::bridge {

class HttpServer;

// The route template `path` is answered by: "/reload", "/v1/backends/{name}", ...; "other" for
// every path no route serves (404s). A new route adds a row to the table in metrics.cc.
std::string_view RouteTemplate(std::string_view path);

// The bridge's request counters. Thread-safe (httplib's pool threads count concurrently).
class RequestMetrics {
 public:
  // One answered request: RouteTemplate(path) and the HTTP status (codes outside 100-599
  // count as "other").
  void Count(std::string_view path, int status);
  // lbagent_bridge_requests_total{route,code}.
  prometheus::Family Family() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::pair<std::string, int>, uint64_t>> counts_;  // guarded by mu_
};

// The families of an agent's `metrics` result, lbagent_agent_up 1 among them.
std::vector<prometheus::Family> AgentFamilies(const proto::AgentMetrics& metrics);

// The whole page: the agent's families (or lbagent_agent_up 0 when `agent` is null), then the
// bridge's requests and lbagent_bridge_sse_streams = `sse_streams`.
std::string MetricsPage(const proto::AgentMetrics* agent, const RequestMetrics& requests,
                        std::size_t sse_streams);

// Installs GET /metrics on `server`. `agent`, `hub` and `requests` must outlive `server`.
void InstallMetrics(HttpServer& server, client::CommandClient& agent, const EventHub& hub,
                    const RequestMetrics& requests);

}  // namespace lb::bridge
