#include "lb/common/file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

namespace lb::common {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

Status WriteAllAndSync(int fd, std::string_view text, const std::string& path) {
  while (!text.empty()) {
    const ssize_t n = write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return OsError("write", path, errno);
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  if (fsync(fd) != 0) return OsError("fsync", path, errno);
  return Status::Ok();
}

// Reads everything from `fd`; kTooLarge past `max_bytes`.
Result<std::string> ReadAll(int fd, const std::string& path, std::size_t max_bytes) {
  std::string text;
  char buffer[65536];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return OsError("cannot read", path, errno);
    if (n == 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > max_bytes) {
      return Status(ErrorCode::kTooLarge, "cannot read " + path + ": larger than " +
                                              std::to_string(max_bytes) + " bytes");
    }
  }
}

}  // namespace

Status OsError(std::string_view what, const std::string& path, int err) {
  return Status(ErrorCode::kInternal, std::string(what) + " " + path + ": " + std::strerror(err),
                nlohmann::json{{"errno", err}});
}

Result<std::optional<std::string>> ReadSmallFileIfExists(const std::string& path,
                                                         std::size_t max_bytes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return OsError("cannot read", path, errno);
  }
  Result<std::string> text = ReadAll(fd, path, max_bytes);
  close(fd);
  if (!text.ok()) return text.status();
  return std::optional<std::string>(std::move(*text));
}

Result<std::string> ReadSmallFile(const std::string& path, std::size_t max_bytes) {
  Result<std::optional<std::string>> text = ReadSmallFileIfExists(path, max_bytes);
  if (!text.ok()) return text.status();
  if (!text->has_value()) return OsError("cannot read", path, ENOENT);
  return std::move(**text);
}

std::string DirOf(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

Result<std::string> WriteTempNextTo(const std::string& path, std::string_view text,
                                    const AtomicWriteOptions& options) {
  const std::string dir = DirOf(path);
  std::string name =
      (std::filesystem::path(dir) /
       (options.temp_prefix + std::filesystem::path(path).filename().string() + ".XXXXXX"))
          .string();
  std::vector<char> buffer(name.begin(), name.end());
  buffer.push_back('\0');
  const int fd = mkostemp(buffer.data(), O_CLOEXEC);
  if (fd < 0) return OsError("create a temp file in", dir, errno);
  const std::string temp(buffer.data());
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    fchmod(fd, st.st_mode & 07777);
    if (geteuid() == 0) {
      const int ignored = fchown(fd, st.st_uid, st.st_gid);
      (void)ignored;
    }
  } else {
    fchmod(fd, options.new_file_mode);
  }
  Status written = WriteAllAndSync(fd, text, temp);
  if (close(fd) != 0 && written.ok()) written = OsError("close", temp, errno);
  if (!written.ok()) {
    unlink(temp.c_str());
    return written;
  }
  return temp;
}

Status WriteFileAtomically(const std::string& path, std::string_view text,
                           const AtomicWriteOptions& options) {
  Result<std::string> temp = WriteTempNextTo(path, text, options);
  if (!temp.ok()) return temp.status();
  if (rename(temp->c_str(), path.c_str()) != 0) {
    Status s = OsError("rename over", path, errno);
    unlink(temp->c_str());
    return s;
  }
  return FsyncDir(DirOf(path));
}

Status FsyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return OsError("open", dir, errno);
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return OsError("fsync", dir, err);
  return Status::Ok();
}

Status WriteNewFile(const std::string& path, std::string_view text, mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return Status(ErrorCode::kBadRequest, path + " already exists");
    return OsError("cannot create", path, errno);
  }
  Status written = WriteAllAndSync(fd, text, path);
  if (close(fd) != 0 && written.ok()) written = OsError("close", path, errno);
  if (!written.ok()) unlink(path.c_str());
  return written;
}

Status CheckSecretFile(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return Status(ErrorCode::kBadRequest, path + ": cannot read: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status(ErrorCode::kBadRequest, path + ": not a regular file");
  if ((st.st_mode & S_IROTH) != 0) {
    return Status(ErrorCode::kBadRequest, path +
                                              ": readable by other users; it holds secrets "
                                              "(chmod o-rwx " +
                                              path + ")");
  }
  return Status::Ok();
}

Result<std::unique_ptr<ExclusiveLock>> ExclusiveLock::Acquire(const std::string& path,
                                                              mode_t mode) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, mode);
  const bool writable = fd >= 0;
  if (fd < 0 && (errno == EROFS || errno == EACCES)) fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return OsError("open", path, errno);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char buffer[32] = {};
    const ssize_t n = pread(fd, buffer, sizeof buffer - 1, 0);
    close(fd);
    if (error != EWOULDBLOCK) return OsError("flock", path, error);
    const long pid = n > 0 ? std::strtol(buffer, nullptr, 10) : 0;
    if (pid <= 0) return Status(ErrorCode::kConflict, path + " is held by another process");
    return Status(ErrorCode::kConflict, path + " is held by pid " + std::to_string(pid),
                  nlohmann::json{{"pid", pid}});
  }
  if (writable) {
    // The holder's pid, for the message above; informative only.
    const std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
      // Not fatal: the lock is what matters.
    }
  }
  return std::unique_ptr<ExclusiveLock>(new ExclusiveLock(fd));
}

ExclusiveLock::~ExclusiveLock() { close(fd_); }  // releases the flock

}  // namespace lb::common
