#include "lb/common/zap_handler.h"

#include <sys/stat.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "lb/common/allow_list.h"

namespace lb::common {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";

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

}  // namespace

struct ZapHandler::Impl {
  Impl(zmq::context_t& context, std::string path, LogFn log_fn, AdmitFn admit_fn)
      : socket(context, zmq::socket_type::rep),
        allow_path(std::move(path)),
        log(std::move(log_fn)),
        admit(std::move(admit_fn)) {}

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
    const std::string domain = request.size() > 2 ? request[2].to_string() : "";
    auto admitted = [&] {
      if (!admit || admit(domain)) return true;
      text = "too many connections";
      busy_count.fetch_add(1);
      auto now = std::chrono::steady_clock::now();
      if (now - last_busy_log >= std::chrono::seconds(1)) {
        last_busy_log = now;
        log("refused a connection from " + address + " to " + domain +
            ": too many connections open ([lb-agent] max_connections)");
      }
      return false;
    };
    if (request.size() >= 6 && request[0].to_string_view() == "1.0" &&
        request[5].to_string_view() == "NULL") {
      if (admitted()) {
        status = "200";
        text = "OK";
      }
    } else if (request.size() < 7 || request[0].to_string_view() != "1.0") {
      text = "malformed ZAP request";
    } else if (request[5].to_string_view() != "CURVE" || request[6].size() != 32) {
      text = "only CURVE is accepted";
    } else {
      char z85[41] = {};
      zmq_z85_encode(z85, static_cast<const uint8_t*>(request[6].data()), 32);
      MaybeReload();
      bool known;
      {
        std::lock_guard<std::mutex> lock(mutex);
        known = allowed.count(z85) != 0;
      }
      if (known) {
        if (admitted()) {
          status = "200";
          text = "OK";
          user = z85;
          accepted_count.fetch_add(1);
        }
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
    if (allow_path.empty()) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_check < std::chrono::seconds(1)) return;
    last_check = now;
    std::vector<Stamp> current = StampsOf(allow_path);
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (current == stamps) return;
    }
    Read(/*quiet_if_unchanged=*/true);
  }

  // Reads the list now and keeps it, or keeps the previous one; logs either.
  Result<std::size_t> Read(bool quiet_if_unchanged) {
    std::vector<Stamp> current = StampsOf(allow_path);
    Result<std::set<std::string>> keys = ReadAllowList(allow_path);
    std::lock_guard<std::mutex> lock(mutex);
    stamps = current;
    if (!keys.ok()) {
      log("allow-list not reloaded, keeping the previous " + std::to_string(allowed.size()) +
          " key(s): " + keys.status().message());
      return keys.status();
    }
    if (*keys != allowed || !quiet_if_unchanged) {
      log("allow-list " + allow_path + " reloaded: " + std::to_string(keys->size()) +
          " client key(s)");
    }
    allowed = std::move(*keys);
    return allowed.size();
  }

  zmq::socket_t socket;
  std::string allow_path;
  LogFn log;
  AdmitFn admit;
  std::mutex mutex;  // guards allowed and stamps: Reload() comes from another thread
  std::set<std::string> allowed;
  std::vector<Stamp> stamps;
  std::chrono::steady_clock::time_point last_check{};
  std::chrono::steady_clock::time_point last_refusal_log{};
  std::chrono::steady_clock::time_point last_busy_log{};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> accepted_count{0};
  std::atomic<uint64_t> refused_count{0};
  std::atomic<uint64_t> busy_count{0};
  std::thread thread;
};

Result<std::unique_ptr<ZapHandler>> ZapHandler::Start(zmq::context_t& context,
                                                      std::string allow_list_path, LogFn log,
                                                      AdmitFn admit) {
  if (!log) log = [](const std::string&) {};
  auto impl =
      std::make_unique<Impl>(context, std::move(allow_list_path), std::move(log), std::move(admit));
  if (!impl->allow_path.empty()) {
    Result<std::set<std::string>> keys = ReadAllowList(impl->allow_path);
    if (!keys.ok()) return keys.status();
    impl->allowed = std::move(*keys);
    impl->stamps = StampsOf(impl->allow_path);
  }
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

Result<std::size_t> ZapHandler::Reload() {
  if (impl_->allow_path.empty()) return std::size_t{0};  // no CURVE clients: nothing to read
  return impl_->Read(/*quiet_if_unchanged=*/false);
}

uint64_t ZapHandler::accepted() const { return impl_->accepted_count.load(); }
uint64_t ZapHandler::refused() const { return impl_->refused_count.load(); }
uint64_t ZapHandler::refused_busy() const { return impl_->busy_count.load(); }

}  // namespace lb::common
