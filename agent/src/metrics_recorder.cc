#include "metrics_recorder.h"

#include <string>

namespace lb::agent {

using nlohmann::json;

MetricsRecorder::MetricsRecorder() {
  for (const char* outcome : {"applied", "unchanged", "rolled_back", "invalid_config", "conflict",
                              "superseded", "reload_failed"}) {
    counters_.reloads[outcome] = 0;
  }
  for (const char* via : {"unchanged", "runtime", "reload"}) counters_.updates[via] = 0;
  for (const char* trigger : {"automatic", "command"}) counters_.rollbacks[trigger] = 0;
}

void MetricsRecorder::ReloadAnswered(const proto::Status& status, const json& result,
                                     std::string_view source) {
  std::string outcome;
  std::string via;
  bool automatic_rollback = false;
  if (status.ok()) {
    // Only the two known outcomes and kinds become label values.
    const std::string said = result.is_object() ? result.value("outcome", "") : "";
    outcome = said == "unchanged" ? "unchanged" : "applied";
    const std::string applied_via = result.is_object() ? result.value("applied_via", "") : "";
    via = outcome == "unchanged" ? "unchanged" : applied_via == "runtime" ? "runtime" : "reload";
  } else {
    const json& details = status.details();
    const auto rolled_back = details.find("rolled_back");  // end() when not an object
    automatic_rollback =
        rolled_back != details.end() && rolled_back->is_boolean() && rolled_back->get<bool>();
    outcome = automatic_rollback ? "rolled_back" : std::string(proto::ErrorCodeName(status.code()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.reloads[outcome];
  if (!via.empty()) ++counters_.updates[via];
  if (automatic_rollback) ++counters_.rollbacks["automatic"];
  if (status.ok() && via != "unchanged" && source == "rollback") ++counters_.rollbacks["command"];
}

void MetricsRecorder::ReloadTimed(std::chrono::steady_clock::duration duration) {
  const double seconds = std::chrono::duration<double>(duration).count();
  std::lock_guard<std::mutex> lock(mu_);
  counters_.reload_duration.Observe(seconds);
}

void MetricsRecorder::Snapshot(proto::AgentMetrics* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  out->reloads = counters_.reloads;
  out->updates = counters_.updates;
  out->rollbacks = counters_.rollbacks;
  out->reload_duration = counters_.reload_duration;
}

}  // namespace lb::agent
