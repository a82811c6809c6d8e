// HttpServer (bridge/src/http_server.h): its parsers as pure functions, and the server itself
// against raw sockets on loopback, with limits and timeouts made small so that every rule of
// its DESIGN is reached in milliseconds.
#include "http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace lb::bridge {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// --- ParseRequestHead ------------------------------------------------------------------------

TEST(ParseRequestHeadTest, ReadsMethodDecodedPathParamsAndHeaders) {
  httplib::Request req;
  ASSERT_EQ(ParseRequestHead("GET /v1/back%20ends?topic=a+b&force=1&empty&x=%2F HTTP/1.1\r\n"
                             "Host: x\r\nX-Two:  spaced value \t\r\n",
                             100, req),
            0);
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.path, "/v1/back ends");
  EXPECT_EQ(req.target, "/v1/back%20ends?topic=a+b&force=1&empty&x=%2F");
  EXPECT_EQ(req.version, "HTTP/1.1");
  EXPECT_EQ(req.get_param_value("topic"), "a b");
  EXPECT_EQ(req.get_param_value("force"), "1");
  EXPECT_TRUE(req.has_param("empty"));
  EXPECT_EQ(req.get_param_value("x"), "/");
  EXPECT_EQ(req.get_header_value("host"), "x") << "header names are case-insensitive";
  EXPECT_EQ(req.get_header_value("X-Two"), "spaced value");
}

TEST(ParseRequestHeadTest, AcceptsBareLineFeeds) {
  httplib::Request req;
  ASSERT_EQ(ParseRequestHead("POST /reload HTTP/1.0\nContent-Length: 3\n", 100, req), 0);
  EXPECT_EQ(req.version, "HTTP/1.0");
  EXPECT_EQ(req.get_header_value("Content-Length"), "3");
}

TEST(ParseRequestHeadTest, RefusesMalformedHeadsWithTheirStatus) {
  struct Case {
    std::string head;
    int status;
  };
  const std::vector<Case> cases = {
      {"", 400},
      {"GET\r\n", 400},
      {"GET /\r\n", 400},
      {"GET / HTTP/1.1 extra\r\n", 400},
      {"GET  / HTTP/1.1\r\n", 400},
      {"G@T / HTTP/1.1\r\n", 400},
      {"GET nopath HTTP/1.1\r\n", 400},
      {"GET /a\x01 HTTP/1.1\r\n", 400},
      {"GET / HTTP/2.0\r\n", 505},
      {"GET / FTP/1.0\r\n", 400},
      {"GET / HTTP/1.1\r\nNo colon\r\n", 400},
      {"GET / HTTP/1.1\r\n: empty name\r\n", 400},
      {"GET / HTTP/1.1\r\nBad Name: x\r\n", 400},
      {"GET / HTTP/1.1\r\nA: b\r\n folded\r\n", 400},
      {std::string("GET / HTTP/1.1\r\nA: b\x01\r\n"), 400},
  };
  for (const Case& c : cases) {
    httplib::Request req;
    EXPECT_EQ(ParseRequestHead(c.head, 100, req), c.status) << c.head;
  }
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 5; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  httplib::Request req;
  EXPECT_EQ(ParseRequestHead(many, 5, req), 0);
  httplib::Request over;
  EXPECT_EQ(ParseRequestHead(many + "X-5: v\r\n", 5, over), 431);
}

// --- ParseMultipartBody ----------------------------------------------------------------------

TEST(ParseMultipartBodyTest, ReadsNamedPartsWithFilenamesAndTypes) {
  httplib::Request req;
  req.set_header("Content-Type", "multipart/form-data; boundary=\"xyz\"");
  req.body =
      "preamble\r\n--xyz\r\nContent-Disposition: form-data; name=\"config\"; "
      "filename=\"h.cfg\"\r\nContent-Type: text/plain\r\n\r\nline 1\r\nline 2\r\n"
      "--xyz\r\nContent-Disposition: form-data; name=force\r\n\r\n1\r\n--xyz--\r\n";
  ASSERT_TRUE(ParseMultipartBody(req));
  ASSERT_TRUE(req.has_file("config"));
  EXPECT_EQ(req.get_file_value("config").content, "line 1\r\nline 2");
  EXPECT_EQ(req.get_file_value("config").filename, "h.cfg");
  EXPECT_EQ(req.get_file_value("config").content_type, "text/plain");
  EXPECT_EQ(req.get_file_value("force").content, "1");
}

