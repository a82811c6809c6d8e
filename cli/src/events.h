// `lbctl watch`: how one event of the agent's PUB socket (proto/PROTOCOL.md, "Events") becomes
// one line of output, and how lost events are noticed. Pure: no sockets, no clock.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

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

}  // namespace lb::cli
