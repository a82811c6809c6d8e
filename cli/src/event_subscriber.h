// EventSubscriber: the SUB side of lb-agent's event socket (proto/PROTOCOL.md, "Events"), the
// only code in lbctl that reads it; every zmq::error_t of it stops here. Owned and used by one
// thread (the one that runs `lbctl watch`).
//
// DESIGN: the socket connects and subscribes at Open(); libzmq reconnects by itself when the
// agent restarts (the GapDetector notices the new epoch). Frames are untrusted: an event must be
// exactly [topic, msgpack map], decoded with hard limits; anything else is reported and skipped
// rather than ending the watch. A HandshakeMonitor tells a refused CURVE key (which ends the
// watch: no event would ever come) from a quiet agent.
#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lb/client/handshake_monitor.h"
#include "lb/common/curve_socket.h"
#include "lb/proto/status.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace lb::cli {

struct Event {
  std::string topic;
  nlohmann::json body;
};

class EventSubscriber {
 public:
  // `context` must outlive the subscriber. With `keys`, the socket is a CURVE client.
  // `prefixes`: the topic prefixes subscribed to ("" is every topic).
  EventSubscriber(zmq::context_t& context, std::string endpoint, std::vector<std::string> prefixes,
                  const common::CurveClientKeys* keys = nullptr);
  ~EventSubscriber();
  EventSubscriber(const EventSubscriber&) = delete;
  EventSubscriber& operator=(const EventSubscriber&) = delete;

  // Connects and subscribes. kBadRequest when `endpoint` is not a usable ZeroMQ endpoint,
  // kInternal for another ZeroMQ failure.
  proto::Status Open();

  // Waits at most `wait` for the next event.
  //   ok, an Event       one event;
  //   ok, nullopt        nothing within `wait`, or a signal interrupted the wait;
  //   kBadRequest        a malformed event was received and dropped (the message says how);
  //   kUnavailable       the agent refused lbctl's CURVE key; the watch cannot go on;
  //   kInternal          the socket failed; the watch cannot go on.
  proto::Result<std::optional<Event>> Next(std::chrono::milliseconds wait);

  // Why no connection completed so far, for a "nothing heard" message: "the agent closed the
  // connection during the handshake: ..." or "" when no handshake failed.
  std::string HandshakeTrouble();

 private:
  zmq::context_t& context_;
  const std::string endpoint_;
  const std::vector<std::string> prefixes_;
  std::optional<common::CurveClientKeys> keys_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<client::HandshakeMonitor> monitor_;  // destroyed before socket_
};

}  // namespace lb::cli
