// The SUB thread and the subscription queues. Every zmq::error_t of the hub stops here.
#include "event_hub.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <zmq.hpp>

#include "lb/common/log.h"

namespace lb::bridge {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;

constexpr std::string_view kKeepAlive = ": keep-alive\n\n";
// NextChunk stops adding records once its chunk is this large: a client that fell far behind
// catches up in several writes rather than one huge allocation.
constexpr std::size_t kMaxChunkBytes = 64 * 1024;
// Messages the SUB thread takes per wake-up before it polls again (and so sees Stop()).
constexpr int kMaxMessagesPerWake = 1000;

void Log(const std::string& line) { common::Log(common::LogLevel::kWarning, line); }

std::string Printable(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string FormatServerSentEvent(std::string_view topic, json body) {
  std::string record;
  if (auto seq = body.find("seq"); seq != body.end()) {
    if (seq->is_number_unsigned()) {
      record += "id: " + std::to_string(seq->get<uint64_t>()) + "\n";
    } else if (seq->is_number_integer() && seq->get<int64_t>() >= 0) {
      record += "id: " + std::to_string(seq->get<int64_t>()) + "\n";
    }
  }
  if (auto type = body.find("type"); type != body.end() && type->is_string()) {
    const std::string& name = type->get_ref<const std::string&>();
    if (!name.empty() && name.find_first_of("\r\n") == std::string::npos) {
      record += "event: " + name + "\n";
    }
  }
  body["topic"] = std::string(topic);  // the frame's topic is authoritative
  record += "data: " + body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
  return record;
}

// --- Subscription -------------------------------------------------------------------------

EventHub::Subscription::Subscription(EventHub& hub, std::string topic_prefix)
    : hub_(hub), topic_prefix_(std::move(topic_prefix)) {}

EventHub::Subscription::~Subscription() {
  std::lock_guard lock(hub_.mutex_);
  std::erase(hub_.subscriptions_, this);
}

std::optional<std::string> EventHub::Subscription::NextChunk() {
  std::unique_lock lock(hub_.mutex_);
  ready_.wait_for(lock, hub_.options_.keep_alive_interval,
                  [this] { return hub_.stopping_ || !queue_.empty(); });
  if (hub_.stopping_) return std::nullopt;
  if (queue_.empty()) return std::string(kKeepAlive);

  std::string chunk;
  if (dropped_ > 0) {
    chunk = ": dropped " + std::to_string(dropped_) +
            " events: this client read too slowly (see the gap in seq)\n\n";
    dropped_ = 0;
  }
  std::vector<std::shared_ptr<const std::string>> records;
  std::size_t bytes = chunk.size();
  while (!queue_.empty() && (records.empty() || bytes < kMaxChunkBytes)) {
    bytes += queue_.front()->size();
    records.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  lock.unlock();  // the copying happens outside the hub's lock
  chunk.reserve(bytes);
  for (const auto& record : records) chunk += *record;
  return chunk;
}

// --- EventHub -----------------------------------------------------------------------------

proto::Result<std::unique_ptr<EventHub>> EventHub::Start(zmq::context_t& context,
                                                         std::string endpoint,
                                                         EventHubOptions options) {
  std::unique_ptr<EventHub> hub;
  try {
    hub.reset(new EventHub(context, std::move(endpoint), std::move(options)));
  } catch (const std::system_error& e) {
    return Status(ErrorCode::kInternal, std::string("cannot create the event hub: ") + e.what());
  }
  std::promise<Status> started;
  std::future<Status> result = started.get_future();
  try {
    hub->thread_ = std::thread([hub = hub.get(), started = std::move(started)]() mutable {
      hub->Run(std::move(started));
    });
  } catch (const std::system_error& e) {
    return Status(ErrorCode::kInternal,
                  std::string("cannot start the event hub's thread: ") + e.what());
  }
  Status status = result.get();
  if (!status.ok()) return status;  // the thread has ended; ~EventHub joins it
  return hub;
}

EventHub::EventHub(zmq::context_t& context, std::string endpoint, EventHubOptions options)
    : context_(context), endpoint_(std::move(endpoint)), options_(std::move(options)) {}

EventHub::~EventHub() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

proto::Result<std::unique_ptr<EventHub::Subscription>> EventHub::Subscribe(
    std::string topic_prefix) {
  // Created before the lock is taken, so that it is destroyed (which takes the lock) after the
  // lock is released when it is refused.
  std::unique_ptr<Subscription> subscription(new Subscription(*this, std::move(topic_prefix)));
  std::lock_guard lock(mutex_);
  if (stopping_) return Status(ErrorCode::kUnavailable, "the bridge is shutting down");
  if (subscriptions_.size() >= options_.max_subscriptions) {
    return Status(ErrorCode::kUnavailable, "too many event streams",
                  {{"max_event_streams", options_.max_subscriptions}});
  }
  subscriptions_.push_back(subscription.get());
  return subscription;
}

void EventHub::Stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    for (Subscription* subscription : subscriptions_) subscription->ready_.notify_all();
  }
  wake_.Notify();
}

std::size_t EventHub::subscription_count() const {
  std::lock_guard lock(mutex_);
  return subscriptions_.size();
}

void EventHub::Run(std::promise<Status> started) {
  zmq::socket_t socket;
  try {
    socket = zmq::socket_t(context_, zmq::socket_type::sub);
    socket.set(zmq::sockopt::linger, 0);
    // No ZMQ_MAXMSGSIZE: libzmq treats a message above it as a protocol error and then never
    // reconnects to that publisher, so one oversized event would end the stream for good.
    // Events above limits.max_frame_bytes are skipped by DecodeMsgpack instead.
    socket.set(zmq::sockopt::subscribe, "");
    if (options_.curve) {
      common::MakeCurveClient(socket, options_.curve->own, options_.curve->server_public_key);
    }
    socket.connect(endpoint_);
  } catch (const zmq::error_t& e) {
    started.set_value(Status(ErrorCode::kInternal, "cannot subscribe to the agent's events at " +
                                                       endpoint_ + ": " + e.what()));
    return;
  }
  started.set_value(Status::Ok());

  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, wake_.fd(), ZMQ_POLLIN, 0}};
  for (;;) {
    try {
      zmq::poll(items, 2);
      if (items[1].revents & ZMQ_POLLIN) break;  // Stop()
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      for (int i = 0; i < kMaxMessagesPerWake; ++i) {
        zmq::message_t topic;
        if (!socket.recv(topic, zmq::recv_flags::dontwait)) break;  // nothing more queued
        if (!topic.more()) {
          Log("skipped an event from " + endpoint_ + " on topic " +
              Printable(topic.to_string_view()) + ": it has no body frame");
          continue;
        }
        // The remaining frames of a multipart message are always there once the first is.
        zmq::message_t body;
        (void)socket.recv(body, zmq::recv_flags::none);
        const bool extra = body.more();
        while (body.more()) (void)socket.recv(body, zmq::recv_flags::none);  // discard them
        if (extra) {
          Log("skipped an event from " + endpoint_ + " on topic " +
              Printable(topic.to_string_view()) + ": more than two frames");
          continue;
        }
        Deliver(topic.to_string(), body.to_string_view());
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      // ETERM (the context is being closed) or a bug: either way this thread can do no more.
      Log("stopped reading the agent's events from " + endpoint_ + ": " + e.what());
      break;
    } catch (const std::exception& e) {
      Log("skipped an event from " + endpoint_ + ": " + e.what());  // out of memory
    }
  }
  // `socket` is closed here, on the thread it belongs to.
}

void EventHub::Deliver(const std::string& topic, std::string_view frame) {
  proto::Result<json> body = proto::DecodeMsgpack(frame, options_.limits);
  if (!body.ok() || !body->is_object()) {
    Log("skipped an event from " + endpoint_ + " on topic " + Printable(topic) + ": " +
        (body.ok() ? std::string("the body is not a map") : body.status().message()));
    return;
  }
  auto record =
      std::make_shared<const std::string>(FormatServerSentEvent(topic, std::move(body).value()));
  std::lock_guard lock(mutex_);
  for (Subscription* subscription : subscriptions_) {
    if (!topic.starts_with(subscription->topic_prefix_)) continue;
    if (!subscription->queue_.empty() && subscription->queue_.size() >= options_.queue_capacity) {
      subscription->queue_.pop_front();
      ++subscription->dropped_;
    }
    subscription->queue_.push_back(record);
    subscription->ready_.notify_one();
  }
}

}  // namespace lb::bridge
