#include "lb/proto/metrics.h"

#include <algorithm>
#include <cmath>

namespace lb::proto {
namespace {

using nlohmann::json;

// Label values the agent sends are names from fixed lists; these limits keep a reply from
// another process from creating unbounded series all the same.
constexpr std::size_t kMaxMapKeys = 64;
constexpr std::size_t kMaxKeyBytes = 64;
constexpr std::size_t kMaxBuckets = 64;

bool IsShortName(const std::string& key) {
  return !key.empty() && key.size() <= kMaxKeyBytes &&
         std::all_of(key.begin(), key.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
         });
}

Status Bad(const std::string& field, const std::string& what) {
  return Status(ErrorCode::kBadRequest, "metrics result: \"" + field + "\" " + what);
}

const json* Find(const json& object, const std::string& key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

Status ReadCount(const json& object, const std::string& key, uint64_t* out) {
  const json* value = Find(object, key);
  if (value == nullptr) return Bad(key, "is missing");
  if (!value->is_number_unsigned() && !(value->is_number_integer() && value->get<int64_t>() >= 0)) {
    return Bad(key, "must be a non-negative integer");
  }
  *out = value->get<uint64_t>();
  return Status::Ok();
}

Status ReadBool(const json& object, const std::string& key, bool* out) {
  const json* value = Find(object, key);
  if (value == nullptr || !value->is_boolean()) return Bad(key, "must be a boolean");
  *out = value->get<bool>();
  return Status::Ok();
}

Status ReadCountMap(const json& object, const std::string& key,
                    std::map<std::string, uint64_t>* out) {
  const json* value = Find(object, key);
  if (value == nullptr || !value->is_object()) return Bad(key, "must be an object");
  if (value->size() > kMaxMapKeys) {
    return Bad(key, "has more than " + std::to_string(kMaxMapKeys) + " keys");
  }
  for (const auto& [name, count] : value->items()) {
    if (!IsShortName(name)) return Bad(key, "has a key that is not a short lower-case name");
    if (!count.is_number_unsigned() && !(count.is_number_integer() && count.get<int64_t>() >= 0)) {
      return Bad(key + "." + name, "must be a non-negative integer");
    }
    (*out)[name] = count.get<uint64_t>();
  }
  return Status::Ok();
}

Status ReadHistogram(const json& object, const std::string& key, Histogram* out) {
  const json* value = Find(object, key);
  if (value == nullptr || !value->is_object()) return Bad(key, "must be an object");
  const json* bounds = Find(*value, "le");
  const json* counts = Find(*value, "cumulative");
  const json* sum = Find(*value, "sum");
  if (bounds == nullptr || !bounds->is_array() || counts == nullptr || !counts->is_array() ||
      bounds->size() != counts->size() || bounds->size() > kMaxBuckets) {
    return Bad(key, "must hold arrays \"le\" and \"cumulative\" of one length (at most " +
                        std::to_string(kMaxBuckets) + ")");
  }
  if (sum == nullptr || !sum->is_number()) return Bad(key + ".sum", "must be a number");
  Histogram h;
  if (Status s = ReadCount(*value, "count", &h.count); !s.ok())
    return Bad(key + ".count", "must be a non-negative integer");
  h.sum = sum->get<double>();
  for (std::size_t i = 0; i < bounds->size(); ++i) {
    const json& b = (*bounds)[i];
    const json& c = (*counts)[i];
    if (!b.is_number() || !std::isfinite(b.get<double>()) ||
        (!h.bounds.empty() && b.get<double>() <= h.bounds.back())) {
      return Bad(key + ".le", "must be finite numbers in increasing order");
    }
    if (!c.is_number_unsigned() && !(c.is_number_integer() && c.get<int64_t>() >= 0)) {
      return Bad(key + ".cumulative", "must be non-negative integers");
    }
    const uint64_t n = c.get<uint64_t>();
    if (n > h.count || (!h.cumulative.empty() && n < h.cumulative.back())) {
      return Bad(key + ".cumulative", "must not decrease and not exceed count");
    }
    h.bounds.push_back(b.get<double>());
    h.cumulative.push_back(n);
  }
  *out = std::move(h);
  return Status::Ok();
}

}  // namespace

Histogram Histogram::WithBounds(std::vector<double> bounds) {
  Histogram h;
  h.cumulative.assign(bounds.size(), 0);
  h.bounds = std::move(bounds);
  return h;
}

void Histogram::Observe(double value) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (value <= bounds[i]) ++cumulative[i];
  }
  sum += value;
  ++count;
}

