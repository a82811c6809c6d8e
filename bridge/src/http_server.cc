// HttpServer (http_server.h): the I/O thread, the handler pool and the stream threads.
#include "http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <regex>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lb/common/log.h"

namespace lb::bridge {
namespace {

using Clock = std::chrono::steady_clock;

// --- Parsing ---------------------------------------------------------------------------------

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding; `plus` turns '+' into a space (query strings).
std::string Decode(std::string_view s, bool plus) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else if (plus && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// Whether a comma-separated header value lists `token` (case-insensitive).
bool ListsToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    std::size_t comma = value.find(',');
    if (EqualsIgnoreCase(Trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// The end of the head in `in` (the index just past the empty line), or npos.
std::size_t HeadEnd(std::string_view in) {
  for (std::size_t pos = in.find('\n'); pos != std::string_view::npos;
       pos = in.find('\n', pos + 1)) {
    if (pos + 1 < in.size() && in[pos + 1] == '\n') return pos + 2;
    if (pos + 2 < in.size() && in[pos + 1] == '\r' && in[pos + 2] == '\n') return pos + 3;
  }
  return std::string_view::npos;
}

std::string HexSize(std::size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%zx", n);
  return buf;
}

// --- Connections -----------------------------------------------------------------------------

enum class State {
  kHead,     // reading a head (or idle between requests)
  kBody,     // reading a body (paused while bodies hold body_memory)
  kBusy,     // a pool thread runs the request (not reading)
  kWriting,  // sending a response
  kLinger,   // response sent, write side shut: discarding what the client still sends
};

enum class ChunkPhase { kSize, kData, kDataEnd, kTrailer };

struct Conn {
  uint64_t id = 0;
  int fd = -1;
  SSL* ssl = nullptr;  // with its memory BIOs
  std::string remote_addr, local_addr;
  int remote_port = -1, local_port = -1;

  std::string in;   // plaintext received and not consumed
  std::string out;  // bytes to send (ciphertext under TLS)
  std::size_t out_off = 0;
  uint32_t events = 0;  // registered with epoll

  State state = State::kHead;
  Clock::time_point deadline;
  bool head_begun = false;

  std::unique_ptr<httplib::Request> req;
  bool keep_alive = false;
  bool chunked = false;
  std::size_t body_left = 0;  // Content-Length still to read
  ChunkPhase phase = ChunkPhase::kSize;
  std::size_t chunk_left = 0;
  std::size_t body_held = 0;  // body bytes counted in body_memory_used, until the answer
  bool memory_wait = false;   // in body_waiters: not reading until body memory frees
  bool expect_continue = false;

  // What follows the response being written.
  bool then_close = false;
  bool then_linger = false;
  std::shared_ptr<httplib::Response> then_stream;
  std::size_t lingered = 0;

  ~Conn() {
    if (ssl != nullptr) SSL_free(ssl);
    if (fd >= 0) ::close(fd);
  }
};

struct Job {
  uint64_t conn = 0;
  std::unique_ptr<httplib::Request> req;
  bool keep_alive = false;
};

struct Completion {
  uint64_t conn = 0;
  std::string bytes;  // the response (its head only for a stream)
  bool keep_alive = false;
  std::shared_ptr<httplib::Response> stream;
  bool stream_chunked = true;  // false for an HTTP/1.0 client: the body ends at the close
};

struct Route {
  std::string method;
  std::regex pattern;
  HttpServer::Handler handler;
};

}  // namespace

int ParseRequestHead(std::string_view head, std::size_t max_headers, httplib::Request& req) {
  auto next_line = [&head](std::string_view& line) {
    if (head.empty()) return false;
    std::size_t nl = head.find('\n');
    line = head.substr(0, nl);
    head.remove_prefix(nl == std::string_view::npos ? head.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return true;
  };
  std::string_view line;
  if (!next_line(line)) return 400;
  // METHOD SP target SP HTTP/x.y
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != line.npos) {
    return 400;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!std::all_of(method.begin(), method.end(), IsTokenChar)) return 400;
  if (target.empty() || target.front() != '/') return 400;
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return 400;
  }
  if (!version.starts_with("HTTP/")) return 400;
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return 505;
  req.method = std::string(method);
  req.target = std::string(target);
  req.version = std::string(version);
  std::size_t question = target.find('?');
  req.path = Decode(target.substr(0, question), false);
  if (question != std::string_view::npos) {
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
      std::size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      if (!pair.empty()) {
        std::size_t eq = pair.find('=');
        req.params.emplace(
            Decode(pair.substr(0, eq), true),
            eq == std::string_view::npos ? std::string() : Decode(pair.substr(eq + 1), true));
      }
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  std::size_t count = 0;
  while (next_line(line)) {
    if (line.empty()) continue;  // a trailing empty line, if the caller left one
    if (line.front() == ' ' || line.front() == '\t') return 400;  // obsolete line folding
    std::size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return 400;
    std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), IsTokenChar)) return 400;
    std::string_view value = Trim(line.substr(colon + 1));
    for (char c : value) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return 400;
    }
    if (++count > max_headers) return 431;
    req.headers.emplace(std::string(name), std::string(value));
  }
  return 0;
}

