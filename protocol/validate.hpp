#pragma once
// Field checks applied after the Verifier: user ids, UTF-8 text.
// Pure functions, safe from any thread.

#include <cstddef>
#include <string_view>

namespace im::protocol {

inline constexpr std::size_t kMaxUserIdBytes = 64;

/// A user id is 1-64 bytes of ASCII letters, digits, '.', '_' or '-'.
bool valid_user_id(std::string_view id);

/// True if `text` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool valid_utf8(std::string_view text);

/// Text we store: valid UTF-8 without NUL bytes (PostgreSQL text cannot hold NUL).
bool valid_text(std::string_view text);

}  // namespace im::protocol
