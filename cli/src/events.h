// `lbctl watch`: how one event of the agent's PUB socket (proto/PROTOCOL.md, "Events") becomes
// one line of output, and how lost events are noticed. Pure: no sockets, no clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace lb::cli {

// One line, without the trailing newline, never containing one.
//  human: "<ts> seq=<seq> " followed by, per type,
//    server     "server app/web1 UP -> DOWN (Layer4 connection problem) [log]"
//               "server app/web3 added UP (reload) [poll]", "server app/web3 removed (was UP) ..."
//               "server app/web1 weight 5 UP [poll]"
//    reload     "reload applied sha256=abcd1234 112ms" (+ ": <error message>" when it failed)
//    haproxy    "haproxy down: <message>", "haproxy up pid=123: <message>"
//    heartbeat  "heartbeat sha256=abcd1234 haproxy_pid=123"
//    other      "<type> <topic> <body as compact JSON>"
//  json: the body as one compact JSON object plus a "topic" key (a body that is not a map is
//    put under "body"); invalid UTF-8 is replaced, never thrown on.
std::string FormatEventLine(const std::string& topic, const nlohmann::json& body, bool json);

// Notices events lost between the agent and this subscriber.
//
// Subscribed to every topic (prefix ""): `seq` counts every event of one agent process
// (`epoch`), so a jump of more than 1 means events were dropped. A heartbeat repeats the last
// event's seq instead of taking a new one, so a heartbeat whose seq is ahead reveals that the
// events up to and including its seq were lost.
// Subscribed to a prefix: `seq` jumps over other topics' events by design; `topic_seq`, which
// counts per exact topic, is checked instead, for each topic seen.
// The first event (and the first after an agent restart, i.e. a new epoch) sets the baseline.
class GapDetector {
 public:
  explicit GapDetector(std::string prefix) : all_topics_(prefix.empty()) {}

  // How many events were lost just before this one (0: none, or not knowable from this body).
  uint64_t Observe(const std::string& topic, const nlohmann::json& body);

 private:
  bool all_topics_;
  std::optional<int64_t> epoch_;
  std::optional<uint64_t> last_seq_;
  std::map<std::string, uint64_t> last_topic_seq_;
};

// What `watch` says about the agent behind the events, on stderr: that it went silent (no
// event, not even a heartbeat, for `silence`, by default three of the heartbeat intervals the
// agent announces, 15 s before one is seen), that it is back, and that it restarted (a new
// `epoch`: a new agent process, whose seq starts again). Pure: the clock is passed in.
class AgentLiveness {
 public:
  using Clock = std::chrono::steady_clock;
  // `silence`: a fixed threshold (--silence), or nullopt for the default above.
  explicit AgentLiveness(std::optional<std::chrono::milliseconds> silence = std::nullopt)
      : fixed_silence_(silence) {}

  // An event arrived at `now`: the lines to print, without "lbctl: " and without a newline
  // ("agent lb1 restarted: epoch 1733... -> 1733... (seq starts again)", "agent lb1 back after
  // 21 s of silence").
  std::vector<std::string> Observe(const nlohmann::json& body, Clock::time_point now);
  // No event until `now`: the line to print once per silence ("agent lb1 silent: no heartbeat
  // for 15 s (expected every 5 s)"), else nullopt. Nothing before the first event (the caller
  // says "nothing heard" then).
  std::optional<std::string> Idle(Clock::time_point now);

  // The threshold in use now.
  std::chrono::milliseconds silence() const;

 private:
  std::optional<std::chrono::milliseconds> fixed_silence_;
  std::optional<std::chrono::milliseconds> heartbeat_interval_;
  std::optional<Clock::time_point> last_event_;
  std::optional<int64_t> epoch_;
  std::string agent_;
  bool silent_ = false;
};

}  // namespace lb::cli
