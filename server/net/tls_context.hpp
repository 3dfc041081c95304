#pragma once
// The server's TLS settings: one asio::ssl::context built from a certificate
// chain file and a private key file (PEM), TLS 1.2 and later only.
//
// Thread-safety: the context is read-only once built and shared by every I/O
// thread (OpenSSL creates each connection's state from it under its own lock).

#include <memory>
#include <string>

#include <asio/ssl/context.hpp>

namespace im::server {

/// Loads `cert_file` (PEM, the server's certificate first, then any
/// intermediates) and `key_file` (PEM, unencrypted) and checks that they
/// belong together. Throws std::invalid_argument naming --tls-cert or
/// --tls-key and saying why (unreadable, not a certificate, wrong key).
std::shared_ptr<asio::ssl::context> make_server_tls_context(const std::string& cert_file,
                                                            const std::string& key_file);

}  // namespace im::server
