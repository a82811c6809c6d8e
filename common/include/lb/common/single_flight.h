// SingleFlight: callers that want the same fresh reading at the same time share one read.
//
// Get() returns the result of a run of the function that STARTED AFTER Get() was called, never
// an older one: a caller that arrives while a run is under way waits for the next run, which
// starts as soon as the current one ends and serves everyone who arrived meanwhile. So N
// concurrent callers cost at most two runs, and none is answered with something read before it
// asked (lb-agent's `status`: many clients polling at once read haproxy once, and a client that
// just changed something never gets a state from before its change).
//
// The function runs on the thread of one of the waiting callers, never under the lock. Results
// are shared read-only (shared_ptr<const T>). Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace lb::common {

template <typename T>
class SingleFlight {
 public:
  explicit SingleFlight(std::function<T()> run) : run_(std::move(run)) {}

  std::shared_ptr<const T> Get() {
    std::unique_lock<std::mutex> lock(mu_);
    // The first run to start from now on: the next one, whether or not one is under way.
    const uint64_t wanted = started_ + 1;
    while (finished_ < wanted) {
      if (running_) {
        done_.wait(lock);
        continue;
      }
      running_ = true;
      const uint64_t run = ++started_;
      lock.unlock();
      std::shared_ptr<const T> result;
      try {
        result = std::make_shared<const T>(run_());
      } catch (...) {
        lock.lock();
        running_ = false;
        done_.notify_all();  // another waiter runs it again
        throw;
      }
      lock.lock();
      latest_ = std::move(result);
      finished_ = run;
      running_ = false;
      done_.notify_all();
    }
    return latest_;  // from run finished_ >= wanted: started after this call
  }

  // How many runs have started (for tests and counters).
  uint64_t runs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }

 private:
  const std::function<T()> run_;
  mutable std::mutex mu_;
  std::condition_variable done_;
  bool running_ = false;
  uint64_t started_ = 0;   // runs started
  uint64_t finished_ = 0;  // the newest run that finished (runs finish in order: one at a time)
  std::shared_ptr<const T> latest_;
};

}  // namespace lb::common