TEST(ParseMultipartBodyTest, RefusesBodiesThatAreNotMultipart) {
  for (const std::string& body :
       {std::string("no boundary at all"),
        std::string("--xyz\r\nContent-Disposition: form-data\r\n"),
        std::string("--xyz\r\n\r\nunterminated part"), std::string("--xyzgarbage")}) {
    httplib::Request req;
    req.set_header("Content-Type", "multipart/form-data; boundary=xyz");
    req.body = body;
    EXPECT_FALSE(ParseMultipartBody(req)) << body;
  }
  httplib::Request no_boundary;
  no_boundary.set_header("Content-Type", "multipart/form-data");
  no_boundary.body = "--\r\n";
  EXPECT_FALSE(ParseMultipartBody(no_boundary));
}

TEST(ParseMultipartBodyTest, PartsEndingInBareLineFeedsOrCrLfAreBothRead) {
  httplib::Request req;
  req.set_header("Content-Type", "multipart/form-data; boundary=b");
  req.body =
      "--b\nContent-Disposition: form-data; name=\"one\"\n\nfirst\r\r\n"
      "--b\nContent-Disposition: form-data; name=\"two\"\n\nsecond\n--b\r\n"
      "Content-Disposition: form-data; name=\"three\"\r\n\r\nthird\r\n--b--\r\n";
  ASSERT_TRUE(ParseMultipartBody(req));
  EXPECT_EQ(req.get_file_value("one").content, "first\r") << "only the CR of CRLF belongs to it";
  EXPECT_EQ(req.get_file_value("two").content, "second");
  EXPECT_EQ(req.get_file_value("three").content, "third");
}

// --- The server ------------------------------------------------------------------------------

// A blocking client socket with a receive deadline.
class Raw {
 public:
  explicit Raw(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Raw() { close(fd_); }
  bool connected() const { return connected_; }
  bool Send(const std::string& data) {
    return send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }
  // Everything until the peer closes or `wait` passes; `closed` says which.
  std::string ReadAll(milliseconds wait, bool* closed = nullptr) {
    std::string out;
    const auto until = Clock::now() + wait;
    while (true) {
      const auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now()).count();
      if (left <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char buf[65536];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        if (closed != nullptr) *closed = true;
        return out;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    if (closed != nullptr) *closed = false;
    return out;
  }
  // Reads until `marker` has arrived (or `wait` passes).
  std::string ReadUntil(const std::string& marker, milliseconds wait) {
    std::string out;
    const auto until = Clock::now() + wait;
    while (out.find(marker) == std::string::npos && Clock::now() < until) {
      const auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(std::max<long long>(left, 1))) <= 0) break;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
  // Reads until `count` responses of the form the tests' routes give (a Content-Length) are in.
  std::string ReadResponses(std::size_t count, milliseconds wait) {
    std::string out;
    const auto until = Clock::now() + wait;
    while (Complete(out) < count && Clock::now() < until) {
      const auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(std::max<long long>(left, 1))) <= 0) break;
      char buf[65536];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  static std::size_t Complete(const std::string& data) {
    std::size_t count = 0, at = 0;
    while (true) {
      std::size_t head_end = data.find("\r\n\r\n", at);
      if (head_end == std::string::npos) return count;
      std::size_t cl = data.find("Content-Length: ", at);
      std::size_t length = 0;
      if (cl != std::string::npos && cl < head_end) length = std::stoul(data.substr(cl + 16));
      if (data.size() < head_end + 4 + length) return count;
      at = head_end + 4 + length;
      ++count;
    }
  }
  int fd_ = -1;
  bool connected_ = false;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void Start() {
    server_ = std::make_unique<HttpServer>(options_);
    server_->Get("/echo", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content("echo " + req.path + " " + req.get_param_value("n"), "text/plain");
    });
    server_->Post("/body", [this](const httplib::Request& req, httplib::Response& res) {
      ++bodies_;
      res.set_content("got " + std::to_string(req.body.size()) + ":" + req.body.substr(0, 16),
                      "text/plain");
    });
    server_->Get(R"(/items/(\w+))", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content("item " + req.matches[1].str(), "text/plain");
    });
    server_->Get("/throw", [](const httplib::Request&, httplib::Response&) {
      throw std::runtime_error("boom");
    });
    server_->Get("/stream", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/plain",
                                       [](std::size_t offset, httplib::DataSink& sink) {
                                         if (offset >= 6) {
                                           sink.done();
                                           return true;
                                         }
                                         return sink.write(offset == 0 ? "abc" : "def", 3);
                                       });
    });
    server_->Get("/sized", [](const httplib::Request&, httplib::Response& res) {
      res.set_content_provider(
          3, "text/plain",
          [](std::size_t, std::size_t, httplib::DataSink& sink) { return sink.write("abc", 3); });
    });
    server_->Post("/form", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content("form " + std::to_string(req.files.size()) + " " +
                          (req.has_file("config") ? req.get_file_value("config").content : "-") +
                          " body " + std::to_string(req.body.size()),
                      "text/plain");
    });
    server_->set_head_check([](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization") != "no")
        return HttpServer::HandlerResponse::Unhandled;
      res.status = 401;
      res.set_content("refused", "text/plain");
      return HttpServer::HandlerResponse::Handled;
    });
    server_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (res.body.empty()) res.set_content("error " + std::to_string(res.status), "text/plain");
      return HttpServer::HandlerResponse::Handled;
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
  }
  void TearDown() override {
    if (!server_) return;
    server_->stop();
    thread_.join();
  }

  HttpServerOptions options_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> bodies_{0};
};

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrderOnOneConnection) {
  Start();
  Raw client(port_);
  ASSERT_TRUE(client.connected());
  std::string batch;
  for (int i = 0; i < 5; ++i)
    batch += "GET /echo?n=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  batch += "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
  batch += "GET /items/abc HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(client.Send(batch));
  const std::string answers = client.ReadResponses(7, milliseconds(5000));
  std::size_t at = 0;
  for (int i = 0; i < 5; ++i) {
    at = answers.find("echo /echo " + std::to_string(i), at);
    ASSERT_NE(at, std::string::npos) << "answer " << i << " missing or out of order:\n" << answers;
  }
  at = answers.find("got 5:hello", at);
  ASSERT_NE(at, std::string::npos) << answers;
  EXPECT_NE(answers.find("item abc", at), std::string::npos) << answers;
  EXPECT_NE(answers.find("Connection: Keep-Alive"), std::string::npos);
}