bool ParseMultipartBody(httplib::Request& req) {
  const std::string type = req.get_header_value("Content-Type");
  std::size_t at = type.find("boundary=");
  if (at == std::string::npos) return false;
  std::string_view boundary = std::string_view(type).substr(at + 9);
  boundary = boundary.substr(0, boundary.find(';'));
  boundary = Trim(boundary);
  if (boundary.size() >= 2 && boundary.front() == '"' && boundary.back() == '"') {
    boundary = boundary.substr(1, boundary.size() - 2);
  }
  if (boundary.empty() || boundary.size() > 200) return false;
  const std::string delimiter = "--" + std::string(boundary);
  std::string_view body = req.body;
  std::size_t pos = body.find(delimiter);
  if (pos == std::string_view::npos) return false;
  body.remove_prefix(pos + delimiter.size());
  while (true) {
    if (body.starts_with("--")) return true;  // the closing delimiter
    if (body.starts_with("\r\n")) {
      body.remove_prefix(2);
    } else if (body.starts_with("\n")) {
      body.remove_prefix(1);
    } else {
      return false;
    }
    std::size_t head_end = HeadEnd(body);
    if (head_end == std::string_view::npos) return false;
    std::string_view headers = body.substr(0, head_end);
    body.remove_prefix(head_end);
    // One search per part (a part ends at LF + delimiter, the CR before it optional): searching
    // for CRLF first and LF after would scan the rest of the body twice per part.
    std::size_t end = body.find("\n" + delimiter);
    if (end == std::string_view::npos) return false;
    std::size_t skip = 1;
    if (end > 0 && body[end - 1] == '\r') {
      --end;
      skip = 2;
    }
    httplib::MultipartFormData part;
    part.content = std::string(body.substr(0, end));
    body.remove_prefix(end + skip + delimiter.size());
    while (!headers.empty()) {
      std::size_t nl = headers.find('\n');
      std::string_view header = headers.substr(0, nl);
      headers.remove_prefix(nl == std::string_view::npos ? headers.size() : nl + 1);
      if (!header.empty() && header.back() == '\r') header.remove_suffix(1);
      std::size_t colon = header.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = Trim(header.substr(0, colon));
      std::string_view value = Trim(header.substr(colon + 1));
      if (EqualsIgnoreCase(name, "Content-Type")) part.content_type = std::string(value);
      if (!EqualsIgnoreCase(name, "Content-Disposition")) continue;
      // form-data; name="config"; filename="haproxy.cfg"
      auto param = [&value](std::string_view key) -> std::optional<std::string> {
        std::string_view rest = value;
        while (!rest.empty()) {
          std::size_t semi = rest.find(';');
          std::string_view item = Trim(rest.substr(0, semi));
          std::size_t eq = item.find('=');
          if (eq != std::string_view::npos && EqualsIgnoreCase(Trim(item.substr(0, eq)), key)) {
            std::string_view v = Trim(item.substr(eq + 1));
            if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
            return std::string(v);
          }
          if (semi == std::string_view::npos) break;
          rest.remove_prefix(semi + 1);
        }
        return std::nullopt;
      };
      if (auto n = param("name")) part.name = *n;
      if (auto f = param("filename")) part.filename = *f;
    }
    req.files.emplace(part.name, std::move(part));
  }
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

// --- The server ------------------------------------------------------------------------------

struct HttpServer::Impl {
  explicit Impl(HttpServerOptions o)
      : options(std::move(o)),
        epoll(::epoll_create1(EPOLL_CLOEXEC)),
        wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

  HttpServerOptions options;
  std::vector<Route> routes;
  HandlerWithResponse head_check, pre_routing, error_handler;
  ExceptionHandler exception_handler;
  Logger logger;

  int listener = -1;
  const int epoll;
  const int wake;  // eventfd: completions queued, or stop
  std::atomic<bool> stopping{false};
  std::atomic<bool> running{false};

  // The I/O thread's.
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns;
  uint64_t next_id = 0;
  std::size_t body_memory_used = 0;
  std::atomic<std::size_t> body_memory_seen{0};  // body_memory_used, for other threads
  std::deque<uint64_t> body_waiters;
  uint64_t body_leader = 0;  // the body that reads on while body memory is full
  Clock::time_point accept_paused_until{};
  bool accept_paused = false;

  // The pool.
  std::mutex jobs_mu;
  std::condition_variable jobs_cv;
  std::deque<Job> jobs;
  std::vector<std::thread> workers;

  // Completions, from the pool to the I/O thread.
  std::mutex done_mu;
  std::deque<Completion> done;

  // Stream threads, and their sockets (shut down at stop).
  struct StreamThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> ended;
  };
  std::mutex streams_mu;
  std::list<StreamThread> streams;
  std::set<int> stream_fds;

  ~Impl() {
    if (listener >= 0) ::close(listener);
    if (epoll >= 0) ::close(epoll);
    if (wake >= 0) ::close(wake);
  }

  void Wake() {
    const uint64_t one = 1;
    if (wake >= 0) (void)!::write(wake, &one, sizeof one);
  }

  // --- Listening ---

  int Bind(const std::string& host, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = std::to_string(port);
    if (::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found) !=
        0) {
      errno = EINVAL;
      return -1;
    }
    int saved = 0;
    for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
      int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        saved = errno;
        continue;
      }
      int yes = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      if (ai->ai_family == AF_INET6) {
        int no = 0;
        ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof no);
      }
      if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 1024) == 0) {
        sockaddr_storage bound{};
        socklen_t len = sizeof bound;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
        int bound_port = bound.ss_family == AF_INET6
                             ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                             : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
        ::freeaddrinfo(found);
        if (listener >= 0) ::close(listener);
        listener = fd;
        return bound_port;
      }
      saved = errno;
      ::close(fd);
    }
    ::freeaddrinfo(found);
    errno = saved;
    return -1;
  }

  // --- The pool ---

  void Worker() {
    while (true) {
      Job job;
      {
        std::unique_lock lock(jobs_mu);
        jobs_cv.wait(lock, [this] { return stopping.load() || !jobs.empty(); });
        if (jobs.empty()) return;  // stopping, nothing left
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      Completion c = Run(std::move(job));
      {
        std::lock_guard lock(done_mu);
        done.push_back(std::move(c));
      }
      Wake();
    }
  }

  void CallErrorHandler(const httplib::Request& req, httplib::Response& res) {
    if (res.status < 400 || !error_handler) return;
    try {
      (void)error_handler(req, res);
    } catch (...) {
    }
  }

  // Routes and runs one request; builds its response.
  Completion Run(Job job) {
    httplib::Request& req = *job.req;
    auto res = std::make_shared<httplib::Response>();
    try {
      bool handled = pre_routing && pre_routing(req, *res) == HandlerResponse::Handled;
      // Parsed here, on the pool, not on the I/O thread: a large form is linear work but work.
      if (!handled && IsMultipart(req)) {
        if (!ParseMultipartBody(req)) {
          res->status = 400;
          handled = true;
        }
        // As cpp-httplib: a multipart request's parts are in req.files, its body is empty.
        std::string().swap(req.body);
      }
      if (!handled) {
        const std::string method = req.method == "HEAD" ? "GET" : req.method;
        const Route* route = nullptr;
        for (const Route& r : routes) {
          if (r.method == method && std::regex_match(req.path, req.matches, r.pattern)) {
            route = &r;
            break;
          }
        }
        if (route == nullptr) {
          res->status = 404;
        } else {
          route->handler(req, *res);
          if (res->status == -1) res->status = 200;
        }
      }
    } catch (...) {
      std::exception_ptr ep = std::current_exception();
      res->status = 500;
      res->body.clear();
      res->content_provider_ = nullptr;
      if (exception_handler) {
        try {
          exception_handler(req, *res, ep);
        } catch (...) {
        }
      }
    }
    if (res->status == -1) res->status = 200;
    CallErrorHandler(req, *res);
    if (logger) {
      try {
        logger(req, *res);
      } catch (...) {
      }
    }
    if (res->content_provider_ && !res->is_chunked_content_provider_) {
      // Only chunked providers (set_chunked_content_provider) are streamed; a handler that
      // sets a sized one is a bug here, answered as one rather than as an empty 200.
      common::LogError() << "http: " << req.method << " " << req.path
                         << ": a sized content provider is not supported";
      res->content_provider_ = nullptr;
      res->status = 500;
      res->body.clear();
    }
    Completion c;
    c.conn = job.conn;
    c.keep_alive = job.keep_alive;
    const bool stream = static_cast<bool>(res->content_provider_) && req.method != "HEAD";
    // An HTTP/1.0 client cannot read chunked framing: its stream ends when the connection does.
    c.stream_chunked = req.version != "HTTP/1.0";
    c.bytes = Serialize(req, *res, job.keep_alive && !stream, stream, c.stream_chunked);
    if (stream) c.stream = std::move(res);
    return c;
  }

  static bool IsMultipart(const httplib::Request& req) {
    const std::string type = req.get_header_value("Content-Type");
    constexpr std::string_view kType = "multipart/form-data";
    return type.size() >= kType.size() &&
           EqualsIgnoreCase(std::string_view(type).substr(0, kType.size()), kType);
  }

  std::string Serialize(const httplib::Request& req, httplib::Response& res, bool keep_alive,
                        bool stream, bool chunked = true) const {
    std::string out = "HTTP/1.1 " + std::to_string(res.status) + " " +
                      std::string(ReasonPhrase(res.status)) + "\r\n";
    const bool has_body = !res.body.empty() || stream;
    if (has_body && !res.has_header("Content-Type")) res.set_header("Content-Type", "text/plain");
    for (const auto& [name, value] : res.headers) {
      if (EqualsIgnoreCase(name, "Content-Length") || EqualsIgnoreCase(name, "Connection") ||
          EqualsIgnoreCase(name, "Transfer-Encoding") || EqualsIgnoreCase(name, "Keep-Alive")) {
        continue;
      }
      // Header values come from handlers; a line break would split the response.
      if (name.find_first_of("\r\n") != std::string::npos ||
          value.find_first_of("\r\n") != std::string::npos) {
        continue;
      }
      out += name + ": " + value + "\r\n";
    }
    if (stream) {
      if (chunked) out += "Transfer-Encoding: chunked\r\n";
    } else if (res.status != 304 && res.status != 204) {
      out += "Content-Length: " + std::to_string(res.body.size()) + "\r\n";
    }
    if (keep_alive) {
      out += "Connection: Keep-Alive\r\nKeep-Alive: timeout=" +
             std::to_string(options.idle_timeout.count() / 1000) + "\r\n";
    } else {
      out += "Connection: close\r\n";
    }
    out += "\r\n";
    if (!stream && req.method != "HEAD" && res.status != 304 && res.status != 204) {
      out += res.body;
    }
    return out;
  }

  // --- Streams ---

  // Sends all of `data` on a blocking socket (through TLS when `ssl`).
  static bool SendAll(int fd, SSL* ssl, std::string_view data) {
    std::string cipher;
    if (ssl != nullptr) {
      if (!data.empty() && SSL_write(ssl, data.data(), static_cast<int>(data.size())) <= 0) {
        return false;
      }
      char buf[16384];
      BIO* wbio = SSL_get_wbio(ssl);
      int n;
      while ((n = BIO_read(wbio, buf, sizeof buf)) > 0)
        cipher.append(buf, static_cast<std::size_t>(n));
      data = cipher;
    }
    while (!data.empty()) {
      ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  void StartStream(std::unique_ptr<Conn> conn, std::string head,
                   std::shared_ptr<httplib::Response> res, bool chunked) {
    const int fd = conn->fd;
    SSL* ssl = conn->ssl;
    // Bytes queued and not yet sent (a 100 Continue; under TLS, records already sealed) go
    // first, as they are.
    std::string unsent = conn->out.substr(conn->out_off);
    conn->fd = -1;
    conn->ssl = nullptr;
    ::epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nullptr);
    std::list<StreamThread> finished;
    std::lock_guard lock(streams_mu);
    for (auto it = streams.begin(); it != streams.end();) {
      auto next = std::next(it);
      if (it->ended->load()) finished.splice(finished.end(), streams, it);
      it = next;
    }
    auto ended = std::make_shared<std::atomic<bool>>(false);
    try {
      std::thread thread([this, fd, ssl, ended, chunked, unsent = std::move(unsent),
                          head = std::move(head), res]() mutable {
        RunStream(fd, ssl, unsent, head, std::move(res), chunked);
        std::lock_guard l(streams_mu);
        stream_fds.erase(fd);
        ::close(fd);
        ended->store(true);
      });
      stream_fds.insert(fd);
      streams.push_back(StreamThread{std::move(thread), ended});
    } catch (const std::system_error& e) {
      // No thread to be had (a limit): this stream ends before it starts.
      common::LogWarning() << "http: cannot start a thread for a stream: " << e.what();
      res->content_provider_success_ = false;
      res.reset();
      if (ssl != nullptr) SSL_free(ssl);
      ::close(fd);
    }
    for (StreamThread& t : finished) t.thread.join();  // ended: joins at once
  }

  void RunStream(int fd, SSL* ssl, const std::string& unsent, const std::string& head,
                 std::shared_ptr<httplib::Response> res, bool chunked) {
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    timeval tv{};
    tv.tv_sec = options.write_timeout.count() / 1000;
    tv.tv_usec = (options.write_timeout.count() % 1000) * 1000;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    bool ok = SendAll(fd, nullptr, unsent) && SendAll(fd, ssl, head);
    bool finished = false;
    std::size_t offset = 0;
    {
      httplib::DataSink sink;
      sink.write = [&](const char* data, std::size_t size) {
        if (!ok || size == 0) return ok;
        if (chunked) {
          std::string chunk = HexSize(size) + "\r\n";
          chunk.append(data, size);
          chunk += "\r\n";
          ok = SendAll(fd, ssl, chunk);
        } else {
          ok = SendAll(fd, ssl, std::string_view(data, size));
        }
        if (ok) offset += size;
        return ok;
      };
      sink.done = [&] { finished = true; };
      sink.is_writable = [&] { return ok && !stopping.load(); };
      while (ok && !finished) {
        bool more = false;
        try {
          more = res->content_provider_(offset, 0, sink);
        } catch (...) {
          more = false;
        }
        if (!more) break;
      }
    }
    if (ok && finished && chunked) ok = SendAll(fd, ssl, "0\r\n\r\n");
    res->content_provider_success_ = ok && finished;
    res.reset();  // the releaser (an event subscription) goes now, before the socket
    if (ssl != nullptr) SSL_free(ssl);
  }

  // --- The I/O thread ---

  void SetEvents(Conn& c) {
    uint32_t want = 0;
    bool reading = c.state == State::kHead || c.state == State::kBody || c.state == State::kLinger;
    if (c.state == State::kBody && body_memory_used >= options.body_memory && c.id != body_leader) {
      if (body_leader == 0) {
        // One body always goes on (else bodies that together pass the budget would all wait
        // for each other until their timeout): the first to find the memory full.
        body_leader = c.id;
      } else {
        // The others read on when a body is answered or gone, or the leader's is complete.
        reading = false;
        if (!c.memory_wait) {
          c.memory_wait = true;
          body_waiters.push_back(c.id);
        }
      }
    }
    if (reading) want |= EPOLLIN;
    if (c.out_off < c.out.size()) want |= EPOLLOUT;
    if (want == c.events) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = c.id;
    ::epoll_ctl(epoll, EPOLL_CTL_MOD, c.fd, &ev);
    c.events = want;
  }

  void Close(uint64_t id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    ReleaseBody(*it->second);
    ::epoll_ctl(epoll, EPOLL_CTL_DEL, it->second->fd, nullptr);
    conns.erase(it);
  }

  void ReleaseBody(Conn& c) {
    if (c.id == body_leader) {
      body_leader = 0;
      WakeBodyWaiters();
    }
    if (c.body_held == 0) return;
    body_memory_used -= c.body_held;
    body_memory_seen = body_memory_used;
    c.body_held = 0;
    if (body_memory_used >= options.body_memory) return;
    WakeBodyWaiters();
  }

  // Those paused for body memory read on: SetEvents pauses them again while it is still full,
  // but for the first, which leads.
  void WakeBodyWaiters() {
    if (body_waiters.empty()) return;
    std::deque<uint64_t> waiting;
    waiting.swap(body_waiters);
    for (uint64_t id : waiting) {
      auto it = conns.find(id);
      if (it == conns.end() || !it->second->memory_wait) continue;
      it->second->memory_wait = false;
      SetEvents(*it->second);
    }
  }

  void HoldBody(Conn& c, std::size_t bytes) {
    c.body_held += bytes;
    body_memory_used += bytes;
    body_memory_seen = body_memory_used;
  }

  // Queues `bytes` (plaintext) for sending.
  void Queue(Conn& c, std::string_view bytes) {
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
    }
    if (c.ssl == nullptr) {
      c.out.append(bytes);
      return;
    }
    if (!bytes.empty()) SSL_write(c.ssl, bytes.data(), static_cast<int>(bytes.size()));
    FlushTls(c);
  }

  void FlushTls(Conn& c) {
    if (c.ssl == nullptr) return;
    char buf[16384];
    BIO* wbio = SSL_get_wbio(c.ssl);
    int n;
    while ((n = BIO_read(wbio, buf, sizeof buf)) > 0)
      c.out.append(buf, static_cast<std::size_t>(n));
  }

  // A response the server writes itself (400, 408, 413, 431, refusals); the connection closes
  // after it, lingering when a body may still be on its way.
  void Answer(Conn& c, httplib::Response& res, const httplib::Request& req, bool linger) {
    if (res.status == -1) res.status = 200;
    CallErrorHandler(req, res);
    if (logger) {
      try {
        logger(req, res);
      } catch (...) {
      }
    }
    Queue(c, Serialize(req, res, false, false));
    c.state = State::kWriting;
    c.then_close = true;
    c.then_linger = linger;
    c.deadline = Clock::now() + options.write_timeout;
  }

  void AnswerStatus(Conn& c, int status, bool linger) {
    httplib::Response res;
    res.status = status;
    httplib::Request req;
    if (c.req) req = *c.req;
    req.remote_addr = c.remote_addr;
    req.remote_port = c.remote_port;
    Answer(c, res, req, linger);
  }

  void StartBody(Conn& c) {
    c.state = State::kBody;
    c.deadline = Clock::now() + options.body_timeout;
    if (c.expect_continue) Queue(c, "HTTP/1.1 100 Continue\r\n\r\n");
  }

  // A head was read: check it, then read its body or run it.
  void OnHead(Conn& c, std::string_view head) {
    c.req = std::make_unique<httplib::Request>();
    httplib::Request& req = *c.req;
    req.remote_addr = c.remote_addr;
    req.remote_port = c.remote_port;
    req.local_addr = c.local_addr;
    req.local_port = c.local_port;
    if (int status = ParseRequestHead(head, options.max_headers, req); status != 0) {
      return AnswerStatus(c, status, true);
    }
    const std::string connection = req.get_header_value("Connection");
    c.keep_alive = req.version == "HTTP/1.1" ? !ListsToken(connection, "close")
                                             : ListsToken(connection, "keep-alive");
    c.chunked = false;
    c.body_left = 0;
    const bool has_te = req.has_header("Transfer-Encoding");
    const bool has_cl = req.has_header("Content-Length");
    if (has_te) {
      // Only chunked, alone; with a Content-Length too it is a smuggling attempt.
      if (has_cl || req.get_header_value_count("Transfer-Encoding") != 1) {
        return AnswerStatus(c, 400, true);
      }
      if (!EqualsIgnoreCase(Trim(req.get_header_value("Transfer-Encoding")), "chunked")) {
        return AnswerStatus(c, 501, true);
      }
      c.chunked = true;
      c.phase = ChunkPhase::kSize;
    } else if (has_cl) {
      const std::string value = req.get_header_value("Content-Length");
      for (std::size_t i = 0; i < req.get_header_value_count("Content-Length"); ++i) {
        if (req.get_header_value("Content-Length", i) != value) return AnswerStatus(c, 400, true);
      }
      if (value.empty() || value.size() > 18 ||
          !std::all_of(value.begin(), value.end(),
                       [](char ch) { return ch >= '0' && ch <= '9'; })) {
        return AnswerStatus(c, 400, true);
      }
      c.body_left = std::stoull(value);
    }
    if (head_check) {
      httplib::Response res;
      bool handled = false;
      try {
        handled = head_check(req, res) == HandlerResponse::Handled;
      } catch (...) {
        res.status = 500;
        handled = true;
      }
      if (handled) return Answer(c, res, req, c.chunked || c.body_left > 0);
    }
    if (c.body_left > options.max_body_bytes) return AnswerStatus(c, 413, true);
    c.expect_continue = ListsToken(req.get_header_value("Expect"), "100-continue");
    if (!c.chunked && c.body_left == 0) return Dispatch(c);
    StartBody(c);
  }

  // The body's memory stays counted until the request is answered (OnCompletion).
  void Dispatch(Conn& c) {
    c.state = State::kBusy;
    if (c.id == body_leader) {
      body_leader = 0;
      WakeBodyWaiters();
    }
    Job job;
    job.conn = c.id;
    job.req = std::move(c.req);
    job.keep_alive = c.keep_alive;
    {
      std::lock_guard lock(jobs_mu);
      jobs.push_back(std::move(job));
    }
    jobs_cv.notify_one();
  }

  // Reads the body from c.in. Returns false when it needs more bytes.
  bool ReadBody(Conn& c) {
    std::string& body = c.req->body;
    if (!c.chunked) {
      std::size_t take = std::min(c.body_left, c.in.size());
      body.append(c.in, 0, take);
      HoldBody(c, take);
      c.in.erase(0, take);
      c.body_left -= take;
      return c.body_left == 0;
    }
    // What was consumed is erased from c.in once, on the way out: erasing per chunk would move
    // the rest of the buffer for every tiny chunk.
    struct Consume {
      std::string& in;
      std::size_t used = 0;
      ~Consume() { in.erase(0, used); }
    } consumed{c.in};
    auto rest = [&] { return std::string_view(c.in).substr(consumed.used); };
    while (true) {
      switch (c.phase) {
        case ChunkPhase::kSize: {
          std::string_view in = rest();
          std::size_t nl = in.find('\n');
          if (nl == std::string::npos) {
            if (in.size() > 1024) throw 400;
            return false;
          }
          std::string_view line = in.substr(0, nl);
          if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
          line = line.substr(0, line.find(';'));  // chunk extensions
          line = Trim(line);
          if (line.empty() || line.size() > 15) throw 400;
          std::size_t size = 0;
          for (char ch : line) {
            int v = HexValue(ch);
            if (v < 0) throw 400;
            size = size * 16 + static_cast<std::size_t>(v);
          }
          consumed.used += nl + 1;
          if (size == 0) {
            c.phase = ChunkPhase::kTrailer;
          } else {
            if (body.size() + size > options.max_body_bytes) throw 413;
            c.chunk_left = size;
            c.phase = ChunkPhase::kData;
          }
          break;
        }
        case ChunkPhase::kData: {
          std::string_view in = rest();
          std::size_t take = std::min(c.chunk_left, in.size());
          body.append(in.substr(0, take));
          HoldBody(c, take);
          consumed.used += take;
          c.chunk_left -= take;
          if (c.chunk_left > 0) return false;
          c.phase = ChunkPhase::kDataEnd;
          break;
        }
        case ChunkPhase::kDataEnd: {
          std::string_view in = rest();
          if (in.starts_with("\r\n")) {
            consumed.used += 2;
          } else if (in.starts_with("\n")) {
            consumed.used += 1;
          } else if (in.size() >= 2 || (in.size() == 1 && in[0] != '\r')) {
            throw 400;
          } else {
            return false;
          }
          c.phase = ChunkPhase::kSize;
          break;
        }
        case ChunkPhase::kTrailer: {
          // Trailer fields are read and dropped, up to the empty line.
          std::string_view in = rest();
          std::size_t nl = in.find('\n');
          if (nl == std::string::npos) {
            if (in.size() > options.max_head_bytes) throw 431;
            return false;
          }
          const bool empty = nl == 0 || (nl == 1 && in[0] == '\r');
          consumed.used += nl + 1;
          if (empty) return true;
          break;
        }
      }
    }
  }

  // Moves a connection's state machine on with what it has in c.in.
  void Advance(Conn& c) {
    while (true) {
      if (c.state == State::kHead) {
        if (c.in.empty()) return;
        if (!c.head_begun) {
          c.head_begun = true;
          c.deadline = Clock::now() + options.head_timeout;
        }
        // Empty lines before a request are allowed (RFC 9112 2.2).
        std::size_t blank = 0;
        while (std::string_view(c.in).substr(blank).starts_with("\r\n") ||
               std::string_view(c.in).substr(blank).starts_with("\n")) {
          blank += c.in[blank] == '\r' ? 2 : 1;
        }
        c.in.erase(0, blank);
        if (c.in.empty()) return;
        std::size_t end = HeadEnd(c.in);
        if (end == std::string::npos) {
          if (c.in.size() > options.max_head_bytes) AnswerStatus(c, 431, true);
          return;
        }
        if (end > options.max_head_bytes) return AnswerStatus(c, 431, true);
        std::string head = c.in.substr(0, end);
        c.in.erase(0, end);
        OnHead(c, head);
        continue;
      }
      if (c.state == State::kBody) {
        bool complete = false;
        try {
          complete = ReadBody(c);
        } catch (int status) {
          ReleaseBody(c);
          return AnswerStatus(c, status, true);
        }
        if (!complete) return;
        Dispatch(c);
        return;
      }
      if (c.state == State::kLinger) {
        c.lingered += c.in.size();
        c.in.clear();
        if (c.lingered > 1024 * 1024) Close(c.id);
        return;
      }
      return;  // kBusy, kWriting: nothing to read now
    }
  }

  void OnReadable(Conn& c) {
    char buf[65536];
    while (true) {
      ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) return Close(c.id);  // closed, or reset
      if (c.ssl == nullptr) {
        c.in.append(buf, static_cast<std::size_t>(n));
      } else {
        BIO_write(SSL_get_rbio(c.ssl), buf, static_cast<int>(n));
        char plain[16384];
        while (true) {
          int got = SSL_read(c.ssl, plain, sizeof plain);
          if (got > 0) {
            c.in.append(plain, static_cast<std::size_t>(got));
            continue;
          }
          int err = SSL_get_error(c.ssl, got);
          if (err == SSL_ERROR_WANT_READ) break;
          FlushTls(c);  // an alert, if any
          ERR_clear_error();
          return Close(c.id);
        }
        FlushTls(c);  // handshake messages
      }
      // Read no further than a head or a body chunk needs: the rest waits in the socket.
      if (c.in.size() >= options.max_head_bytes + sizeof buf || c.state == State::kLinger) break;
      if (n < static_cast<ssize_t>(sizeof buf)) break;
    }
    const uint64_t id = c.id;
    Advance(c);
    if (conns.count(id) != 0) {
      Flush(c);
      if (conns.count(id) != 0) SetEvents(c);
    }
  }

  // Writes what c.out holds; then what follows the response.
  void Flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) return Close(c.id);
      c.out_off += static_cast<std::size_t>(n);
      // A slow reader that keeps reading keeps its connection; one that stops loses it.
      if (c.state == State::kWriting) c.deadline = Clock::now() + options.write_timeout;
    }
    c.out.clear();
    c.out_off = 0;
    if (c.state != State::kWriting) return;
    if (c.then_close) {
      if (!c.then_linger) return Close(c.id);
      ::shutdown(c.fd, SHUT_WR);
      c.state = State::kLinger;
      c.deadline = Clock::now() + std::chrono::seconds(2);
      c.in.clear();
      return;
    }
    // Kept alive: the next request, perhaps already here (pipelined).
    c.state = State::kHead;
    c.head_begun = false;
    c.deadline = Clock::now() + options.idle_timeout;
    Advance(c);
  }

  void OnCompletion(Completion done_one) {
    auto it = conns.find(done_one.conn);
    if (it == conns.end()) return;  // gone while the request ran
    Conn& c = *it->second;
    if (done_one.stream) {
      std::unique_ptr<Conn> owned = std::move(it->second);
      conns.erase(it);
      ReleaseBody(*owned);
      return StartStream(std::move(owned), std::move(done_one.bytes), std::move(done_one.stream),
                         done_one.stream_chunked);
    }
    ReleaseBody(c);
    Queue(c, done_one.bytes);
    c.state = State::kWriting;
    c.then_close = !done_one.keep_alive;
    c.then_linger = false;
    c.deadline = Clock::now() + options.write_timeout;
    const uint64_t id = c.id;
    Flush(c);
    if (conns.count(id) != 0) SetEvents(c);
  }

  void Accept() {
    while (true) {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: stop accepting for a while rather than spin.
          common::LogWarning() << "cannot accept a connection: " << std::strerror(errno) << " ("
                               << conns.size() << " open)";
          PauseAccept();
        }
        return;
      }
      if (conns.size() >= options.max_connections) {
        ::close(fd);
        continue;
      }
      int yes = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
      auto c = std::make_unique<Conn>();
      c->id = ++next_id;
      c->fd = fd;
      Address(peer, c->remote_addr, c->remote_port);
      sockaddr_storage local{};
      socklen_t local_len = sizeof local;
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) == 0) {
        Address(local, c->local_addr, c->local_port);
      }
      if (options.tls) {
        c->ssl = SSL_new(options.tls.get());
        if (c->ssl == nullptr) continue;  // closes fd
        SSL_set_bio(c->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
        SSL_set_accept_state(c->ssl);
      }
      c->deadline = Clock::now() + options.head_timeout;  // the first request comes at once
      c->head_begun = true;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = c->id;
      if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev) != 0) continue;
      c->events = EPOLLIN;
      conns.emplace(c->id, std::move(c));
    }
  }

  void PauseAccept() {
    accept_paused = true;
    accept_paused_until = Clock::now() + std::chrono::milliseconds(200);
    epoll_event ev{};
    ev.events = 0;
    ev.data.u64 = 0;
    ::epoll_ctl(epoll, EPOLL_CTL_MOD, listener, &ev);
  }

  static void Address(const sockaddr_storage& addr, std::string& ip, int& port) {
    char text[INET6_ADDRSTRLEN] = {};
    if (addr.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
      ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
      port = ntohs(in->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      port = ntohs(in6->sin6_port);
      // IPv4 clients of a dual-stack socket read as the IPv4 address.
      if (std::string_view(text).starts_with("::ffff:") &&
          std::string_view(text).find('.') != std::string_view::npos) {
        ip = text + 7;
        return;
      }
    }
    ip = text;
  }

  // Deadlines: every connection past its own is answered or closed.
  void Expire(Clock::time_point now) {
    std::vector<uint64_t> expired;
    for (auto& [id, c] : conns) {
      if (c->state != State::kBusy && now >= c->deadline) expired.push_back(id);
    }
    for (uint64_t id : expired) {
      auto it = conns.find(id);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      const bool waiting_for_request =
          (c.state == State::kHead && !c.in.empty()) || c.state == State::kBody;
      if (waiting_for_request && c.out.size() == c.out_off) {
        ReleaseBody(c);
        if (conns.count(id) == 0) continue;
        AnswerStatus(c, 408, false);
        c.deadline = now + std::chrono::seconds(1);  // the answer's own short deadline
        Flush(c);
        if (conns.count(id) != 0) SetEvents(c);
      } else {
        Close(id);
      }
    }
  }

  bool Serve() {
    if (epoll < 0 || wake < 0 || listener < 0) return false;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // the listener
    ::epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &ev);
    ev.data.u64 = UINT64_MAX;  // the wake-up
    ::epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &ev);
    for (std::size_t i = 0; i < options.threads; ++i) workers.emplace_back([this] { Worker(); });
    running = true;
    auto next_expire = Clock::now();
    std::vector<epoll_event> events(256);
    while (!stopping.load()) {
      int n = ::epoll_wait(epoll, events.data(), static_cast<int>(events.size()), 100);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < n; ++i) {
        const uint64_t id = events[i].data.u64;
        if (id == 0) {
          Accept();
          continue;
        }
        if (id == UINT64_MAX) {
          uint64_t ignored = 0;
          (void)!::read(wake, &ignored, sizeof ignored);
          std::deque<Completion> ready;
          {
            std::lock_guard lock(done_mu);
            ready.swap(done);
          }
          for (Completion& c : ready) OnCompletion(std::move(c));
          continue;
        }
        auto it = conns.find(id);
        if (it == conns.end()) continue;
        Conn& c = *it->second;
        if ((events[i].events & (EPOLLERR | EPOLLHUP)) != 0 && (events[i].events & EPOLLIN) == 0) {
          Close(id);
          continue;
        }
        if ((events[i].events & EPOLLOUT) != 0) {
          Flush(c);
          if (conns.count(id) == 0) continue;
          SetEvents(c);
        }
        if ((events[i].events & EPOLLIN) != 0 && conns.count(id) != 0) OnReadable(c);
      }
      const auto now = Clock::now();
      if (accept_paused && now >= accept_paused_until) {
        accept_paused = false;
        epoll_event on{};
        on.events = EPOLLIN;
        on.data.u64 = 0;
        ::epoll_ctl(epoll, EPOLL_CTL_MOD, listener, &on);
      }
      if (now >= next_expire) {
        Expire(now);
        next_expire = now + std::chrono::milliseconds(100);
      }
    }
    running = false;
    // Stop: no new connections; the pool finishes what it runs; every connection closes.
    ::close(listener);
    listener = -1;
    jobs_cv.notify_all();
    for (std::thread& t : workers) t.join();
    workers.clear();
    // What the pool finished after the loop ended is dropped here, while what it refers to
    // (an event subscription of a stream never started) still exists.
    {
      std::lock_guard lock(done_mu);
      done.clear();
    }
    {
      std::lock_guard lock(jobs_mu);
      jobs.clear();
    }
    conns.clear();
    {
      std::unique_lock lock(streams_mu);
      for (int fd : stream_fds) ::shutdown(fd, SHUT_RDWR);
    }
    std::list<StreamThread> ended;
    {
      std::lock_guard lock(streams_mu);
      ended.swap(streams);
    }
    for (StreamThread& t : ended) t.thread.join();
    return true;
  }
};

