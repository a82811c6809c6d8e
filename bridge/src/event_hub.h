// EventHub: the agent's events (proto/PROTOCOL.md, "Events"), read once by the bridge and fanned
// out to every /events client.
//
// DESIGN: one thread, started by EventHub::Start, owns the SUB socket. It connects to the agent's
// PUB endpoint, subscribes to every topic, and sleeps in zmq::poll on that socket and on an
// eventfd that Stop() writes to. Each event [topic, msgpack map] is decoded once (DecodeMsgpack,
// with EventHubOptions::limits) and turned once into its Server-Sent-Events record
// (FormatServerSentEvent); that one immutable record is then appended to the queue of every
// subscription whose topic prefix matches. Fanning out only appends pointers to in-memory queues
// under the hub's mutex: the SUB thread never waits for a client.
//
// Each subscription (one per /events client) has a bounded queue. A client that falls more than
// `queue_capacity` events behind loses its oldest events: it sees the gap in `seq`, and a
// `: dropped N events` comment marks the spot. The client's own thread takes what is queued in
// one go (Subscription::NextChunk) and writes it, so a slow client holds up only itself.
//
// The agent going away and coming back needs nothing here: the SUB socket reconnects by itself
// and events resume (a restarted agent starts a new `epoch`, with `seq` from 1). Events published
// while no connection exists are lost, as for any subscriber; PROTOCOL.md, "Late joiners", says
// how a client catches up. A malformed event is logged to stderr and skipped.
//
// Thread-safety: every public method may be called from any thread. The SUB socket is created,
// used and closed only on the hub's own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lb/common/curve_socket.h"
#include "lb/common/mailbox.h"
#include "lb/proto/codec.h"
#include "lb/proto/status.h"

namespace zmq {
class context_t;
}

namespace lb::bridge {

struct EventHubOptions {
  // Events a subscription may hold before its oldest are dropped. Events are shared between
  // subscriptions, so the cost of a full queue is one pointer per event plus the events
  // themselves (typically a few hundred bytes each).
  std::size_t queue_capacity = 1000;
  // Concurrent subscriptions; Subscribe() fails with kUnavailable beyond it. Every /events client
  // holds one HTTP thread for as long as it is connected (event_stream.h), so this also bounds
  // the threads that streams can take away from ordinary requests.
  std::size_t max_subscriptions = 32;
  // A subscription with nothing to send for this long is given a `: keep-alive` comment. It
  // keeps proxies from closing a quiet stream, and it is how a client that went away is noticed:
  // writing to it fails (usually at the second write after it left).
  std::chrono::milliseconds keep_alive_interval{15000};
  // Limits on each event body; an event beyond them is logged and skipped. (The agent's events
  // are small: its largest, a failed reload's, quotes a few of haproxy's error lines.)
  proto::DecodeLimits limits{
      .max_frame_bytes = 1024 * 1024, .max_container_entries = 100000, .max_depth = 32};
  // Set: the SUB socket is a CURVE client with these keys (the agent's event socket is a CURVE
  // server). A refused key looks like an agent that publishes nothing.
  std::optional<common::CurveClientKeys> curve;
};

// The Server-Sent-Events record for one event, ending in a blank line:
//   id: <seq>\nevent: <type>\ndata: <the body as one line of JSON, plus "topic">\n\n
// `id` is left out when the body's seq is not a non-negative integer, `event` when its type is
// not a one-line non-empty string. Bytes that are not UTF-8 become U+FFFD; JSON escapes every
// line break, so `data` is always a single line.
std::string FormatServerSentEvent(std::string_view topic, nlohmann::json body);

class EventHub {
 public:
  // One client's view of the events: the topic prefix it asked for and its queue. Obtained from
  // Subscribe(); leaves the hub when destroyed. Use from one thread at a time.
  class Subscription {
   public:
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

    // Blocks until there is something to send to the client and returns it, always non-empty:
    //   - the queued event records, oldest first (up to about 64 KiB per call; the rest stays
    //     queued), preceded by ": dropped N events ...\n\n" when the queue overflowed since the
    //     last call;
    //   - ": keep-alive\n\n" when nothing arrived within keep_alive_interval.
    // Returns nullopt once the hub is stopping: the stream should end.
    std::optional<std::string> NextChunk();

    const std::string& topic_prefix() const { return topic_prefix_; }

   private:
    friend class EventHub;
    Subscription(EventHub& hub, std::string topic_prefix);

    EventHub& hub_;
    const std::string topic_prefix_;
    // Guarded by hub_.mutex_.
    std::condition_variable ready_;
    std::deque<std::shared_ptr<const std::string>> queue_;
    uint64_t dropped_ = 0;
  };

  // Starts the SUB thread, connected to `endpoint` (the agent's event_endpoint) and subscribed to
  // every topic. Nothing needs to listen there yet. Fails with kInternal only when ZeroMQ refuses
  // the endpoint itself (a malformed address) or is out of resources. `context` must outlive the
  // hub.
  static proto::Result<std::unique_ptr<EventHub>> Start(zmq::context_t& context,
                                                        std::string endpoint,
                                                        EventHubOptions options = {});

  // Stop()s and waits for the SUB thread. Every Subscription must be destroyed first.
  ~EventHub();
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // A new subscription to the topics that start with `topic_prefix` ("" for all). Fails with
  // kUnavailable when max_subscriptions are open or the hub is stopping.
  proto::Result<std::unique_ptr<Subscription>> Subscribe(std::string topic_prefix);

  // Ends every subscription (their NextChunk returns nullopt at once), refuses new ones, and
  // stops the SUB thread. Idempotent; returns without waiting for the thread.
  void Stop();

  std::size_t subscription_count() const;
  const std::string& endpoint() const { return endpoint_; }
  const EventHubOptions& options() const { return options_; }

 private:
  EventHub(zmq::context_t& context, std::string endpoint, EventHubOptions options);

  // The SUB thread. `started` is set once the socket is connected, or with the reason it failed.
  void Run(std::promise<proto::Status> started);
  // Decodes one event and appends its record to every matching subscription's queue.
  void Deliver(const std::string& topic, std::string_view body);

  zmq::context_t& context_;
  const std::string endpoint_;
  const EventHubOptions options_;
  common::EventFd wake_;  // notified by Stop(), polled by the SUB thread
  std::thread thread_;

  mutable std::mutex mutex_;
  bool stopping_ = false;                     // guarded by mutex_
  std::vector<Subscription*> subscriptions_;  // guarded by mutex_
};

}  // namespace lb::bridge
