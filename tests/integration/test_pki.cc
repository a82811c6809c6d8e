#include "test_pki.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

#include "harness.h"

namespace lb::testing {
namespace {

constexpr const char* kOpenssl = "/usr/bin/openssl";

bool Openssl(std::vector<std::string> args) {
  args.insert(args.begin(), kOpenssl);
  CommandResult r = RunCommand(args, milliseconds(30000));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  return r.exit_code == 0;
}

// A self-signed CA: `name`.pem and `name`.key in `dir`.
bool MakeCa(const std::string& dir, const std::string& name) {
  return Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", dir + "/" + name + ".key", "-out", dir + "/" + name + ".pem",
                  "-days", "2", "-subj", "/CN=lb-test-" + name});
}

// `name`.pem and `name`.key, signed by ca.pem, with the extensions in `extensions`.
bool MakeSigned(const std::string& dir, const std::string& name, const std::string& subject,
                const std::string& extensions) {
  const std::string ext = dir + "/" + name + ".ext";
  WriteFile(ext, extensions);
  return Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", dir + "/" + name + ".key", "-out", dir + "/" + name + ".csr", "-subj",
                  subject}) &&
         Openssl({"x509", "-req", "-in", dir + "/" + name + ".csr", "-CA", dir + "/ca.pem",
                  "-CAkey", dir + "/ca.key", "-CAcreateserial", "-out", dir + "/" + name + ".pem",
                  "-days", "2", "-extfile", ext});
}

}  // namespace

TestPki MakeTestPki(const std::string& dir) {
  EXPECT_EQ(access(kOpenssl, X_OK), 0)
      << kOpenssl << " not found: the TLS tests make their certificates with it. Install "
      << "Debian's openssl (scripts/deps does).";
  TestPki pki{dir + "/ca.pem",     dir + "/server.pem", dir + "/server.key",
              dir + "/client.pem", dir + "/client.key", dir + "/other-ca.pem"};
  const bool made =
      MakeCa(dir, "ca") && MakeCa(dir, "other-ca") &&
      MakeSigned(dir, "server", "/CN=127.0.0.1",
                 "subjectAltName = IP:127.0.0.1\n"
                 "extendedKeyUsage = serverAuth, clientAuth\n") &&
      MakeSigned(dir, "client", "/CN=lb-controller", "extendedKeyUsage = clientAuth\n");
  EXPECT_TRUE(made) << "the test PKI could not be made in " << dir;
  return pki;
}

}  // namespace lb::testing
