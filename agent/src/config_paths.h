// ConfigPaths: every file and socket an HAProxy config names, and the policy that keeps a pushed
// config inside the directories the operator allowed (SECURITY.md, "Files a config may name").
//
// DESIGN: whoever may send (or only validate) a config must not be able to make haproxy or the
// agent read, quote back or overwrite a file elsewhere: `haproxy -c` quotes the files a config
// points at in its messages, the agent writes the server-state file the config names, and the
// worker replaces whatever sits at a `stats socket` path with a socket. So every keyword of
// haproxy 2.6 that names a file, a directory or a socket is read here (ReadConfigPaths), each
// path resolved as haproxy would (relative to the config's directory, crt-base or ca-base,
// after `..` and symlinks) and checked against [security] allowed_paths before `haproxy -c`
// runs (CheckConfigPaths); what already exists at a path the agent or haproxy would write must
// be of the kind expected (CheckPathTargets). haproxy's own messages about a line that names a
// file are then reduced to "PATH line N is invalid", without what it quotes (ReduceMessage).
// Pure but for the filesystem reads of resolution and CheckPathTargets.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lb/proto/status.h"

namespace lb::agent {

struct ConfigPath {
  enum class Use {
    kRead,     // a file haproxy (or haproxy -c) reads: maps, ACL files, certificates, errorfiles
    kDir,      // a directory: chroot, crt-base, ca-base, server-state-base
    kState,    // the server-state file, which the agent itself writes before a reload
    kPid,      // a pid file haproxy writes
    kSocket,   // a unix socket haproxy binds (stats socket, bind)
    kLog,      // a unix socket haproxy sends log lines to
    kConnect,  // a unix socket haproxy connects to (a server's address)
    kMention   // any other word that names an existing file (messages about it are reduced;
               // the policy does not judge it)
  };
  int line = 0;          // 1-based
  std::string keyword;   // what names it ("errorfile", "acl -f", "map_ip()", "stats socket")
  std::string written;   // as the config writes it
  std::string resolved;  // absolute, `..` and symlinks resolved (as far as the path exists)
  Use use = Use::kRead;
};

// Every path `config` names; relative ones resolved against `config_dir` (where the agent runs
// `haproxy -c` and managed haproxy), or crt-base / ca-base for certificates and CA files.
// Words built from environment variables are listed with `resolved` empty.
std::vector<ConfigPath> ReadConfigPaths(std::string_view config, const std::string& config_dir);

// `dir` resolved the same way (absolute, symlinks followed as far as it exists).
std::string ResolvePath(const std::string& path, const std::string& base_dir);

// invalid_config naming the line, the keyword, the path and the rule when a path resolves
// outside every directory of `allowed` (resolved with ResolvePath; a path equal to one of them
// is inside), or comes from an environment variable. `/dev/log` is always allowed as a log
// target (the system log's socket).
proto::Status CheckConfigPaths(const std::vector<ConfigPath>& paths,
                               const std::vector<std::string>& allowed);

// invalid_config when something that exists at a path the agent or haproxy would write is not
// what they may replace: a state file must be a regular file that reads like a server-state file
// (the agent's own), a socket path must hold a socket, a pid file a regular file. Reads the
// filesystem (lstat, and the first bytes of a state file).
proto::Status CheckPathTargets(const std::vector<ConfigPath>& paths);

// One line of haproxy's output about the config named `display_name`, reduced so that it quotes
// no other file: a message located in another file ("parsing [/etc/x:3]") becomes
// "/etc/x line 3 is invalid", and a message about a line of the config that names a file keeps
// its location and says which file, without haproxy's words (which may quote its content).
// Other lines come back unchanged.
std::string ReduceMessage(const std::string& line, const std::string& display_name,
                          const std::vector<ConfigPath>& paths);

}  // namespace lb::agent
