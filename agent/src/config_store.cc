#include "config_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <vector>

namespace lb::agent {
namespace fs = std::filesystem;
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

using common::DirOf;
using common::FsyncDir;
using common::OsError;

// Candidates and atomic writes of the agent: temp files that RemoveStaleTemps recognises.
Result<std::string> WriteTemp(const std::string& path, std::string_view text) {
  return common::WriteTempNextTo(path, text, AgentWriteOptions());
}

// A live config above this is not a config (max_config_bytes is at most 1 GiB).
constexpr std::size_t kMaxLiveBytes = std::size_t{2} << 30;

}  // namespace

common::AtomicWriteOptions AgentWriteOptions() {
  common::AtomicWriteOptions options;
  options.temp_prefix = std::string(ConfigStore::kTempPrefix);
  return options;
}

Status WriteFileAtomically(const std::string& path, std::string_view text) {
  return common::WriteFileAtomically(path, text, AgentWriteOptions());
}

ConfigStore::ConfigStore(std::string live_path, std::string history_dir, int history_keep)
    : live_path_(std::move(live_path)),
      dir_(DirOf(live_path_)),
      history_dir_(std::move(history_dir)),
      history_keep_(history_keep) {}

int ConfigStore::RemoveStaleTemps() {
  int removed = 0;
  // A kill while the history copy was being written leaves its temp file there.
  for (const std::string& dir : {dir_, history_dir_}) {
    if (dir.empty()) continue;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().filename().string().rfind(kTempPrefix, 0) == 0 &&
          fs::remove(entry.path(), ec)) {
        ++removed;
      }
    }
  }
  return removed;
}

Result<ConfigStore::Live> ConfigStore::ReadLive() const {
  auto text = common::ReadSmallFileIfExists(live_path_, kMaxLiveBytes);
  if (!text.ok()) return text.status();
  if (!text->has_value()) return Live{};
  return Live{true, std::move(**text)};
}

Result<std::string> ConfigStore::WriteCandidate(std::string_view text) {
  auto temp = WriteTemp(live_path_, text);
  if (!temp.ok()) {
    return Status(ErrorCode::kInternal, "cannot write the new config next to " + live_path_ + ": " +
                                            temp.status().message() +
                                            "; the live config is unchanged");
  }
  return temp;
}

Status ConfigStore::KeepHistory() {
  if (history_keep_ <= 0 || history_dir_.empty()) return Status::Ok();
  auto live = ReadLive();
  if (!live.ok()) return live.status();
  if (!live->exists) return Status::Ok();
  const std::string why = "cannot keep the replaced config in the history directory " +
                          history_dir_ + " (history_keep = 0 turns history off): ";
  std::error_code ec;
  fs::create_directories(history_dir_, ec);
  if (ec) return Status(ErrorCode::kInternal, why + "create " + history_dir_ + ": " + ec.message());
  auto now = std::chrono::system_clock::now().time_since_epoch();
  std::string stamp =
      std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(now).count());
  std::string name = fs::path(live_path_).filename().string() + "." + stamp;
  Status s = WriteFileAtomically((fs::path(history_dir_) / name).string(), live->text);
  if (!s.ok()) return Status(ErrorCode::kInternal, why + s.message());
  // Keep the newest history_keep_ versions (names sort by their timestamp).
  std::vector<fs::path> versions;
  std::string prefix = fs::path(live_path_).filename().string() + ".";
  for (const auto& entry : fs::directory_iterator(history_dir_, ec)) {
    std::string n = entry.path().filename().string();
    if (n.rfind(prefix, 0) == 0) versions.push_back(entry.path());
  }
  std::sort(versions.begin(), versions.end());
  for (std::size_t i = 0; i + static_cast<std::size_t>(history_keep_) < versions.size(); ++i) {
    fs::remove(versions[i], ec);
  }
  return Status::Ok();
}

Result<std::unique_ptr<common::ExclusiveLock>> ConfigStore::Lock() const {
  return common::ExclusiveLock::Acquire(
      (fs::path(dir_) / (std::string(kLockPrefix) + fs::path(live_path_).filename().string()))
          .string());
}

Status ConfigStore::BeginApply() {
  // Only a killed agent needs it, not a crashed machine (haproxy restarts with the live file
  // then), so it is not fsynced.
  int marker = open(MarkerPath().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (marker < 0) return OsError("create", MarkerPath(), errno);
  close(marker);
  return Status::Ok();
}

Status ConfigStore::Commit(const std::string& candidate) {
  // The marker goes before the rename.
  if (Status s = BeginApply(); !s.ok()) {
    Discard(candidate);
    return s;
  }
  Status s = KeepHistory();
  if (!s.ok()) {
    Discard(candidate);
    ReloadFinished();
    return s;
  }
  if (rename(candidate.c_str(), live_path_.c_str()) != 0) {
    s = OsError("rename over", live_path_, errno);
    Discard(candidate);
    ReloadFinished();
    return s;
  }
  return FsyncDir(dir_);
}

std::string ConfigStore::MarkerPath() const {
  return (fs::path(dir_) /
          (std::string(kReloadMarkerPrefix) + fs::path(live_path_).filename().string()))
      .string();
}

bool ConfigStore::ReloadInterrupted() const { return access(MarkerPath().c_str(), F_OK) == 0; }

void ConfigStore::ReloadFinished() { unlink(MarkerPath().c_str()); }

Status ConfigStore::Replace(std::string_view text) {
  auto candidate = WriteTemp(live_path_, text);
  if (!candidate.ok()) return candidate.status();
  if (rename(candidate->c_str(), live_path_.c_str()) != 0) {
    Status s = OsError("rename over", live_path_, errno);
    Discard(*candidate);
    return s;
  }
  return FsyncDir(dir_);
}

void ConfigStore::Discard(const std::string& candidate) { unlink(candidate.c_str()); }

}  // namespace lb::agent
