#include "lb/common/curve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>
#include <vector>

namespace lb::common {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
// Largest certificate or allow-list file read: a list of a million keys is ~45 MB; nothing
// legitimate comes near this.
constexpr std::uintmax_t kMaxFileBytes = 64 * 1024 * 1024;

Status BadRequest(const std::string& message) { return Status(ErrorCode::kBadRequest, message); }

std::string Trim(std::string_view s) {
  const char* ws = " \t\r\n";
  std::size_t begin = s.find_first_not_of(ws);
  if (begin == std::string_view::npos) return "";
  std::size_t end = s.find_last_not_of(ws);
  return std::string(s.substr(begin, end - begin + 1));
}

Result<std::string> ReadSmallFile(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec) return BadRequest(path + ": cannot read: " + ec.message());
  if (size > kMaxFileBytes) {
    return BadRequest(path + ": " + std::to_string(size) + " bytes is too large for a key file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return BadRequest(path + ": cannot open: " + std::generic_category().message(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The value of a zcert `name = "value"` line, or nullopt when the line is not that key.
std::optional<std::string> CertValue(std::string_view line, std::string_view name) {
  std::string t = Trim(line);
  if (t.rfind(name, 0) != 0) return std::nullopt;
  std::string_view rest(t);
  rest.remove_prefix(name.size());
  std::string after = Trim(rest);
  if (after.empty() || after[0] != '=') return std::nullopt;
  std::string value = Trim(std::string_view(after).substr(1));
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  return value;
}

std::string Timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

Status WriteNewFile(const std::string& path, const std::string& text, mode_t mode) {
  std::FILE* f = nullptr;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST) return BadRequest(path + " already exists; not overwriting a key file");
    return BadRequest(path + ": cannot create: " + std::generic_category().message(err));
  }
  f = fdopen(fd, "w");
  if (f == nullptr) {
    ::close(fd);
    return BadRequest(path + ": cannot write");
  }
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fflush(f) == 0 && ok;
  ok = fsync(fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    int err = errno;
    ::unlink(path.c_str());
    return BadRequest(path + ": cannot write: " + std::generic_category().message(err));
  }
  return Status();
}

// A file's identity for change detection: mtime, size, inode.
struct Stamp {
  timespec mtime{};
  off_t size = 0;
  ino_t inode = 0;
  bool operator==(const Stamp& o) const {
    return mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec && size == o.size &&
           inode == o.inode;
  }
};

// The stamps of a file, or of a directory and every entry in it.
std::vector<Stamp> StampsOf(const std::string& path) {
  std::vector<Stamp> stamps;
  auto add = [&stamps](const std::string& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) {
      stamps.push_back(Stamp{});
      return;
    }
    stamps.push_back(Stamp{st.st_mtim, st.st_size, st.st_ino});
  };
  add(path);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      add(entry.path().string());
    }
  }
  return stamps;
}

bool StampsEqual(const std::vector<Stamp>& a, const std::vector<Stamp>& b) { return a == b; }

}  // namespace

bool IsZ85Key(std::string_view key) {
  if (key.size() != 40) return false;
  std::string copy(key);
  uint8_t decoded[32];
  return zmq_z85_decode(decoded, copy.c_str()) != nullptr;
}

Result<CurveCertificate> GenerateCertificate() {
  char public_key[41] = {};
  char secret_key[41] = {};
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return Status(ErrorCode::kInternal,
                  "cannot generate a CURVE key pair: " + std::string(zmq_strerror(zmq_errno())) +
                      " (libzmq built without CURVE?)");
  }
  return CurveCertificate{public_key, secret_key};
}