TEST_F(HttpServerTest, ChunkedBodiesAreDecodedAndCutAtTheLimit) {
  options_.max_body_bytes = 1000;
  Start();
  {
    Raw client(port_);
    ASSERT_TRUE(
        client.Send("POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"));
    EXPECT_NE(client.ReadResponses(1, milliseconds(5000)).find("got 11:hello world"),
              std::string::npos);
  }
  Raw client(port_);
  std::string chunk(400, 'x');
  std::string request = "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) request += "190\r\n" + chunk + "\r\n";  // 1200 bytes > 1000
  ASSERT_TRUE(client.Send(request));
  bool closed = false;
  const std::string answer = client.ReadAll(milliseconds(5000), &closed);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(closed);
  EXPECT_EQ(bodies_.load(), 1) << "the cut body reached no handler";
}

TEST_F(HttpServerTest, ContentLengthOverTheLimitIsRefusedBeforeAnyBodyByte) {
  options_.max_body_bytes = 1000;
  Start();
  Raw client(port_);
  ASSERT_TRUE(client.Send("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 419430400\r\n\r\n"));
  bool closed = false;
  const std::string answer = client.ReadAll(milliseconds(5000), &closed);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413 ", 0), 0u) << answer;
  EXPECT_NE(answer.find("error 413"), std::string::npos) << "the error handler wrote the body";
  EXPECT_TRUE(closed);
}

