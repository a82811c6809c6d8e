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
// DESIGN: a stream holds one of httplib's pool threads for as long as the client stays
// connected: the thread blocks in EventHub::Subscription::NextChunk and writes what it returns as
// one HTTP chunk. httplib's default pool (max(8, cores - 1) threads) would be used up by a few
// streams, and /reload would then wait in its queue, so InstallEventStream gives the server a
// pool of max_subscriptions + kRequestThreads threads: however many streams are open,
// kRequestThreads threads remain for ordinary requests.
//
// A client that goes away is noticed when a write to it fails, usually at the second write after
// it left (an event or a keep-alive); its slot is free from then on.
//
// Shutdown: Server::stop() alone does not end a stream, because httplib looks at it only between
// chunks and a stream may wait keep_alive_interval for its next one. Call EventHub::Stop() right
// after Server::stop(): every stream then ends its chunked body at once and returns its thread,
// so listen() returns promptly. A client that has stopped reading still holds its thread until
// the server's write timeout (30 s, http_api.cc).
#pragma once

#include <cstddef>

#include "event_hub.h"

namespace httplib {
class Server;
}

namespace lb::bridge {

// Threads of the HTTP pool that event streams can never take.
inline constexpr std::size_t kRequestThreads = 128;

// Installs GET /events and GET /v1/events and sizes the server's thread pool (see above). Call
// before listening. `hub` must outlive `server`.
void InstallEventStream(httplib::Server& server, EventHub& hub);

}  // namespace lb::bridge
