#include "reload_worker.h"

#include "lb/common/sha256.h"

namespace lb::agent {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;

ReloadWorker::ReloadWorker(ApplyFn apply) : apply_(std::move(apply)) {
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
  std::optional<Job> older;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (waiting_) {
      older = std::move(waiting_);
      superseded_.push_back(std::move(older->reply));
      counters_.superseded++;
    }
    waiting_.emplace(Job{std::move(request), std::move(reply)});
  }
  cv_.notify_one();
  // `older`'s config is freed here, outside the lock.
}

ReloadWorker::Counters ReloadWorker::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

void ReloadWorker::Run() {
  while (true) {
    Job job;
    std::vector<ReplyFn> replaced;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || waiting_.has_value(); });
      if (stopping_) {
        std::vector<ReplyFn> unanswered = std::move(superseded_);
        if (waiting_) unanswered.push_back(std::move(waiting_->reply));
        waiting_.reset();
        lock.unlock();
        for (auto& reply : unanswered) {
          reply(Status(ErrorCode::kInternal, "the agent is shutting down"), nullptr);
        }
        return;
      }
      job = std::move(*waiting_);
      waiting_.reset();
      replaced.swap(superseded_);
      counters_.applied_calls++;
    }
    if (!replaced.empty()) {
      const std::string sha256 = common::Sha256Hex(job.request.config);
      for (auto& reply : replaced) {
        reply(Status(ErrorCode::kSuperseded,
                     "a newer reload arrived while this one waited behind a running one and "
                     "replaced it: config " +
                         sha256,
                     json{{"sha256", sha256}}),
              nullptr);
      }
      replaced.clear();
    }
    auto result = apply_(job.request);
    if (result.ok()) {
      job.reply(Status::Ok(), *result);
    } else {
      job.reply(result.status(), nullptr);
    }
  }
}

}  // namespace lb::agent
