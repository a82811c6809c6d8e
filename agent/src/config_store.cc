#include "config_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <vector>

#include "lb/common/text.h"

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

namespace {

// "20261124T103102.123456Z" for unix microseconds, and back (nullopt: not that shape).
std::string HistoryStamp(int64_t unix_us) {
  return common::FormatUtc(unix_us, common::UtcFormat::kCompact);
}

std::optional<int64_t> ParseHistoryStamp(std::string_view stamp) {
  // YYYYMMDDTHHMMSS.ffffffZ
  if (stamp.size() != 23 || stamp[8] != 'T' || stamp[15] != '.' || stamp[22] != 'Z') {
    return std::nullopt;
  }
  for (std::size_t i : {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21}) {
    if (stamp[i] < '0' || stamp[i] > '9') return std::nullopt;
  }
  auto number = [&](std::size_t at, std::size_t length) {
    return std::stoi(std::string(stamp.substr(at, length)));
  };
  struct tm tm {};
  tm.tm_year = number(0, 4) - 1900;
  tm.tm_mon = number(4, 2) - 1;
  tm.tm_mday = number(6, 2);
  tm.tm_hour = number(9, 2);
  tm.tm_min = number(11, 2);
  tm.tm_sec = number(13, 2);
  return static_cast<int64_t>(timegm(&tm)) * 1000000 + number(16, 6);
}

bool IsOutcomeWord(std::string_view word) {
  if (word.empty()) return false;
  for (char c : word) {
    if (!((c >= 'a' && c <= 'z') || c == '_')) return false;
  }
  return true;
}

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Outcomes of a config that was live for a while (a rollback target).
bool WasLive(std::string_view outcome) {
  return outcome == "applied" || outcome == "was_live" || outcome == "replaced";
}

}  // namespace

std::vector<ConfigStore::HistoryEntry> ConfigStore::History() const {
  std::vector<HistoryEntry> entries;
  if (history_dir_.empty()) return entries;
  const std::string prefix = fs::path(live_path_).filename().string() + ".";
  std::error_code ec;
  for (const auto& file : fs::directory_iterator(history_dir_, ec)) {
    const std::string name = file.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || !file.is_regular_file(ec)) continue;
    const std::string rest = name.substr(prefix.size());
    HistoryEntry entry;
    entry.path = file.path().string();
    entry.bytes = file.file_size(ec);
    if (!rest.empty() && rest.find_first_not_of("0123456789") == std::string::npos &&
        rest.size() <= 18) {
      // Named by raw microseconds: a replaced live file, kept by an earlier version.
      entry.id = rest;
      entry.time_unix_us = std::stoll(rest);
      entry.outcome = "replaced";
    } else {
      const std::size_t dot = rest.rfind('.');
      if (dot == std::string::npos) continue;
      auto time = ParseHistoryStamp(std::string_view(rest).substr(0, dot));
      if (!time || !IsOutcomeWord(std::string_view(rest).substr(dot + 1))) continue;
      entry.id = rest.substr(0, dot);
      entry.time_unix_us = *time;
      entry.outcome = rest.substr(dot + 1);
    }
    entries.push_back(std::move(entry));
  }
  std::sort(entries.begin(), entries.end(), [](const HistoryEntry& a, const HistoryEntry& b) {
    return a.time_unix_us != b.time_unix_us ? a.time_unix_us > b.time_unix_us : a.id > b.id;
  });
  return entries;
}

Result<std::string> ConfigStore::ReadEntry(const HistoryEntry& entry) const {
  return common::ReadSmallFile(entry.path, kMaxLiveBytes);
}

Status ConfigStore::WriteEntry(std::string_view text, int64_t time_unix_us,
                               std::string_view outcome, std::string* path) {
  const std::string base = fs::path(live_path_).filename().string() + ".";
  // Two entries in one microsecond (a clock step back): the later one takes the next.
  std::error_code ec;
  std::string candidate;
  for (int i = 0; i < 1000; ++i, ++time_unix_us) {
    const std::string stamp = base + HistoryStamp(time_unix_us) + ".";
    bool taken = false;
    for (const auto& file : fs::directory_iterator(history_dir_, ec)) {
      if (file.path().filename().string().rfind(stamp, 0) == 0) taken = true;
    }
    if (!taken) {
      candidate = (fs::path(history_dir_) / (stamp + std::string(outcome))).string();
      break;
    }
  }
  if (candidate.empty()) return Status(ErrorCode::kInternal, "no free history entry name");
  Status s = WriteFileAtomically(candidate, text);
  if (s.ok()) *path = candidate;
  return s;
}

void ConfigStore::Prune() {
  std::vector<HistoryEntry> entries = History();
  std::error_code ec;
  for (std::size_t i = static_cast<std::size_t>(history_keep_); i < entries.size(); ++i) {
    fs::remove(entries[i].path, ec);
  }
}

Status ConfigStore::KeepHistory(const std::string& candidate) {
  pending_entry_.clear();
  if (history_keep_ <= 0 || history_dir_.empty()) return Status::Ok();
  const std::string why = "cannot keep the config in the history directory " + history_dir_ +
                          " (history_keep = 0 turns history off): ";
  std::error_code ec;
  fs::create_directories(history_dir_, ec);
  if (ec) return Status(ErrorCode::kInternal, why + "create " + history_dir_ + ": " + ec.message());
  auto live = ReadLive();
  if (!live.ok()) return live.status();
  int64_t now = NowUs();
  if (live->exists) {
    // The live file is kept first unless the newest entry that was live holds it already.
    bool held = false;
    for (const HistoryEntry& entry : History()) {
      if (!WasLive(entry.outcome)) continue;
      auto text = ReadEntry(entry);
      held = text.ok() && *text == live->text;
      break;
    }
    if (!held) {
      std::string path;
      Status s = WriteEntry(live->text, now, "was_live", &path);
      if (!s.ok()) return Status(ErrorCode::kInternal, why + s.message());
      ++now;
    }
  }
  auto text = common::ReadSmallFile(candidate, kMaxLiveBytes);
  if (!text.ok()) return Status(ErrorCode::kInternal, why + text.status().message());
  Status s = WriteEntry(*text, now, "pending", &pending_entry_);
  if (!s.ok()) return Status(ErrorCode::kInternal, why + s.message());
  Prune();
  return Status::Ok();
}

void ConfigStore::SetOutcome(std::string_view outcome) {
  if (pending_entry_.empty()) return;
  const std::string suffix = ".pending";
  std::string renamed =
      pending_entry_.substr(0, pending_entry_.size() - suffix.size()) + "." + std::string(outcome);
  std::error_code ec;
  fs::rename(pending_entry_, renamed, ec);
  pending_entry_.clear();
}

void ConfigStore::MarkInterrupted() {
  std::error_code ec;
  for (const HistoryEntry& entry : History()) {
    if (entry.outcome != "pending") continue;
    const std::string& path = entry.path;
    fs::rename(path, path.substr(0, path.size() - std::string("pending").size()) + "interrupted",
               ec);
  }
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
  Status s = KeepHistory(candidate);
  if (!s.ok()) {
    Discard(candidate);
    ReloadFinished();
    return s;
  }
  if (rename(candidate.c_str(), live_path_.c_str()) != 0) {
    s = OsError("rename over", live_path_, errno);
    Discard(candidate);
    if (!pending_entry_.empty()) unlink(pending_entry_.c_str());  // never live
    pending_entry_.clear();
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
