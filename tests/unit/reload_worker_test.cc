// ReloadWorker: coalescing while a reload runs, no delay when idle, answers at shutdown.
// Threads meet through condition variables with deadlines; nothing sleeps.
#include "reload_worker.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lb/common/sha256.h"
#include "work_pool.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Status;

constexpr auto kDeadline = std::chrono::seconds(10);

// Everything the threads share, guarded by one mutex; every change wakes the waiters.
struct Board {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;              // lets a blocked apply return
  std::vector<std::string> applied;  // configs Apply() was called with, in order
  struct Answer {
    Status status;
    json result;
  };
  std::vector<std::optional<Answer>> answers;

  // Waits until `done()` holds (with mu held) or the deadline passes; returns done().
  template <typename F>
  bool WaitFor(F done) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kDeadline, done);
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
    cv.notify_all();
  }
  int AnswerCount() {
    int n = 0;
    for (const auto& a : answers) n += a.has_value() ? 1 : 0;
    return n;
  }
};

// An ApplyFn whose first call blocks until the board is released; later calls return at once.
ReloadWorker::ApplyFn BlockingApply(std::shared_ptr<Board> board) {
  return [board](const ReloadRequest& request) -> proto::Result<json> {
    std::unique_lock<std::mutex> lock(board->mu);
    board->applied.push_back(request.config);
    board->cv.notify_all();
    if (board->applied.size() == 1) {
      if (!board->cv.wait_for(lock, kDeadline, [&] { return board->release; })) {
        return Status(ErrorCode::kTimeout, "test never released the first apply");
      }
    }
    return json{{"outcome", "applied"}, {"config", request.config}};
  };
}

ReloadRequest Request(const std::string& config) {
  ReloadRequest r;
  r.config = config;
  return r;
}

// A reply callback that records answer `index` on the board.
ReplyFn Recorder(std::shared_ptr<Board> board, std::size_t index) {
  {
    std::lock_guard<std::mutex> lock(board->mu);
    if (board->answers.size() <= index) board->answers.resize(index + 1);
  }
  return [board, index](const Status& status, const json& result) {
    std::lock_guard<std::mutex> lock(board->mu);
    if (board->answers[index].has_value()) {
      ADD_FAILURE() << "job " << index << " answered twice";
    }
    board->answers[index] = Board::Answer{status, result};
    board->cv.notify_all();
  };
}

