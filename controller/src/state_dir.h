// StateDir: the fleet controller's state in a directory on disk, the first StateStore.
//
// DESIGN: the state is small and written whole: the version counter, each target's desired,
// pending and rejected reloads, and the agents' pinned CURVE keys (proto/PROTOCOL.md, "Fleet").
// A restarted controller, or a standby started later with the same state dir and id, loads it
// and answers hellos exactly as the old one would have. Every save is atomic (temp file, fsync,
// rename, fsync of the directory): a crash leaves the previous state or the new one, never a
// mix. An exclusive flock on DIR/fleet-controller.lock keeps two live controllers from sharing
// one state dir (the kernel releases it when the process dies, however it dies). The file is
// JSON; arguments that are not UTF-8 (a Latin-1 config) are kept byte for byte as base64 of
// their msgpack form. Identical arguments are stored once: a staged rollout records one push per
// agent, all with the same config. Format 1 files (before desired states waited for an apply)
// are read as desired states.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "lb/common/file.h"
#include "lb/proto/status.h"
#include "state_store.h"

namespace lb::controller {

// The file's text, and back. DecodeState checks everything (a version above `latest`, a target
// stored under the wrong key, a dangling args index) and names the problem after `origin`.
std::string EncodeState(const PersistentState& state);
proto::Result<PersistentState> DecodeState(std::string_view text, const std::string& origin);
// The same as a JSON document (EncodeState is its text): the etcd store keeps its "args" entries
// under keys of their own (etcd_store.h).
nlohmann::json EncodeStateDocument(const PersistentState& state);
proto::Result<PersistentState> DecodeStateDocument(const nlohmann::json& document,
                                                   const std::string& origin);
// kInternal "<origin>: <what> (restore it from a backup; ...)": a saved state that cannot be read.
proto::Status BadState(const std::string& origin, const std::string& what);

// One controller's hold on its state directory. Not thread-safe; owned by the serving thread.
class StateDir : public StateStore {
 public:
  static constexpr std::string_view kStateFileName = "fleet-controller.json";
  static constexpr std::string_view kLockFileName = "fleet-controller.lock";

  // Creates `dir` when missing and locks it. Errors (kInternal) say what failed and why:
  // "state dir /x is in use by another lb-controller (pid 123)", "mkdir /x: Permission
  // denied".
  static proto::Result<std::unique_ptr<StateDir>> Open(const std::string& dir);
  ~StateDir() override;  // releases the lock
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;

  proto::Result<PersistentState> Load() override;
  proto::Status Save(const PersistentState& state) override;
  std::string Describe() const override { return "state file " + state_file_; }

  const std::string& state_file() const { return state_file_; }

 private:
  StateDir(std::string dir, std::unique_ptr<common::ExclusiveLock> lock);

  const std::string dir_;
  const std::string state_file_;
  std::unique_ptr<common::ExclusiveLock> lock_;
};

}  // namespace lb::controller
