#include "server_config.h"

#include <arpa/inet.h>

#include <charconv>
#include <optional>
#include <set>

#include "config_lint.h"

namespace lb::agent {
namespace {

// What a `defaults` section hands to the backends that inherit from it.
struct Defaults {
  std::vector<std::string> default_server;  // the words of its default-server lines, in order
  std::string balance = "roundrobin";
  std::string hash_type;
  bool cookie = false;
};

std::optional<std::string> CanonicalIp(const std::string& text) {
  char buf[INET6_ADDRSTRLEN];
  unsigned char raw[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, text.c_str(), raw) == 1) {
    return inet_ntop(AF_INET, raw, buf, sizeof buf) ? std::optional<std::string>(buf)
                                                    : std::nullopt;
  }
  if (inet_pton(AF_INET6, text.c_str(), raw) == 1) {
    return inet_ntop(AF_INET6, raw, buf, sizeof buf) ? std::optional<std::string>(buf)
                                                     : std::nullopt;
  }
  return std::nullopt;
}

int ParsePort(std::string_view text) {
  if (text.empty() || text.size() > 5) return 0;
  int port = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc() || ptr != text.data() + text.size()) return 0;
  return port >= 1 && port <= 65535 ? port : 0;
}

// Reads "10.0.0.1:80", "[::1]:80", "ipv6@::1:80", "ipv4@10.0.0.1:80" into an IP literal and a
// port; leaves both empty for anything else.
void ReadAddress(const std::string& written, DeclaredServer* server) {
  std::string text = written;
  bool v6_prefix = false;
  if (text.rfind("ipv4@", 0) == 0) {
    text.erase(0, 5);
  } else if (text.rfind("ipv6@", 0) == 0) {
    text.erase(0, 5);
    v6_prefix = true;
  }
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    std::size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') return;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string::npos) return;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    // Without brackets, one colon means IPv4 or a host name; more mean IPv6 (haproxy takes the
    // last colon as the port's).
    if (host.find(':') != std::string::npos && !v6_prefix && !CanonicalIp(host)) return;
  }
  const int number = ParsePort(port);
  auto ip = CanonicalIp(host);
  if (number == 0 || !ip) return;
  server->ip = *ip;
  server->port = number;
}

// Server keywords of haproxy 2.6 that take no argument (configuration.txt, 5.2); every other
// keyword takes one. Knowing them keeps an argument (`cookie backup`) from being read as a flag.
bool IsFlagKeyword(const std::string& kw) {
  static const std::set<std::string> kFlags = {"agent-check",
                                               "allow-0rtt",
                                               "backup",
                                               "check",
                                               "check-send-proxy",
                                               "check-ssl",
                                               "check-via-socks4",
                                               "disabled",
                                               "enabled",
                                               "force-sslv3",
                                               "force-tlsv10",
                                               "force-tlsv11",
                                               "force-tlsv12",
                                               "force-tlsv13",
                                               "no-agent-check",
                                               "no-backup",
                                               "no-check",
                                               "no-check-ssl",
                                               "no-send-proxy",
                                               "no-send-proxy-v2",
                                               "no-send-proxy-v2-ssl",
                                               "no-send-proxy-v2-ssl-cn",
                                               "no-ssl",
                                               "no-ssl-reuse",
                                               "no-sslv3",
                                               "no-tfo",
                                               "no-tls-tickets",
                                               "no-tlsv10",
                                               "no-tlsv11",
                                               "no-tlsv12",
                                               "no-tlsv13",
                                               "no-verifyhost",
                                               "non-stick",
                                               "send-proxy",
                                               "send-proxy-v2",
                                               "send-proxy-v2-ssl",
                                               "send-proxy-v2-ssl-cn",
                                               "ssl",
                                               "ssl-reuse",
                                               "stick",
                                               "tfo",
                                               "tls-tickets"};
  return kFlags.count(kw) > 0;
}

// Applies one server-line keyword list (default-server's, then the server's own) to `server`.
void ApplyParams(const std::vector<std::string>& params, DeclaredServer* server) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const std::string& kw = params[i];
    if (IsFlagKeyword(kw)) {
      if (kw == "backup") server->backup = true;
      if (kw == "no-backup") server->backup = false;
      if (kw == "disabled") server->disabled = true;
      if (kw == "enabled") server->disabled = false;
      if (kw == "check") server->check = true;
      if (kw == "no-check") server->check = false;
      if (kw == "agent-check") server->agent_check = true;
      if (kw == "no-agent-check") server->agent_check = false;
      continue;
    }
    if (i + 1 >= params.size()) break;
    const std::string& arg = params[++i];
    if (kw == "weight") {
      int w = 0;
      auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), w);
      if (ec == std::errc() && ptr == arg.data() + arg.size()) server->weight = w;
    } else if (kw == "track") {
      server->track = arg;
    } else if (kw == "id") {
      server->explicit_id = true;
    }
  }
}

