// ConfigStore: the live haproxy.cfg on disk, replaced only atomically.
//
// DESIGN: a new config is written to a temp file in the live file's own directory (so that the
// rename is atomic on the same filesystem), fsynced, validated there, then renamed over the live
// file and the directory fsynced. At every instant the live path holds either the complete old
// file or the complete new one, whatever kills the agent. Temp files that a killed agent left
// behind (next to the live file, or in the history directory) start with kTempPrefix and are
// removed by RemoveStaleTemps at start-up.
//
// HISTORY: every committed config is kept in the history directory (the newest `keep` entries)
// as <live name>.<UTC time>.<outcome>, e.g. haproxy.cfg.20261124T103102.123456Z.applied: the
// time it was committed (microseconds), and what became of it. Commit writes the entry as
// `pending` before the rename and SetOutcome renames it once the reload is over: `applied`,
// `rolled_back` (haproxy refused it; the previous file was restored) or `failed` (the rollback
// failed too). A live file that no entry holds yet (the config found at the first commit) is
// kept first as `was_live`, so that it can be rolled back to. An entry still `pending` at
// start-up belonged to a killed agent: MarkInterrupted renames it `interrupted`. Files named
// by raw microseconds (<live name>.<digits>, before this format) are listed as `replaced`.
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

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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
  const std::string& history_dir() const { return history_dir_; }
  int history_keep() const { return history_keep_; }

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

  // Keeps `candidate` in history as `pending` (and the live file first when no entry holds
  // it), then renames `candidate` over the live file and fsyncs the directory. On failure the
  // live file is unchanged, and the candidate and its history entry are removed.
  proto::Status Commit(const std::string& candidate);

  // The outcome of the last Commit ("applied", "rolled_back", "failed"): renames its history
  // entry. Never fails loudly (an entry that cannot be renamed stays `pending`).
  void SetOutcome(std::string_view outcome);

  // Renames every `pending` entry (left by a killed agent) to `interrupted`. For start-up.
  void MarkInterrupted();

  struct HistoryEntry {
    std::string id;        // "20261124T103102.123456Z" (older files: the raw microseconds)
    std::string path;      // the file
    int64_t time_unix_us;  // when it was committed
    std::string outcome;   // see HISTORY above
    std::uintmax_t bytes;
  };
  // The kept entries, newest first. A missing directory is an empty history.
  std::vector<HistoryEntry> History() const;
  // The text of an entry (kInternal when it cannot be read any more).
  proto::Result<std::string> ReadEntry(const HistoryEntry& entry) const;

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
  // Writes the entries Commit needs (see HISTORY) and prunes the oldest.
  proto::Status KeepHistory(const std::string& candidate);
  proto::Status WriteEntry(std::string_view text, int64_t time_unix_us, std::string_view outcome,
                           std::string* path);
  void Prune();
  std::string MarkerPath() const;

  std::string live_path_;
  std::string dir_;
  std::string history_dir_;
  int history_keep_;
  std::string pending_entry_;  // the entry of the last Commit, until SetOutcome
};

// How the agent writes a file atomically (common/file.h): temp files start with
// ConfigStore::kTempPrefix, so that RemoveStaleTemps finds what a killed agent left behind.
common::AtomicWriteOptions AgentWriteOptions();
// common::WriteFileAtomically with AgentWriteOptions(): the server-state file and the fleet state
// file are written this way too.
proto::Status WriteFileAtomically(const std::string& path, std::string_view text);

}  // namespace lb::agent
