// lb-bridge against hostile and slow HTTP clients: thousands of idle and half-sent connections,
// oversized heads, bodies over max_body_bytes announced or streamed, refused requests with a body
// announced, pipelining, a slow-header crowd. The real bridge, agent and haproxy (harness.h); the
// client is a raw socket (RawHttp below), so the test controls every byte sent and when, and
// every read has a deadline: a bridge that never answers fails a test, never hangs it.
//
// These tests describe the event-driven server. Against cpp-httplib's thread pool (128 threads)
// several of them fail: see the commit that added them for the figures measured then.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::seconds;

constexpr std::size_t kMiB = 1024 * 1024;
constexpr std::size_t kMaxBodyBytes = 16 * kMiB;  // [bridge] max_body_bytes's default
constexpr long kMaxRssGrowthKiB = 64 * 1024;
const std::string kToken = "b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6";

long Ms(Clock::duration d) { return static_cast<long>(duration_cast<milliseconds>(d).count()); }

int RemainingMs(Clock::time_point deadline) {
  return static_cast<int>(std::max<long>(0, Ms(deadline - Clock::now())));
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  json Json() const { return json::parse(body, nullptr, /*allow_exceptions=*/false); }
};

// One TCP connection to 127.0.0.1:<port>, non-blocking; every call takes a deadline.
class RawHttp {
 public:
  // Connects within `timeout`; connected() says whether it did. `sndbuf` > 0 fixes the send
  // buffer (no autotuning), so that the bytes counted as sent are close to the bytes the server
  // took.
  explicit RawHttp(int port, milliseconds timeout = milliseconds(5000), int sndbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      error_ = std::string("socket: ") + std::strerror(errno);
      return;
    }
    if (sndbuf > 0) setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const auto deadline = Clock::now() + timeout;
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 &&
        errno != EINPROGRESS) {
      Fail(std::string("connect: ") + std::strerror(errno));
      return;
    }
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, RemainingMs(deadline)) != 1) {
      Fail("connect: no answer within " + std::to_string(timeout.count()) + " ms");
      return;
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) Fail(std::string("connect: ") + std::strerror(err));
  }
  ~RawHttp() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawHttp(const RawHttp&) = delete;
  RawHttp& operator=(const RawHttp&) = delete;

  bool connected() const { return fd_ >= 0; }
  // What went wrong last (connect, send, read, timeout, close before a whole response).
  const std::string& error() const { return error_; }
  // The server answered (something is readable) or closed while SendUntilAnswered sent.
  bool answered_while_sending() const { return answered_; }
  // The server reset the connection (EPIPE / ECONNRESET) while SendUntilAnswered sent.
  bool reset_while_sending() const { return reset_; }

  // Sends `data` until all of it is sent, the server answers or closes (readable), resets the
  // connection, or `deadline` passes. Returns the bytes the kernel took.
  std::size_t SendUntilAnswered(std::string_view data, Clock::time_point deadline) {
    std::size_t sent = 0;
    while (fd_ >= 0 && sent < data.size() && !answered_ && !reset_) {
      pollfd p{fd_, POLLIN | POLLOUT, 0};
      const int ready = ::poll(&p, 1, RemainingMs(deadline));
      if (ready == 0) {
        error_ = "send: neither sent nor answered before the deadline";
        break;
      }
      if (ready < 0) {
        if (errno == EINTR) continue;
        error_ = std::string("poll: ") + std::strerror(errno);
        break;
      }
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        answered_ = true;
        break;
      }
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        reset_ = true;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        error_ = std::string("send: ") + std::strerror(errno);
        break;
      }
    }
    return sent;
  }
  // Sends all of `data` (a request) before `deadline`; false (and error()) when it could not.
  bool Send(std::string_view data, Clock::time_point deadline) {
    std::size_t sent = 0;
    while (fd_ >= 0 && sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        error_ = std::string("send: ") + std::strerror(errno);
        return false;
      }
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, RemainingMs(deadline)) == 0) {
        error_ = "send: not sent before the deadline";
        return false;
      }
    }
    return fd_ >= 0;
  }

  // One complete response (body by Content-Length, chunked, or up to the close), read before
  // `deadline`; nullopt (and error()) otherwise. Bytes after it stay for the next call.
  std::optional<HttpResponse> ReadResponse(Clock::time_point deadline) {
    while (true) {
      std::optional<HttpResponse> response = Parse();
      if (response) return response;
      if (!error_.empty() && error_.rfind("malformed", 0) == 0) return std::nullopt;
      if (eof_) {
        error_ = "the server closed the connection before a whole response (" +
                 std::to_string(buffer_.size()) + " bytes received)";
        return std::nullopt;
      }
      if (!Fill(deadline)) {
        if (!eof_) return std::nullopt;
      }
    }
  }

  // True when the server closes (EOF or reset) before `deadline`; what it sends meanwhile is
  // discarded.
  bool WaitClosed(Clock::time_point deadline) {
    while (!eof_) {
      if (!Fill(deadline) && !eof_) return false;
      buffer_.clear();
    }
    return true;
  }

 private:
  void Fail(std::string error) {
    error_ = std::move(error);
    ::close(fd_);
    fd_ = -1;
  }

  // Appends what arrives before `deadline` to buffer_; false on timeout or EOF/reset (eof_).
  bool Fill(Clock::time_point deadline) {
    if (fd_ < 0 || eof_) return false;
    while (true) {
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        buffer_.append(chunk, static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        eof_ = true;  // a reset counts as a close
        return false;
      }
      pollfd p{fd_, POLLIN, 0};
      const int wait = RemainingMs(deadline);
      if (wait == 0 || ::poll(&p, 1, wait) == 0) {
        error_ = "read: nothing before the deadline (" + std::to_string(buffer_.size()) +
                 " bytes of an unfinished response received)";
        return false;
      }
    }
  }

  // A whole response at the start of buffer_ (consumed), or nullopt when more is needed.
  std::optional<HttpResponse> Parse() {
    const std::size_t head_end = buffer_.find("\r\n\r\n");
    if (head_end == std::string::npos) return std::nullopt;
    HttpResponse response;
    std::size_t line_end = buffer_.find("\r\n");
    const std::string status_line = buffer_.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
      error_ = "malformed status line: " + status_line;
      return std::nullopt;
    }
    response.status = std::atoi(status_line.c_str() + 9);
    for (std::size_t at = line_end + 2; at < head_end; at = line_end + 2) {
      line_end = buffer_.find("\r\n", at);
      const std::string line = buffer_.substr(at, line_end - at);
      const std::size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::size_t value = line.find_first_not_of(" \t", colon + 1);
      response.headers[Lower(line.substr(0, colon))] =
          value == std::string::npos ? "" : line.substr(value);
    }
    std::size_t at = head_end + 4;
    if (Lower(response.Header("transfer-encoding")).find("chunked") != std::string::npos) {
      while (true) {
        const std::size_t size_end = buffer_.find("\r\n", at);
        if (size_end == std::string::npos) return std::nullopt;
        const std::size_t size = std::strtoul(buffer_.c_str() + at, nullptr, 16);
        at = size_end + 2;
        if (size == 0) {
          const std::size_t trailer_end = buffer_.find("\r\n", at);  // no trailers expected
          if (trailer_end == std::string::npos) return std::nullopt;
          at = trailer_end + 2;
          break;
        }
        if (buffer_.size() < at + size + 2) return std::nullopt;
        response.body.append(buffer_, at, size);
        at += size + 2;
      }
    } else if (!response.Header("content-length").empty()) {
      const std::size_t length =
          std::strtoul(response.Header("content-length").c_str(), nullptr, 10);
      if (buffer_.size() < at + length) return std::nullopt;
      response.body = buffer_.substr(at, length);
      at += length;
    } else if (response.status != 204 && response.status != 304) {
      if (!eof_) return std::nullopt;  // the body ends with the connection
      response.body = buffer_.substr(at);
      at = buffer_.size();
    }
    buffer_.erase(0, at);
    return response;
  }

  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
  bool answered_ = false;
  bool reset_ = false;
  std::string error_;
};

