// A full or read-only config directory, and a full history directory, under the real agent and
// a real haproxy: the reload is refused with an error that says what is wrong and where, the
// live config stays byte for byte, haproxy keeps serving it, no temp file is left, and the
// same reload works once the disk is fixed.
//
// The test makes its own filesystems: a small tmpfs (mount -t tmpfs) and a read-only bind
// mount (mount --bind, then mount -o remount,ro,bind). That needs root (CI runs as root); a
// test that cannot mount fails with mount's own words, it never skips. Mounts are undone by a
// guard with umount -l whatever happens.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

// A mount made by the test, undone when the guard goes (lazily: a busy mount never hangs).
class ScopedMount {
 public:
  // A tmpfs of `size` (mount's syntax, e.g. "512k") on `dir`; nullptr (and a test failure with
  // mount's message) when it cannot be mounted.
  static std::unique_ptr<ScopedMount> Tmpfs(const std::string& dir, const std::string& size) {
    std::filesystem::create_directories(dir);
    CommandResult r = RunCommand(
        {"/usr/bin/mount", "-t", "tmpfs", "-o", "size=" + size + ",mode=0755", "tmpfs", dir});
    if (r.exit_code != 0) {
      ADD_FAILURE() << "cannot mount a tmpfs on " << dir
                    << " (this test needs root, or CAP_SYS_ADMIN): " << r.Describe();
      return nullptr;
    }
    return std::unique_ptr<ScopedMount>(new ScopedMount(dir));
  }

  // `dir` made read-only: bound on itself, then remounted ro.
  static std::unique_ptr<ScopedMount> ReadOnly(const std::string& dir) {
    CommandResult bind = RunCommand({"/usr/bin/mount", "--bind", dir, dir});
    if (bind.exit_code != 0) {
      ADD_FAILURE() << "cannot bind-mount " << dir
                    << " (this test needs root, or CAP_SYS_ADMIN): " << bind.Describe();
      return nullptr;
    }
    auto guard = std::unique_ptr<ScopedMount>(new ScopedMount(dir));
    CommandResult ro = RunCommand({"/usr/bin/mount", "-o", "remount,ro,bind", dir});
    if (ro.exit_code != 0) {
      ADD_FAILURE() << "cannot remount " << dir << " read-only: " << ro.Describe();
      return nullptr;  // the guard unmounts the bind mount
    }
    return guard;
  }

  ~ScopedMount() { Unmount(); }

  void Unmount() {
    if (dir_.empty()) return;
    CommandResult r = RunCommand({"/usr/bin/umount", "-l", dir_});
    EXPECT_EQ(r.exit_code, 0) << "umount -l " << dir_ << ": " << r.Describe();
    dir_.clear();
  }

