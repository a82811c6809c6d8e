// ZeroMQ CURVE for every lb-agent socket (SECURITY.md): certificates in the zcert text format,
// the allow-list of client keys, the ZAP handler that enforces it, and the socket options of a
// CURVE server or client. Used by lb-agent, lb-bridge and lbctl alike.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <zmq.hpp>

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

// A new key pair (zmq_curve_keypair). Fails only when libzmq was built without CURVE.
proto::Result<CurveCertificate> GenerateCertificate();

// Writes `path` (public certificate, mode 0644) and `path`_secret (secret certificate, mode
// 0600, created exclusively: an existing file is never overwritten), in czmq's zcert format.
proto::Status WriteCertificate(const std::string& path, const CurveCertificate& cert,
                               std::string_view generated_by);

// Reads a zcert text file (public or secret). With `need_secret`, the file must hold a
// secret-key and must not be readable by other users.
proto::Result<CurveCertificate> ReadCertificate(const std::string& path, bool need_secret);

// Parses an allow-list text: one Z85 key per line (anything after whitespace is a comment, for
// a name), or zcert `public-key = "..."` lines; '#' starts a comment. `origin` names it in
// errors ("<origin>:<line>: ...").
proto::Result<std::set<std::string>> ParseAllowList(std::string_view text,
                                                    const std::string& origin);
// Reads an allow-list file, or every regular file of a directory (zcert public certificates or
// allow-list files) - a key found anywhere is allowed.
proto::Result<std::set<std::string>> ReadAllowList(const std::string& path);

// The ZAP handler (RFC 27) of one context: binds inproc://zeromq.zap.01 and answers every
// CURVE handshake of that context's server sockets: 200 for a client key in the allow-list, 400
// for any other. The allow-list is re-read (at most once a second) when the file or directory
// changes; a list that fails to load keeps the previous one and is logged. Must be started
// before the first server socket binds, and destroyed before the context.
class ZapHandler {
 public:
  using LogFn = std::function<void(const std::string&)>;
  static proto::Result<std::unique_ptr<ZapHandler>> Start(zmq::context_t& context,
                                                          std::string allow_list_path, LogFn log);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  uint64_t accepted() const;
  uint64_t refused() const;

 private:
  struct Impl;
  explicit ZapHandler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

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
// Reads both files; nullopt-like empty result (own.public_key empty) when both are empty.
proto::Result<CurveClientKeys> LoadClientKeys(const CurveClientFiles& files);

// True for endpoints only this host can reach: ipc://, inproc://, tcp://127.x.y.z:P,
// tcp://[::1]:P, tcp://localhost:P. Anything else (0.0.0.0, *, an interface name, a public
// address) is not.
bool IsLocalEndpoint(std::string_view endpoint);

}  // namespace lb::common
