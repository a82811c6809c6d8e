#include "socket_security.h"

#include <nlohmann/json.hpp>

#include "lb/common/endpoint.h"
#include "lb/common/log.h"

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

Status Refuse(const std::string& message) { return Status(ErrorCode::kBadRequest, message); }

}  // namespace

Result<std::vector<std::string>> CheckSocketPolicy(const common::Settings& settings) {
  const auto& sec = settings.security;
  std::vector<std::string> warnings;
  std::vector<std::pair<std::string, std::string>> servers = {
      {"command_endpoint", settings.agent.command_endpoint},
      {"event_endpoint", settings.agent.event_endpoint}};
  if (!sec.curve()) {
    for (const auto& [key, endpoint] : servers) {
      if (common::IsLocalEndpoint(endpoint)) continue;
      if (!sec.allow_insecure) {
        return Refuse("refusing to bind " + key + " = " + endpoint +
                      " without authentication: anyone who reaches it could " +
                      (key == "command_endpoint" ? "replace the HAProxy config"
                                                 : "read every backend change") +
                      ". Turn CURVE on ([security] curve_secret_key and curve_clients, see "
                      "SECURITY.md), bind to 127.0.0.1 or ipc://, or set [security] "
                      "allow_insecure = yes");
      }
      warnings.push_back(
          "WARNING: " + key + " " + endpoint +
          " is reachable from other hosts WITHOUT authentication (allow_insecure "
          "= yes): anyone who reaches it can " +
          (key == "command_endpoint" ? "replace the HAProxy config" : "read every backend change"));
    }
    warnings.push_back(
        "CURVE is off: any local process that can reach the command socket can replace the "
        "HAProxy config (SECURITY.md explains how to turn it on)");
  }
  const auto& fleet = settings.fleet;
  if (fleet.enabled()) {
    if (fleet.controller_public_key.empty()) {
      std::vector<std::string> endpoints = common::SplitEndpoints(fleet.controller_pub);
      for (auto& router : common::SplitEndpoints(fleet.controller_router)) {
        endpoints.push_back(std::move(router));
      }
      for (const auto& endpoint : endpoints) {
        if (common::IsLocalEndpoint(endpoint)) continue;
        if (!sec.allow_insecure) {
          return Refuse("refusing to follow the fleet controller at " + endpoint +
                        " without its public key: anyone on the path could push a config. Set "
                        "[fleet] controller_public_key (SECURITY.md), or [security] "
                        "allow_insecure = yes");
        }
        warnings.push_back("WARNING: the fleet controller " + endpoint +
                           " is not authenticated (allow_insecure = yes): anyone on the path "
                           "can push a config");
      }
    } else if (!sec.curve()) {
      return Refuse(
          "[fleet] controller_public_key needs [security] curve_secret_key: this agent's own "
          "key pair, which the controller allow-lists");
    }
  }
  return warnings;
}

Result<std::unique_ptr<SocketSecurity>> SocketSecurity::SetUp(zmq::context_t& context,
                                                              const common::Settings& settings,
                                                              common::ZapHandler::LogFn log,
                                                              std::size_t max_connections) {
  Result<std::vector<std::string>> warnings = CheckSocketPolicy(settings);
  if (!warnings.ok()) return warnings.status();
  std::unique_ptr<SocketSecurity> security(new SocketSecurity());
  security->warnings_ = std::move(*warnings);
  const auto& sec = settings.security;
  security->gate_ = std::make_unique<common::ConnectionGate>(context, max_connections);
  common::ZapHandler::AdmitFn admit = [gate = security->gate_.get()](const std::string& domain) {
    return gate->Admit(domain);
  };
  if (sec.curve()) {
    auto own = common::ReadCertificate(sec.curve_secret_key, /*need_secret=*/true);
    if (!own.ok()) return Refuse("[security] curve_secret_key: " + own.status().message());
    security->own_ = *own;
    security->curve_ = true;
  }
  auto zap = common::ZapHandler::Start(context, sec.curve() ? sec.curve_clients : "",
                                       std::move(log), std::move(admit));
  if (!zap.ok()) return Refuse("[security] curve_clients: " + zap.status().message());
  security->zap_ = std::move(*zap);
  if (!settings.fleet.controller_public_key.empty()) {
    auto controller = common::ReadCertificate(settings.fleet.controller_public_key, false);
    if (!controller.ok()) {
      return Refuse("[fleet] controller_public_key: " + controller.status().message());
    }
    security->controller_key_ = controller->public_key;
  }
  return security;
}

common::SocketSetup SocketSecurity::Server(std::string domain) const {
  return [this, domain = std::move(domain)](zmq::socket_ref socket) {
    if (Status watched = gate_->Watch(socket, domain); !watched.ok()) {
      common::Log(
          common::LogLevel::kWarning,
          domain + ": connections are not counted (no max_connections): " + watched.message());
    }
    // A handshake refused by ZAP leaves the connection open until the peer closes it or this
    // runs out; so does a peer that never finishes its greeting.
    socket.set(zmq::sockopt::handshake_ivl, 3000);
    if (curve_) {
      common::MakeCurveServer(socket, own_, *zap_, domain);
    } else {
      // A plaintext socket with a ZAP domain has its NULL handshakes decided by the handler.
      socket.set(zmq::sockopt::zap_domain, domain);
    }
  };
}

common::SocketSetup SocketSecurity::FleetClient() const {
  if (controller_key_.empty()) return {};
  return [this](zmq::socket_ref socket) { common::MakeCurveClient(socket, own_, controller_key_); };
}

nlohmann::json SocketSecurity::Info() const {
  nlohmann::json info = {{"curve", curve_}, {"fleet_curve", !controller_key_.empty()}};
  info["connections"] = {{"max", gate_->cap()},
                         {"command", gate_->open("lb-agent-commands")},
                         {"events", gate_->open("lb-agent-events")},
                         {"refused", zap_->refused_busy()}};
  if (curve_) {
    info["public_key"] = own_.public_key;
    info["clients_accepted"] = zap_->accepted();
    info["clients_refused"] = zap_->refused();
  }
  return info;
}

}  // namespace lb::agent
