#include "lb/common/curve_socket.h"

namespace lb::common {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

void MakeCurveServer(zmq::socket_ref socket, const CurveCertificate& own, const ZapHandler&,
                     std::string_view domain) {
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, own.secret_key);
  socket.set(zmq::sockopt::zap_domain, std::string(domain));
}

void MakeCurveClient(zmq::socket_ref socket, const CurveCertificate& own,
                     std::string_view server_public_key) {
  socket.set(zmq::sockopt::curve_serverkey, std::string(server_public_key));
  socket.set(zmq::sockopt::curve_publickey, own.public_key);
  socket.set(zmq::sockopt::curve_secretkey, own.secret_key);
}

Result<CurveClientKeys> LoadClientKeys(const CurveClientFiles& files) {
  CurveClientKeys keys;
  if (files.own_secret.empty() && files.server_public.empty()) return keys;
  if (files.own_secret.empty()) {
    return Status(ErrorCode::kBadRequest, "the server's public key is given (" +
                                              files.server_public +
                                              ") but not this client's own secret key");
  }
  if (files.server_public.empty()) {
    return Status(ErrorCode::kBadRequest, "this client's key is given (" + files.own_secret +
                                              ") but not the server's public key");
  }
  Result<CurveCertificate> own = ReadCertificate(files.own_secret, /*need_secret=*/true);
  if (!own.ok()) return own.status();
  Result<CurveCertificate> server = ReadCertificate(files.server_public, /*need_secret=*/false);
  if (!server.ok()) return server.status();
  keys.own = *own;
  keys.server_public_key = server->public_key;
  return keys;
}

}  // namespace lb::common
