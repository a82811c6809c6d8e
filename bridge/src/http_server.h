// HttpServer: lb-bridge's HTTP/1.1 server. Routes and handlers have cpp-httplib's shapes
// (httplib::Request, httplib::Response, Server::Handler), so the bridge's routes do not depend
// on which server runs them; the connections are this file's own.
//
// DESIGN: Debian's cpp-httplib is a compiled library with a thread per connection: a few hundred
// clients that send half a request or idle between requests hold every thread, and its limits
// (header size, body size before a refusal, pipelining) are compiled in. Here one I/O thread owns
// every connection (epoll, non-blocking sockets, TLS through memory BIOs) and reads a request
// up to its end under limits; only a complete request reaches the pool that runs handlers, so a
// slow or idle client costs a descriptor and its buffer, never a thread.
//   - A request's head (request line and headers) is at most max_head_bytes and max_headers
//     fields, else 431; it must arrive within head_timeout of its first byte (408). An idle
//     kept-alive connection is closed after idle_timeout.
//   - The head check (set_head_check: access control) runs on the head alone, before any body
//     byte is read: a refusal is sent and the connection closed without reading the body.
//   - A Content-Length above max_body_bytes is answered 413 at once; a chunked body is cut at
//     max_body_bytes (413). The body bytes received and not yet answered, all requests
//     together, are counted against body_memory (a declared length reserves nothing, so idle
//     clients announcing large bodies cost nothing); once it is reached, one body (the first
//     to find it full) is read on and the others pause until a request is answered, a
//     connection closes or that body is complete. So bodies hold at most body_memory +
//     max_body_bytes (+ one read buffer per connection); a body still incomplete at
//     body_timeout is 408.
//   - Multipart bodies are parsed on the pool, in linear time.
//   - Requests on one connection are answered in order, one at a time: pipelined requests wait
//     in the connection's buffer, which the server stops reading while a request runs.
//   - A response with a chunked content provider (the event streams) gets a thread of its own
//     that writes the chunks with a write timeout; the connection closes when the stream ends.
//     For an HTTP/1.0 client the stream is not chunked: it ends when the connection does.
//     Sized content providers are not supported (500, logged). A response being written keeps
//     its connection as long as the client reads within write_timeout of the last progress.
//   - Not done: close_notify on TLS connections (every response is framed by its length or
//     chunks, so no client depends on it); TLS alerts are not sent before a close.
// Handlers, the pre-routing handler, the error handler and the logger run on a pool thread, one
// request at a time on that thread (thread_locals set by pre-routing are seen by the handler and
// the logger). The head check runs on the I/O thread and must not block.
#pragma once

#include <httplib.h>
#include <openssl/ssl.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace lb::bridge {

struct HttpServerOptions {
  std::size_t max_connections = 10000;  // more are accepted and closed at once
  std::size_t max_head_bytes = 16 * 1024;
  std::size_t max_headers = 100;
  std::size_t max_body_bytes = 16 * 1024 * 1024;
  std::size_t body_memory = 64 * 1024 * 1024;
  std::chrono::milliseconds head_timeout{10000};
  std::chrono::milliseconds body_timeout{30000};  // from the end of the head
  std::chrono::milliseconds idle_timeout{30000};  // kept-alive, between requests
  std::chrono::milliseconds write_timeout{30000};
  std::size_t threads = 128;     // the handlers' pool (event streams have threads of their own)
  std::shared_ptr<SSL_CTX> tls;  // HTTPS when set
};

class HttpServer {
 public:
  using Handler = httplib::Server::Handler;
  using HandlerWithResponse = httplib::Server::HandlerWithResponse;
  using HandlerResponse = httplib::Server::HandlerResponse;
  using ExceptionHandler = httplib::Server::ExceptionHandler;
  using Logger = httplib::Logger;

  explicit HttpServer(HttpServerOptions options = {});
  ~HttpServer();  // stops; the thread in listen_after_bind() must have returned before
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes: `pattern` is a regex matched against the whole decoded path (captures in
  // req.matches). HEAD is served by the GET route without its body. No route: 404.
  HttpServer& Get(const std::string& pattern, Handler handler);
  HttpServer& Post(const std::string& pattern, Handler handler);
  HttpServer& Put(const std::string& pattern, Handler handler);
  HttpServer& Patch(const std::string& pattern, Handler handler);
  HttpServer& Delete(const std::string& pattern, Handler handler);
  HttpServer& Options(const std::string& pattern, Handler handler);

  // See the DESIGN. Each is optional; set them before listening.
  void set_head_check(HandlerWithResponse handler);
  void set_pre_routing_handler(HandlerWithResponse handler);
  void set_error_handler(HandlerWithResponse handler);  // every response with status >= 400
  void set_exception_handler(ExceptionHandler handler);
  void set_logger(Logger logger);  // every response, after it is built
  HttpServerOptions& options();    // before listening

  // Binds (and listens, with a backlog of 1024). Returns the port, or -1 with errno set.
  int bind_to_any_port(const std::string& host);
  bool bind_to_port(const std::string& host, int port);
  // Serves until stop(); returns false when it could not run. Joins the pool and the streams.
  bool listen_after_bind();
  void stop();  // from any thread, any time (before listen_after_bind too)
  bool is_running() const;
  // Body bytes received and not yet answered, all requests together (counted against
  // body_memory).
  std::size_t body_bytes_held() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- Parsing, exposed for unit tests and the fuzz target -----------------------------------

// Parses a request head (request line and header lines, each ending in CRLF or LF, without the
// empty line that ends the head) into req's method, target, version, path (decoded), params
// (from the query) and headers. Returns 0, or the HTTP status that refuses it: 400 malformed,
// 431 more than `max_headers` fields, 505 a version other than HTTP/1.0 and 1.1.
int ParseRequestHead(std::string_view head, std::size_t max_headers, httplib::Request& req);

// Fills req.files from a multipart/form-data body (the boundary from Content-Type). False when
// the body is not well-formed multipart.
bool ParseMultipartBody(httplib::Request& req);

// The reason phrase of an HTTP status ("Not Found"), "Unknown" for others.
std::string_view ReasonPhrase(int status);

}  // namespace lb::bridge
