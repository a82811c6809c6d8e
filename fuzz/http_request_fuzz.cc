// Fuzz target: what a client sends lb-bridge's HTTP server before any handler runs
// (bridge/src/http_server.h): a request head, and a multipart/form-data body.
//
// Input layout, so that the corpus stays readable text: the head (request line and header
// lines), then an empty line, then the body. The head is parsed with the bridge's header-count
// limit; when it parses and names a multipart Content-Type, the body goes to the multipart
// parser. Properties checked: a parsed head has a method, a path and a version the server
// accepts; every part the multipart parser returns lies within the body.
#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http_server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t split = input.find("\r\n\r\n");
  size_t skip = 4;
  if (split == std::string_view::npos) {
    split = input.find("\n\n");
    skip = 2;
  }
  std::string_view head = input.substr(0, split);
  std::string_view body =
      split == std::string_view::npos ? std::string_view() : input.substr(split + skip);

  httplib::Request req;
  const int status = lb::bridge::ParseRequestHead(head, 100, req);
  if (status != 0 && status != 400 && status != 431 && status != 505) std::abort();
  if (status != 0) return 0;
  if (req.method.empty() || req.target.empty() || req.target[0] != '/') std::abort();
  if (req.version != "HTTP/1.1" && req.version != "HTTP/1.0") std::abort();
  if (req.headers.size() > 100) std::abort();
  if (req.get_header_value("Content-Type").find("multipart/form-data") != 0) return 0;
  req.body = std::string(body);
  if (!lb::bridge::ParseMultipartBody(req)) return 0;
  for (const auto& [name, part] : req.files) {
    if (part.content.size() > req.body.size()) std::abort();
  }
  return 0;
}