TEST_F(HttpServerTest, RefusalOfTheHeadCheckIsSentWithoutReadingTheBody) {
  Start();
  Raw client(port_);
  ASSERT_TRUE(
      client.Send("POST /body HTTP/1.1\r\nHost: x\r\nAuthorization: no\r\n"
                  "Content-Length: 419430400\r\n\r\nsome of it"));
  bool closed = false;
  const std::string answer = client.ReadAll(milliseconds(5000), &closed);
  EXPECT_EQ(answer.rfind("HTTP/1.1 401 Unauthorized\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find("refused"), std::string::npos);
  EXPECT_NE(answer.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(closed) << "the write side is shut at once";
  EXPECT_EQ(bodies_.load(), 0);
}

TEST_F(HttpServerTest, OversizedHeadsAre431) {
  options_.max_head_bytes = 1024;
  options_.max_headers = 10;
  Start();
  {
    Raw client(port_);
    ASSERT_TRUE(client.Send("GET /echo HTTP/1.1\r\nX-Big: " + std::string(4000, 'a')));
    const std::string answer = client.ReadAll(milliseconds(5000));
    EXPECT_EQ(answer.rfind("HTTP/1.1 431 ", 0), 0u) << answer;
  }
  Raw client(port_);
  std::string head = "GET /echo HTTP/1.1\r\n";
  for (int i = 0; i < 11; ++i) head += "X-" + std::to_string(i) + ": v\r\n";
  ASSERT_TRUE(client.Send(head + "\r\n"));
  EXPECT_EQ(client.ReadAll(milliseconds(5000)).rfind("HTTP/1.1 431 ", 0), 0u);
}

TEST_F(HttpServerTest, SlowHeadsGet408AndIdleConnectionsClose) {
  options_.head_timeout = milliseconds(1000);
  options_.idle_timeout = milliseconds(1000);
  Start();
  Raw slow(port_);
  ASSERT_TRUE(slow.Send("GET /echo HTTP/1.1\r\nHos"));
  Raw idle(port_);
  ASSERT_TRUE(idle.Send("GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(idle.ReadResponses(1, milliseconds(5000)).find("echo /echo 1"), std::string::npos);
  bool closed = false;
  const std::string answer = slow.ReadAll(milliseconds(5000), &closed);
  EXPECT_EQ(answer.rfind("HTTP/1.1 408 ", 0), 0u) << answer;
  EXPECT_TRUE(closed);
  closed = false;
  EXPECT_EQ(idle.ReadAll(milliseconds(5000), &closed), "");
  EXPECT_TRUE(closed) << "an idle kept-alive connection is closed after idle_timeout";
}

TEST_F(HttpServerTest, ExpectContinueHeadRoutesAndErrors) {
  Start();
  {
    Raw client(port_);
    ASSERT_TRUE(client.Send(
        "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"));
    EXPECT_EQ(client.ReadUntil("\r\n\r\n", milliseconds(5000)), "HTTP/1.1 100 Continue\r\n\r\n");
    ASSERT_TRUE(client.Send("abc"));
    EXPECT_NE(client.ReadResponses(1, milliseconds(5000)).find("got 3:abc"), std::string::npos);
  }
  {
    Raw client(port_);
    ASSERT_TRUE(client.Send("HEAD /echo?n=7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const std::string answer = client.ReadAll(milliseconds(5000));
    EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
    EXPECT_NE(answer.find("Content-Length: 12\r\n"), std::string::npos) << answer;
    EXPECT_EQ(answer.find("echo"), std::string::npos) << "HEAD has no body";
  }
  {
    Raw client(port_);
    ASSERT_TRUE(
        client.Send("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /throw HTTP/1.1\r\n"
                    "Host: x\r\n\r\nPOST /body HTTP/1.1\r\nContent-Length: 1\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"));
    const std::string answer = client.ReadAll(milliseconds(5000));
    std::vector<std::string> statuses;
    for (std::size_t at = 0; (at = answer.find("HTTP/1.1 ", at)) != std::string::npos; ++at) {
      statuses.push_back(answer.substr(at + 9, 3));
    }
    EXPECT_EQ(statuses, (std::vector<std::string>{"404", "500", "400"})) << answer;
  }
}

TEST_F(HttpServerTest, ManyIdleConnectionsDoNotHoldUpOthers) {
  options_.threads = 2;
  Start();
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 300; ++i) {
    idle.push_back(std::make_unique<Raw>(port_));
    ASSERT_TRUE(idle.back()->Send(i % 2 == 0 ? "POST /body HTTP/1.1\r\nContent-Le" : ""));
  }
  Raw client(port_);
  ASSERT_TRUE(client.Send("GET /echo?n=9 HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(client.ReadResponses(1, milliseconds(5000)).find("echo /echo 9"), std::string::npos)
      << "300 half-sent or idle connections, 2 pool threads: still answered";
}

TEST_F(HttpServerTest, StreamsAreChunkedForHttp11AndCloseDelimitedForHttp10) {
  Start();
  {
    Raw client(port_);
    ASSERT_TRUE(client.Send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
    bool closed = false;
    const std::string answer = client.ReadAll(milliseconds(5000), &closed);
    EXPECT_NE(answer.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << answer;
    EXPECT_NE(answer.find("\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"), std::string::npos)
        << answer;
    EXPECT_TRUE(closed);
  }
  Raw client(port_);
  ASSERT_TRUE(client.Send("GET /stream HTTP/1.0\r\n\r\n"));
  bool closed = false;
  const std::string answer = client.ReadAll(milliseconds(5000), &closed);
  EXPECT_EQ(answer.find("Transfer-Encoding"), std::string::npos) << answer;
  EXPECT_EQ(answer.find("Content-Length"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Connection: close\r\n"), std::string::npos) << answer;
  const std::size_t body = answer.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos) << answer;
  EXPECT_EQ(answer.substr(body + 4), "abcdef") << "an HTTP/1.0 client reads to the close";
  EXPECT_TRUE(closed);
}

TEST_F(HttpServerTest, ASizedContentProviderIsAnErrorNotAnEmptyAnswer) {
  Start();
  Raw client(port_);
  ASSERT_TRUE(client.Send("GET /sized HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string answer = client.ReadResponses(1, milliseconds(5000));
  EXPECT_EQ(answer.rfind("HTTP/1.1 500 ", 0), 0u) << answer;
}

TEST_F(HttpServerTest, MultipartIsParsedWhateverTheCaseOfItsType) {
  Start();
  Raw client(port_);
  const std::string body =
      "--q\r\nContent-Disposition: form-data; name=\"config\"\r\n\r\nglobal\r\n--q--\r\n";
  ASSERT_TRUE(
      client.Send("POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: Multipart/Form-Data; "
                  "boundary=q\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n\r\n" + body +
                  "POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                  "boundary=q\r\nContent-Length: 5\r\n\r\nnope!"));
  const std::string answers = client.ReadResponses(2, milliseconds(5000));
  EXPECT_NE(answers.find("form 1 global body 0"), std::string::npos) << answers;
  EXPECT_NE(answers.find("HTTP/1.1 400 "), std::string::npos)
      << "a body that is not multipart is refused:\n"
      << answers;
}

TEST_F(HttpServerTest, AnnouncedBodiesThatNeverComeReserveNoMemory) {
  Start();
  // Each announces a body as large as allowed (chunked, or a Content-Length of max_body_bytes)
  // and sends none of it: together they announce far more than body_memory.
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 8; ++i) {
    idle.push_back(std::make_unique<Raw>(port_));
    ASSERT_TRUE(idle.back()->Send(
        i % 2 == 0 ? "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   : "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                         std::to_string(options_.max_body_bytes) + "\r\n\r\n"));
  }
  Raw client(port_);
  ASSERT_TRUE(client.Send("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
  EXPECT_NE(client.ReadResponses(1, milliseconds(5000)).find("got 5:hello"), std::string::npos)
      << "a small body is read at once beside announced ones";
}

TEST_F(HttpServerTest, BodiesPauseWhileBodyMemoryIsFullAndGoOnWhenItFrees) {
  options_.max_body_bytes = 4 * 1024 * 1024;
  options_.body_memory = 1024 * 1024;
  Start();
  // The first client sends 1.5 MiB of a 2 MiB body and waits: the body memory is full.
  Raw big(port_);
  ASSERT_TRUE(big.Send("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n"));
  ASSERT_TRUE(big.Send(std::string(1536 * 1024, 'b')));
  const auto until = Clock::now() + milliseconds(5000);
  while (server_->body_bytes_held() < options_.body_memory && Clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  ASSERT_GE(server_->body_bytes_held(), options_.body_memory);
  // The second's head is read (a head needs no body memory): 100 Continue says so. Its body
  // then waits; without the pause it would be answered within a millisecond.
  Raw small(port_);
  ASSERT_TRUE(
      small.Send("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 "Expect: 100-continue\r\n\r\n"));
  ASSERT_NE(small.ReadUntil("100 Continue\r\n\r\n", milliseconds(5000)), "");
  ASSERT_TRUE(small.Send("hello"));
  EXPECT_EQ(small.ReadResponses(1, milliseconds(300)), "")
      << "a body read while body memory is full";
  // The first body (which leads: it reads on past the budget) completes and is answered; the
  // second goes on.
  ASSERT_TRUE(big.Send(std::string(512 * 1024, 'b')));
  EXPECT_NE(big.ReadResponses(1, milliseconds(5000)).find("got 2097152:bbbb"), std::string::npos);
  EXPECT_NE(small.ReadResponses(1, milliseconds(5000)).find("got 5:hello"), std::string::npos);
}

TEST_F(HttpServerTest, ManyBlankLinesBeforeARequestAreSkipped) {
  Start();
  Raw client(port_);
  ASSERT_TRUE(
      client.Send(std::string(8000, '\n') + "\r\n\r\nGET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(client.ReadResponses(1, milliseconds(5000)).find("echo /echo 1"), std::string::npos);
}

}  // namespace
}  // namespace lb::bridge
