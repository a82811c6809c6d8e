// ReloadWorker: one thread that applies reloads one at a time, coalescing the ones that queue.
//
// DESIGN: Submit() appends to a queue and returns. The worker takes everything queued, applies
// only the newest and answers every older one `superseded` with the sha256 of the live config
// that won. A reload that arrives while the worker is idle is applied at once: there is no
// batching delay, coalescing only happens while a reload is running. Callbacks run on the
// worker thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "lb/proto/status.h"
#include "reload_pipeline.h"
#include "reply.h"

namespace lb::agent {

class ReloadWorker {
 public:
  using ApplyFn = std::function<proto::Result<nlohmann::json>(const ReloadRequest&)>;
  // `live_sha256` names the winner in `superseded` answers.
  ReloadWorker(ApplyFn apply, std::function<std::string()> live_sha256);
  ~ReloadWorker();  // stops the thread; queued reloads are answered `internal` (shutting down)

  void Submit(ReloadRequest request, ReplyFn reply);

  struct Counters {
    int64_t applied_calls = 0;  // Apply() runs
    int64_t superseded = 0;
  };
  Counters counters() const;

 private:
  struct Job {
    ReloadRequest request;
    ReplyFn reply;
  };
  void Run();

  ApplyFn apply_;
  std::function<std::string()> live_sha256_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  Counters counters_;
  std::thread thread_;
};

}  // namespace lb::agent