std::string Get(const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n";
}

// A reload of `config` as the 2015 API takes it (a plain-text body; X-Requested-With because a
// Content-Type is sent, bridge/src/security.h).
std::string ReloadRequest(const std::string& config) {
  return "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
         "X-Requested-With: bridge_hostile_test\r\nContent-Length: " +
         std::to_string(config.size()) + "\r\n\r\n" + config;
}

// How long a fresh connection's GET /healthz takes to be answered (200 expected); nullopt when
// it is not answered 200 before `limit`.
std::optional<milliseconds> TimeHealthz(int port, milliseconds limit, std::string* error) {
  const auto start = Clock::now();
  const auto deadline = start + limit;
  RawHttp http(port, limit);
  if (!http.connected() || !http.Send(Get("/healthz"), deadline)) {
    *error = http.error();
    return std::nullopt;
  }
  std::optional<HttpResponse> response = http.ReadResponse(deadline);
  if (!response || response->status != 200) {
    *error = response ? "status " + std::to_string(response->status) : http.error();
    return std::nullopt;
  }
  return duration_cast<milliseconds>(Clock::now() - start);
}

// Raises this process's RLIMIT_NOFILE soft limit to the hard one (the bridge, started after,
// inherits it). False when the hard limit is below `needed`.
bool RaiseFileLimit(rlim_t needed, std::string* error) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    *error = std::string("getrlimit: ") + std::strerror(errno);
    return false;
  }
  if (limit.rlim_max < needed) {
    *error = "RLIMIT_NOFILE hard limit is " + std::to_string(limit.rlim_max) +
             ", this test needs " + std::to_string(needed) +
             " (raise it: ulimit -Hn, LimitNOFILE=, limits.conf)";
    return false;
  }
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    *error = std::string("setrlimit: ") + std::strerror(errno);
    return false;
  }
  return true;
}

