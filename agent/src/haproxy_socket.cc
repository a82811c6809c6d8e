#include "haproxy_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;
using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int MsLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Waits for `events` on fd until the deadline. Returns false on timeout.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, MsLeft(deadline));
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

Status Unavailable(const std::string& endpoint, const std::string& why) {
  return Status(ErrorCode::kHaproxyUnavailable,
                "haproxy socket " + endpoint + " is not reachable: " + why);
}

}  // namespace

Result<std::string> HaproxyCommand(const std::string& endpoint, std::string_view command,
                                   const SocketOptions& options) {
  const auto deadline = Clock::now() + options.timeout;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int family = AF_UNIX;
  if (!endpoint.empty() && endpoint[0] != '/' && endpoint.find(':') != std::string::npos &&
      endpoint.rfind("unix@", 0) != 0) {
    std::string host = endpoint.substr(0, endpoint.rfind(':'));
    std::string port = endpoint.substr(endpoint.rfind(':') + 1);
    if (host.size() > 1 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || res == nullptr) return Unavailable(endpoint, gai_strerror(rc));
    std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
    addr_len = res->ai_addrlen;
    family = res->ai_family;
    freeaddrinfo(res);
  } else {
    std::string path = endpoint.rfind("unix@", 0) == 0 ? endpoint.substr(5) : endpoint;
    auto* un = reinterpret_cast<sockaddr_un*>(&addr);
    if (path.size() >= sizeof un->sun_path) {
      return Status(ErrorCode::kInternal, "socket path too long: " + path);
    }
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.c_str(), path.size() + 1);
    addr_len = sizeof(sockaddr_un);
  }

  Fd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return Status(ErrorCode::kInternal, std::string("socket: ") + strerror(errno));
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) return Unavailable(endpoint, strerror(errno));
    if (!WaitFor(fd.get(), POLLOUT, deadline)) {
      return Status(ErrorCode::kTimeout, "haproxy socket " + endpoint + " did not accept within " +
                                             std::to_string(options.timeout.count()) + " ms");
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return Unavailable(endpoint, strerror(err));
  }

  std::string request(command);
  request += '\n';
  std::size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && WaitFor(fd.get(), POLLOUT, deadline)) continue;
    if (n < 0 && errno == EAGAIN) {
      return Status(ErrorCode::kTimeout, "haproxy socket " + endpoint + ": send timed out");
    }
    return Unavailable(endpoint, strerror(errno));
  }
  shutdown(fd.get(), SHUT_WR);

  std::string answer;
  std::string chunk(options.read_chunk, '\0');
  while (true) {
    ssize_t n = recv(fd.get(), chunk.data(), chunk.size(), 0);
    if (n > 0) {
      answer.append(chunk.data(), static_cast<std::size_t>(n));
      if (answer.size() > options.max_answer) {
        return Status(ErrorCode::kInternal, "haproxy answer on " + endpoint + " exceeds " +
                                                std::to_string(options.max_answer) + " bytes");
      }
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (WaitFor(fd.get(), POLLIN, deadline)) continue;
      return Status(ErrorCode::kTimeout, "haproxy socket " + endpoint + " did not answer \"" +
                                             std::string(command.substr(0, 40)) + "\" within " +
                                             std::to_string(options.timeout.count()) + " ms");
    }
    // A reset cuts the answer short (haproxy does that to a worker's CLI during a reload):
    // never mistake what arrived for the whole answer.
    if (errno == ECONNRESET)
      return Unavailable(endpoint, "connection reset before the answer ended");
    return Unavailable(endpoint, strerror(errno));
  }
  return answer;
}

}  // namespace lb::agent
