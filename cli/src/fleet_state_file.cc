#include "fleet_state_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "lb/proto/codec.h"

namespace lb::cli {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;

constexpr int kFormat = 1;
// The state file holds whole configs; far above any sane number of them.
constexpr size_t kMaxStateBytes = 1024 * 1024 * 1024;

Status OsError(const std::string& what) {
  return Status(ErrorCode::kInternal, what + ": " + std::strerror(errno));
}

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kBase64[(n >> 18) & 63];
    out += kBase64[(n >> 12) & 63];
    out += kBase64[(n >> 6) & 63];
    out += kBase64[n & 63];
  }
  if (i < bytes.size()) {
    uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kBase64[(n >> 18) & 63];
    out += kBase64[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kBase64[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t n = 0;
    int padding = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      const char* at = std::strchr(kBase64, c);
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++padding;
        n <<= 6;
        continue;
      }
      if (c == '\0' || at == nullptr || padding > 0) return std::nullopt;
      n = (n << 6) | static_cast<uint32_t>(at - kBase64);
    }
    out += static_cast<char>((n >> 16) & 0xff);
    if (padding < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (padding < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

// {"json": args} when the args are valid UTF-8 throughout, else {"msgpack_base64": "..."}.
json EncodeArgs(const json& args) {
  try {
    (void)args.dump();  // throws on a string that is not UTF-8
    return {{"json", args}};
  } catch (const json::exception&) {
    return {{"msgpack_base64", Base64Encode(proto::EncodeMsgpack(args))}};
  }
}

Result<json> DecodeArgs(const json& entry) {
  if (entry.is_object() && entry.contains("json")) return entry["json"];
  if (entry.is_object() && entry.contains("msgpack_base64") &&
      entry["msgpack_base64"].is_string()) {
    auto bytes = Base64Decode(entry["msgpack_base64"].get<std::string>());
    if (!bytes) return Status(ErrorCode::kInternal, "bad base64");
    proto::DecodeLimits limits;
    limits.max_frame_bytes = kMaxStateBytes;
    return proto::DecodeMsgpack(*bytes, limits);
  }
  return Status(ErrorCode::kInternal,
                "an args entry is neither {\"json\"} nor {\"msgpack_base64\"}");
}

Result<std::string> ReadWholeFile(const std::string& path, bool* missing) {
  *missing = false;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      *missing = true;
      return std::string();
    }
    return OsError("open " + path);
  }
  std::string text;
  char buffer[65536];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = OsError("read " + path);
      close(fd);
      return s;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxStateBytes) {
      close(fd);
      return Status(ErrorCode::kInternal, path + ": larger than 1 GiB");
    }
  }
  close(fd);
  return text;
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return OsError("write " + path);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

}  // namespace

