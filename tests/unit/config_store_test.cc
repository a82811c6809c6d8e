// ConfigStore against a real temporary directory.
#include "config_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
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
  EXPECT_EQ(Texts(history_), std::vector<std::string>{"v0\n"});
  for (const auto& name : ListDir(history_)) {
    EXPECT_EQ(name.rfind("haproxy.cfg.", 0), 0u) << name;
  }
}

TEST_F(ConfigStoreTest, HistoryKeepsOnlyTheNewestVersions) {
  WriteFile(live_, "v0\n");
  ConfigStore store(live_, history_, 2);
  for (const char* text : {"v1\n", "v2\n", "v3\n"}) {
    auto candidate = store.WriteCandidate(text);
    ASSERT_TRUE(candidate.ok()) << candidate.status().ToString();
    ASSERT_TRUE(store.Commit(*candidate).ok());
  }
  EXPECT_EQ(ReadFile(live_), "v3\n");
  EXPECT_EQ(Texts(history_), (std::vector<std::string>{"v1\n", "v2\n"}));
}

TEST_F(ConfigStoreTest, CommitWithoutLiveFileCreatesItWithoutHistory) {
  ConfigStore store(live_, history_, 2);
  auto candidate = store.WriteCandidate("first\n");
  ASSERT_TRUE(candidate.ok());
  ASSERT_TRUE(store.Commit(*candidate).ok());
  EXPECT_EQ(ReadFile(live_), "first\n");
  EXPECT_TRUE(Texts(history_).empty());
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
