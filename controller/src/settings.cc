#include "settings.h"

#include <unistd.h>

#include "etcd_client.h"
#include "lb/common/curve_certificate.h"
#include "lb/common/endpoint.h"
#include "lb/common/file.h"
#include "lb/common/ini_schema.h"
#include "lb/proto/fleet.h"

namespace lb::controller {
namespace {

using common::IniSchema;
using common::IniSetter;
using proto::ErrorCode;
using proto::Result;
using proto::Status;
using S = ControllerSettings;

IniSetter<S> EndpointKey(std::string S::*field) {
  return [field](const std::string& v, S* s) {
    if (v.find("://") == std::string::npos) {
      return "expected a ZeroMQ endpoint such as tcp://127.0.0.1:5557 or ipc:///run/x.sock, got "
             "\"" +
             v + "\"";
    }
    s->*field = v;
    return std::string();
  };
}

IniSchema<S> KnownKeys(const std::string& base_dir) {
  IniSchema<S> keys;
  auto& c = keys["controller"];
  c["id"] = [](const std::string& v, S* s) {
    if (v.empty()) return std::string();  // the host name
    if (!proto::IsValidFleetName(v)) {
      return "\"" + v + "\" is not a name: 1 to 255 bytes, no '/', no control characters";
    }
    s->id = v;
    return std::string();
  };
  c["pub"] = EndpointKey(&S::pub_endpoint);
  c["router"] = EndpointKey(&S::router_endpoint);
  c["control"] = EndpointKey(&S::control_endpoint);
  c["state_dir"] = common::PathKey<S>([](S* s) { return &s->state_dir; }, base_dir);
  c["beacon_interval"] = common::SecondsKey<S>([](S* s) { return &s->beacon_interval; });
  c["log_level"] = common::LogLevelKey<S>([](S* s) { return &s->log_level; });
  auto& sec = keys["security"];
  sec["curve_secret_key"] =
      common::OptionalPathKey<S>([](S* s) { return &s->curve_secret_key; }, base_dir);
  sec["curve_clients"] =
      common::OptionalPathKey<S>([](S* s) { return &s->curve_clients; }, base_dir);
  sec["agent_keys"] = common::OptionalPathKey<S>([](S* s) { return &s->agent_keys; }, base_dir);
  sec["allow_insecure"] = common::BoolKey<S>([](S* s) { return &s->allow_insecure; });
  auto& store = keys["store"];
  store["etcd_endpoints"] = [](const std::string& v, S* s) {
    s->etcd_endpoints = common::SplitEndpoints(v);
    for (const auto& endpoint : s->etcd_endpoints) {
      if (auto parsed = ParseEtcdEndpoint(endpoint); !parsed.ok()) {
        return parsed.status().message();
      }
    }
    return std::string();
  };
  store["etcd_ca_file"] =
      common::OptionalPathKey<S>([](S* s) { return &s->etcd_ca_file; }, base_dir);
  store["etcd_cert_file"] =
      common::OptionalPathKey<S>([](S* s) { return &s->etcd_cert_file; }, base_dir);
  store["etcd_key_file"] =
      common::OptionalPathKey<S>([](S* s) { return &s->etcd_key_file; }, base_dir);
  store["etcd_prefix"] = [](const std::string& v, S* s) {
    if (v.empty() || v.front() != '/' || v.back() != '/') {
      return "expected a key prefix that starts and ends with '/', such as /lb-controller/, got "
             "\"" +
             v + "\"";
    }
    s->etcd_prefix = v;
    return std::string();
  };
  // etcd grants whole seconds; below 2 a busy leader would lose its lease to a hiccup, and
  // above 10 a failover would take too long to be worth the name.
  store["lease_ttl"] = common::IntKey<S>([](S* s) { return &s->lease_ttl_s; }, 2, 10);
  store["etcd_timeout"] = common::SecondsKey<S>([](S* s) { return &s->etcd_timeout; });
  return keys;
}

}  // namespace

std::string DefaultControllerId() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "lb-controller";
  return proto::IsValidFleetName(host) ? std::string(host) : "lb-controller";
}

Result<ControllerSettings> ParseControllerSettings(std::string_view text, const std::string& origin,
                                                   const std::string& base_dir) {
  ControllerSettings settings;
  settings.path = origin;
  if (Status s =
          common::ApplyIni(text, origin, KnownKeys(base_dir), "etc/lb-controller.cfg", &settings);
      !s.ok()) {
    return s;
  }
  if (auto ini = common::ParseIni(text, origin); ini.ok()) {
    settings.file_values = common::IniValues(*ini);
  }
  if (settings.id.empty()) settings.id = DefaultControllerId();
  auto problem = [&](const std::string& what) {
    return Status(ErrorCode::kBadRequest, origin + ": [security] " + what);
  };
  if (settings.curve() && settings.curve_clients.empty()) {
    return problem("curve_secret_key needs curve_clients, the agents' public keys it accepts");
  }
  if (!settings.curve() && !settings.curve_clients.empty()) {
    return problem("curve_clients needs curve_secret_key, the controller's secret certificate");
  }
  if (settings.curve() && settings.allow_insecure) {
    return problem("allow_insecure is for serving without CURVE, and curve_secret_key turns it on");
  }
  if (!settings.curve() && !settings.agent_keys.empty()) {
    return problem("agent_keys pins agent ids to CURVE keys: it needs curve_secret_key");
  }
  return settings;
}

Result<ControllerSettings> LoadControllerSettings(const std::string& path) {
  Result<common::SettingsText> file = common::ReadSettingsFile(path);
  if (!file.ok()) return file.status();
  return ParseControllerSettings(file->text, path, file->base_dir);
}

Result<std::map<std::string, std::string>> ParseAgentKeys(std::string_view text,
                                                          const std::string& origin) {
  std::map<std::string, std::string> keys;
  int number = 0;
  while (!text.empty()) {
    ++number;
    const size_t end = text.find('\n');
    std::string line(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const std::string where = origin + ":" + std::to_string(number) + ": ";
    const size_t id_end = line.find_first_of(" \t", first);
    const size_t key_start =
        id_end == std::string::npos ? std::string::npos : line.find_first_not_of(" \t", id_end);
    if (key_start == std::string::npos) {
      return Status(ErrorCode::kBadRequest, where + "expected \"<agent id> <public key>\"");
    }
    const std::string id = line.substr(first, id_end - first);
    const size_t key_end = line.find_first_of(" \t\r", key_start);
    const std::string key = line.substr(key_start, key_end - key_start);
    if (!proto::IsValidFleetName(id)) {
      return Status(ErrorCode::kBadRequest, where + "\"" + id + "\" is not an agent id");
    }
    if (!common::IsZ85Key(key)) {
      return Status(
          ErrorCode::kBadRequest,
          where + "not a CURVE public key (40 Z85 characters): \"" + key.substr(0, 60) + "\"");
    }
    if (!keys.emplace(id, key).second) {
      return Status(ErrorCode::kBadRequest, where + "agent " + id + " is listed twice");
    }
  }
  return keys;
}

Result<std::map<std::string, std::string>> ReadAgentKeys(const std::string& path) {
  Result<std::string> text = common::ReadSmallFile(path, 64 * 1024 * 1024);
  if (!text.ok()) return text.status();
  return ParseAgentKeys(*text, path);
}

}  // namespace lb::controller
