// CURVE on a ZeroMQ socket: the options of a CURVE server (behind a ZapHandler) and of a CURVE
// client pinned to its server's key, and where a client's keys come from.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "lb/common/curve_certificate.h"
#include "lb/common/zap_handler.h"
#include "lb/proto/status.h"

namespace lb::common {

// Socket options for a CURVE server (before bind): this side's certificate (with its secret),
// and the ZAP domain the handler sees. Requires a running ZapHandler on the socket's context
// (the reference is the proof).
void MakeCurveServer(zmq::socket_ref socket, const CurveCertificate& own, const ZapHandler& zap,
                     std::string_view domain);
// Socket options for a CURVE client (before connect): this side's certificate and the public
// key of the server it must be talking to.
void MakeCurveClient(zmq::socket_ref socket, const CurveCertificate& own,
                     std::string_view server_public_key);

// Applied to a socket before it binds or connects (CURVE options, or nothing).
using SocketSetup = std::function<void(zmq::socket_ref)>;

// Where a client's keys come from: its own certificate file (secret) and the server's public
// certificate file. Both empty: plaintext. One without the other is an error.
struct CurveClientFiles {
  std::string own_secret;
  std::string server_public;
};
struct CurveClientKeys {
  CurveCertificate own;
  std::string server_public_key;
};
// Reads both files (ReadCertificate's errors); an empty result (own.public_key empty) when both
// names are empty; kBadRequest when only one is given.
proto::Result<CurveClientKeys> LoadClientKeys(const CurveClientFiles& files);

}  // namespace lb::common
