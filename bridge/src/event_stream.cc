// The /events route: httplib glue around EventHub::Subscription.
#include "event_stream.h"

#include <httplib.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "http_api.h"
#include "http_server.h"

namespace lb::bridge {
namespace {

constexpr std::string_view kConnected = ": connected\n\n";

void StreamEvents(EventHub& hub, const httplib::Request& req, httplib::Response& res) {
  std::string prefix = req.has_param("topic") ? req.get_param_value("topic") : "";
  proto::Result<std::unique_ptr<EventHub::Subscription>> subscribed =
      hub.Subscribe(std::move(prefix));
  if (!subscribed.ok()) {
    res.status = HttpStatusFor(subscribed.status().code());
    res.set_header("Retry-After", "5");
    res.set_content(ErrorBody(subscribed.status())
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                    "application/json");
    return;
  }
  // Shared because the provider is a std::function, which must be copyable. The
  // subscription leaves the hub when the response, and with it the provider, is destroyed.
  std::shared_ptr<EventHub::Subscription> subscription = std::move(subscribed).value();
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // nginx: pass each chunk on at once
  // Every chunk reaches the client as written (HttpServer compresses nothing).
  res.set_chunked_content_provider(
      "text/event-stream", [subscription](size_t offset, httplib::DataSink& sink) {
        // `offset` counts the bytes written so far: 0 only on the first call.
        if (offset == 0) return sink.write(kConnected.data(), kConnected.size());
        std::optional<std::string> chunk = subscription->NextChunk();
        if (!chunk) {  // the bridge is stopping: end the stream cleanly
          sink.done();
          return true;
        }
        // false (the client is gone) makes the server close the connection.
        return sink.write(chunk->data(), chunk->size());
      });
}

}  // namespace

void InstallEventStream(HttpServer& server, EventHub& hub) {
  auto stream = [&hub](const httplib::Request& req, httplib::Response& res) {
    StreamEvents(hub, req, res);
  };
  server.Get("/events", stream);
  server.Get("/v1/events", stream);  // the same stream in the /v1 API (rest_api.h)
}

}  // namespace lb::bridge
