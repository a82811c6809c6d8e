#include "lb/common/settings.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <system_error>
#include <type_traits>

#include "lb/common/file.h"
#include "lb/common/ini_schema.h"
#include "lb/proto/fleet.h"

namespace lb::common {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

using Setter = IniSetter<Settings>;

// proto::IsValidFleetName, in words.
constexpr std::string_view kNameRule = "1 to 255 bytes, no '/', no control characters";

// A program: a bare name is looked up in PATH now, so that a missing binary is reported at
// start-up; a name with a '/' is relative to the settings file's directory.
template <typename F>
Setter ProgramKey(F field, const std::string& base_dir) {
  return [field, base_dir](const std::string& v, Settings* s) {
    if (v.empty()) return std::string("must not be empty");
    std::string resolved;
    if (v.find('/') == std::string::npos) {
      const char* path = std::getenv("PATH");
      std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
      dirs += ":/usr/local/sbin:/usr/sbin:/sbin";
      std::size_t start = 0;
      while (resolved.empty() && start <= dirs.size()) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        std::string candidate = dirs.substr(start, end - start) + "/" + v;
        if (end > start && access(candidate.c_str(), X_OK) == 0) resolved = candidate;
        start = end + 1;
      }
      if (resolved.empty()) return "\"" + v + "\" not found in PATH";
    } else {
      std::filesystem::path p(v);
      resolved =
          p.is_absolute() ? v : (std::filesystem::path(base_dir) / p).lexically_normal().string();
      if (access(resolved.c_str(), X_OK) != 0) return resolved + " is not an executable file";
    }
    *field(s) = resolved;
    return std::string();
  };
}

// Words of a list value, separated by commas, spaces or tabs.
std::vector<std::string> SplitList(const std::string& value) {
  std::vector<std::string> out;
  std::string current;
  for (char c : value + ",") {
    if (c == ',' || c == ' ' || c == '\t') {
      if (!current.empty()) out.push_back(current);
      current.clear();
      continue;
    }
    current += c;
  }
  return out;
}