class BridgeHostileTest : public ::testing::Test {
 protected:
  // Starts the agent (haproxy.cfg with server "a" in backend scaling_nodes) and the bridge;
  // with `tokens`, the bridge requires kToken ([security] bridge_tokens_file).
  void Start(bool tokens = false) {
    std::string error;
    ASSERT_TRUE(RaiseFileLimit(4500, &error)) << error;
    frontend_ = FreePort();
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
    if (tokens) {
      const std::string path = agent_.dir().File("tokens");
      WriteFile(path, kToken + "\n");
      ASSERT_EQ(chmod(path.c_str(), 0600), 0);
      agent_.SetSecurityKeys({{"bridge_tokens_file", path}});
    }
    agent_.StartAgent();
    agent_.StartBridge();
  }
  int port() const { return agent_.bridge_port(); }
  long BridgeRssKiB() { return VmRssKiB(agent_.bridge_pid()); }
  std::string BridgeState() {
    return agent_.BridgeRunning()
               ? "the bridge runs"
               : "THE BRIDGE EXITED; its log:\n" + ReadFile(agent_.dir().File("bridge.log"));
  }

  HttpBackend a_{"backend-a"};
  HttpBackend b_{"backend-b"};
  AgentFixture agent_;
  int frontend_ = 0;
};

