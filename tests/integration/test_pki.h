// A throw-away PKI for tests of TLS peers (etcd with --client-cert-auth): a CA, a server
// certificate for 127.0.0.1 (serverAuth and clientAuth, as etcd's gRPC gateway dials its own
// server with it), a client certificate signed by the same CA, and a second CA that signed
// nothing the server has. Made with Debian's openssl CLI in a directory of the test's; P-256
// keys, valid for two days.
#pragma once

#include <string>

namespace lb::testing {

struct TestPki {
  std::string ca;           // ca.pem
  std::string server_cert;  // server.pem, SAN IP:127.0.0.1
  std::string server_key;
  std::string client_cert;  // client.pem, CN=lb-controller
  std::string client_key;
  std::string other_ca;  // other-ca.pem: trusts none of the above
};

// Fails the test (with openssl's output) when a step fails; the returned paths are then not
// usable.
TestPki MakeTestPki(const std::string& dir);

}  // namespace lb::testing
