#include "tests/support/test_certs.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <stdexcept>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace im::test {
namespace {

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test certificates: ") + what + " failed");
}

Key new_key() {
  Key key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
  check(key != nullptr, "EVP_EC_gen");
  return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, value);
  const int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  check(added == 1, "X509_add_ext");
}

/// A certificate for `key` named `cn`, signed by `issuer_key` (self-signed
/// when `issuer` is null); a CA or a server's.
Cert make_cert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key) {
  static std::mt19937_64 rng{std::random_device{}()};
  Cert cert(X509_new(), &X509_free);
  check(cert != nullptr, "X509_new");
  X509* c = cert.get();
  check(X509_set_version(c, X509_VERSION_3) == 1, "X509_set_version");
  check(ASN1_INTEGER_set_int64(X509_get_serialNumber(c), static_cast<std::int64_t>(rng() >> 2)) == 1,
        "serial");
  check(X509_gmtime_adj(X509_getm_notBefore(c), -3600) != nullptr, "notBefore");
  check(X509_gmtime_adj(X509_getm_notAfter(c), 7 * 24 * 3600) != nullptr, "notAfter");
  check(X509_set_pubkey(c, key) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(c);
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(cn), -1, -1, 0) == 1,
        "CN");
  X509* signer = issuer ? issuer : c;
  check(X509_set_issuer_name(c, X509_get_subject_name(signer)) == 1, "issuer");
  add_extension(c, signer, NID_subject_key_identifier, "hash");
  if (!issuer) {
    add_extension(c, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(c, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(c, signer, NID_authority_key_identifier, "keyid:always");
    add_extension(c, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(c, signer, NID_key_usage, "critical,digitalSignature");
    add_extension(c, signer, NID_ext_key_usage, "serverAuth");
    add_extension(c, signer, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  }
  check(X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

void write_cert(const std::string& path, X509* cert) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, "fopen");
  const int ok = PEM_write_X509(f, cert);
  check(std::fclose(f) == 0 && ok == 1, "PEM_write_X509");
}

void write_key(const std::string& path, EVP_PKEY* key) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, "fopen");
  const int ok = PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  check(std::fclose(f) == 0 && ok == 1, "PEM_write_PrivateKey");
}

}  // namespace

TestCerts::TestCerts() {
  std::string pattern = (std::filesystem::temp_directory_path() / "im-tls-XXXXXX").string();
  check(::mkdtemp(pattern.data()) != nullptr, "mkdtemp");
  dir = pattern;
  ca_cert = dir + "/ca.pem";
  server_cert = dir + "/server.pem";
  server_key = dir + "/server.key";
  other_key = dir + "/other.key";

  const Key ca_key = new_key(), key = new_key(), other = new_key();
  const Cert ca = make_cert(ca_key.get(), "im test CA", nullptr, nullptr);
  const Cert server = make_cert(key.get(), "im test server", ca.get(), ca_key.get());
  write_cert(ca_cert, ca.get());
  write_cert(server_cert, server.get());
  write_key(server_key, key.get());
  write_key(other_key, other.get());
}

TestCerts::~TestCerts() {
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

}  // namespace im::test
