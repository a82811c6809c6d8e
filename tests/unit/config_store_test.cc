// ConfigStore against a real temporary directory.
#include "config_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <string>

#include "test_util.h"

namespace lb::agent {
namespace {

using test_util::ListDir;
using test_util::ReadFile;
using test_util::TempDir;
using test_util::WriteFile;

bool IsTemp(const std::string& name) { return name.rfind(ConfigStore::kTempPrefix, 0) == 0; }

int CountTemps(const std::string& dir) {
  int n = 0;
  for (const auto& name : ListDir(dir)) n += IsTemp(name) ? 1 : 0;
  return n;
}

// The texts of every file in `dir`, sorted by file name (oldest history first).
std::vector<std::string> Texts(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& name : ListDir(dir)) {
    out.push_back(ReadFile((std::filesystem::path(dir) / name).string()));
  }
  return out;
}

class ConfigStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    std::filesystem::create_directory(tmp_.File("etc"));
    live_ = tmp_.File("etc/haproxy.cfg");
    history_ = tmp_.File("history");
  }

  TempDir tmp_;
  std::string live_;
  std::string history_;
};

TEST_F(ConfigStoreTest, ReadLiveOfMissingFileIsNotAnError) {
  ConfigStore store(live_, history_, 2);
  auto live = store.ReadLive();
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  EXPECT_FALSE(live->exists);
  EXPECT_EQ(live->text, "");
}

TEST_F(ConfigStoreTest, ReadLiveReturnsTheBytes) {
  const std::string text("global\r\n  daemon\n\x01\xff", 20);
  WriteFile(live_, text);
  ConfigStore store(live_, history_, 2);
  auto live = store.ReadLive();
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  EXPECT_TRUE(live->exists);
  EXPECT_EQ(live->text, text);
}

TEST_F(ConfigStoreTest, WriteCandidateGoesNextToTheLiveFile) {
  WriteFile(live_, "old\n");
  ConfigStore store(live_, history_, 2);
  auto candidate = store.WriteCandidate("new\n");
  ASSERT_TRUE(candidate.ok()) << candidate.status().ToString();
  EXPECT_EQ(std::filesystem::path(*candidate).parent_path(),
            std::filesystem::path(live_).parent_path());
  EXPECT_TRUE(IsTemp(std::filesystem::path(*candidate).filename().string())) << *candidate;
  EXPECT_EQ(ReadFile(*candidate), "new\n");
  EXPECT_EQ(ReadFile(live_), "old\n");
}

TEST_F(ConfigStoreTest, CommitReplacesTheLiveFileAndKeepsThePreviousInHistory) {
  WriteFile(live_, "v0\n");
  ConfigStore store(live_, history_, 2);
  auto candidate = store.WriteCandidate("v1\n");
  ASSERT_TRUE(candidate.ok()) << candidate.status().ToString();
  ASSERT_TRUE(store.Commit(*candidate).ok());
  EXPECT_EQ(ReadFile(live_), "v1\n");
  EXPECT_FALSE(std::filesystem::exists(*candidate));
  EXPECT_EQ(CountTemps(tmp_.File("etc")), 0);
  // Until haproxy has taken the new file, a marker says a reload is under way.
  EXPECT_TRUE(store.ReloadInterrupted());
  EXPECT_TRUE(ConfigStore(live_, history_, 2).ReloadInterrupted()) << "seen by the next run";
  store.ReloadFinished();
  EXPECT_FALSE(store.ReloadInterrupted());
  EXPECT_EQ(ListDir(tmp_.File("etc")), std::vector<std::string>{"haproxy.cfg"});
  // The config it replaced (no entry held it yet) and the new one, named by time and outcome.
  EXPECT_EQ(Texts(history_), (std::vector<std::string>{"v0\n", "v1\n"}));
  const std::regex name(R"(haproxy\.cfg\.\d{8}T\d{6}\.\d{6}Z\.(was_live|pending))");
  for (const auto& file : ListDir(history_)) EXPECT_TRUE(std::regex_match(file, name)) << file;
  std::vector<ConfigStore::HistoryEntry> entries = store.History();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].outcome, "pending");
  EXPECT_EQ(entries[1].outcome, "was_live");
  EXPECT_GT(entries[0].time_unix_us, entries[1].time_unix_us) << "newest first";
  EXPECT_EQ(*store.ReadEntry(entries[0]), "v1\n");
  EXPECT_EQ(entries[0].bytes, 3u);
}

// Commit an entry and give it an outcome, as the reload pipeline does.
void CommitWithOutcome(ConfigStore& store, const std::string& text, const std::string& outcome) {
  auto candidate = store.WriteCandidate(text);
  ASSERT_TRUE(candidate.ok()) << candidate.status().ToString();
  ASSERT_TRUE(store.Commit(*candidate).ok());
  store.ReloadFinished();
  store.SetOutcome(outcome);
}

