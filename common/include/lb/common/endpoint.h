// The endpoint rule of every socket without authentication (SECURITY.md): it may only be bound
// where nobody but this host can reach it.
#pragma once

#include <string_view>

namespace lb::common {

// True for endpoints only this host can reach: ipc://, inproc://, tcp://127.x.y.z:P,
// tcp://[::1]:P, tcp://localhost:P. Anything else (0.0.0.0, *, an interface name, a public
// address, a "source;destination" connect form) is not.
bool IsLocalEndpoint(std::string_view endpoint);

}  // namespace lb::common
