// Fuzz target: the body of a reload request to lb-bridge (lb::bridge::ConfigFromRequest).
//
// Input layout, so that the corpus stays readable text:
//   <Content-Type header value>\n<body>
// A first line that is empty sends no Content-Type at all. For multipart/form-data, httplib
// has already split the body into fields before the handler runs; here the body is read as
// NUL-separated name, content pairs ("config\0<text>\0other\0...") that become req.files, the
// way the server fills them. Each input is tried with the bridge's default limit and with a
// small one, so that the too_large paths run too.
#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http_api.h"
#include "lb/common/settings.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const size_t default_limit = lb::common::Settings().bridge.max_body_bytes;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  std::string_view type = input.substr(0, nl);
  std::string_view body = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);

  httplib::Request req;
  req.method = "POST";
  req.path = "/reloadHaproxy";
  if (!type.empty()) req.set_header("Content-Type", std::string(type));
  req.body = std::string(body);
  if (req.is_multipart_form_data()) {
    std::string_view rest = body;
    while (!rest.empty()) {
      const size_t name_end = rest.find('\0');
      httplib::MultipartFormData field;
      field.name = std::string(rest.substr(0, name_end));
      rest = name_end == std::string_view::npos ? std::string_view() : rest.substr(name_end + 1);
      const size_t content_end = rest.find('\0');
      field.content = std::string(rest.substr(0, content_end));
      rest =
          content_end == std::string_view::npos ? std::string_view() : rest.substr(content_end + 1);
      req.files.emplace(field.name, field);
    }
  }

  for (size_t limit : {default_limit, size_t{64}}) {
    lb::proto::Result<std::string> config = lb::bridge::ConfigFromRequest(req, limit);
    if (config.ok() && (config->empty() || config->size() > limit)) {
      std::abort();  // the contract: never an empty config, never one above the limit
    }
  }
  return 0;
}
