// One request/response exchange on an HAProxy CLI socket (stats socket or master socket).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "lb/proto/status.h"

namespace lb::agent {

struct SocketOptions {
  std::chrono::milliseconds timeout{5000};  // for connect, and again for the whole answer
  std::size_t read_chunk = 4096;            // the 2015 agent's socket_buffer_size
  std::size_t max_answer = 64 * 1024 * 1024;
};

// Connects to `endpoint` (a unix socket path, or host:port), sends `command` plus a newline,
// half-closes the connection (the master socket answers only then; a stats socket does not
// mind) and reads until haproxy closes. Errors: haproxy_unavailable when nothing listens
// (missing socket, refused), timeout when it does not answer in time.
proto::Result<std::string> HaproxyCommand(const std::string& endpoint, std::string_view command,
                                          const SocketOptions& options);

}  // namespace lb::agent
