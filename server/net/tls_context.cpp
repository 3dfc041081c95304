#include "server/net/tls_context.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

namespace im::server {
namespace {

[[noreturn]] void invalid(const std::string& setting, const std::string& file, const std::string& why) {
  throw std::invalid_argument(setting + " '" + file + "': " + why);
}

/// OpenSSL's reason for the last failure (and clears its error queue).
std::string openssl_reason(const std::error_code& ec) {
  std::string reason = ec ? ec.message() : "unknown OpenSSL error";
  ERR_clear_error();
  return reason;
}

void require_readable(const std::string& setting, const std::string& file) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) invalid(setting, file, std::string("cannot read: ") + std::strerror(errno));
  std::fclose(f);
}

}  // namespace

std::shared_ptr<asio::ssl::context> make_server_tls_context(const std::string& cert_file,
                                                            const std::string& key_file) {
  require_readable("--tls-cert", cert_file);
  require_readable("--tls-key", key_file);
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  // TLS 1.2 is the floor whatever the system's OpenSSL configuration says.
  if (SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION) != 1) {
    throw std::runtime_error("cannot set the minimum TLS version to 1.2");
  }
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::single_dh_use |
                   asio::ssl::context::no_compression);
  std::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) invalid("--tls-cert", cert_file, "not a PEM certificate chain: " + openssl_reason(ec));
  // The key is read here rather than by SSL_CTX_use_PrivateKey_file so that a
  // key of the wrong certificate gets its own message.
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(key_file.c_str(), "r"), &BIO_free);
  // No passphrase: an encrypted key fails instead of prompting on the terminal.
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return -1; };
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr,
      &EVP_PKEY_free);
  if (!key) {
    ERR_clear_error();
    invalid("--tls-key", key_file, "not an unencrypted PEM private key");
  }
  if (X509_check_private_key(SSL_CTX_get0_certificate(ctx->native_handle()), key.get()) != 1) {
    ERR_clear_error();
    invalid("--tls-key", key_file, "does not match the certificate in --tls-cert '" + cert_file + "'");
  }
  if (SSL_CTX_use_PrivateKey(ctx->native_handle(), key.get()) != 1) {
    ERR_clear_error();
    invalid("--tls-key", key_file, "OpenSSL refused the key");
  }
  return ctx;
}

}  // namespace im::server