std::vector<std::string> Outcomes(const ConfigStore& store) {
  std::vector<std::string> out;
  for (const auto& entry : store.History()) {
    out.push_back(entry.outcome + ":" + *store.ReadEntry(entry));
  }
  return out;
}

TEST_F(ConfigStoreTest, EveryCommitIsKeptWithWhatBecameOfIt) {
  WriteFile(live_, "v0\n");
  ConfigStore store(live_, history_, 10);
  CommitWithOutcome(store, "v1\n", "applied");
  CommitWithOutcome(store, "v2\n", "rolled_back");
  // haproxy refused v2: the pipeline restored v1, which an `applied` entry holds already.
  ASSERT_TRUE(store.Replace("v1\n").ok());
  CommitWithOutcome(store, "v3\n", "applied");
  EXPECT_EQ(Outcomes(store), (std::vector<std::string>{"applied:v3\n", "rolled_back:v2\n",
                                                       "applied:v1\n", "was_live:v0\n"}));
  // A live file changed behind the agent's back is kept before the next commit replaces it.
  WriteFile(live_, "by hand\n");
  CommitWithOutcome(store, "v4\n", "applied");
  EXPECT_EQ(Outcomes(store)[1], "was_live:by hand\n");
}

TEST_F(ConfigStoreTest, HistoryKeepsOnlyTheNewestEntries) {
  WriteFile(live_, "v0\n");
  ConfigStore store(live_, history_, 2);
  for (const char* text : {"v1\n", "v2\n", "v3\n"}) CommitWithOutcome(store, text, "applied");
  EXPECT_EQ(ReadFile(live_), "v3\n");
  EXPECT_EQ(Outcomes(store), (std::vector<std::string>{"applied:v3\n", "applied:v2\n"}));
}

TEST_F(ConfigStoreTest, PendingEntriesOfAKilledAgentBecomeInterrupted) {
  WriteFile(live_, "v0\n");
  {
    ConfigStore killed(live_, history_, 5);
    auto candidate = killed.WriteCandidate("v1\n");
    ASSERT_TRUE(candidate.ok());
    ASSERT_TRUE(killed.Commit(*candidate).ok());  // and no outcome: killed during the reload
  }
  ConfigStore next(live_, history_, 5);
  next.MarkInterrupted();
  EXPECT_EQ(Outcomes(next), (std::vector<std::string>{"interrupted:v1\n", "was_live:v0\n"}));
}

TEST_F(ConfigStoreTest, FilesOfTheOldRawMicrosecondNamingAreListedAsReplaced) {
  std::filesystem::create_directory(history_);
  WriteFile(history_ + "/haproxy.cfg.1795516262123456", "old\n");
  WriteFile(history_ + "/haproxy.cfg.20261124T103102.123456Z.Bad-Outcome", "ignored\n");
  WriteFile(history_ + "/other.cfg.1795516262123456", "another config's\n");
  ConfigStore store(live_, history_, 5);
  std::vector<ConfigStore::HistoryEntry> entries = store.History();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].outcome, "replaced");
  EXPECT_EQ(entries[0].id, "1795516262123456");
  EXPECT_EQ(entries[0].time_unix_us, 1795516262123456);
}

TEST_F(ConfigStoreTest, CommitWithoutLiveFileKeepsOnlyTheNewConfig) {
  ConfigStore store(live_, history_, 2);
  CommitWithOutcome(store, "first\n", "applied");
  EXPECT_EQ(ReadFile(live_), "first\n");
  EXPECT_EQ(Outcomes(store), std::vector<std::string>{"applied:first\n"});
}

TEST_F(ConfigStoreTest, LockAllowsOneHolderPerLiveFile) {
  ConfigStore store(live_, history_, 2);
  auto first = store.Lock();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = ConfigStore(live_, history_, 2).Lock();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), proto::ErrorCode::kConflict);
  EXPECT_TRUE(ConfigStore(tmp_.File("etc/other.cfg"), history_, 2).Lock().ok())
      << "another config, another lock";
  EXPECT_TRUE(std::filesystem::exists(tmp_.File("etc/.lb-agent-lock.haproxy.cfg")));
}

TEST_F(ConfigStoreTest, ReplaceWritesTheLiveFile) {
  WriteFile(live_, "bad\n");
  ConfigStore store(live_, history_, 2);
  ASSERT_TRUE(store.Replace("restored\n").ok());
  EXPECT_EQ(ReadFile(live_), "restored\n");
  EXPECT_EQ(CountTemps(tmp_.File("etc")), 0);
}

TEST_F(ConfigStoreTest, DiscardRemovesTheCandidateOnly) {
  WriteFile(live_, "live\n");
  ConfigStore store(live_, history_, 2);
  auto candidate = store.WriteCandidate("unwanted\n");
  ASSERT_TRUE(candidate.ok());
  store.Discard(*candidate);
  EXPECT_FALSE(std::filesystem::exists(*candidate));
  EXPECT_EQ(ReadFile(live_), "live\n");
  EXPECT_TRUE(Texts(history_).empty());
  store.Discard(*candidate);  // a second time is harmless
}

