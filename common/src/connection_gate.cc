#include "lb/common/connection_gate.h"

#include <atomic>
#include <chrono>
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
    std::thread thread;
  };

  Impl(zmq::context_t& c, std::size_t n) : context(c), cap(n) {}

  void Run(Watched* w) {
    while (!stop.load()) {
      zmq::pollitem_t item{w->monitor.handle(), 0, ZMQ_POLLIN, 0};
      try {
        zmq::poll(&item, 1, std::chrono::milliseconds(200));
      } catch (const zmq::error_t&) {
        continue;
      }
      if ((item.revents & ZMQ_POLLIN) == 0) continue;
      while (true) {
        // Frame 1: event (uint16) and value (uint32, the descriptor); frame 2: the endpoint.
        zmq::message_t event;
        if (!w->monitor.recv(event, zmq::recv_flags::dontwait)) break;
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
  }

  zmq::context_t& context;
  const std::size_t cap;
  mutable std::mutex mu;
  std::map<std::string, std::unique_ptr<Watched>> watched;
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
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->watched.find(domain);
  if (it == impl_->watched.end() || it->second->open.size() <= impl_->cap) return true;
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
