#include "events.h"

#include <algorithm>

#include "lb/client/describe.h"
#include "output.h"

namespace lb::cli {
namespace {

using nlohmann::json;

std::optional<uint64_t> Unsigned(const json& body, const char* key) {
  if (!body.is_object()) return std::nullopt;
  auto it = body.find(key);
  if (it == body.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  const int64_t value = it->get<int64_t>();
  if (value < 0) return std::nullopt;
  return static_cast<uint64_t>(value);
}

std::optional<int64_t> Signed(const json& body, const char* key) {
  if (!body.is_object()) return std::nullopt;
  auto it = body.find(key);
  if (it == body.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

// sha256s are shown shortened in event lines; `lbctl info` shows the whole one.
std::string ShortSha(const json& body, const char* key) {
  std::string sha = Field(body, key);
  return sha.size() > 8 ? sha.substr(0, 8) : sha;
}

bool Present(const json& body, const char* key) {
  return body.is_object() && body.contains(key) && !body[key].is_null() &&
         !(body[key].is_string() && body[key].get<std::string>().empty());
}

std::string ServerLine(const json& body) {
  std::string line = "server " + Field(body, "backend") + "/" + Field(body, "server") + " ";
  const std::string change = Field(body, "change");
  if (change == "added") {
    line += "added " + Field(body, "status");
  } else if (change == "removed") {
    line += "removed";
    if (Present(body, "previous")) line += " (was " + Field(body, "previous") + ")";
  } else if (change == "weight") {
    line += "weight " + Field(body, "weight") + " " + Field(body, "status");
  } else {
    line += Field(body, "previous") + " -> " + Field(body, "status");
  }
  if (Present(body, "why")) {
    line += " (" + Field(body, "why") + ")";
  } else if (Present(body, "last_chk")) {
    line += " (" + Field(body, "last_chk") + ")";
  }
  if (Present(body, "source")) line += " [" + Field(body, "source") + "]";
  return line;
}

std::string ReloadLine(const json& body) {
  const std::string outcome = Field(body, "outcome");
  std::string line = "reload " + outcome;
  if (Present(body, "sha256")) line += " sha256=" + ShortSha(body, "sha256");
  if (auto ms = Signed(body, "total_ms")) line += " " + std::to_string(*ms) + "ms";
  if (body.contains("error") && body["error"].is_object()) {
    const json& error = body["error"];
    line += ": ";
    if (Field(error, "code") != outcome) line += Field(error, "code") + ": ";
    line += Field(error, "message");
  }
  return line;
}

std::string HaproxyLine(const json& body) {
  std::string line = "haproxy " + Field(body, "state");
  if (Present(body, "pid") && Field(body, "pid") != "0") line += " pid=" + Field(body, "pid");
  if (Present(body, "message")) line += ": " + Field(body, "message");
  return line;
}

std::string HeartbeatLine(const json& body) {
  return "heartbeat sha256=" + ShortSha(body, "sha256") +
         " haproxy_pid=" + Field(body, "haproxy_pid");
}

}  // namespace

std::string FormatEventLine(const std::string& topic, const json& body, bool json_mode) {
  if (json_mode) {
    json out = body.is_object() ? body : json{{"body", body}};
    out["topic"] = topic;
    return DumpJson(out, -1);
  }
  std::string line;
  if (auto ts = Signed(body, "ts_ms")) {
    line = FormatTimestamp(*ts);
  } else {
    line = "-";
  }
  line += " seq=" + Field(body, "seq") + " ";
  const std::string type = Field(body, "type");
  if (type == "server") {
    line += ServerLine(body);
  } else if (type == "reload") {
    line += ReloadLine(body);
  } else if (type == "haproxy") {
    line += HaproxyLine(body);
  } else if (type == "heartbeat") {
    line += HeartbeatLine(body);
  } else {
    line += type + " " + OneLine(topic) + " " + OneLine(DumpJson(body, -1));
  }
  return line;
}

uint64_t GapDetector::Observe(const std::string& topic, const json& body) {
  const std::optional<int64_t> epoch = Signed(body, "epoch");
  if (epoch != epoch_) {
    // A new agent process (or the first event): sequence numbers start again.
    epoch_ = epoch;
    last_seq_.reset();
    last_topic_seq_.clear();
  }
  if (all_topics_) {
    const std::optional<uint64_t> seq = Unsigned(body, "seq");
    if (!seq) return 0;
    const bool heartbeat = body.is_object() && body.value("type", json()) == "heartbeat";
    uint64_t lost = 0;
    if (last_seq_ && *seq > *last_seq_) {
      // An event takes the next number; a heartbeat repeats the last event's.
      lost = *seq - *last_seq_ - (heartbeat ? 0 : 1);
    }
    last_seq_ = seq;
    return lost;
  }
  const std::optional<uint64_t> topic_seq = Unsigned(body, "topic_seq");
  if (!topic_seq) return 0;
  auto [it, inserted] = last_topic_seq_.emplace(topic, *topic_seq);
  if (inserted) return 0;
  const uint64_t last = it->second;
  it->second = *topic_seq;
  return *topic_seq > last + 1 ? *topic_seq - last - 1 : 0;
}

std::chrono::milliseconds AgentLiveness::silence() const {
  if (fixed_silence_) return *fixed_silence_;
  if (heartbeat_interval_)
    return std::max(*heartbeat_interval_ * 3, std::chrono::milliseconds(1000));
  return std::chrono::milliseconds(15000);
}

std::vector<std::string> AgentLiveness::Observe(const json& body, Clock::time_point now) {
  std::vector<std::string> lines;
  if (body.is_object()) {
    if (auto it = body.find("agent"); it != body.end() && it->is_string()) {
      agent_ = OneLine(it->get<std::string>());
    }
  }
  const std::string who = agent_.empty() ? "agent" : "agent " + agent_;
  if (silent_ && last_event_) {
    const auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(now - *last_event_).count();
    lines.push_back(who + " back after " + std::to_string(seconds) + " s of silence");
  }
  silent_ = false;
  const std::optional<int64_t> epoch = Signed(body, "epoch");
  if (epoch && epoch_ && *epoch != *epoch_) {
    lines.push_back(who + " restarted: epoch " + std::to_string(*epoch_) + " -> " +
                    std::to_string(*epoch) + " (a new process; its seq starts again)");
  }
  if (epoch) epoch_ = epoch;
  if (body.is_object() && body.value("type", json()) == "heartbeat") {
    if (auto it = body.find("interval_s"); it != body.end() && it->is_number()) {
      const double seconds = it->get<double>();
      if (seconds > 0 && seconds <= 86400) {
        heartbeat_interval_ = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
      }
    }
  }
  last_event_ = now;
  return lines;
}

std::optional<std::string> AgentLiveness::Idle(Clock::time_point now) {
  if (!last_event_ || silent_ || now - *last_event_ < silence()) return std::nullopt;
  silent_ = true;
  const std::string who = agent_.empty() ? "agent" : "agent " + agent_;
  std::string line =
      who + " silent: no event, not even a heartbeat, for " + client::DescribeSeconds(silence());
  if (heartbeat_interval_)
    line += " (heartbeats expected every " + client::DescribeSeconds(*heartbeat_interval_) + ")";
  return line + "; is lb-agent running?";
}

}  // namespace lb::cli
