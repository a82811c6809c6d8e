// SingleFlight (common/include/lb/common/single_flight.h): the one promise its callers rely on
// is that an answer never predates the question; the point of it is that concurrent callers
// share runs.
#include "lb/common/single_flight.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace lb::common {
namespace {

using std::chrono::milliseconds;

TEST(SingleFlightTest, EveryAnswerComesFromARunThatStartedAfterTheCall) {
  std::atomic<int> starts{0};
  SingleFlight<int> flight([&] {
    const int n = ++starts;
    std::this_thread::sleep_for(milliseconds(2));  // long enough for callers to pile up
    return n;
  });
  std::atomic<int> stale{0};
  std::atomic<int> calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        const int before = starts.load();  // runs started before this call
        const int got = *flight.Get();
        if (got <= before) ++stale;
        ++calls;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(stale.load(), 0) << "an answer from a run that started before its call";
  EXPECT_EQ(calls.load(), 16 * 50);
  // Shared: far fewer runs than calls (each run serves the callers that piled up meanwhile).
  EXPECT_LT(starts.load(), calls.load() / 2) << starts.load() << " runs for " << calls.load();
  EXPECT_EQ(flight.runs(), static_cast<uint64_t>(starts.load()));
}

TEST(SingleFlightTest, ACallAloneRunsItOnceAndAFollowingCallRunsItAgain) {
  int runs = 0;
  SingleFlight<int> flight([&] { return ++runs; });
  EXPECT_EQ(*flight.Get(), 1);
  EXPECT_EQ(*flight.Get(), 2) << "a later call must not get the earlier reading";
  EXPECT_EQ(runs, 2);
}

TEST(SingleFlightTest, AThrowingRunFailsItsCallerAndTheNextCallRunsAgain) {
  std::atomic<int> runs{0};
  SingleFlight<int> flight([&] {
    if (++runs == 1) throw std::runtime_error("read failed");
    return 7;
  });
  EXPECT_THROW(flight.Get(), std::runtime_error);
  EXPECT_EQ(*flight.Get(), 7);
  EXPECT_EQ(runs.load(), 2);
}

}  // namespace
}  // namespace lb::common