TEST(ReloadWorkerTest, LoneSubmitIsAppliedImmediately) {
  auto board = std::make_shared<Board>();
  board->Release();  // nothing blocks
  ReloadWorker worker(BlockingApply(board));
  const auto start = std::chrono::steady_clock::now();
  worker.Submit(Request("only"), Recorder(board, 0));
  ASSERT_TRUE(board->WaitFor([&] { return board->AnswerCount() == 1; }))
      << "a lone reload was not answered within the deadline";
  const auto elapsed = std::chrono::steady_clock::now() - start;
  std::lock_guard<std::mutex> lock(board->mu);
  EXPECT_TRUE(board->answers[0]->status.ok()) << board->answers[0]->status.ToString();
  EXPECT_EQ(board->answers[0]->result["config"], "only");
  EXPECT_EQ(board->applied, std::vector<std::string>{"only"});
  // No batching window: the answer does not wait for company. Generous bound for a loaded box.
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

TEST(ReloadWorkerTest, CoalescesReloadsQueuedBehindARunningOne) {
  auto board = std::make_shared<Board>();
  auto worker = std::make_unique<ReloadWorker>(BlockingApply(board));
  worker->Submit(Request("cfg0"), Recorder(board, 0));
  ASSERT_TRUE(board->WaitFor([&] { return board->applied.size() == 1; }))
      << "the first reload never started";
  for (int i = 1; i <= 5; ++i) {
    worker->Submit(Request("cfg" + std::to_string(i)), Recorder(board, i));
  }
  // Nothing but the running config and the newest waiting one is held; the replaced ones are
  // answered when the worker takes the newest.
  {
    std::lock_guard<std::mutex> lock(board->mu);
    EXPECT_EQ(board->applied, std::vector<std::string>{"cfg0"});
    EXPECT_EQ(board->AnswerCount(), 0);
  }
  board->Release();
  ASSERT_TRUE(board->WaitFor([&] { return board->AnswerCount() == 6; }))
      << "not every reload was answered";
  {
    std::lock_guard<std::mutex> lock(board->mu);
    EXPECT_EQ(board->applied, (std::vector<std::string>{"cfg0", "cfg5"}));
    EXPECT_TRUE(board->answers[0]->status.ok()) << board->answers[0]->status.ToString();
    EXPECT_EQ(board->answers[0]->result["config"], "cfg0");
    EXPECT_TRUE(board->answers[5]->status.ok()) << board->answers[5]->status.ToString();
    EXPECT_EQ(board->answers[5]->result["config"], "cfg5");
    for (int i = 1; i <= 4; ++i) {
      SCOPED_TRACE("job " + std::to_string(i));
      EXPECT_EQ(board->answers[i]->status.code(), ErrorCode::kSuperseded);
      // Named by the config that replaced it for good.
      EXPECT_EQ(board->answers[i]->status.details()["sha256"], common::Sha256Hex("cfg5"));
    }
  }
  ReloadWorker::Counters counters = worker->counters();
  EXPECT_EQ(counters.applied_calls, 2);
  EXPECT_EQ(counters.superseded, 4);
}

TEST(ReloadWorkerTest, FailedApplyIsAnsweredWithItsStatus) {
  auto board = std::make_shared<Board>();
  ReloadWorker worker([](const ReloadRequest&) -> proto::Result<json> {
    return Status(ErrorCode::kInvalidConfig, "[ALERT] bad");
  });
  worker.Submit(Request("bad"), Recorder(board, 0));
  ASSERT_TRUE(board->WaitFor([&] { return board->AnswerCount() == 1; }));
  std::lock_guard<std::mutex> lock(board->mu);
  EXPECT_EQ(board->answers[0]->status.code(), ErrorCode::kInvalidConfig);
  EXPECT_EQ(board->answers[0]->status.message(), "[ALERT] bad");
}

TEST(ReloadWorkerTest, DestructorAnswersQueuedJobs) {
  auto board = std::make_shared<Board>();
  auto worker = std::make_unique<ReloadWorker>(BlockingApply(board));
  worker->Submit(Request("running"), Recorder(board, 0));
  ASSERT_TRUE(board->WaitFor([&] { return board->applied.size() == 1; }));
  worker->Submit(Request("queued1"), Recorder(board, 1));
  worker->Submit(Request("queued2"), Recorder(board, 2));
  // Destroy from another thread (the destructor joins the worker, which is blocked in apply),
  // then let the running apply finish.
  bool destroyed = false;
  std::thread destroyer([&] {
    worker.reset();
    std::lock_guard<std::mutex> lock(board->mu);
    destroyed = true;
    board->cv.notify_all();
  });
  board->Release();
  const bool finished = board->WaitFor([&] { return destroyed; });
  destroyer.join();
  ASSERT_TRUE(finished) << "the destructor did not return";
  std::lock_guard<std::mutex> lock(board->mu);
  ASSERT_EQ(board->AnswerCount(), 3) << "a queued reload was never answered";
  EXPECT_TRUE(board->answers[0]->status.ok());
  // queued1 was replaced by queued2 on arrival. Whether the destructor or the released apply
  // took the lock first decides how both are answered; either way each gets exactly one answer.
  const ErrorCode one = board->answers[1]->status.code();
  const ErrorCode two = board->answers[2]->status.code();
  const bool shut_down = one == ErrorCode::kInternal && two == ErrorCode::kInternal;
  const bool coalesced = one == ErrorCode::kSuperseded && two == ErrorCode::kOk;
  EXPECT_TRUE(shut_down || coalesced)
      << board->answers[1]->status.ToString() << " / " << board->answers[2]->status.ToString();
}

TEST(ReloadWorkerTest, DestructorOfIdleWorkerReturns) {
  auto board = std::make_shared<Board>();
  { ReloadWorker worker(BlockingApply(board)); }
  std::lock_guard<std::mutex> lock(board->mu);
  EXPECT_TRUE(board->applied.empty());
}

TEST(WorkPoolTest, RunsQueuedTasksBeforeJoining) {
  auto board = std::make_shared<Board>();
  int ran = 0;
  {
    WorkPool pool(2);
    for (int i = 0; i < 20; ++i) {
      pool.Submit([&] {
        std::lock_guard<std::mutex> lock(board->mu);
        ++ran;
      });
    }
  }
  EXPECT_EQ(ran, 20);
}

}  // namespace
}  // namespace lb::agent