json ToJson(const AgentMetrics& m) {
  json out = {
      {"reloads", m.reloads},
      {"updates", m.updates},
      {"rollbacks", m.rollbacks},
      {"reload_duration_seconds",
       {{"le", m.reload_duration.bounds},
        {"cumulative", m.reload_duration.cumulative},
        {"sum", m.reload_duration.sum},
        {"count", m.reload_duration.count}}},
      {"haproxy", {{"up", m.haproxy_up}}},
      {"config", {{"sha256", m.config_sha256}}},
      {"events",
       {{"published", m.events_published}, {"seq", m.event_seq}, {"epoch", m.event_epoch_ms}}},
      {"fleet",
       {{"enabled", m.fleet_enabled},
        {"applied_version", m.fleet_applied_version},
        {"synced_version", m.fleet_synced_version},
        {"controller_connected", m.controller_connected}}},
      {"start_time_seconds", m.start_time_seconds},
  };
  if (m.old_workers) out["haproxy"]["old_workers"] = *m.old_workers;
  return out;
}

Result<AgentMetrics> AgentMetricsFromJson(const json& result) {
  if (!result.is_object()) return Bad("result", "must be an object");
  AgentMetrics m;
  if (Status s = ReadCountMap(result, "reloads", &m.reloads); !s.ok()) return s;
  if (Status s = ReadCountMap(result, "updates", &m.updates); !s.ok()) return s;
  if (Status s = ReadCountMap(result, "rollbacks", &m.rollbacks); !s.ok()) return s;
  if (Status s = ReadHistogram(result, "reload_duration_seconds", &m.reload_duration); !s.ok()) {
    return s;
  }
  const json* haproxy = Find(result, "haproxy");
  if (haproxy == nullptr || !haproxy->is_object()) return Bad("haproxy", "must be an object");
  if (Status s = ReadBool(*haproxy, "up", &m.haproxy_up); !s.ok()) return s;
  if (const json* old = Find(*haproxy, "old_workers"); old != nullptr) {
    if (!old->is_number_integer() || old->get<int64_t>() < 0) {
      return Bad("haproxy.old_workers", "must be a non-negative integer");
    }
    m.old_workers = old->get<int64_t>();
  }
  const json* config = Find(result, "config");
  const json* sha = config != nullptr && config->is_object() ? Find(*config, "sha256") : nullptr;
  if (sha == nullptr || !sha->is_string() || sha->get_ref<const std::string&>().size() > 64) {
    return Bad("config.sha256", "must be a string of at most 64 characters");
  }
  m.config_sha256 = sha->get<std::string>();
  const json* events = Find(result, "events");
  if (events == nullptr || !events->is_object()) return Bad("events", "must be an object");
  if (Status s = ReadCountMap(*events, "published", &m.events_published); !s.ok()) return s;
  if (Status s = ReadCount(*events, "seq", &m.event_seq); !s.ok()) return s;
  uint64_t epoch = 0;
  if (Status s = ReadCount(*events, "epoch", &epoch); !s.ok()) return s;
  m.event_epoch_ms = static_cast<int64_t>(epoch);
  const json* fleet = Find(result, "fleet");
  if (fleet == nullptr || !fleet->is_object()) return Bad("fleet", "must be an object");
  if (Status s = ReadBool(*fleet, "enabled", &m.fleet_enabled); !s.ok()) return s;
  if (Status s = ReadCount(*fleet, "applied_version", &m.fleet_applied_version); !s.ok()) return s;
  if (Status s = ReadCount(*fleet, "synced_version", &m.fleet_synced_version); !s.ok()) return s;
  if (Status s = ReadBool(*fleet, "controller_connected", &m.controller_connected); !s.ok()) {
    return s;
  }
  const json* start = Find(result, "start_time_seconds");
  if (start == nullptr || !start->is_number()) return Bad("start_time_seconds", "must be a number");
  m.start_time_seconds = start->get<double>();
  return m;
}

}  // namespace lb::proto
