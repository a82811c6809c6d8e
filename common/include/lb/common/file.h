// Files as the daemons read and write them: a small file read whole under a size limit, a file
// replaced atomically, a file created exclusively, a lock file, and the one conversion of an OS
// error into a Status. Every lb-agent component reads and writes files through here.
//
// Errors are kInternal (the caller may re-label them, e.g. a settings file that cannot be read is
// a usage error for the daemon that was given it) with the OS's words after the path, LevelDB's
// way: "open /etc/haproxy/haproxy.cfg: Permission denied"; details carry {"errno": N}.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "lb/proto/status.h"

namespace lb::common {

// kInternal "<what> <path>: <strerror(err)>", details {"errno": err}. `what` is the operation
// ("open", "write", "rename over", "cannot read").
proto::Status OsError(std::string_view what, const std::string& path, int err);

// The whole of `path`, refused above `max_bytes` (kTooLarge, naming the limit) before more than
// that is read. Every OS failure, ENOENT included, is OsError("cannot read", path, errno).
proto::Result<std::string> ReadSmallFile(const std::string& path, std::size_t max_bytes);
// Same, but a file that does not exist is nullopt rather than an error.
proto::Result<std::optional<std::string>> ReadSmallFileIfExists(const std::string& path,
                                                                std::size_t max_bytes);

// The directory a path is in ("." for a bare name).
std::string DirOf(const std::string& path);

struct AtomicWriteOptions {
  // Temp files are named <dir>/<temp_prefix><file name>.XXXXXX. A daemon that cleans up after a
  // crash (ConfigStore::RemoveStaleTemps) looks for its own prefix.
  std::string temp_prefix = ".lb-tmp.";
  // The mode of a file that does not exist yet; a file that exists keeps its mode (and, when
  // running as root, its owner): a config may hold passwords and be 0640 root:haproxy.
  mode_t new_file_mode = 0644;
};

// Writes `text` to a new temp file next to `path`, fsynced, and returns the temp file's path.
// On failure no temp file is left. Errors name the temp file or the directory.
proto::Result<std::string> WriteTempNextTo(const std::string& path, std::string_view text,
                                           const AtomicWriteOptions& options = {});

// Replaces `path` atomically: temp file next to it, fsync, rename over `path`, fsync of the
// directory. At every instant `path` holds the complete old text or the complete new one; on
// failure it is unchanged and no temp file is left.
proto::Status WriteFileAtomically(const std::string& path, std::string_view text,
                                  const AtomicWriteOptions& options = {});

// fsync of a directory (after a rename in it).
proto::Status FsyncDir(const std::string& dir);

// Creates `path` exclusively (O_EXCL) with `mode`, writes and fsyncs `text`. An existing file is
// never touched: kBadRequest "<path> already exists" (a usage error: the caller named it). Any
// other failure is an OsError and leaves no file behind.
proto::Status WriteNewFile(const std::string& path, std::string_view text, mode_t mode);

// A file that holds secrets (bearer tokens): it exists, is a regular file and is not readable
// by other users (mode & 0004), checked without reading it. kBadRequest "<path>: <problem>"
// naming the fix.
proto::Status CheckSecretFile(const std::string& path);

// An exclusive flock(2) on a lock file, held while the object lives and by nobody else: one
// daemon per lock file. The file (created with `mode` when missing) holds the holder's pid, for
// the message another process gets. The descriptor is O_CLOEXEC: children never hold the lock.
class ExclusiveLock {
 public:
  // kConflict "<path> is held by pid N" (details {"pid": N}, when known) while another process
  // holds it; an OsError when the file cannot be opened. A lock file that exists on a read-only
  // filesystem is still locked (flock needs no write access).
  static proto::Result<std::unique_ptr<ExclusiveLock>> Acquire(const std::string& path,
                                                               mode_t mode = 0644);
  ~ExclusiveLock();  // releases the lock (the file stays)
  ExclusiveLock(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(const ExclusiveLock&) = delete;

 private:
  explicit ExclusiveLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace lb::common