Status WriteCertificate(const std::string& path, const CurveCertificate& cert,
                        std::string_view generated_by) {
  if (!IsZ85Key(cert.public_key) || !IsZ85Key(cert.secret_key)) {
    return BadRequest("not a CURVE key pair");
  }
  std::string header =
      "#   ****  Generated on " + Timestamp() + " by " + std::string(generated_by) + "  ****\n";
  std::string public_text =
      header +
      "#   ZeroMQ CURVE Public Certificate\n"
      "#   Exchange securely, or use a secure mechanism to verify the contents\n"
      "#   of this file after exchange. Store public certificates in your home\n"
      "#   directory, in the .curve subdirectory.\n\n"
      "metadata\ncurve\n    public-key = \"" +
      cert.public_key + "\"\n";
  std::string secret_text =
      header +
      "#   ZeroMQ CURVE **Secret** Certificate\n"
      "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
      "metadata\ncurve\n    public-key = \"" +
      cert.public_key + "\"\n    secret-key = \"" + cert.secret_key + "\"\n";
  const std::string secret_path = path + "_secret";
  // The secret first: if it cannot be written, no public half is left without its secret.
  if (Status s = WriteNewFile(secret_path, secret_text, 0600); !s.ok()) return s;
  if (Status s = WriteNewFile(path, public_text, 0644); !s.ok()) {
    ::unlink(secret_path.c_str());
    return s;
  }
  return Status();
}

Result<CurveCertificate> ReadCertificate(const std::string& path, bool need_secret) {
  Result<std::string> text = ReadSmallFile(path);
  if (!text.ok()) return text.status();
  CurveCertificate cert;
  std::istringstream lines(*text);
  std::string line;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    std::string* field = nullptr;
    std::optional<std::string> value;
    if ((value = CertValue(t, "public-key"))) {
      field = &cert.public_key;
    } else if ((value = CertValue(t, "secret-key"))) {
      field = &cert.secret_key;
    } else {
      continue;  // metadata, curve, and any metadata entries
    }
    if (!IsZ85Key(*value)) {
      return BadRequest(path + ":" + std::to_string(number) +
                        ": not a CURVE key (40 Z85 characters)");
    }
    *field = *value;
  }
  if (cert.public_key.empty()) {
    return BadRequest(path + ": no public-key line: not a ZeroMQ certificate (lbctl keygen)");
  }
  if (need_secret) {
    if (cert.secret_key.empty()) {
      return BadRequest(
          path + ": no secret-key line: this is a public certificate; give the _secret file");
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
      return BadRequest(path + ": secret key readable by every user (mode " + [&] {
        char m[8];
        std::snprintf(m, sizeof m, "%04o", st.st_mode & 07777);
        return std::string(m);
      }() + "); chmod 600 it");
    }
    // The public key must be the one the secret key makes, or the peer pins a key we cannot use.
    char derived[41] = {};
    if (zmq_curve_public(derived, cert.secret_key.c_str()) != 0 || cert.public_key != derived) {
      return BadRequest(path + ": public-key does not match secret-key");
    }
  } else {
    cert.secret_key.clear();
  }
  return cert;
}

Result<std::set<std::string>> ParseAllowList(std::string_view text, const std::string& origin) {
  std::set<std::string> keys;
  std::size_t start = 0;
  int number = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++number;
    std::string t = Trim(line);
    if (t.empty()) continue;
    // A bare key first: Z85 keys may start with '#' or contain '='.
    std::string key = t.substr(0, t.find_first_of(" \t"));
    if (!IsZ85Key(key)) {
      if (t[0] == '#') continue;
      if (auto value = CertValue(t, "public-key")) {
        key = *value;
      } else if (CertValue(t, "secret-key")) {
        return BadRequest(origin + ":" + std::to_string(number) +
                          ": a secret key in an allow-list; list public keys only");
      } else if (t == "metadata" || t == "curve" || t.find(" = ") != std::string::npos) {
        continue;  // the rest of a zcert public certificate
      }
    }
    if (!IsZ85Key(key)) {
      return BadRequest(origin + ":" + std::to_string(number) +
                        ": not a CURVE public key (40 Z85 characters): \"" + key.substr(0, 60) +
                        "\"");
    }
    keys.insert(key);
  }
  return keys;
}

