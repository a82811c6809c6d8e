// Mailbox<T>: how another thread hands work to a thread that sleeps in zmq::poll (the only
// thread allowed to touch its ZeroMQ sockets). Push() appends under a mutex and writes to an
// eventfd; the owning thread polls fd() next to its sockets and, when it is readable, takes
// everything with TakeAll(). EventFd alone is the wake-up without a queue (a stop request).
//
// Thread-safety: Push, Notify and Wake from any thread; TakeAll and Drain from the owner's. A
// mailbox shared with callbacks that may outlive its owner is held in a std::shared_ptr and
// reached through a std::weak_ptr.
#pragma once

#include <deque>
#include <mutex>
#include <utility>

namespace lb::common {

class EventFd {
 public:
  // An eventfd (EFD_CLOEXEC | EFD_NONBLOCK). Creating one fails only when the process is out of
  // file descriptors: that throws std::system_error, like a std::thread that cannot start.
  EventFd();
  ~EventFd();
  EventFd(const EventFd&) = delete;
  EventFd& operator=(const EventFd&) = delete;

  // For a zmq::pollitem_t {nullptr, fd(), ZMQ_POLLIN, 0} or poll(2).
  int fd() const { return fd_; }
  // Makes fd() readable until the next Drain(). Never blocks.
  void Notify();
  // Makes fd() unreadable again.
  void Drain();

 private:
  int fd_;
};

template <typename T>
class Mailbox {
 public:
  void Push(T item) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(item));
    }
    wake_.Notify();
  }
  // Wakes the owner with nothing queued (e.g. to look at a stop flag).
  void Wake() { wake_.Notify(); }
  // Everything queued, oldest first; the fd is drained first, so that a Push racing with this
  // call wakes the owner again.
  std::deque<T> TakeAll() {
    wake_.Drain();
    std::deque<T> out;
    std::lock_guard<std::mutex> lock(mutex_);
    out.swap(queue_);
    return out;
  }
  int fd() const { return wake_.fd(); }

 private:
  EventFd wake_;
  std::mutex mutex_;
  std::deque<T> queue_;
};

}  // namespace lb::common
