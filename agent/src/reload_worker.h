// ReloadWorker: one thread that applies reloads one at a time, coalescing the ones that queue.
//
// DESIGN: at most two configs are ever held: the one being applied and the newest waiting one.
// Submit() while a reload waits drops the waiting one's config at once and keeps only its reply
// callback; the worker answers it `superseded` (details.sha256: the config that replaced it,
// hashed on the worker thread, not the socket's) when it takes the newest. Thirty back-to-back
// 16 MB reloads hold 32 MB of configs, not 480. A reload that arrives while the worker is idle
// is applied at once: there is no batching delay, coalescing only happens while a reload is
// running. Callbacks run on the worker thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "lb/proto/status.h"
#include "reload_pipeline.h"
#include "reply.h"

namespace lb::agent {

class ReloadWorker {
 public:
  using ApplyFn = std::function<proto::Result<nlohmann::json>(const ReloadRequest&)>;
  explicit ReloadWorker(ApplyFn apply);
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
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Job> waiting_;
  std::vector<ReplyFn> superseded_;  // replaced by waiting_, to be answered with its sha256
  bool stopping_ = false;
  Counters counters_;
  std::thread thread_;
};

}  // namespace lb::agent
