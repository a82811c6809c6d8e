// What a fleet controller keeps on disk, and the one place that reads and writes it.
//
// DESIGN: the state is small and written whole: the version counter and, per target, the newest
// push (proto/PROTOCOL.md, "Fleet"). A restarted controller, or a standby started later with
// the same --state-dir and --id, loads it and answers hellos exactly as the old one would have.
// Every save is atomic (temp file, fsync, rename, fsync of the directory): a crash leaves the
// previous state or the new one, never a mix. An exclusive flock on DIR/fleet-controller.lock
// keeps two live controllers from sharing one state dir (the kernel releases it when the process
// dies, however it dies). The file is JSON; arguments that are not UTF-8 (a Latin-1 config) are
// kept byte for byte as base64 of their msgpack form. Identical arguments are stored once:
// a staged rollout records one push per agent, all with the same config.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fleet_protocol.h"
#include "lb/proto/status.h"

namespace lb::cli {

struct StoredPush {
  uint64_t version = 0;
  FleetTarget target;
  std::string cmd;  // "reload"
  // The push's args; pushes with equal args share one object (in memory and in the file).
  std::shared_ptr<const nlohmann::json> args;
  int64_t ts_ms = 0;  // when it was recorded (unix ms)
};

struct PersistentState {
  std::string controller_id;  // the id of the controller that saved it; "" when never saved
  uint64_t latest = 0;        // the newest version handed out (the counter)
  std::map<std::string, StoredPush> pushes;  // by TargetKey(target)
};

// The file's text, and back. DecodeState checks everything (a version above `latest`, a target
// stored under the wrong key, a dangling args index) and names the problem after `origin`.
std::string EncodeState(const PersistentState& state);
proto::Result<PersistentState> DecodeState(std::string_view text, const std::string& origin);

// One controller's hold on its state directory. Not thread-safe; owned by the serving thread.
class StateDir {
 public:
  static constexpr std::string_view kStateFileName = "fleet-controller.json";
  static constexpr std::string_view kLockFileName = "fleet-controller.lock";

  // Creates `dir` when missing and locks it. Errors (kInternal) say what failed and why:
  // "state dir /x is in use by another lbctl fleet serve (pid 123)", "mkdir /x: Permission
  // denied".
  static proto::Result<std::unique_ptr<StateDir>> Open(const std::string& dir);
  ~StateDir();  // releases the lock
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;

  // The saved state; an empty one (latest 0, no push) when nothing was saved yet. An unreadable
  // or malformed file is an error (kInternal), never silently an empty state: starting again
  // from version 0 would make every agent ignore the next pushes.
  proto::Result<PersistentState> Load() const;
  // Replaces the saved state atomically. kInternal with the OS's reason on failure; the
  // previous state is then still the saved one.
  proto::Status Save(const PersistentState& state);

  const std::string& state_file() const { return state_file_; }

 private:
  StateDir(std::string dir, int lock_fd);

  const std::string dir_;
  const std::string state_file_;
  int lock_fd_;
};

}  // namespace lb::cli
