// The endpoint rule of every socket without authentication (SECURITY.md): it may only be bound
// where nobody but this host can reach it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lb::common {

// True for endpoints only this host can reach: ipc://, inproc://, tcp://127.x.y.z:P,
// tcp://[::1]:P, tcp://localhost:P. Anything else (0.0.0.0, *, an interface name, a public
// address, a "source;destination" connect form) is not.
bool IsLocalEndpoint(std::string_view endpoint);

// "tcp://a:5557, tcp://b:5557" → its endpoints, spaces around each trimmed, empty items dropped:
// an agent's [fleet] controller_pub and controller_router list every controller of an HA fleet.
std::vector<std::string> SplitEndpoints(std::string_view list);

}  // namespace lb::common
