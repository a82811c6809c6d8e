// ServerConfig: the servers an haproxy config declares, as haproxy 2.6 will run them.
//
// Pure functions over the config text. The agent needs this model three times: to write the
// server-state file so that carried state never overrides the new config, to check after every
// apply that the running servers are the declared ones (VerifyServers), and to decide whether a
// change touches server lines only and can be applied through the runtime API (PlanRuntime).
//
// Lines are split with SplitConfigLine (haproxy's own parse_line() rules). `default-server`
// lines are inherited as haproxy does: the last `defaults` section before a backend (or the one
// named by `from`), then the backend's own `default-server` lines above each server.
// `server-template` lines expand to their numbered servers. Addresses are read into an IP literal
// and a port only when the line gives exactly that (IPv4 a.b.c.d:port, IPv6 [addr]:port or
// ipv6@addr:port); anything else (a host name, no port, a port range or offset, a prefix such as
// unix@, an environment variable) is kept as written and compared by server name only.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lb::agent {

struct DeclaredServer {
  std::string name;
  std::string address;  // as written ("10.0.0.1:80", "app.example.com:80", ...)
  std::string ip;       // the IP literal ("10.0.0.1", "::1"), or "" when not a literal
  int port = 0;         // the port when `ip` is set (1..65535), else 0
  int weight = 1;       // after default-server and `weight`
  bool backup = false;
  bool disabled = false;
  bool check = false;        // health checks on
  bool agent_check = false;  // agent checks on
  std::string track;         // `track` argument, or ""
  bool from_template = false;
  bool conditional = false;  // inside an `.if` block, which the agent does not evaluate
  bool literal() const { return !ip.empty(); }
  bool explicit_id = false;  // an `id` keyword
  // The words after the address, as written (without default-server's).
  std::vector<std::string> params;
  // default-server's words that apply to it, then its own: what decides how it runs.
  std::vector<std::string> effective_params;
  int line = 0;  // 1-based line of the `server` (or `server-template`) line
};

struct DeclaredBackend {
  std::string name;
  std::string balance = "roundrobin";   // the algorithm's first word, inherited from defaults
  std::string hash_type;                // first word of `hash-type`, "" when not set
  bool has_default_server = false;      // a default-server line applies to some server here
  bool uses_stick = false;              // `stick-table` or a `stick` rule in the backend
  bool uses_cookie = false;             // a `cookie` directive in the backend (or defaults)
  bool has_conditional = false;         // some server line is inside an `.if` block
  std::vector<DeclaredServer> servers;  // in file order
  // The server of that name, or null (an index when ReadDeclaredServers built the backend).
  const DeclaredServer* Find(std::string_view server) const;
  std::unordered_map<std::string, std::size_t> index;  // name -> position in `servers`
  // Whether a server's id (its position, unless `id` sets it) decides where traffic goes:
  // `balance first`, a consistent hash ring (keyed by id in 2.6), and stick tables (which store
  // ids). Empty when it does not, else why.
  std::string IdsMatter() const;
  // The algorithm hashes a request property (source, uri, url_param, hdr(), rdp-cookie, hash).
  bool Hashing() const;
};

struct DeclaredServers {
  std::vector<DeclaredBackend> backends;  // `backend` and `listen` sections, in file order
  const DeclaredBackend* Find(std::string_view backend) const;
  // Names referenced from outside server definitions: "backend/server" of `use-server` rules and
  // of `track` arguments. A server named here cannot be removed without a reload.
  std::vector<std::string> references;
};

DeclaredServers ReadDeclaredServers(std::string_view config);

// True when the IP text is an IPv4 or IPv6 literal (inet_pton).
bool IsIpLiteral(const std::string& text);

// The config with every server and server-template line of backend and listen sections left
// out, one line per directive as its split words joined by an ASCII unit separator, words from
// an environment variable marked (comments, blank lines and spacing do not count, quoting that
// gives the same words does not either). Two configs whose skeletons are equal differ in server
// lines only.
std::vector<std::string> ConfigSkeleton(std::string_view config);

}  // namespace lb::agent