TEST_F(ConfigStoreTest, RemoveStaleTempsRemovesOnlyTempFiles) {
  const std::string etc = tmp_.File("etc");
  WriteFile(live_, "live\n");
  WriteFile(etc + "/.lb-agent-tmp.haproxy.cfg.AbC123", "stale 1");
  WriteFile(etc + "/.lb-agent-tmp.other", "stale 2");
  WriteFile(etc + "/lb-agent-tmp.haproxy.cfg", "not ours");
  WriteFile(etc + "/.lb-agent-tmp", "no dot after the prefix");
  WriteFile(etc + "/x.lb-agent-tmp.y", "prefix not at the start");
  ConfigStore store(live_, history_, 2);
  EXPECT_EQ(store.RemoveStaleTemps(), 2);
  EXPECT_EQ(ListDir(etc),
            (std::vector<std::string>{".lb-agent-tmp", "haproxy.cfg", "lb-agent-tmp.haproxy.cfg",
                                      "x.lb-agent-tmp.y"}));
  EXPECT_EQ(ReadFile(live_), "live\n");
}

TEST_F(ConfigStoreTest, WriteCandidateFailureNamesTheDirectoryAndKeepsLiveFile) {
  const bool root = geteuid() == 0;
  std::string dir;
  std::string live;
  if (root) {
    // chmod does not stop root: a directory that does not exist fails for everyone.
    dir = tmp_.File("does-not-exist");
    live = dir + "/haproxy.cfg";
  } else {
    dir = tmp_.File("etc");
    live = live_;
    WriteFile(live, "live config\n");
    ASSERT_EQ(chmod(dir.c_str(), 0555), 0);
  }
  ConfigStore store(live, history_, 2);
  auto candidate = store.WriteCandidate("new config\n");
  if (!root) chmod(dir.c_str(), 0755);
  ASSERT_FALSE(candidate.ok()) << "wrote " << *candidate;
  EXPECT_EQ(candidate.status().code(), proto::ErrorCode::kInternal);
  EXPECT_NE(candidate.status().message().find(dir), std::string::npos)
      << candidate.status().message();
  if (root) {
    EXPECT_FALSE(std::filesystem::exists(dir));
    EXPECT_FALSE(store.ReadLive()->exists);
  } else {
    EXPECT_EQ(ReadFile(live), "live config\n");
    EXPECT_EQ(ListDir(dir), std::vector<std::string>{"haproxy.cfg"});
  }
}

TEST_F(ConfigStoreTest, FailedCommitLeavesLiveFileAndRemovesCandidate) {
  // History cannot be created where a regular file is in the way: Commit must fail cleanly.
  WriteFile(live_, "live\n");
  WriteFile(tmp_.File("blocker"), "a file, not a directory");
  ConfigStore store(live_, tmp_.File("blocker/history"), 2);
  auto candidate = store.WriteCandidate("new\n");
  ASSERT_TRUE(candidate.ok()) << candidate.status().ToString();
  proto::Status s = store.Commit(*candidate);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("history"), std::string::npos) << s.message();
  EXPECT_EQ(ReadFile(live_), "live\n");
  EXPECT_FALSE(std::filesystem::exists(*candidate));
  EXPECT_FALSE(store.ReloadInterrupted()) << "nothing to reload: the live file did not change";
  EXPECT_EQ(ListDir(tmp_.File("etc")), std::vector<std::string>{"haproxy.cfg"});
}

TEST_F(ConfigStoreTest, RemoveStaleTempsCleansTheHistoryDirectoryToo) {
  WriteFile(live_, "live\n");
  std::filesystem::create_directory(history_);
  WriteFile(history_ + "/haproxy.cfg.1", "v0\n");
  WriteFile(history_ + "/" + std::string(ConfigStore::kTempPrefix) + "haproxy.cfg.2.Ab12Cd",
            "half");
  WriteFile(tmp_.File("etc/") + std::string(ConfigStore::kTempPrefix) + "haproxy.cfg.x", "half");
  ConfigStore store(live_, history_, 2);
  EXPECT_EQ(store.RemoveStaleTemps(), 2);
  EXPECT_EQ(ListDir(history_), std::vector<std::string>{"haproxy.cfg.1"});
  EXPECT_EQ(ListDir(tmp_.File("etc")), std::vector<std::string>{"haproxy.cfg"});
}

TEST(WriteFileAtomicallyTest, WritesAndReplaces) {
  TempDir tmp;
  const std::string path = tmp.File("state");
  ASSERT_TRUE(WriteFileAtomically(path, "one").ok());
  EXPECT_EQ(ReadFile(path), "one");
  ASSERT_TRUE(WriteFileAtomically(path, "two").ok());
  EXPECT_EQ(ReadFile(path), "two");
  EXPECT_EQ(ListDir(tmp.path()), std::vector<std::string>{"state"});
}

}  // namespace
}  // namespace lb::agent