IniSchema<Settings> KnownKeys(const std::string& base_dir) {
  IniSchema<Settings> keys;
  auto& b = keys["lb-agent"];
  b["host"] = StringKey<Settings>([](Settings* s) { return &s->bridge.host; });
  b["port"] = IntKey<Settings>([](Settings* s) { return &s->bridge.port; }, 0, 65535);
  b["agent_timeout"] = SecondsKey<Settings>([](Settings* s) { return &s->bridge.agent_timeout; });
  b["instance_prefix"] =
      StringKey<Settings>([](Settings* s) { return &s->bridge.instance_prefix; });
  b["command_endpoint"] =
      StringKey<Settings>([](Settings* s) { return &s->agent.command_endpoint; });
  b["max_config_bytes"] =
      IntKey<Settings>([](Settings* s) { return &s->agent.max_config_bytes; }, 1024, 1LL << 30);
  b["max_connections"] =
      IntKey<Settings>([](Settings* s) { return &s->agent.max_connections; }, 1, 1000000);
  b["history_dir"] = PathKey<Settings>([](Settings* s) { return &s->agent.history_dir; }, base_dir);
  b["history_keep"] =
      IntKey<Settings>([](Settings* s) { return &s->agent.history_keep; }, 0, 10000);
  b["query_threads"] = IntKey<Settings>([](Settings* s) { return &s->agent.query_threads; }, 1, 64);

  b["event_endpoint"] = StringKey<Settings>([](Settings* s) { return &s->agent.event_endpoint; });
  b["agent_id"] = StringKey<Settings>([](Settings* s) { return &s->agent.agent_id; });
  b["poll_interval"] = SecondsKey<Settings>([](Settings* s) { return &s->agent.poll_interval; });
  b["heartbeat_interval"] =
      SecondsKey<Settings>([](Settings* s) { return &s->agent.heartbeat_interval; });
  b["event_hwm"] = IntKey<Settings>([](Settings* s) { return &s->agent.event_hwm; }, 1, 10000000);
  b["log_level"] = LogLevelKey<Settings>([](Settings* s) { return &s->log_level; });
  b["log_listener"] = [base_dir](const std::string& v, Settings* s) {
    if (v.empty() || v.rfind("udp@", 0) == 0 || v[0] == '/') {
      s->agent.log_listener = v;
    } else {
      s->agent.log_listener = (std::filesystem::path(base_dir) / v).lexically_normal().string();
    }
    return std::string();
  };

  auto& f = keys["fleet"];
  f["controller_pub"] = StringKey<Settings>([](Settings* s) { return &s->fleet.controller_pub; });
  f["controller_router"] =
      StringKey<Settings>([](Settings* s) { return &s->fleet.controller_router; });
  f["state_file"] = PathKey<Settings>([](Settings* s) { return &s->fleet.state_file; }, base_dir);
  f["beacon_timeout"] = SecondsKey<Settings>([](Settings* s) { return &s->fleet.beacon_timeout; });
  f["controller_public_key"] = OptionalPathKey<Settings>(
      [](Settings* s) { return &s->fleet.controller_public_key; }, base_dir);
  f["groups"] = [](const std::string& v, Settings* s) {
    s->fleet.groups.clear();
    std::string current;
    for (char c : v + ",") {
      if (c == ',' || c == ' ' || c == '\t') {
        if (current.empty()) continue;
        if (!proto::IsValidFleetName(current)) {
          return "group \"" + current + "\" is not a name: " + std::string(kNameRule);
        }
        s->fleet.groups.push_back(current);
        current.clear();
        continue;
      }
      current += c;
    }
    return std::string();
  };
  f["hello_interval"] = SecondsKey<Settings>([](Settings* s) { return &s->fleet.hello_interval; });

  auto& sec = keys["security"];
  // Directories a config may name files in: absolute paths, space or comma separated.
  sec["allowed_paths"] = [base_dir](const std::string& v, Settings* s) {
    s->security.allowed_paths.clear();
    for (const std::string& word : SplitList(v)) {
      if (word.empty() || word[0] != '/') {
        return "\"" + word + "\" is not an absolute directory";
      }
      s->security.allowed_paths.push_back(word);
    }
    (void)base_dir;
    return std::string();
  };
  // NAME (passed from the agent's environment) or NAME=VALUE, space separated.
  sec["config_environment"] = [](const std::string& v, Settings* s) {
    s->security.config_environment.clear();
    for (const std::string& word : SplitList(v)) {
      const std::string name = word.substr(0, word.find('='));
      if (name.empty() ||
          name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789_") != std::string::npos ||
          (name[0] >= '0' && name[0] <= '9')) {
        return "\"" + word + "\" is not NAME or NAME=VALUE (a variable name: letters, digits, _)";
      }
      s->security.config_environment.push_back(word);
    }
    return std::string();
  };
  sec["curve_secret_key"] = OptionalPathKey<Settings>(
      [](Settings* s) { return &s->security.curve_secret_key; }, base_dir);
  sec["curve_clients"] =
      OptionalPathKey<Settings>([](Settings* s) { return &s->security.curve_clients; }, base_dir);
  sec["allow_insecure"] =
      BoolKey<Settings>([](Settings* s) { return &s->security.allow_insecure; });
  sec["allow_programs"] =
      BoolKey<Settings>([](Settings* s) { return &s->security.allow_programs; });
  sec["bridge_curve_secret_key"] = OptionalPathKey<Settings>(
      [](Settings* s) { return &s->security.bridge_curve_secret_key; }, base_dir);
  sec["agent_public_key"] = OptionalPathKey<Settings>(
      [](Settings* s) { return &s->security.agent_public_key; }, base_dir);
  sec["bridge_tokens_file"] = OptionalPathKey<Settings>(
      [](Settings* s) { return &s->security.bridge_tokens_file; }, base_dir);
  sec["bridge_tls_cert"] =
      OptionalPathKey<Settings>([](Settings* s) { return &s->security.bridge_tls_cert; }, base_dir);
  sec["bridge_tls_key"] =
      OptionalPathKey<Settings>([](Settings* s) { return &s->security.bridge_tls_key; }, base_dir);

  auto& h = keys["haproxy"];
  h["config_file_path"] =
      PathKey<Settings>([](Settings* s) { return &s->haproxy.config_file_path; }, base_dir);
  h["default_backend"] =
      StringKey<Settings>([](Settings* s) { return &s->haproxy.default_backend; });
  // A unix socket path (relative: to this file's directory) or host:port.
  h["socket_path"] = [base_dir](const std::string& v, Settings* s) {
    const bool host_port = v.find('/') == std::string::npos && v.find(':') != std::string::npos;
    if (v.empty() || host_port || v[0] == '/') {
      s->haproxy.socket_path = v;
    } else {
      s->haproxy.socket_path = (std::filesystem::path(base_dir) / v).lexically_normal().string();
    }
    return std::string();
  };
  h["socket_buffer_size"] = IntKey<Settings>(
      [](Settings* s) { return &s->haproxy.socket_buffer_size; }, 512, 16 * 1024 * 1024);
  h["socket_timeout"] =
      SecondsKey<Settings>([](Settings* s) { return &s->haproxy.socket_timeout; });
  h["systemv_init_path"] = [base_dir](const std::string& v, Settings* s) {
    s->haproxy.systemv_init_path =
        v.empty() || v[0] == '/'
            ? v
            : (std::filesystem::path(base_dir) / v).lexically_normal().string();
    return std::string();
  };
  h["systemd_service_name"] =
      StringKey<Settings>([](Settings* s) { return &s->haproxy.systemd_service_name; });
  h["sytemd_service_name"] = h["systemd_service_name"];  // the 2015 README's spelling
  h["systemctl_path"] = StringKey<Settings>([](Settings* s) { return &s->haproxy.systemctl_path; });
  h["haproxy_binary"] =
      ProgramKey([](Settings* s) { return &s->haproxy.haproxy_binary; }, base_dir);
  h["master_socket"] =
      PathKey<Settings>([](Settings* s) { return &s->haproxy.master_socket; }, base_dir);
  h["pid_file"] = PathKey<Settings>([](Settings* s) { return &s->haproxy.pid_file; }, base_dir);
  h["validate_timeout"] =
      SecondsKey<Settings>([](Settings* s) { return &s->haproxy.validate_timeout; });
  h["reload_timeout"] =
      SecondsKey<Settings>([](Settings* s) { return &s->haproxy.reload_timeout; });
  h["stats_via_master"] =
      BoolKey<Settings>([](Settings* s) { return &s->haproxy.stats_via_master; });
  h["stop_haproxy_on_exit"] =
      BoolKey<Settings>([](Settings* s) { return &s->haproxy.stop_haproxy_on_exit; });
  h["save_server_state"] =
      BoolKey<Settings>([](Settings* s) { return &s->haproxy.save_server_state; });
  h["runtime_updates"] = BoolKey<Settings>([](Settings* s) { return &s->haproxy.runtime_updates; });
  h["runtime_drain_timeout"] =
      SecondsKey<Settings>([](Settings* s) { return &s->haproxy.runtime_drain_timeout; });
  h["reload_method"] = [](const std::string& v, Settings* s) {
    static const std::map<std::string, ReloadMethod> kMethods = {
        {"managed", ReloadMethod::kManaged},
        {"master", ReloadMethod::kMaster},
        {"systemd", ReloadMethod::kSystemd},
        {"sysv", ReloadMethod::kSysv}};
    auto it = kMethods.find(v);
    if (it == kMethods.end()) return std::string("expected managed, master, systemd or sysv");
    s->haproxy.reload_method = it->second;
    return std::string();
  };
  return keys;
}

}  // namespace