// "3" -> 1..3, "5-7" -> 5..7 (server-template's <num | range>); empty on anything else or on
// more than 10,000 servers.
std::vector<int> TemplateNumbers(const std::string& text) {
  auto number = [](std::string_view s) {
    int v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && ptr == s.data() + s.size() && v >= 0 ? v : -1;
  };
  int low = 1, high = -1;
  std::size_t dash = text.find('-');
  if (dash == std::string::npos) {
    high = number(text);
  } else {
    low = number(std::string_view(text).substr(0, dash));
    high = number(std::string_view(text).substr(dash + 1));
  }
  std::vector<int> out;
  if (low < 0 || high < low || high - low >= 10000) return out;
  for (int n = low; n <= high; ++n) out.push_back(n);
  return out;
}

std::vector<std::string> Texts(const std::vector<ConfigWord>& words) {
  std::vector<std::string> out;
  out.reserve(words.size());
  for (const auto& w : words) out.push_back(w.text);
  return out;
}

// Calls `line_fn(words, line_number)` for every line with a keyword.
template <typename Fn>
void ForEachLine(std::string_view config, Fn line_fn) {
  int line_number = 0;
  std::size_t pos = 0;
  while (pos < config.size()) {
    std::size_t nl = config.find('\n', pos);
    if (nl == std::string_view::npos) nl = config.size();
    const std::vector<ConfigWord> words = SplitConfigLine(config.substr(pos, nl - pos));
    pos = nl + 1;
    ++line_number;
    if (words.empty() || words[0].text.empty()) continue;
    line_fn(words, line_number);
  }
}

bool IsServerSection(const std::string& section) {
  return section == "backend" || section == "listen";
}

}  // namespace

bool IsIpLiteral(const std::string& text) { return CanonicalIp(text).has_value(); }

const DeclaredServer* DeclaredBackend::Find(std::string_view server) const {
  if (index.size() == servers.size()) {
    auto it = index.find(std::string(server));
    return it == index.end() ? nullptr : &servers[it->second];
  }
  for (const auto& s : servers) {
    if (s.name == server) return &s;
  }
  return nullptr;
}

bool DeclaredBackend::Hashing() const {
  return balance == "source" || balance == "uri" || balance == "url_param" || balance == "hash" ||
         balance.rfind("hdr(", 0) == 0 || balance.rfind("rdp-cookie", 0) == 0;
}

std::string DeclaredBackend::IdsMatter() const {
  if (balance == "first") return "balance first picks servers in id order";
  if (Hashing() && hash_type == "consistent") {
    return "balance " + balance + " with hash-type consistent places servers on the ring by id";
  }
  if (uses_stick) return "stick tables refer to servers by id";
  return "";
}

const DeclaredBackend* DeclaredServers::Find(std::string_view backend) const {
  for (const auto& b : backends) {
    if (b.name == backend) return &b;
  }
  return nullptr;
}

