// StatsSource: what the event loop reads from haproxy, and nothing more, so that the transport
// (event_loop.h) does not depend on HAProxy control. agent.cc implements it over HaproxyControl.
#pragma once

#include <cstdint>
#include <string>

#include "lb/proto/status.h"

namespace lb::agent {

class StatsSource {
 public:
  virtual ~StatsSource() = default;
  // The CSV of `show stat <args>` from a worker (haproxy_unavailable when it cannot be read).
  // Called from the event loop's thread; may block up to the socket timeout.
  virtual proto::Result<std::string> ShowStat(const std::string& args) = 0;
  // The pid of the current worker; 0 when unknown.
  virtual int64_t WorkerPid() = 0;
};

}  // namespace lb::agent
