#pragma once
// TestCerts: certificates made at test time with the OpenSSL API (none is
// committed): a fresh CA, a server certificate it signed for IP 127.0.0.1 and
// DNS localhost, and a key that matches neither, as PEM files in a temporary
// directory removed with the object. Two TestCerts have unrelated CAs, so one's
// CA is the "wrong CA" for the other's server.
//
// Throws std::runtime_error when OpenSSL fails.

#include <string>

namespace im::test {

class TestCerts {
 public:
  TestCerts();
  ~TestCerts();
  TestCerts(const TestCerts&) = delete;
  TestCerts& operator=(const TestCerts&) = delete;

  std::string dir;          // the temporary directory holding the files
  std::string ca_cert;      // the CA's certificate: what a client trusts
  std::string server_cert;  // the server's certificate, signed by the CA
  std::string server_key;   // its private key
  std::string other_key;    // a private key of no certificate here
};

}  // namespace im::test
