#include "config_paths.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "config_lint.h"
#include "server_config.h"

namespace lb::agent {
namespace {

namespace fs = std::filesystem;
using proto::ErrorCode;
using proto::Status;
using Use = ConfigPath::Use;

// Options of `bind`, `server` and `default-server` lines (and `stats socket`, which takes bind
// options) whose argument is a file, and what it is resolved against.
enum class Base { kConfigDir, kCrt, kCa };
const std::map<std::string, Base>& FileOptions() {
  static const std::map<std::string, Base> kOptions = {{"crt", Base::kCrt},
                                                       {"crt-list", Base::kCrt},
                                                       {"ca-file", Base::kCa},
                                                       {"crl-file", Base::kCa},
                                                       {"ca-verify-file", Base::kCa},
                                                       {"ca-sign-file", Base::kCa},
                                                       {"ssl-dh-param-file", Base::kConfigDir}};
  return kOptions;
}

// Global keywords whose first argument is a file or directory.
const std::map<std::string, Use>& GlobalFileKeywords() {
  static const std::map<std::string, Use> kKeywords = {{"chroot", Use::kDir},
                                                       {"pidfile", Use::kPid},
                                                       {"server-state-base", Use::kDir},
                                                       {"ca-base", Use::kDir},
                                                       {"crt-base", Use::kDir},
                                                       {"issuers-chain-path", Use::kDir},
                                                       {"ssl-dh-param-file", Use::kRead},
                                                       {"h1-case-adjust-file", Use::kRead},
                                                       {"51degrees-data-file", Use::kRead},
                                                       {"wurfl-data-file", Use::kRead},
                                                       {"deviceatlas-json-file", Use::kRead},
                                                       {"lua-load", Use::kRead},
                                                       {"lua-load-per-thread", Use::kRead},
                                                       {"lua-prepend-path", Use::kRead}};
  return kKeywords;
}

// Sample converters and actions whose first argument is a file: map(), map_*() and the map/ACL
// file actions.
bool TakesFileArgument(std::string_view name) {
  return name.rfind("map", 0) == 0 || name == "set-map" || name == "del-map" || name == "add-acl" ||
         name == "del-acl";
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

// A unix socket address as haproxy reads one ("/path", "unix@path", a bare relative name without
// ':'), without its prefix; "" for anything else (host:port, abns@, ipv4@, fd@, stdout, ...).
std::string UnixSocketPath(const std::string& address) {
  if (address.rfind("unix@", 0) == 0) return address.substr(5);
  if (!address.empty() && address[0] == '/') return address;
  return "";
}

std::string UnixBindPath(const std::string& address) {
  std::string path = UnixSocketPath(address);
  if (!path.empty()) return path;
  // `stats socket stats.sock`: no prefix, no port: a path relative to where haproxy runs.
  if (!address.empty() && address.find('@') == std::string::npos &&
      address.find(':') == std::string::npos) {
    return address;
  }
  return "";
}

}  // namespace

std::string ResolvePath(const std::string& path, const std::string& base_dir) {
  if (path.empty()) return "";
  fs::path p(path);
  if (p.is_relative()) p = fs::path(base_dir) / p;
  std::error_code ec;
  fs::path resolved = fs::weakly_canonical(p, ec);
  if (ec) resolved = p.lexically_normal();
  return resolved.string();
}

std::vector<ConfigPath> ReadConfigPaths(std::string_view config, const std::string& config_dir) {
  struct Line {
    int number;
    std::vector<ConfigWord> words;
  };
  std::vector<Line> lines;
  std::string crt_base, ca_base, state_base;
  {
    std::string section;
    int number = 0;
    std::size_t pos = 0;
    while (pos < config.size()) {
      std::size_t nl = config.find('\n', pos);
      if (nl == std::string_view::npos) nl = config.size();
      std::vector<ConfigWord> words = SplitConfigLine(config.substr(pos, nl - pos));
      pos = nl + 1;
      ++number;
      if (words.empty() || words[0].text.empty()) continue;
      if (IsSectionKeyword(words[0].text)) section = words[0].text;
      if (section == "global" && words.size() > 1) {
        if (words[0].text == "crt-base") crt_base = words[1].text;
        if (words[0].text == "ca-base") ca_base = words[1].text;
        if (words[0].text == "server-state-base") state_base = words[1].text;
      }
      lines.push_back({number, std::move(words)});
    }
  }
  auto base_dir = [&](Base base) {
    const std::string& b = base == Base::kCrt ? crt_base : base == Base::kCa ? ca_base : "";
    return b.empty() ? config_dir : ResolvePath(b, config_dir);
  };

  std::vector<ConfigPath> out;
  auto add = [&](int line, std::string keyword, const ConfigWord& word, Use use,
                 const std::string& base, std::string path = "") {
    ConfigPath p;
    p.line = line;
    p.keyword = std::move(keyword);
    p.written = path.empty() ? word.text : path;
    p.use = use;
    if (!word.from_env) p.resolved = ResolvePath(p.written, base);
    out.push_back(std::move(p));
  };

  std::string section;
  for (const Line& line : lines) {
    const auto& w = line.words;
    const std::string& kw = w[0].text;
    if (IsSectionKeyword(kw)) {
      section = kw;
      continue;
    }
    const int n = line.number;
    if (section == "global") {
      auto g = GlobalFileKeywords().find(kw);
      if (g != GlobalFileKeywords().end() && w.size() > 1) add(n, kw, w[1], g->second, config_dir);
      if (kw == "server-state-file" && w.size() > 1) {
        // Relative to server-state-base when there is one (haproxy's rule).
        add(n, kw, w[1], Use::kState,
            state_base.empty() ? config_dir : ResolvePath(state_base, config_dir));
      }
      if (kw == "stats" && w.size() > 2 && w[1].text == "socket") {
        const std::string path = UnixBindPath(w[2].text);
        if (!path.empty() || w[2].from_env) {
          add(n, "stats socket", w[2], Use::kSocket, config_dir, path);
        }
      }
    }
    if (kw == "log" && w.size() > 1) {
      const std::string path = UnixSocketPath(w[1].text);
      if (!path.empty() || w[1].from_env) add(n, "log", w[1], Use::kLog, config_dir, path);
    }
    if (kw == "errorfile" && w.size() > 2) add(n, kw, w[2], Use::kRead, config_dir);
    if (kw == "bind" && w.size() > 1) {
      // A list of addresses, comma separated.
      std::string list = w[1].text;
      std::size_t start = 0;
      while (start <= list.size()) {
        std::size_t comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        const std::string path = UnixSocketPath(list.substr(start, comma - start));
        if (!path.empty()) add(n, "bind", w[1], Use::kSocket, config_dir, path);
        start = comma + 1;
      }
    }
    if ((kw == "server" && w.size() > 2) || (kw == "server-template" && w.size() > 3)) {
      const ConfigWord& address = w[kw == "server" ? 2 : 3];
      const std::string path = UnixSocketPath(address.text);
      if (!path.empty()) add(n, kw, address, Use::kConnect, config_dir, path);
    }
    for (std::size_t i = 1; i < w.size(); ++i) {
      const std::string& word = w[i].text;
      const ConfigWord* next = i + 1 < w.size() ? &w[i + 1] : nullptr;
      // Options that take a file (bind, server, default-server, stats socket).
      auto option = FileOptions().find(word);
      if (option != FileOptions().end() && next != nullptr &&
          (kw == "bind" || kw == "server" || kw == "default-server" || kw == "server-template" ||
           kw == "stats" || kw == "peer")) {
        add(n, kw + " " + word, *next, Use::kRead, base_dir(option->second));
      }
      // Pattern files of ACLs, inline conditions and their -M map form.
      if (word == "-f" && next != nullptr) add(n, kw + " -f", *next, Use::kRead, config_dir);
      // filter spoe ... config <file>; http-request/response return ... file|lf-file <file>
      if (kw == "filter" && word == "config" && next != nullptr) {
        add(n, "filter config", *next, Use::kRead, config_dir);
      }
      if ((word == "file" || word == "lf-file") && next != nullptr &&
          (kw == "http-request" || kw == "http-response" || kw == "http-after-response")) {
        add(n, kw + " " + word, *next, Use::kRead, config_dir);
      }
      // map(FILE), map_ip(FILE,default), set-map(FILE) ... anywhere in a word.
      for (std::size_t at = word.find('('); at != std::string::npos; at = word.find('(', at + 1)) {
        std::size_t name_start = at;
        while (name_start > 0 && IsNameChar(word[name_start - 1])) --name_start;
        const std::string name = word.substr(name_start, at - name_start);
        if (!TakesFileArgument(name)) continue;
        const std::size_t end = word.find_first_of(",)", at + 1);
        const std::string file =
            word.substr(at + 1, (end == std::string::npos ? word.size() : end) - at - 1);
        if (!file.empty()) add(n, name + "()", w[i], Use::kRead, config_dir, file);
      }
    }
    // Any other word that names an existing file: not a keyword this agent knows to read a
    // file, but haproxy's message about the line may still quote it (ReduceMessage).
    for (std::size_t i = 1; i < w.size(); ++i) {
      if (w[i].from_env) continue;
      std::string word = w[i].text;
      for (char& c : word) {
        if (c == '(' || c == ')' || c == ',' || c == '=' || c == '\'') c = ' ';
      }
      std::size_t start = 0;
      while (start < word.size()) {
        std::size_t end = word.find(' ', start);
        if (end == std::string::npos) end = word.size();
        const std::string piece = word.substr(start, end - start);
        start = end + 1;
        if (piece.find('/') == std::string::npos) continue;
        bool known = false;
        for (const auto& p : out) known = known || (p.line == n && p.written == piece);
        if (known) continue;
        const std::string resolved = ResolvePath(piece, config_dir);
        std::error_code ec;
        if (fs::is_regular_file(resolved, ec)) {
          out.push_back({n, "a word naming a file", piece, resolved, Use::kMention});
        }
      }
    }
  }
  return out;
}

Status CheckConfigPaths(const std::vector<ConfigPath>& paths,
                        const std::vector<std::string>& allowed) {
  std::vector<std::string> roots;
  for (const auto& a : allowed) {
    if (!a.empty()) roots.push_back(ResolvePath(a, "/"));
  }
  auto inside = [&](const std::string& path) {
    for (const auto& root : roots) {
      if (path == root) return true;
      const std::string prefix = root.back() == '/' ? root : root + "/";
      if (path.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  std::string list;
  for (const auto& r : roots) list += (list.empty() ? "" : ", ") + r;
  for (const ConfigPath& p : paths) {
    if (p.use == Use::kMention) continue;
    const std::string where =
        "line " + std::to_string(p.line) + ": " + p.keyword + " \"" + p.written + "\"";
    if (p.resolved.empty()) {
      return Status(ErrorCode::kInvalidConfig,
                    where +
                        " is built from an environment variable; a config may name files only "
                        "literally (SECURITY.md)");
    }
    if (p.use == Use::kLog && p.resolved == "/dev/log") continue;
    if (!inside(p.resolved)) {
      return Status(ErrorCode::kInvalidConfig,
                    where + " is " + p.resolved +
                        ", outside the directories a config may name ([security] "
                        "allowed_paths: " +
                        list + "); move the file there or allow its directory in lb-agent.cfg");
    }
  }
  return Status::Ok();
}

Status CheckPathTargets(const std::vector<ConfigPath>& paths) {
  for (const ConfigPath& p : paths) {
    if (p.resolved.empty()) continue;
    struct stat st {};
    if (lstat(p.resolved.c_str(), &st) != 0) continue;  // nothing there yet
    const std::string where = "line " + std::to_string(p.line) + ": " + p.keyword + " \"" +
                              p.written + "\" (" + p.resolved + ")";
    switch (p.use) {
      case Use::kState: {
        bool ours = S_ISREG(st.st_mode);
        if (ours && st.st_size > 0) {
          std::ifstream in(p.resolved, std::ios::binary);
          char head[10] = {};
          in.read(head, sizeof head);
          ours = std::string_view(head, static_cast<std::size_t>(in.gcount()))
                     .rfind("1\n# be_id", 0) == 0;
        }
        if (!ours) {
          return Status(ErrorCode::kInvalidConfig,
                        where +
                            " exists and is not a server-state file: the agent writes that "
                            "file before every reload and replaces only its own");
        }
        break;
      }
      case Use::kSocket:
        if (!S_ISSOCK(st.st_mode)) {
          return Status(ErrorCode::kInvalidConfig,
                        where + " exists and is not a socket: haproxy would replace it");
        }
        break;
      case Use::kPid:
        if (!S_ISREG(st.st_mode)) {
          return Status(ErrorCode::kInvalidConfig,
                        where + " exists and is not a regular file: haproxy would replace it");
        }
        break;
      default:
        break;
    }
  }
  return Status::Ok();
}

std::string ReduceMessage(const std::string& line, const std::string& display_name,
                          const std::vector<ConfigPath>& paths) {
  // "[LEVEL]   (pid) : " prefix kept as it is.
  const std::size_t level_end = line.find(']');
  const std::string level = line.rfind("[", 0) == 0 && level_end != std::string::npos
                                ? line.substr(0, level_end + 1)
                                : "";
  // Every "[FILE:N]" location in the message.
  std::size_t pos = 0;
  int config_line = 0;
  while ((pos = line.find('[', pos)) != std::string::npos) {
    const std::size_t close = line.find(']', pos);
    if (close == std::string::npos) break;
    const std::string inner = line.substr(pos + 1, close - pos - 1);
    pos = close;
    const std::size_t colon = inner.rfind(':');
    if (colon == std::string::npos || colon + 1 >= inner.size()) continue;
    const std::string file = inner.substr(0, colon);
    const std::string number = inner.substr(colon + 1);
    if (number.find_first_not_of("0123456789") != std::string::npos) continue;
    // A file location ("parsing [x.cfg:3]", "[/etc/x:3]"), not an address ("[127.0.0.1:80]").
    const std::size_t open = close - inner.size() - 1;
    const bool parsing = open >= 8 && line.compare(open - 8, 8, "parsing ") == 0;
    if (file != display_name) {
      if (IsIpLiteral(file)) continue;
      if (!parsing && file.find('/') == std::string::npos) continue;
    }
    if (file == display_name) {
      config_line = std::stoi(number.substr(0, 9));
      continue;
    }
    // A message located in another file quotes that file's line.
    return level + " " + file + " line " + number +
           " is invalid (haproxy's message is withheld: it quotes that file)";
  }
  if (config_line == 0) return line;
  std::string named;
  for (const ConfigPath& p : paths) {
    if (p.line != config_line) continue;
    named += (named.empty() ? "" : ", ") + p.keyword + " \"" + p.written + "\"";
  }
  if (named.empty()) return line;
  // "... at line 3 of file '/etc/x'" says where the file is wrong.
  std::string detail;
  const std::size_t at = line.find(" at line ");
  const std::size_t of = at == std::string::npos ? std::string::npos : line.find(" of file '", at);
  if (of != std::string::npos) {
    const std::string number = line.substr(at + 9, of - at - 9);
    const std::size_t end = line.find('\'', of + 10);
    if (end != std::string::npos && number.find_first_not_of("0123456789") == std::string::npos) {
      detail = ": " + line.substr(of + 10, end - of - 10) + " line " + number + " is invalid";
    }
  }
  return level + " parsing [" + display_name + ":" + std::to_string(config_line) +
         "] : haproxy refused this line, which names " + named + detail +
         " (haproxy's message is withheld: it may quote the file)";
}

}  // namespace lb::agent