Result<std::set<std::string>> ReadAllowList(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    Result<std::string> text = ReadSmallFile(path);
    if (!text.ok()) return text.status();
    return ParseAllowList(*text, path);
  }
  std::set<std::string> keys;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name.empty() || name[0] == '.') continue;
    // A secret certificate dropped into the directory by mistake is refused, not trusted.
    files.push_back(entry.path().string());
  }
  if (ec) return BadRequest(path + ": cannot list: " + ec.message());
  for (const auto& file : files) {
    Result<std::string> text = ReadSmallFile(file);
    if (!text.ok()) return text.status();
    Result<std::set<std::string>> more = ParseAllowList(*text, file);
    if (!more.ok()) return more.status();
    keys.insert(more->begin(), more->end());
  }
  return keys;
}

struct ZapHandler::Impl {
  Impl(zmq::context_t& context, std::string path, LogFn log_fn)
      : socket(context, zmq::socket_type::rep),
        allow_path(std::move(path)),
        log(std::move(log_fn)) {}

  void Run() {
    while (!stop.load()) {
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(200));
      if ((item.revents & ZMQ_POLLIN) == 0) continue;
      std::vector<zmq::message_t> frames;
      bool more = true;
      while (more) {
        zmq::message_t frame;
        if (!socket.recv(frame, zmq::recv_flags::dontwait)) break;
        more = frame.more();
        frames.push_back(std::move(frame));
      }
      Answer(frames);
    }
  }

  // RFC 27: version, request id, domain, address, identity, mechanism, credentials...
  void Answer(const std::vector<zmq::message_t>& request) {
    std::string request_id = request.size() > 1 ? request[1].to_string() : "";
    std::string address = request.size() > 3 ? request[3].to_string() : "?";
    std::string status = "400";
    std::string text = "unknown client key";
    std::string user;
    if (request.size() < 7 || request[0].to_string_view() != "1.0") {
      text = "malformed ZAP request";
    } else if (request[5].to_string_view() != "CURVE" || request[6].size() != 32) {
      text = "only CURVE is accepted";
    } else {
      char z85[41] = {};
      zmq_z85_encode(z85, static_cast<const uint8_t*>(request[6].data()), 32);
      MaybeReload();
      if (allowed.count(z85) != 0) {
        status = "200";
        text = "OK";
        user = z85;
        accepted_count.fetch_add(1);
      } else {
        refused_count.fetch_add(1);
        // One line per refused key and address a second at most: a scan cannot flood the log.
        auto now = std::chrono::steady_clock::now();
        if (now - last_refusal_log >= std::chrono::seconds(1)) {
          last_refusal_log = now;
          log("refused a CURVE client from " + address + ": key " + z85 +
              " is not in the allow-list " + allow_path);
        }
      }
    }
    std::array<std::string, 6> reply = {"1.0", request_id, status, text, user, ""};
    for (std::size_t i = 0; i < 6; ++i) {
      socket.send(zmq::buffer(reply[i]),
                  i + 1 < 6 ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }

  // Re-reads the allow-list when its stamps changed, at most once a second.
  void MaybeReload() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_check < std::chrono::seconds(1)) return;
    last_check = now;
    std::vector<Stamp> current = StampsOf(allow_path);
    if (StampsEqual(current, stamps)) return;
    stamps = current;
    Result<std::set<std::string>> keys = ReadAllowList(allow_path);
    if (!keys.ok()) {
      log("allow-list not reloaded, keeping the previous " + std::to_string(allowed.size()) +
          " key(s): " + keys.status().message());
      return;
    }
    if (*keys != allowed) {
      log("allow-list " + allow_path + " reloaded: " + std::to_string(keys->size()) +
          " client key(s)");
    }
    allowed = std::move(*keys);
  }

  zmq::socket_t socket;
  std::string allow_path;
  LogFn log;
  std::set<std::string> allowed;
  std::vector<Stamp> stamps;
  std::chrono::steady_clock::time_point last_check{};
  std::chrono::steady_clock::time_point last_refusal_log{};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> accepted_count{0};
  std::atomic<uint64_t> refused_count{0};
  std::thread thread;
};