std::string EncodeState(const PersistentState& state) {
  json args = json::array();
  json pushes = json::array();
  std::map<const json*, size_t> index;  // shared args are written once
  for (const auto& [key, push] : state.pushes) {
    const json* a = push.args ? push.args.get() : nullptr;
    static const json* empty = new json(json::object());
    if (a == nullptr) a = empty;
    auto [it, inserted] = index.emplace(a, args.size());
    if (inserted) args.push_back(EncodeArgs(*a));
    pushes.push_back({{"version", push.version},
                      {"target", TargetToJson(push.target)},
                      {"cmd", push.cmd},
                      {"args", it->second},
                      {"ts_ms", push.ts_ms}});
  }
  json file = {{"format", kFormat},
               {"controller", state.controller_id},
               {"latest", state.latest},
               {"args", std::move(args)},
               {"pushes", std::move(pushes)}};
  return file.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<PersistentState> DecodeState(std::string_view text, const std::string& origin) {
  auto bad = [&](const std::string& what) {
    return Status(ErrorCode::kInternal,
                  origin + ": " + what +
                      " (restore it from a backup; starting from an empty state would restart "
                      "versions at 1, below what agents already processed)");
  };
  json file;
  try {
    file = json::parse(text);
  } catch (const json::exception& e) {
    return bad(std::string("not JSON: ") + e.what());
  }
  if (!file.is_object()) return bad("not a JSON object");
  if (file.value("format", json()) != json(kFormat)) return bad("unknown \"format\", expected 1");
  PersistentState state;
  if (!file.contains("latest") || !file["latest"].is_number_unsigned()) {
    return bad("\"latest\" is not a whole number");
  }
  state.latest = file["latest"].get<uint64_t>();
  if (file.contains("controller") && file["controller"].is_string()) {
    state.controller_id = file["controller"].get<std::string>();
  }
  std::vector<std::shared_ptr<const json>> args;
  if (!file.contains("args") || !file["args"].is_array()) return bad("\"args\" is not a list");
  for (const auto& entry : file["args"]) {
    auto decoded = DecodeArgs(entry);
    if (!decoded.ok())
      return bad("args entry " + std::to_string(args.size()) + ": " + decoded.status().message());
    args.push_back(std::make_shared<const json>(std::move(*decoded)));
  }
  if (!file.contains("pushes") || !file["pushes"].is_array())
    return bad("\"pushes\" is not a list");
  for (const auto& entry : file["pushes"]) {
    if (!entry.is_object()) return bad("a push is not an object");
    StoredPush push;
    if (!entry.contains("version") || !entry["version"].is_number_unsigned()) {
      return bad("a push has no whole-number \"version\"");
    }
    push.version = entry["version"].get<uint64_t>();
    if (push.version == 0 || push.version > state.latest) {
      return bad("push version " + std::to_string(push.version) + " is not in 1.." +
                 std::to_string(state.latest) + " (\"latest\")");
    }
    auto target = TargetFromJson(entry.value("target", json()));
    if (!target.ok())
      return bad("push " + std::to_string(push.version) + ": " + target.status().message());
    push.target = *target;
    if (!entry.contains("cmd") || !entry["cmd"].is_string()) {
      return bad("push " + std::to_string(push.version) + " has no \"cmd\"");
    }
    push.cmd = entry["cmd"].get<std::string>();
    if (!entry.contains("args") || !entry["args"].is_number_unsigned() ||
        entry["args"].get<uint64_t>() >= args.size()) {
      return bad("push " + std::to_string(push.version) + " names no stored args");
    }
    push.args = args[entry["args"].get<uint64_t>()];
    if (entry.contains("ts_ms") && entry["ts_ms"].is_number_integer()) {
      push.ts_ms = entry["ts_ms"].get<int64_t>();
    }
    const std::string key = TargetKey(push.target);
    if (!state.pushes.emplace(key, std::move(push)).second) {
      return bad("two pushes for target " + key);
    }
  }
  return state;
}

StateDir::StateDir(std::string dir, int lock_fd)
    : dir_(std::move(dir)),
      state_file_((std::filesystem::path(dir_) / kStateFileName).string()),
      lock_fd_(lock_fd) {}

StateDir::~StateDir() {
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
}

Result<std::unique_ptr<StateDir>> StateDir::Open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status(ErrorCode::kInternal, "mkdir " + dir + ": " + ec.message());
  const std::string lock_path = (std::filesystem::path(dir) / kLockFileName).string();
  const int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return OsError("open " + lock_path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    std::string holder;
    char buffer[32] = {};
    if (pread(fd, buffer, sizeof buffer - 1, 0) > 0) holder = buffer;
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    close(fd);
    if (error == EWOULDBLOCK) {
      return Status(ErrorCode::kInternal,
                    "state dir " + dir + " is in use by another lbctl fleet serve" +
                        (holder.empty() ? std::string() : " (pid " + holder + ")") +
                        "; one state dir serves one live controller");
    }
    errno = error;
    return OsError("flock " + lock_path);
  }
  // The holder's pid, for the message above; informative only.
  const std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // Not fatal: the lock is what matters.
  }
  return std::unique_ptr<StateDir>(new StateDir(dir, fd));
}

Result<PersistentState> StateDir::Load() const {
  bool missing = false;
  auto text = ReadWholeFile(state_file_, &missing);
  if (!text.ok()) return text.status();
  if (missing) return PersistentState();
  return DecodeState(*text, state_file_);
}

Status StateDir::Save(const PersistentState& state) {
  const std::string text = EncodeState(state);
  const std::string temp = state_file_ + ".tmp";
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return OsError("open " + temp);
  Status written = WriteAll(fd, text, temp);
  if (written.ok() && fsync(fd) != 0) written = OsError("fsync " + temp);
  if (close(fd) != 0 && written.ok()) written = OsError("close " + temp);
  if (!written.ok()) {
    unlink(temp.c_str());
    return written;
  }
  if (rename(temp.c_str(), state_file_.c_str()) != 0) {
    Status s = OsError("rename " + temp + " to " + state_file_);
    unlink(temp.c_str());
    return s;
  }
  const int dir_fd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return OsError("open " + dir_);
  const bool synced = fsync(dir_fd) == 0;
  Status s = synced ? Status::Ok() : OsError("fsync " + dir_);
  close(dir_fd);
  return s;
}

}  // namespace lb::cli
