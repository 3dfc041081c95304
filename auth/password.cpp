#include "auth/password.hpp"

#include <mutex>
#include <stdexcept>

#include <sodium.h>

#include "protocol/validate.hpp"

namespace im::auth {
namespace {

void init_sodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  });
}

}  // namespace

std::string password_problem(std::string_view password) {
  if (password.size() < kMinPasswordBytes || password.size() > kMaxPasswordBytes) {
    return "password must be 8-1024 bytes";
  }
  if (!protocol::valid_text(password)) return "password must be valid UTF-8 without NUL bytes";
  return {};
}

std::string hash_password(std::string_view password) {
  init_sodium();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(),
                            crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw std::runtime_error("Argon2id hashing failed (out of memory)");
  }
  return out;
}

bool verify_password(const std::string& hash, std::string_view password) {
  init_sodium();
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

}  // namespace im::auth