DeclaredServers ReadDeclaredServers(std::string_view config) {
  DeclaredServers out;
  std::map<std::string, Defaults> named;
  Defaults last;  // the last defaults section, which a backend without `from` inherits
  Defaults* in_defaults = nullptr;
  Defaults section_defaults;  // a defaults section being read
  std::string section;
  std::string defaults_name;
  DeclaredBackend* backend = nullptr;
  std::vector<std::string> backend_default_server;
  int conditional_depth = 0;

  auto close_defaults = [&](const std::string& name) {
    last = section_defaults;
    if (!name.empty()) named[name] = section_defaults;
  };

  ForEachLine(config, [&](const std::vector<ConfigWord>& split, int line_number) {
    const std::vector<std::string> words = Texts(split);
    const std::string& kw = words[0];
    if (kw == ".if") {
      ++conditional_depth;
      return;
    }
    if (kw == ".endif") {
      if (conditional_depth > 0) --conditional_depth;
      return;
    }
    if (IsSectionKeyword(kw)) {
      if (in_defaults) close_defaults(defaults_name);
      in_defaults = nullptr;
      backend = nullptr;
      section = kw;
      // `<section> [<name>] [from <defaults>]`
      std::string name, from;
      std::size_t i = 1;
      if (words.size() > i && words[i] != "from") name = words[i++];
      if (words.size() > i + 1 && words[i] == "from") from = words[i + 1];
      const Defaults* parent = &last;
      if (!from.empty()) {
        auto it = named.find(from);
        if (it != named.end()) parent = &it->second;
      }
      if (kw == "defaults") {
        // A defaults section starts afresh unless it names another with `from`.
        section_defaults = from.empty() ? Defaults() : *parent;
        defaults_name = name;
        in_defaults = &section_defaults;
        return;
      }
      if (IsServerSection(kw)) {
        out.backends.push_back(DeclaredBackend());
        backend = &out.backends.back();
        backend->name = name;
        backend->balance = parent->balance;
        backend->hash_type = parent->hash_type;
        backend->uses_cookie = parent->cookie;
        backend->has_default_server = !parent->default_server.empty();
        backend_default_server = parent->default_server;
      }
      return;
    }
    const std::string arg = words.size() > 1 ? words[1] : "";
    if (in_defaults) {
      if (kw == "default-server") {
        in_defaults->default_server.insert(in_defaults->default_server.end(), words.begin() + 1,
                                           words.end());
      } else if (kw == "balance" && !arg.empty()) {
        in_defaults->balance = arg;
      } else if (kw == "hash-type" && !arg.empty()) {
        in_defaults->hash_type = arg;
      } else if (kw == "cookie") {
        in_defaults->cookie = true;
      }
      return;
    }
    if (backend == nullptr) return;
    if (kw == "default-server") {
      backend->has_default_server = true;
      backend_default_server.insert(backend_default_server.end(), words.begin() + 1, words.end());
    } else if (kw == "balance" && !arg.empty()) {
      backend->balance = arg;
    } else if (kw == "hash-type" && !arg.empty()) {
      backend->hash_type = arg;
    } else if (kw == "cookie") {
      backend->uses_cookie = true;
    } else if (kw == "stick-table" || kw == "stick") {
      backend->uses_stick = true;
    } else if (kw == "use-server" && !arg.empty()) {
      out.references.push_back(backend->name + "/" + arg);
    } else if ((kw == "server" && words.size() >= 3) ||
               (kw == "server-template" && words.size() >= 4)) {
      const bool templated = kw == "server-template";
      const std::size_t address_at = templated ? 3 : 2;
      DeclaredServer server;
      server.address = words[address_at];
      server.from_template = templated;
      server.conditional = conditional_depth > 0;
      server.line = line_number;
      server.params.assign(words.begin() + address_at + 1, words.end());
      if (!split[address_at].from_env) ReadAddress(server.address, &server);
      ApplyParams(backend_default_server, &server);
      ApplyParams(server.params, &server);
      server.effective_params = backend_default_server;
      server.effective_params.insert(server.effective_params.end(), server.params.begin(),
                                     server.params.end());
      if (!server.track.empty()) {
        out.references.push_back(server.track.find('/') == std::string::npos
                                     ? backend->name + "/" + server.track
                                     : server.track);
      }
      if (server.conditional) backend->has_conditional = true;
      if (templated) {
        for (int n : TemplateNumbers(words[2])) {
          DeclaredServer one = server;
          one.name = words[1] + std::to_string(n);
          backend->servers.push_back(std::move(one));
        }
      } else {
        server.name = words[1];
        backend->servers.push_back(std::move(server));
      }
    }
  });
  for (auto& b : out.backends) {
    for (std::size_t i = 0; i < b.servers.size(); ++i) b.index.emplace(b.servers[i].name, i);
    // A name declared twice (haproxy refuses that): keep the linear search, first one wins.
    if (b.index.size() != b.servers.size()) b.index.clear();
  }
  return out;
}

std::vector<std::string> ConfigSkeleton(std::string_view config) {
  std::vector<std::string> out;
  std::string section;
  ForEachLine(config, [&](const std::vector<ConfigWord>& split, int) {
    const std::string& kw = split[0].text;
    if (IsSectionKeyword(kw)) section = kw;
    if (IsServerSection(section) && (kw == "server" || kw == "server-template")) return;
    std::string line;
    for (const auto& w : split) {
      if (!line.empty()) line += '\x1f';  // a separator no word of a valid config holds
      line += w.text;
      if (w.from_env) line += "\x1e";
    }
    out.push_back(std::move(line));
  });
  return out;
}

}  // namespace lb::agent
