#pragma once
// Password hashing for accounts: Argon2id from libsodium, with libsodium's
// "interactive" cost (2 passes over 64 MiB), stored in the PHC string format
// ($argon2id$v=19$m=65536,t=2,p=1$salt$hash) so the parameters travel with the
// hash and can be raised later without breaking old hashes.
//
// Each hash or check costs tens of milliseconds of CPU and 64 MiB of memory:
// callers run them on a small bounded pool, never on an I/O thread.
//
// Thread-safety: all functions may be called from any thread.

#include <string>
#include <string_view>

namespace im::auth {

inline constexpr std::size_t kMinPasswordBytes = 8;
inline constexpr std::size_t kMaxPasswordBytes = 1024;

/// Empty when `password` is acceptable, else why not (for the client).
std::string password_problem(std::string_view password);

/// The Argon2id PHC string for `password`. Throws std::runtime_error when
/// libsodium cannot allocate the memory it needs.
std::string hash_password(std::string_view password);

/// True when `password` matches `hash` (constant time in the password).
bool verify_password(const std::string& hash, std::string_view password);

}  // namespace im::auth