 private:
  explicit ScopedMount(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

int64_t FreeBytes(const std::string& dir) {
  struct statvfs st {};
  if (statvfs(dir.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

// Fills the filesystem of `dir` with the file `dir`/filler, then gives back `leave` bytes.
// Returns false (with a test failure) if the disk never filled.
bool FillLeaving(const std::string& dir, int64_t leave) {
  const std::string path = dir + "/filler";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    ADD_FAILURE() << "open " << path << ": " << std::strerror(errno);
    return false;
  }
  const std::string chunk(4096, 'f');
  int64_t size = 0;
  int err = 0;
  while (true) {
    ssize_t n = write(fd, chunk.data(), chunk.size());
    if (n < 0) {
      err = errno;
      break;
    }
    size += n;
  }
  bool ok = err == ENOSPC;
  EXPECT_EQ(err, ENOSPC) << "filling " << dir << ": " << std::strerror(err);
  if (ok && leave > 0) ok = ftruncate(fd, std::max<int64_t>(0, size - leave)) == 0;
  close(fd);
  return ok;
}

// The config the tests push: frontend → server "b", with a comment of `padding` bytes.
std::string PaddedConfig(int frontend, int port, std::size_t padding) {
  std::string text = HaproxyConfig(frontend, {{"b", port}});
  for (std::size_t done = 0; done < padding; done += 64) text += "# " + std::string(61, 'p') + "\n";
  return text;
}

class DiskFaultTest : public ::testing::Test {
 protected:
  // Starts the agent with its haproxy.cfg in `conf_dir` (made by the caller) and history in
  // `history_dir` (relative to the fixture's dir).
  void Start(const std::string& conf_dir, const std::string& history_dir = "history") {
    agent_ = std::make_unique<AgentFixture>(Keys{{"config_file_path", conf_dir + "/haproxy.cfg"}},
                                            Keys{{"history_dir", history_dir}});
    live_ = conf_dir + "/haproxy.cfg";
    WriteFile(live_, HaproxyConfig(frontend_, {{"a", a_.port()}}));
    agent_->StartAgent();
    ASSERT_TRUE(WaitFor([&] { return HttpGetBody(frontend_) == "a"; }, milliseconds(10000)))
        << agent_->AgentLog();
    before_ = ReadFile(live_);
  }

  // A refused reload changed nothing: same bytes, same haproxy serving them, no temp files.
  void ExpectNothingChanged(const std::string& conf_dir) {
    EXPECT_EQ(ReadFile(live_), before_) << "the live config changed";
    EXPECT_EQ(AgentTempFiles(conf_dir), std::vector<std::string>{})
        << "left next to the live config";
    EXPECT_EQ(HttpGetBody(frontend_), "a") << "haproxy no longer serves the live config";
    EXPECT_EQ(agent_->Ok("info")["config"]["sha256"], Sha256OfFile(live_));
    EXPECT_TRUE(agent_->Ok("ping")["pong"]);
  }

  HttpBackend a_{"a"};
  HttpBackend b_{"b"};
  int frontend_ = FreePort();
  TempDir mounts_;  // mount points live outside the fixture's dir, which is removed first
  std::unique_ptr<AgentFixture> agent_;
  std::string live_;
  std::string before_;
};

TEST_F(DiskFaultTest, FullConfigDirectoryRefusesTheReloadAndKeepsTheLiveConfig) {
  const std::string conf = mounts_.File("conf");
  auto mount = ScopedMount::Tmpfs(conf, "1m");
  ASSERT_NE(mount, nullptr);
  Start(conf);
  ASSERT_TRUE(FillLeaving(conf, 16 * 1024));
  const int64_t free_bytes = FreeBytes(conf);
  const std::string config = PaddedConfig(frontend_, b_.port(), 128 * 1024);
  ASSERT_GT(static_cast<int64_t>(config.size()), free_bytes);

  auto reply = agent_->Call("reload", {{"config", config}});
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kInternal) << reply->status.ToString();
  const std::string& message = reply->status.message();
  std::cout << "disk full: " << message << std::endl;
  EXPECT_NE(message.find("No space left on device"), std::string::npos) << message;
  EXPECT_NE(message.find(live_), std::string::npos) << "names the live config: " << message;
  EXPECT_NE(message.find("unchanged"), std::string::npos) << message;
  ExpectNothingChanged(conf);

  // Room again: the same reload goes through.
  std::filesystem::remove(conf + "/filler");
  EXPECT_EQ(agent_->Ok("reload", {{"config", config}})["outcome"], "applied");
  EXPECT_EQ(ReadFile(live_), config);
  EXPECT_EQ(HttpGetBody(frontend_), "b");
  EXPECT_EQ(AgentTempFiles(conf), std::vector<std::string>{});
  agent_.reset();  // stop agent and haproxy before the mount goes
}

TEST_F(DiskFaultTest, ReadOnlyConfigDirectoryRefusesTheReloadAndKeepsTheLiveConfig) {
  const std::string conf = mounts_.File("conf");
  std::filesystem::create_directories(conf);
  Start(conf);
  auto mount = ScopedMount::ReadOnly(conf);
  ASSERT_NE(mount, nullptr);
  const std::string config = PaddedConfig(frontend_, b_.port(), 0);

  auto reply = agent_->Call("reload", {{"config", config}});
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kInternal) << reply->status.ToString();
  const std::string& message = reply->status.message();
  std::cout << "read-only: " << message << std::endl;
  EXPECT_NE(message.find("Read-only file system"), std::string::npos) << message;
  EXPECT_NE(message.find(live_), std::string::npos) << "names the live config: " << message;
  EXPECT_NE(message.find("unchanged"), std::string::npos) << message;
  ExpectNothingChanged(conf);

  mount->Unmount();
  EXPECT_EQ(agent_->Ok("reload", {{"config", config}})["outcome"], "applied");
  EXPECT_EQ(HttpGetBody(frontend_), "b");
}

TEST_F(DiskFaultTest, FullHistoryDirectoryRefusesTheReloadAndKeepsTheLiveConfig) {
  const std::string conf = mounts_.File("conf");
  const std::string history = mounts_.File("history");
  std::filesystem::create_directories(conf);
  auto mount = ScopedMount::Tmpfs(history, "64k");
  ASSERT_NE(mount, nullptr);
  Start(conf, history);
  ASSERT_TRUE(FillLeaving(history, 0));
  const std::string config = PaddedConfig(frontend_, b_.port(), 0);

  auto reply = agent_->Call("reload", {{"config", config}});
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->status.code(), proto::ErrorCode::kInternal) << reply->status.ToString();
  const std::string& message = reply->status.message();
  std::cout << "history full: " << message << std::endl;
  EXPECT_NE(message.find("No space left on device"), std::string::npos) << message;
  EXPECT_NE(message.find(history), std::string::npos) << "names the history dir: " << message;
  EXPECT_NE(message.find("unchanged"), std::string::npos) << message;
  ExpectNothingChanged(conf);
  EXPECT_EQ(AgentTempFiles(history), std::vector<std::string>{}) << "left in the history dir";

  std::filesystem::remove(history + "/filler");
  EXPECT_EQ(agent_->Ok("reload", {{"config", config}})["outcome"], "applied");
  EXPECT_EQ(HttpGetBody(frontend_), "b");
  agent_.reset();
}

}  // namespace
}  // namespace lb::testing