std::string_view ReloadMethodName(ReloadMethod method) {
  switch (method) {
    case ReloadMethod::kManaged:
      return "managed";
    case ReloadMethod::kMaster:
      return "master";
    case ReloadMethod::kSystemd:
      return "systemd";
    case ReloadMethod::kSysv:
      return "sysv";
  }
  return "managed";
}

Result<Settings> ParseSettings(std::string_view text, const std::string& origin,
                               const std::string& base_dir) {
  Settings settings;
  settings.path = origin;
  IniSchema<Settings> schema = KnownKeys(base_dir);
  // The 2015 agent chose the method by which key was set; an explicit reload_method wins.
  bool method_given = false;
  IniSetter<Settings> set_method = schema["haproxy"]["reload_method"];
  schema["haproxy"]["reload_method"] = [&](const std::string& v, Settings* s) {
    method_given = true;
    return set_method(v, s);
  };
  if (Status s = ApplyIni(text, origin, schema, "etc/lb-agent.cfg", &settings); !s.ok()) return s;
  if (auto ini = ParseIni(text, origin); ini.ok()) settings.file_values = IniValues(*ini);
  if (!method_given) {
    // The 2015 agent chose by which key was set; keep that for its files.
    if (!settings.haproxy.systemd_service_name.empty()) {
      settings.haproxy.reload_method = ReloadMethod::kSystemd;
    } else if (!settings.haproxy.systemv_init_path.empty()) {
      settings.haproxy.reload_method = ReloadMethod::kSysv;
    }
  }
  auto problem = [&](const std::string& what) {
    return Status(ErrorCode::kBadRequest, origin + ": [haproxy] " + what);
  };
  const auto& h = settings.haproxy;
  if (h.reload_method == ReloadMethod::kSystemd && h.systemd_service_name.empty()) {
    return problem("reload_method = systemd needs systemd_service_name");
  }
  if (h.reload_method == ReloadMethod::kSysv && h.systemv_init_path.empty()) {
    return problem("reload_method = sysv needs systemv_init_path");
  }
  if (h.default_backend.empty()) return problem("default_backend must not be empty");
  if (settings.agent.agent_id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    settings.agent.agent_id = host[0] ? host : "lb-agent";
  }
  if (settings.fleet.enabled() != !settings.fleet.controller_router.empty()) {
    return Status(ErrorCode::kBadRequest,
                  origin + ": [fleet] needs both controller_pub and controller_router");
  }
  if (!proto::IsValidFleetName(settings.agent.agent_id)) {
    return Status(ErrorCode::kBadRequest, origin + ": [lb-agent] agent_id \"" +
                                              settings.agent.agent_id +
                                              "\" is not a name: " + std::string(kNameRule));
  }
  auto& security = settings.security;
  auto security_problem = [&](const std::string& what) {
    return Status(ErrorCode::kBadRequest, origin + ": [security] " + what);
  };
  if (security.curve() && security.curve_clients.empty()) {
    return security_problem(
        "curve_secret_key needs curve_clients, the allow-list of client public keys");
  }
  if (!security.curve() && !security.curve_clients.empty()) {
    return security_problem("curve_clients is set but curve_secret_key is not");
  }
  if (security.bridge_tls_cert.empty() != security.bridge_tls_key.empty()) {
    return security_problem("bridge_tls_cert and bridge_tls_key go together");
  }
  if (security.agent_public_key.empty() && security.curve()) {
    std::string derived = security.curve_secret_key;
    const std::string suffix = "_secret";
    if (derived.size() > suffix.size() &&
        derived.compare(derived.size() - suffix.size(), suffix.size(), suffix) == 0) {
      security.agent_public_key = derived.substr(0, derived.size() - suffix.size());
    }
  }
  // The bridge accepts exactly the configs the agent accepts (the agent answers too_large).
  settings.bridge.max_body_bytes = settings.agent.max_config_bytes;
  return settings;
}

