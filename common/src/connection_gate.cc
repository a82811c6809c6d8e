#include "lb/common/connection_gate.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace lb::common {

using proto::ErrorCode;
using proto::Status;

struct ConnectionGate::Impl {
  struct Watched {
    std::string domain;
    zmq::socket_t monitor;
    std::set<int64_t> open;  // descriptors accepted and not yet disconnected (guarded by mu)
    // Admit asks for a drain (requested) and waits until the thread has read every event
    // queued when it asked (drained >= its ticket). Guarded by mu; `wake` rouses the thread.
    uint64_t requested = 0;
    uint64_t drained = 0;
    int wake = -1;
    std::thread thread;
    ~Watched() {
      if (wake >= 0) ::close(wake);
    }
  };

  Impl(zmq::context_t& c, std::size_t n) : context(c), cap(n) {}

  // Reads every event queued on the monitor now, without waiting.
  void Drain(Watched* w) {
    while (true) {
      // Frame 1: event (uint16) and value (uint32, the descriptor); frame 2: the endpoint.
      zmq::message_t event;
      if (!w->monitor.recv(event, zmq::recv_flags::dontwait)) return;
      zmq::message_t endpoint;
      if (event.more()) (void)w->monitor.recv(endpoint, zmq::recv_flags::dontwait);
      if (event.size() < 6) continue;
      uint16_t id = 0;
      uint32_t value = 0;
      std::memcpy(&id, event.data(), 2);
      std::memcpy(&value, static_cast<const char*>(event.data()) + 2, 4);
      std::lock_guard<std::mutex> lock(mu);
      if (id == ZMQ_EVENT_ACCEPTED) w->open.insert(value);
      if (id == ZMQ_EVENT_DISCONNECTED) w->open.erase(value);
    }
  }

  void Run(Watched* w) {
    while (!stop.load()) {
      zmq::pollitem_t items[] = {{w->monitor.handle(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, w->wake, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 2, std::chrono::milliseconds(200));
      } catch (const zmq::error_t&) {
        continue;
      }
      if ((items[1].revents & ZMQ_POLLIN) != 0) {
        uint64_t ignored = 0;
        (void)!::read(w->wake, &ignored, sizeof ignored);
      }
      uint64_t ticket = 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        ticket = w->requested;
      }
      Drain(w);
      {
        std::lock_guard<std::mutex> lock(mu);
        w->drained = ticket;
      }
      drained_cv.notify_all();
    }
  }

  zmq::context_t& context;
  const std::size_t cap;
  mutable std::mutex mu;
  std::map<std::string, std::unique_ptr<Watched>> watched;
  std::condition_variable drained_cv;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> refused{0};
};

ConnectionGate::ConnectionGate(zmq::context_t& context, std::size_t cap)
    : impl_(std::make_unique<Impl>(context, cap)) {}

ConnectionGate::~ConnectionGate() {
  impl_->stop = true;
  for (auto& [domain, w] : impl_->watched) {
    if (w->thread.joinable()) w->thread.join();
  }
}

Status ConnectionGate::Watch(zmq::socket_ref socket, const std::string& domain) {
  {
    // A second watcher would replace the first while its thread runs (and destroying a joinable
    // thread ends the process): one socket per domain.
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->watched.count(domain) != 0) {
      return Status(ErrorCode::kInternal, "the ZAP domain \"" + domain + "\" is already watched");
    }
  }
  static std::atomic<int> counter{0};
  const std::string endpoint = "inproc://lb-connection-gate-" + std::to_string(++counter);
  auto w = std::make_unique<Impl::Watched>();
  w->domain = domain;
  w->wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->wake < 0) {
    return Status(ErrorCode::kInternal,
                  std::string("cannot create the monitor's eventfd: ") + std::strerror(errno));
  }
  try {
    if (zmq_socket_monitor(socket.handle(), endpoint.c_str(),
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0) {
      return Status(ErrorCode::kInternal,
                    std::string("cannot monitor the socket: ") + zmq_strerror(zmq_errno()));
    }
    w->monitor = zmq::socket_t(impl_->context, zmq::socket_type::pair);
    w->monitor.set(zmq::sockopt::linger, 0);
    w->monitor.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return Status(ErrorCode::kInternal, std::string("cannot monitor the socket: ") + e.what());
  }
  Impl::Watched* raw = w.get();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->watched[domain] = std::move(w);
  }
  raw->thread = std::thread([this, raw] { impl_->Run(raw); });
  return Status::Ok();
}

bool ConnectionGate::Admit(const std::string& domain) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  auto it = impl_->watched.find(domain);
  if (it == impl_->watched.end()) return true;
  Impl::Watched* w = it->second.get();
  // ZeroMQ queues a connection's ACCEPTED event before its handshake can reach ZAP: once the
  // monitor thread has read what is queued now, the connection asking is counted. Without
  // that wait a loaded machine admitted connections beyond the cap (the thread lagged). If the
  // thread does not answer in time, the count as it stands decides.
  const uint64_t ticket = ++w->requested;
  const uint64_t one = 1;
  (void)!::write(w->wake, &one, sizeof one);
  impl_->drained_cv.wait_for(lock, std::chrono::milliseconds(500),
                             [&] { return w->drained >= ticket || impl_->stop.load(); });
  if (w->open.size() <= impl_->cap) return true;
  impl_->refused.fetch_add(1);
  return false;
}

std::size_t ConnectionGate::open(const std::string& domain) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->watched.find(domain);
  return it == impl_->watched.end() ? 0 : it->second->open.size();
}

std::size_t ConnectionGate::cap() const { return impl_->cap; }
uint64_t ConnectionGate::refused() const { return impl_->refused.load(); }

}  // namespace lb::common
