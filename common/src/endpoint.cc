#include "lb/common/endpoint.h"

namespace lb::common {

bool IsLocalEndpoint(std::string_view endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string_view rest = endpoint.substr(6);
  // A "source;destination" connect form: not something to guess about.
  if (rest.find(';') != std::string_view::npos) return false;
  std::string_view host;
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return false;
    host = rest.substr(1, close - 1);
    return host == "::1";
  }
  auto colon = rest.rfind(':');
  host = colon == std::string_view::npos ? rest : rest.substr(0, colon);
  if (host == "localhost" || host == "lo") return true;
  if (host.rfind("127.", 0) == 0) {
    // Only a dotted IPv4 address: "127.evil.example.com" is a name, not loopback.
    for (char c : host) {
      if (c != '.' && (c < '0' || c > '9')) return false;
    }
    return true;
  }
  return false;
}

std::vector<std::string> SplitEndpoints(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list.remove_prefix(comma == std::string_view::npos ? list.size() : comma + 1);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
  }
  return out;
}

}  // namespace lb::common
