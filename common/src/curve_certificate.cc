#include "lb/common/curve_certificate.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "lb/common/file.h"
#include "zcert_text.h"

namespace lb::common {
namespace {

using proto::ErrorCode;
using proto::Result;
using proto::Status;

Status BadRequest(const std::string& message) { return Status(ErrorCode::kBadRequest, message); }

std::string Timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// A key file must not be replaced by keygen: say so in the words of the command.
Status NewKeyFile(const std::string& path, const std::string& text, mode_t mode) {
  Status s = WriteNewFile(path, text, mode);
  if (s.code() == ErrorCode::kBadRequest) {
    return BadRequest(path + " already exists; not overwriting a key file");
  }
  return s;
}

}  // namespace

bool IsZ85Key(std::string_view key) {
  if (key.size() != 40) return false;
  std::string copy(key);
  uint8_t decoded[32];
  return zmq_z85_decode(decoded, copy.c_str()) != nullptr;
}

Result<CurveCertificate> GenerateCertificate() {
  char public_key[41] = {};
  char secret_key[41] = {};
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return Status(ErrorCode::kInternal,
                  "cannot generate a CURVE key pair: " + std::string(zmq_strerror(zmq_errno())) +
                      " (libzmq built without CURVE?)");
  }
  return CurveCertificate{public_key, secret_key};
}

Status WriteCertificate(const std::string& path, const CurveCertificate& cert,
                        std::string_view generated_by) {
  if (!IsZ85Key(cert.public_key) || !IsZ85Key(cert.secret_key)) {
    return BadRequest("not a CURVE key pair");
  }
  std::string header =
      "#   ****  Generated on " + Timestamp() + " by " + std::string(generated_by) + "  ****\n";
  std::string public_text =
      header +
      "#   ZeroMQ CURVE Public Certificate\n"
      "#   Exchange securely, or use a secure mechanism to verify the contents\n"
      "#   of this file after exchange. Store public certificates in your home\n"
      "#   directory, in the .curve subdirectory.\n\n"
      "metadata\ncurve\n    public-key = \"" +
      cert.public_key + "\"\n";
  std::string secret_text =
      header +
      "#   ZeroMQ CURVE **Secret** Certificate\n"
      "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
      "metadata\ncurve\n    public-key = \"" +
      cert.public_key + "\"\n    secret-key = \"" + cert.secret_key + "\"\n";
  const std::string secret_path = path + "_secret";
  // The secret first: if it cannot be written, no public half is left without its secret.
  if (Status s = NewKeyFile(secret_path, secret_text, 0600); !s.ok()) return s;
  if (Status s = NewKeyFile(path, public_text, 0644); !s.ok()) {
    ::unlink(secret_path.c_str());
    return s;
  }
  return Status();
}

Result<CurveCertificate> ReadCertificate(const std::string& path, bool need_secret) {
  Result<std::string> text = ReadSmallFile(path, zcert::kMaxFileBytes);
  if (!text.ok()) return text.status();
  CurveCertificate cert;
  std::istringstream lines(*text);
  std::string line;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    std::string t = zcert::Trim(line);
    if (t.empty() || t[0] == '#') continue;
    std::string* field = nullptr;
    std::optional<std::string> value;
    if ((value = zcert::Value(t, "public-key"))) {
      field = &cert.public_key;
    } else if ((value = zcert::Value(t, "secret-key"))) {
      field = &cert.secret_key;
    } else {
      continue;  // metadata, curve, and any metadata entries
    }
    if (!IsZ85Key(*value)) {
      return BadRequest(path + ":" + std::to_string(number) +
                        ": not a CURVE key (40 Z85 characters)");
    }
    *field = *value;
  }
  if (cert.public_key.empty()) {
    return BadRequest(path + ": no public-key line: not a ZeroMQ certificate (lbctl keygen)");
  }
  if (!need_secret) {
    cert.secret_key.clear();
    return cert;
  }
  if (cert.secret_key.empty()) {
    return BadRequest(path +
                      ": no secret-key line: this is a public certificate; give the _secret file");
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return BadRequest(path + ": secret key readable by every user (mode " + mode +
                      "); chmod 600 it");
  }
  // The public key must be the one the secret key makes, or the peer pins a key we cannot use.
  char derived[41] = {};
  if (zmq_curve_public(derived, cert.secret_key.c_str()) != 0 || cert.public_key != derived) {
    return BadRequest(path + ": public-key does not match secret-key");
  }
  return cert;
}

}  // namespace lb::common
