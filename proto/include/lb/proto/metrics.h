// The result of the agent's `metrics` command (PROTOCOL.md, "metrics"): the agent's own counters
// and gauges, which lb-bridge serves in the Prometheus text format at GET /metrics.
//
// Every map below has a bounded set of keys (the outcomes and kinds listed with it), so that no
// request can create a new time series. AgentMetricsFromJson checks that too: it is the reader
// of a reply from another process.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lb/proto/status.h"

namespace lb::proto {

// A histogram as Prometheus has it: cumulative counts per upper bound, +Inf being `count`.
struct Histogram {
  std::vector<double> bounds;        // upper bounds, strictly increasing, finite
  std::vector<uint64_t> cumulative;  // cumulative[i]: observations <= bounds[i]
  double sum = 0;
  uint64_t count = 0;

  // Empty buckets for `bounds`.
  static Histogram WithBounds(std::vector<double> bounds);
  void Observe(double value);
};

// Seconds: from a `reload` answered `unchanged` in a few milliseconds to a reload of a large
// config that waits for haproxy's old workers.
inline const std::vector<double> kReloadDurationBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                          0.5,   1,    2.5,   5,    10,  30};

struct AgentMetrics {
  // Reload answers by outcome: "applied", "unchanged", "rolled_back" (haproxy refused it and the
  // previous config serves again), or the error code of any other refusal or failure
  // ("invalid_config", "conflict", "superseded", "reload_failed", "too_large", ...).
  std::map<std::string, uint64_t> reloads;
  // Applied or unchanged reloads by how they reached haproxy: "unchanged", "runtime", "reload".
  std::map<std::string, uint64_t> updates;
  // Rollbacks by trigger: "automatic" (a failed reload restored the previous config) and
  // "command" (the `rollback` command applied a kept config).
  std::map<std::string, uint64_t> rollbacks;
  // Seconds of each reload the reload worker ran, whatever its outcome.
  Histogram reload_duration = Histogram::WithBounds(kReloadDurationBounds);
  bool haproxy_up = false;  // as the agent's last "haproxy" event said (PROTOCOL.md, Events)
  std::optional<int64_t> old_workers;  // workers still finishing old connections (master API)
  std::string config_sha256;           // of the live file; "" when there is none
  std::map<std::string, uint64_t> events_published;  // by type: server, haproxy, reload, heartbeat
  uint64_t event_seq = 0;                            // seq of the last event
  int64_t event_epoch_ms = 0;                        // the publisher's start; seq restarts with it
  bool fleet_enabled = false;
  uint64_t fleet_applied_version = 0;  // newest controller push processed
  uint64_t fleet_synced_version = 0;   // newest version the controller confirmed
  bool controller_connected = false;   // a controller beacon within beacon_timeout
  double start_time_seconds = 0;       // the agent's start, Unix time
};

nlohmann::json ToJson(const AgentMetrics& metrics);
// Parses a `metrics` result: a bad_request naming the first field of the wrong type, or a map
// with too many keys (more than 64) or a key that is not a short lower-case name.
Result<AgentMetrics> AgentMetricsFromJson(const nlohmann::json& result);

}  // namespace lb::proto
