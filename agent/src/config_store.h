// ConfigStore: the live haproxy.cfg on disk, replaced only atomically.
//
// DESIGN: a new config is written to a temp file in the live file's own directory (so that the
// rename is atomic on the same filesystem), fsynced, validated there, then renamed over the live
// file and the directory fsynced. At every instant the live path holds either the complete old
// file or the complete new one, whatever kills the agent. The replaced version is copied into
// the history directory first (the newest `keep` are kept). Temp files that a killed agent left
// behind (next to the live file, or in the history directory) start with kTempPrefix and are
// removed by RemoveStaleTemps at start-up.
//
// One agent per live file: Lock() takes an exclusive lock next to it before anything else.
//
// Between Commit and the end of haproxy's reload the live file is newer than what haproxy runs;
// during a runtime apply haproxy is newer than the live file until the rename. A marker file
// (kReloadMarkerPrefix + the live file's name, next to it) spans that window: BeginApply or
// Commit creates it, ReloadFinished removes it, and an agent that finds it at start-up knows its
// predecessor died in between and reloads haproxy with the live file (whichever it is).
// Not thread-safe: the reload worker is its only writer.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "lb/common/file.h"
#include "lb/proto/status.h"

namespace lb::agent {

class ConfigStore {
 public:
  static constexpr std::string_view kTempPrefix = ".lb-agent-tmp.";
  static constexpr std::string_view kReloadMarkerPrefix = ".lb-agent-reloading.";
  static constexpr std::string_view kLockPrefix = ".lb-agent-lock.";

  ConfigStore(std::string live_path, std::string history_dir, int history_keep);

  const std::string& live_path() const { return live_path_; }

  // Locks kLockPrefix + the live file's name, next to it, for as long as the result lives.
  // kConflict "... is held by pid N" while another agent runs with this live file; an OsError
  // when the lock file cannot be opened.
  proto::Result<std::unique_ptr<common::ExclusiveLock>> Lock() const;

  // Removes kTempPrefix files in the live file's directory and in the history directory.
  // Returns how many went.
  int RemoveStaleTemps();

  // The live file's text. A missing file is not_found-like: ok with `exists` false.
  struct Live {
    bool exists = false;
    std::string text;
  };
  proto::Result<Live> ReadLive() const;

  // Writes `text` to a new temp file next to the live file and fsyncs it; returns its path.
  // Errors (disk full, read-only directory) are internal, name the live file and the temp file
  // or directory, quote the OS's words ("No space left on device") and leave no temp file.
  proto::Result<std::string> WriteCandidate(std::string_view text);

  // Opens the window that ReloadFinished closes (the marker file) without writing the live
  // file: for a change applied to haproxy before the file is renamed (the runtime API).
  proto::Status BeginApply();

  // Keeps the current live file in history, then renames `candidate` over the live file and
  // fsyncs the directory. On failure the live file is unchanged and the candidate removed.
  proto::Status Commit(const std::string& candidate);

  // Writes `text` as the live file through the same atomic path (used for rollback).
  proto::Status Replace(std::string_view text);

  // Removes a candidate that will not be committed. Never fails loudly.
  void Discard(const std::string& candidate);

  // True when a Commit was not followed by ReloadFinished (in this run or a killed one).
  bool ReloadInterrupted() const;
  // Ends the window that Commit opened: haproxy has taken the live file, or refused it and the
  // rollback is over. Never fails loudly.
  void ReloadFinished();

 private:
  proto::Status KeepHistory();
  std::string MarkerPath() const;

  std::string live_path_;
  std::string dir_;
  std::string history_dir_;
  int history_keep_;
};

// How the agent writes a file atomically (common/file.h): temp files start with
// ConfigStore::kTempPrefix, so that RemoveStaleTemps finds what a killed agent left behind.
common::AtomicWriteOptions AgentWriteOptions();
// common::WriteFileAtomically with AgentWriteOptions(): the server-state file and the fleet state
// file are written this way too.
proto::Status WriteFileAtomically(const std::string& path, std::string_view text);

}  // namespace lb::agent