TEST_F(BridgeHostileTest, ThousandHalfSentAndThousandIdleConnectionsDoNotDelayHealthzOrAReload) {
  Start();
  constexpr int kEach = 1000;
  // 1000 keep-alive connections, each with one GET /healthz answered, then idle.
  std::vector<std::unique_ptr<RawHttp>> idle;
  const auto idle_start = Clock::now();
  const auto connect_deadline = idle_start + seconds(20);
  for (int i = 0; i < kEach; ++i) {
    idle.push_back(std::make_unique<RawHttp>(port()));
    ASSERT_TRUE(idle.back()->connected())
        << "idle connection " << i << ": " << idle.back()->error() << "; " << BridgeState();
    ASSERT_TRUE(idle.back()->Send(Get("/healthz"), connect_deadline)) << idle.back()->error();
  }
  const auto answers_deadline = Clock::now() + seconds(10);
  int answered = 0;
  std::string first_error;
  for (auto& http : idle) {
    std::optional<HttpResponse> r = http->ReadResponse(answers_deadline);
    if (r && r->status == 200) {
      ++answered;
    } else if (first_error.empty()) {
      first_error = r ? "status " + std::to_string(r->status) : http->error();
    }
  }
  const long idle_ms = Ms(Clock::now() - idle_start);
  std::cout << "[figures] " << answered << "/" << kEach << " keep-alive GET /healthz answered in "
            << idle_ms << " ms\n";
  EXPECT_EQ(answered, kEach) << "within 10 s of the last being sent; first failure: "
                             << first_error;

  // 1000 connections with half a request head, never finished.
  std::vector<std::unique_ptr<RawHttp>> half;
  const std::string half_head = "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Le";
  for (int i = 0; i < kEach; ++i) {
    half.push_back(std::make_unique<RawHttp>(port()));
    ASSERT_TRUE(half.back()->connected())
        << "half-sent connection " << i << ": " << half.back()->error() << "; " << BridgeState();
    ASSERT_TRUE(half.back()->Send(half_head, Clock::now() + seconds(5))) << half.back()->error();
  }

  // A fresh GET /healthz, five times.
  std::vector<long> took;
  for (int i = 0; i < 5; ++i) {
    std::string error;
    std::optional<milliseconds> t = TimeHealthz(port(), milliseconds(2000), &error);
    EXPECT_TRUE(t) << "GET /healthz " << i << " not answered 200 within 2 s: " << error << "; "
                   << BridgeState();
    took.push_back(t ? static_cast<long>(t->count()) : 2000);
  }
  std::vector<long> sorted = took;
  std::sort(sorted.begin(), sorted.end());
  std::cout << "[figures] GET /healthz with " << 2 * kEach << " connections open (ms):";
  for (long t : took) std::cout << " " << t;
  std::cout << " (median " << sorted[2] << ")\n";
  EXPECT_LT(sorted[2], 100) << "median of GET /healthz";
  EXPECT_LT(sorted[4], 1000) << "slowest GET /healthz";

  // A reload through the same crowd.
  const std::string config = HaproxyConfig(frontend_, {{"b", b_.port()}});
  const auto reload_start = Clock::now();
  const auto reload_deadline = reload_start + seconds(15);
  RawHttp reload(port());
  ASSERT_TRUE(reload.connected()) << reload.error() << "; " << BridgeState();
  ASSERT_TRUE(reload.Send(ReloadRequest(config), reload_deadline)) << reload.error();
  std::optional<HttpResponse> r = reload.ReadResponse(reload_deadline);
  std::cout << "[figures] POST /reload with " << 2 * kEach
            << " connections open: " << (r ? std::to_string(r->status) : "no answer") << " after "
            << Ms(Clock::now() - reload_start) << " ms\n";
  ASSERT_TRUE(r) << "POST /reload not answered within 15 s: " << reload.error() << "; "
                 << BridgeState();
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(ReadFile(agent_.config_path()), config);

  int still_open = 0;
  for (auto& set : {&idle, &half}) {
    for (auto& http : *set) still_open += http->WaitClosed(Clock::now()) ? 0 : 1;
  }
  std::cout << "[figures] " << still_open << "/" << 2 * kEach
            << " crowd connections still open at the end\n";
}

