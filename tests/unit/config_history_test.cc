// The `history` and `rollback` choices (config_history.h) over kept configs built by hand, and
// HistoryResult over a real ConfigStore in a temp dir.
#include "config_history.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "lb/common/sha256.h"
#include "test_util.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;

KeptConfig Kept(const std::string& id, const std::string& outcome, const std::string& sha,
                bool live = false) {
  KeptConfig k;
  k.entry.id = id;
  k.entry.outcome = outcome;
  k.entry.path = "/h/haproxy.cfg." + id + "." + outcome;
  k.sha256 = sha;
  k.live = live;
  return k;
}

// Newest first, as ConfigStore::History() lists them.
const std::vector<KeptConfig> kKept = {
    Kept("t5", "applied", "s5", /*live=*/true),
    Kept("t4", "rolled_back", "s4"),
    Kept("t3", "applied", "s5"),  // the same text as the live one, applied earlier
    Kept("t2", "interrupted", "s2"),
    Kept("t1", "applied", "s1"),
    Kept("t0", "was_live", "s0")};

TEST(ConfigHistoryTest, RollbackWithoutArgumentsPicksTheNewestOtherConfigThatWasLive) {
  auto chosen = ChooseRollback(kKept, json::object());
  ASSERT_TRUE(chosen.ok()) << chosen.status().message();
  EXPECT_EQ(*chosen, 4u) << "not the refused t4, not t3 (the live text), not the interrupted t2";
}

TEST(ConfigHistoryTest, RollbackToAnEntryByNumberOrId) {
  EXPECT_EQ(*ChooseRollback(kKept, {{"n", 3}}), 3u) << "any entry when named";
  EXPECT_EQ(*ChooseRollback(kKept, {{"id", "t0"}}), 5u);
  EXPECT_EQ(*ChooseRollback(kKept, {{"n", 5}, {"sha256", "s0"}}), 5u);
}

TEST(ConfigHistoryTest, RollbackRefusalsSayWhatExists) {
  auto out_of_range = ChooseRollback(kKept, {{"n", 6}});
  EXPECT_EQ(out_of_range.status().code(), ErrorCode::kBadRequest);
  EXPECT_EQ(out_of_range.status().message(), "no entry 6 in the history: it holds 0 to 5");
  EXPECT_EQ(ChooseRollback(kKept, {{"n", -1}}).status().code(), ErrorCode::kBadRequest);
  EXPECT_EQ(ChooseRollback(kKept, {{"n", "1"}}).status().code(), ErrorCode::kBadRequest);
  EXPECT_EQ(ChooseRollback(kKept, {{"id", "t9"}}).status().code(), ErrorCode::kBadRequest);
  EXPECT_EQ(ChooseRollback(kKept, json::array()).status().code(), ErrorCode::kBadRequest);
  auto changed = ChooseRollback(kKept, {{"n", 1}, {"sha256", "s1"}});
  EXPECT_EQ(changed.status().code(), ErrorCode::kConflict) << "the list moved under the caller";
  EXPECT_EQ(changed.status().details()["sha256"], "s4");
  auto empty = ChooseRollback({}, json::object());
  EXPECT_EQ(empty.status().code(), ErrorCode::kBadRequest);
  EXPECT_NE(empty.status().message().find("history is empty"), std::string::npos);
  // Only the live config was ever live: nothing to go back to without a number.
  auto only_live = ChooseRollback({Kept("t1", "applied", "s1", true), Kept("t0", "failed", "s0")},
                                  json::object());
  EXPECT_EQ(only_live.status().code(), ErrorCode::kBadRequest);
  EXPECT_NE(only_live.status().message().find("name an entry"), std::string::npos);
  auto unreadable = ChooseRollback({Kept("t0", "applied", "")}, {{"n", 0}});
  EXPECT_EQ(unreadable.status().code(), ErrorCode::kInternal);
}

TEST(ConfigHistoryTest, HistoryResultListsEveryEntryWithItsShaAndMarksTheLiveOne) {
  test_util::TempDir tmp;
  const std::string live = tmp.File("haproxy.cfg");
  test_util::WriteFile(live, "v0\n");
  ConfigStore store(live, tmp.File("history"), 10);
  for (const char* text : {"v1\n", "v0\n"}) {
    auto candidate = store.WriteCandidate(text);
    ASSERT_TRUE(candidate.ok());
    ASSERT_TRUE(store.Commit(*candidate).ok());
    store.ReloadFinished();
    store.SetOutcome("applied");
  }
  const std::string live_sha = common::Sha256Hex("v0\n");
  std::vector<KeptConfig> kept = ListKeptConfigs(store, live_sha);
  json result = HistoryResult(store, kept, live_sha);
  EXPECT_EQ(result["history_dir"], tmp.File("history"));
  EXPECT_EQ(result["keep"], 10);
  EXPECT_EQ(result["live_sha256"], live_sha);
  const json& entries = result["entries"];
  ASSERT_EQ(entries.size(), 3u) << result.dump();
  EXPECT_EQ(entries[0]["n"], 0);
  EXPECT_EQ(entries[0]["outcome"], "applied");
  EXPECT_EQ(entries[0]["sha256"], live_sha);
  EXPECT_EQ(entries[0]["live"], true);
  EXPECT_EQ(entries[0]["bytes"], 3);
  EXPECT_EQ(entries[1]["sha256"], common::Sha256Hex("v1\n"));
  EXPECT_EQ(entries[2]["outcome"], "was_live");
  EXPECT_EQ(entries[2]["live"], false) << "only the newest entry of the live text is live";
  const std::string time = entries[0]["time"];
  EXPECT_EQ(time.size(), 27u) << time;  // 2026-11-24T10:31:02.123456Z
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  EXPECT_LE(std::abs(entries[0]["time_unix_ms"].get<int64_t>() - now_ms), 60000);
  // The default rollback goes to v1, then (from v1) back to v0.
  EXPECT_EQ(*ChooseRollback(kept, json::object()), 1u);
}

}  // namespace
}  // namespace lb::agent