std::vector<std::string> CheckBridgeFiles(const Settings& settings) {
  std::vector<std::string> problems;
  const SecuritySettings& security = settings.security;
  const std::string where = settings.path + ": [security] ";
  if (!security.bridge_tokens_file.empty()) {
    if (Status s = CheckSecretFile(security.bridge_tokens_file); !s.ok()) {
      problems.push_back(where + "bridge_tokens_file " + s.message() + " (lb-bridge refuses it)");
    }
  }
  const std::pair<const char*, const std::string*> files[] = {
      {"bridge_curve_secret_key", &security.bridge_curve_secret_key},
      {"agent_public_key", &security.agent_public_key},
      {"bridge_tls_cert", &security.bridge_tls_cert},
      {"bridge_tls_key", &security.bridge_tls_key}};
  for (const auto& [key, path] : files) {
    if (path->empty()) continue;
    std::error_code ec;
    const auto type = std::filesystem::status(*path, ec).type();
    if (type != std::filesystem::file_type::regular) {
      const std::string problem = type == std::filesystem::file_type::not_found ? "does not exist"
                                  : ec                                          ? ec.message()
                                       : "not a regular file";
      problems.push_back(where + key + " " + *path + ": " + problem + " (lb-bridge refuses it)");
    }
  }
  return problems;
}

Result<Settings> LoadSettings(const std::string& path) {
  Result<SettingsText> file = ReadSettingsFile(path);
  if (!file.ok()) return file.status();
  return ParseSettings(file->text, path, file->base_dir);
}

}  // namespace lb::common
