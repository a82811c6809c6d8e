// GET /events (and GET /v1/events, the same): the agent's events as Server-Sent Events, one
// stream per HTTP client.
//
//   GET /events[?topic=<prefix>]   text/event-stream of the events whose topic starts with
//                                  <prefix> (all when absent), as EventHub formats them:
//                                    id: <seq>\nevent: <type>\ndata: <body + "topic", JSON>\n\n
//                                  ": connected" first, ": keep-alive" after each quiet
//                                  keep_alive_interval. Past events are not replayed
//                                  (Last-Event-ID is ignored): see PROTOCOL.md, "Late joiners".
//   503 {"success": false, "error": "too many event streams", "code": "unavailable"}
//                                  when EventHubOptions::max_subscriptions streams are open.
//
// DESIGN: HttpServer gives a response with a chunked content provider a thread of its own
// (http_server.h), which blocks in EventHub::Subscription::NextChunk and writes what it returns
// as one HTTP chunk: however many streams are open (EventHubOptions::max_subscriptions at most),
// the pool that runs ordinary requests stays free.
//
// A client that goes away is noticed when a write to it fails, usually at the second write after
// it left (an event or a keep-alive); its slot is free from then on. A client that has stopped
// reading is dropped at the server's write timeout (30 s, http_api.cc).
//
// Shutdown: HttpServer::stop() does not end a stream that waits for its next chunk. Call
// EventHub::Stop() right after it: every stream then ends its chunked body at once and its
// thread returns, so listen_after_bind() returns promptly.
#pragma once

#include <cstddef>

#include "event_hub.h"

namespace lb::bridge {

class HttpServer;

// Installs GET /events and GET /v1/events. Call before listening. `hub` must outlive `server`.
void InstallEventStream(HttpServer& server, EventHub& hub);

}  // namespace lb::bridge