HttpServer::HttpServer(HttpServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpServer::~HttpServer() { stop(); }

namespace {
HttpServer& AddRoute(HttpServer& server, std::vector<Route>& routes, const char* method,
                     const std::string& pattern, HttpServer::Handler handler) {
  routes.push_back(Route{method, std::regex(pattern), std::move(handler)});
  return server;
}
}  // namespace

HttpServer& HttpServer::Get(const std::string& p, Handler h) {
  return AddRoute(*this, impl_->routes, "GET", p, std::move(h));
}
HttpServer& HttpServer::Post(const std::string& p, Handler h) {
  return AddRoute(*this, impl_->routes, "POST", p, std::move(h));
}
HttpServer& HttpServer::Put(const std::string& p, Handler h) {
  return AddRoute(*this, impl_->routes, "PUT", p, std::move(h));
}
HttpServer& HttpServer::Patch(const std::string& p, Handler h) {
  return AddRoute(*this, impl_->routes, "PATCH", p, std::move(h));
}
HttpServer& HttpServer::Delete(const std::string& p, Handler h) {
  return AddRoute(*this, impl_->routes, "DELETE", p, std::move(h));
}
HttpServer& HttpServer::Options(const std::string& p, Handler h) {
  return AddRoute(*this, impl_->routes, "OPTIONS", p, std::move(h));
}

void HttpServer::set_head_check(HandlerWithResponse h) { impl_->head_check = std::move(h); }
void HttpServer::set_pre_routing_handler(HandlerWithResponse h) {
  impl_->pre_routing = std::move(h);
}
void HttpServer::set_error_handler(HandlerWithResponse h) { impl_->error_handler = std::move(h); }
void HttpServer::set_exception_handler(ExceptionHandler h) {
  impl_->exception_handler = std::move(h);
}
void HttpServer::set_logger(Logger logger) { impl_->logger = std::move(logger); }
HttpServerOptions& HttpServer::options() { return impl_->options; }

int HttpServer::bind_to_any_port(const std::string& host) { return impl_->Bind(host, 0); }
bool HttpServer::bind_to_port(const std::string& host, int port) {
  return impl_->Bind(host, port) >= 0;
}

bool HttpServer::listen_after_bind() {
  if (impl_->stopping.load()) return true;
  return impl_->Serve();
}

void HttpServer::stop() {
  impl_->stopping = true;
  impl_->Wake();
  impl_->jobs_cv.notify_all();
}

bool HttpServer::is_running() const { return impl_->running.load(); }

std::size_t HttpServer::body_bytes_held() const { return impl_->body_memory_seen.load(); }

}  // namespace lb::bridge
