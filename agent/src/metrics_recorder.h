// MetricsRecorder: the agent's reload counters and reload duration histogram, as the `metrics`
// command reports them (lb/proto/metrics.h). The Agent feeds it every reload answer, whatever
// path the reload took (command socket, fleet push, rollback, refused before the worker), and
// the duration of every Apply the reload worker runs. Thread-safe: any thread may record or read.
#pragma once

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>

#include "lb/proto/metrics.h"
#include "lb/proto/status.h"

namespace lb::agent {

class MetricsRecorder {
 public:
  // The outcomes and kinds every scrape shows, at 0 until they happen (a counter that appears
  // only at its first increment hides that increment from rate()).
  MetricsRecorder();

  // A reload was answered with `status` and, when ok, `result` (ReloadPipeline::Apply's shape).
  // `source` is the reload's source ("command", "fleet", "rollback").
  // Counts its outcome (proto::AgentMetrics::reloads), how an applied one reached haproxy
  // (updates) and rollbacks (automatic: details.rolled_back of a failure; command: an applied
  // reload from `rollback`).
  void ReloadAnswered(const proto::Status& status, const nlohmann::json& result,
                      std::string_view source);
  // One Apply of the reload worker took `duration`.
  void ReloadTimed(std::chrono::steady_clock::duration duration);

  // The counters, into the fields of `out` they own (reloads, updates, rollbacks,
  // reload_duration); the other fields are left as they are.
  void Snapshot(proto::AgentMetrics* out) const;

 private:
  mutable std::mutex mu_;
  proto::AgentMetrics counters_;  // only the fields Snapshot() copies are used
};

}  // namespace lb::agent
