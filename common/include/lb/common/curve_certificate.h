// CURVE key pairs in czmq's zcert text format (SECURITY.md): generated, written, read and
// checked. Used by lb-agent, lb-bridge, lb-controller and lbctl (`keygen`). No sockets.
#pragma once

#include <string>
#include <string_view>

#include "lb/proto/status.h"

namespace lb::common {

// A CURVE key pair as Z85 text (40 characters each). secret_key is empty for a public
// certificate.
struct CurveCertificate {
  std::string public_key;
  std::string secret_key;
};

// True when `key` is 40 characters of Z85 that decode to 32 bytes.
bool IsZ85Key(std::string_view key);

// A new key pair (zmq_curve_keypair). kInternal only when libzmq was built without CURVE.
proto::Result<CurveCertificate> GenerateCertificate();

// Writes `path` (public certificate, mode 0644) and `path`_secret (secret certificate, mode
// 0600), each created exclusively: an existing file is never overwritten (kBadRequest "... already
// exists"). The secret half is written first and removed again when the public half fails, so
// no public certificate is ever left without its secret. OS failures: kInternal with errno.
proto::Status WriteCertificate(const std::string& path, const CurveCertificate& cert,
                               std::string_view generated_by);

// Reads a zcert text file (public or secret). With `need_secret`, the file must hold a
// secret-key whose public half is the file's public-key, and must not be readable by other
// users. A file that says something wrong is kBadRequest naming the file (and line); a file
// that cannot be read is kInternal with the OS's reason.
proto::Result<CurveCertificate> ReadCertificate(const std::string& path, bool need_secret);

}  // namespace lb::common