TEST_F(BridgeHostileTest, OversizedHeadersGet431AndTheConnectionCloses) {
  Start();
  struct Case {
    std::string name;
    std::string head;
  };
  std::string many = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 1000; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  const std::vector<Case> cases = {
      {"one header line of 1 MiB",
       "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(kMiB, 'a') + "\r\n\r\n"},
      {"1000 small headers", many}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto start = Clock::now();
    RawHttp http(port());
    ASSERT_TRUE(http.connected()) << http.error();
    const std::size_t sent = http.SendUntilAnswered(c.head, start + seconds(10));
    std::optional<HttpResponse> r = http.ReadResponse(start + seconds(10));
    std::cout << "[figures] " << c.name << ": sent " << sent << " of " << c.head.size()
              << " bytes; answer " << (r ? std::to_string(r->status) : "none: " + http.error())
              << " after " << Ms(Clock::now() - start) << " ms\n";
    ASSERT_TRUE(r) << http.error() << "; " << BridgeState();
    EXPECT_EQ(r->status, 431) << r->body;
    EXPECT_TRUE(http.WaitClosed(Clock::now() + seconds(5)))
        << "the connection stays open after the answer";
  }

  // 4 requests each sending up to 100 MB of header lines: the bridge must stop reading.
  const long rss_before = BridgeRssKiB();
  ASSERT_GT(rss_before, 0);
  long rss_max = rss_before;
  std::string lines;
  while (lines.size() < 64 * 1024) lines += "X-Pad: " + std::string(120, 'p') + "\r\n";
  constexpr std::size_t kPerRequest = 100 * 1000 * 1000;
  for (int i = 0; i < 4; ++i) {
    const auto start = Clock::now();
    const auto deadline = start + seconds(8);
    RawHttp http(port(), milliseconds(5000), 256 * 1024);
    ASSERT_TRUE(http.connected()) << http.error() << "; " << BridgeState();
    std::size_t sent = http.SendUntilAnswered("GET /healthz HTTP/1.1\r\nHost: x\r\n", deadline);
    while (sent < kPerRequest && !http.answered_while_sending() && !http.reset_while_sending() &&
           Clock::now() < deadline) {
      sent += http.SendUntilAnswered(lines, deadline);
    }
    std::optional<HttpResponse> r;
    if (http.answered_while_sending() || http.reset_while_sending()) {
      r = http.ReadResponse(Clock::now() + seconds(2));  // an answer before a reset stays readable
    }
    rss_max = std::max(rss_max, BridgeRssKiB());
    std::cout << "[figures] 100 MB of headers, request " << i << ": sent " << sent / kMiB
              << " MiB in " << Ms(Clock::now() - start) << " ms, "
              << (http.answered_while_sending() ? "the bridge answered or closed"
                  : http.reset_while_sending()  ? "the bridge reset the connection"
                                                : "the bridge took everything or stalled")
              << ", answer " << (r ? std::to_string(r->status) : "none") << ", bridge RSS "
              << BridgeRssKiB() / 1024 << " MiB\n";
    EXPECT_LT(sent, 16 * kMiB) << "the bridge kept reading a head far beyond any limit";
  }
  std::cout << "[figures] bridge RSS " << rss_before / 1024 << " MiB before, " << rss_max / 1024
            << " MiB at most\n";
  EXPECT_LT(rss_max - rss_before, kMaxRssGrowthKiB) << BridgeState();
}

// Reads the answer to a request whose body is announced and never sent: it must come within
// `limit`; the read goes on until `observe` so that a late answer is measured, not just missed.
struct TimedAnswer {
  std::optional<HttpResponse> response;
  long ms = 0;
  bool closed = false;  // the connection closed after the answer (within 5 s)
  std::string error;
};
TimedAnswer ReadTimed(RawHttp& http, Clock::time_point start, milliseconds observe) {
  TimedAnswer answer;
  answer.response = http.ReadResponse(start + observe);
  answer.ms = Ms(Clock::now() - start);
  answer.error = http.error();
  if (answer.response) answer.closed = http.WaitClosed(Clock::now() + seconds(5));
  return answer;
}
std::string Describe(const TimedAnswer& a) {
  return a.response ? std::to_string(a.response->status) + " after " + std::to_string(a.ms) +
                          " ms, connection " + (a.closed ? "closed" : "left open") + ", body " +
                          a.response->body.substr(0, 200)
                    : "no answer after " + std::to_string(a.ms) + " ms: " + a.error;
}

TEST_F(BridgeHostileTest, ContentLengthOverTheLimitGets413AtOnce) {
  Start();
  const auto start = Clock::now();
  RawHttp http(port());
  ASSERT_TRUE(http.connected()) << http.error();
  ASSERT_TRUE(
      http.Send("POST /reload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                "X-Requested-With: bridge_hostile_test\r\nContent-Length: " +
                    std::to_string(400 * kMiB) + "\r\n\r\n",
                start + seconds(5)))
      << http.error();
  TimedAnswer a = ReadTimed(http, start, seconds(35));
  std::cout << "[figures] Content-Length 400 MiB, no body: " << Describe(a) << "\n";
  ASSERT_TRUE(a.response) << Describe(a) << "; " << BridgeState();
  EXPECT_LT(a.ms, 2000) << Describe(a);
  EXPECT_EQ(a.response->status, 413) << Describe(a);
  EXPECT_TRUE(a.response->Json().is_object()) << Describe(a);
  EXPECT_TRUE(a.closed) << Describe(a);
}

TEST_F(BridgeHostileTest, ChunkedBodyIsCutAtTheLimit) {
  Start();
  const long rss_before = BridgeRssKiB();
  ASSERT_GT(rss_before, 0);
  const std::string chunk = "10000\r\n" + std::string(64 * 1024, 'c') + "\r\n";
  const auto start = Clock::now();
  const auto deadline = start + seconds(20);
  RawHttp http(port(), milliseconds(5000), 256 * 1024);
  ASSERT_TRUE(http.connected()) << http.error();
  ASSERT_TRUE(
      http.Send("POST /reload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                "X-Requested-With: bridge_hostile_test\r\nTransfer-Encoding: chunked\r\n\r\n",
                deadline))
      << http.error();
  std::size_t sent = 0;
  while (sent < 400 * kMiB && !http.answered_while_sending() && !http.reset_while_sending() &&
         Clock::now() < deadline) {
    sent += http.SendUntilAnswered(chunk, deadline);
  }
  const long send_ms = Ms(Clock::now() - start);
  // A bridge that took all 400 MiB may still answer (the body has no last chunk): 5 s for it.
  std::optional<HttpResponse> r = http.ReadResponse(Clock::now() + seconds(5));
  const long rss_after = BridgeRssKiB();
  std::cout << "[figures] chunked body: sent " << sent / kMiB << " MiB in " << send_ms << " ms; "
            << (http.answered_while_sending() ? "answered or closed"
                : http.reset_while_sending()  ? "reset"
                                              : "neither answered nor closed")
            << "; answer " << (r ? std::to_string(r->status) : "none: " + http.error())
            << "; bridge RSS " << rss_before / 1024 << " -> " << rss_after / 1024 << " MiB\n";
  EXPECT_TRUE(http.answered_while_sending() || http.reset_while_sending())
      << "the bridge took " << sent / kMiB << " MiB without answering; " << BridgeState();
  EXPECT_LT(sent, kMaxBodyBytes + 8 * kMiB);
  ASSERT_TRUE(r) << "no 413 before the close: " << http.error();
  EXPECT_EQ(r->status, 413) << r->body;
  EXPECT_LT(rss_after - rss_before, kMaxRssGrowthKiB);
}

TEST_F(BridgeHostileTest, RefusedRequestIsAnsweredWithoutReadingItsBody) {
  Start(/*tokens=*/true);
  const std::string head =
      "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
      "X-Requested-With: bridge_hostile_test\r\n";
  // Both at once, so that a bridge that waits for the bodies costs one wait, not two.
  const auto start = Clock::now();
  RawHttp length(port());
  RawHttp chunked(port());
  ASSERT_TRUE(length.connected() && chunked.connected()) << length.error() << chunked.error();
  ASSERT_TRUE(length.Send(head + "Content-Length: " + std::to_string(400 * kMiB) + "\r\n\r\n",
                          start + seconds(5)));
  ASSERT_TRUE(chunked.Send(head + "Transfer-Encoding: chunked\r\n\r\n", start + seconds(5)));
  for (auto [name, http] :
       {std::pair{"Content-Length 400 MiB", &length}, std::pair{"chunked, no chunk", &chunked}}) {
    SCOPED_TRACE(name);
    TimedAnswer a = ReadTimed(*http, start, seconds(35));
    std::cout << "[figures] no token, " << name << ": " << Describe(a) << "\n";
    ASSERT_TRUE(a.response) << Describe(a) << "; " << BridgeState();
    EXPECT_LT(a.ms, 2000) << Describe(a);
    EXPECT_EQ(a.response->status, 401) << Describe(a);
    EXPECT_TRUE(a.closed) << Describe(a);
  }
}

TEST_F(BridgeHostileTest, PipelinedRequestsAreAnsweredInOrder) {
  Start();
  const auto deadline = Clock::now() + seconds(10);
  RawHttp http(port());
  ASSERT_TRUE(http.connected()) << http.error();
  ASSERT_TRUE(http.Send(
      Get("/healthz") + Get("/getBackends?backend=scaling_nodes") + Get("/v1/info"), deadline))
      << http.error();

  std::optional<HttpResponse> healthz = http.ReadResponse(deadline);
  ASSERT_TRUE(healthz) << "GET /healthz: " << http.error();
  EXPECT_EQ(healthz->status, 200) << healthz->body;
  EXPECT_EQ(healthz->Json().value("agent", json()), "up") << healthz->body;

  std::optional<HttpResponse> backends = http.ReadResponse(deadline);
  ASSERT_TRUE(backends) << "GET /getBackends: " << http.error();
  EXPECT_EQ(backends->status, 200) << backends->body;
  json list = backends->Json();
  ASSERT_TRUE(list.is_object() && list.contains("message") && list["message"].is_array())
      << backends->body;
  ASSERT_EQ(list["message"].size(), 1u) << backends->body;
  EXPECT_EQ(list["message"][0].value("instance_id", ""), "a") << backends->body;

  std::optional<HttpResponse> info = http.ReadResponse(deadline);
  ASSERT_TRUE(info) << "GET /v1/info: " << http.error();
  EXPECT_EQ(info->status, 200) << info->body;
  json body = info->Json();
  ASSERT_TRUE(body.is_object()) << info->body;
  for (const char* field : {"agent", "haproxy", "config", "last_reload", "events"}) {
    EXPECT_TRUE(body.contains(field)) << field << " missing: " << info->body;
  }
  EXPECT_TRUE(body["agent"].is_object()) << info->body;
}

TEST_F(BridgeHostileTest, SlowHeaderClientIsDroppedAndOthersAreServed) {
  Start();
  constexpr int kSlow = 300;
  const std::string head =
      "GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: one byte per second\r\n\r\n";
  std::vector<std::unique_ptr<RawHttp>> slow;
  for (int i = 0; i < kSlow; ++i) {
    slow.push_back(std::make_unique<RawHttp>(port()));
    ASSERT_TRUE(slow.back()->connected()) << i << ": " << slow.back()->error();
  }
  // The behaviour under test is a client that sends one byte a second: this loop's pace is
  // the point, not a wait for a condition.
  std::vector<long> took;
  const auto start = Clock::now();
  for (int second = 0; second < 5; ++second) {
    std::this_thread::sleep_until(start + seconds(second));
    for (auto& http : slow) {
      http->SendUntilAnswered(std::string_view(head).substr(second, 1), Clock::now());
    }
    std::string error;
    std::optional<milliseconds> t = TimeHealthz(port(), milliseconds(900), &error);
    EXPECT_TRUE(t) << "second " << second << ": GET /healthz not answered within 900 ms: " << error
                   << "; " << BridgeState();
    took.push_back(t ? static_cast<long>(t->count()) : 900);
  }
  std::cout << "[figures] GET /healthz with " << kSlow << " slow-header clients (ms):";
  for (long t : took) std::cout << " " << t;
  std::cout << "\n";
  for (long t : took) EXPECT_LT(t, 100);
}

TEST_F(BridgeHostileTest, IdleKeepAliveConnectionSurvivesBetweenRequests) {
  Start();
  RawHttp http(port());
  ASSERT_TRUE(http.connected()) << http.error();
  for (int i = 0; i < 2; ++i) {
    // An idle client between two requests is the behaviour: the wait is the point.
    if (i == 1) std::this_thread::sleep_for(seconds(2));
    const auto deadline = Clock::now() + seconds(5);
    ASSERT_TRUE(http.Send(Get("/healthz"), deadline)) << i << ": " << http.error();
    std::optional<HttpResponse> r = http.ReadResponse(deadline);
    ASSERT_TRUE(r) << "request " << i << " on the kept-alive connection: " << http.error();
    EXPECT_EQ(r->status, 200) << r->body;
  }
}

}  // namespace
}  // namespace lb::testing
