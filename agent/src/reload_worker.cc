#include "reload_worker.h"

namespace lb::agent {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;

ReloadWorker::ReloadWorker(ApplyFn apply, std::function<std::string()> live_sha256)
    : apply_(std::move(apply)), live_sha256_(std::move(live_sha256)) {
  thread_ = std::thread(&ReloadWorker::Run, this);
}

ReloadWorker::~ReloadWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ReloadWorker::Submit(ReloadRequest request, ReplyFn reply) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(Job{std::move(request), std::move(reply)});
  }
  cv_.notify_one();
}

ReloadWorker::Counters ReloadWorker::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

void ReloadWorker::Run() {
  while (true) {
    std::deque<Job> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      batch.swap(queue_);
      if (stopping_) {
        for (auto& job : batch) {
          job.reply(Status(ErrorCode::kInternal, "the agent is shutting down"), nullptr);
        }
        return;
      }
      counters_.applied_calls++;
      counters_.superseded += static_cast<int64_t>(batch.size()) - 1;
    }
    Job newest = std::move(batch.back());
    batch.pop_back();
    auto result = apply_(newest.request);
    if (result.ok()) {
      newest.reply(Status::Ok(), *result);
    } else {
      newest.reply(result.status(), nullptr);
    }
    if (batch.empty()) continue;
    const std::string winner = live_sha256_();
    for (auto& job : batch) {
      job.reply(Status(ErrorCode::kSuperseded,
                       "a newer reload queued behind the same running reload was applied "
                       "instead; the live config is " +
                           winner,
                       json{{"sha256", winner}}),
                nullptr);
    }
  }
}

}  // namespace lb::agent