Result<std::unique_ptr<ZapHandler>> ZapHandler::Start(zmq::context_t& context,
                                                      std::string allow_list_path, LogFn log) {
  if (!log) log = [](const std::string&) {};
  auto impl = std::make_unique<Impl>(context, std::move(allow_list_path), std::move(log));
  Result<std::set<std::string>> keys = ReadAllowList(impl->allow_path);
  if (!keys.ok()) return keys.status();
  impl->allowed = std::move(*keys);
  impl->stamps = StampsOf(impl->allow_path);
  impl->last_check = std::chrono::steady_clock::now();
  impl->socket.set(zmq::sockopt::linger, 0);
  try {
    impl->socket.bind(kZapEndpoint);
  } catch (const zmq::error_t& e) {
    return Status(ErrorCode::kInternal, std::string("cannot start the ZAP handler: ") + e.what() +
                                            " (one handler per ZeroMQ context)");
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<ZapHandler>(new ZapHandler(std::move(impl)));
}

ZapHandler::ZapHandler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ZapHandler::~ZapHandler() {
  impl_->stop = true;
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint64_t ZapHandler::accepted() const { return impl_->accepted_count.load(); }
uint64_t ZapHandler::refused() const { return impl_->refused_count.load(); }

void MakeCurveServer(zmq::socket_ref socket, const CurveCertificate& own, const ZapHandler&,
                     std::string_view domain) {
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, own.secret_key);
  socket.set(zmq::sockopt::zap_domain, std::string(domain));
}

void MakeCurveClient(zmq::socket_ref socket, const CurveCertificate& own,
                     std::string_view server_public_key) {
  socket.set(zmq::sockopt::curve_serverkey, std::string(server_public_key));
  socket.set(zmq::sockopt::curve_publickey, own.public_key);
  socket.set(zmq::sockopt::curve_secretkey, own.secret_key);
}

Result<CurveClientKeys> LoadClientKeys(const CurveClientFiles& files) {
  CurveClientKeys keys;
  if (files.own_secret.empty() && files.server_public.empty()) return keys;
  if (files.own_secret.empty()) {
    return BadRequest("the server's public key is given (" + files.server_public +
                      ") but not this client's own secret key");
  }
  if (files.server_public.empty()) {
    return BadRequest("this client's key is given (" + files.own_secret +
                      ") but not the server's public key");
  }
  Result<CurveCertificate> own = ReadCertificate(files.own_secret, /*need_secret=*/true);
  if (!own.ok()) return own.status();
  Result<CurveCertificate> server = ReadCertificate(files.server_public, /*need_secret=*/false);
  if (!server.ok()) return server.status();
  keys.own = *own;
  keys.server_public_key = server->public_key;
  return keys;
}

bool IsLocalEndpoint(std::string_view endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string_view rest = endpoint.substr(6);
  // A "source;destination" connect form: not something to guess about.
  if (rest.find(';') != std::string_view::npos) return false;
  std::string_view host;
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return false;
    host = rest.substr(1, close - 1);
    return host == "::1";
  }
  auto colon = rest.rfind(':');
  host = colon == std::string_view::npos ? rest : rest.substr(0, colon);
  if (host == "localhost" || host == "lo") return true;
  if (host.rfind("127.", 0) == 0) {
    // Only a dotted IPv4 address: "127.evil.example.com" is a name, not loopback.
    for (char c : host) {
      if (c != '.' && (c < '0' || c > '9')) return false;
    }
    return true;
  }
  return false;
}

}  // namespace lb::common
