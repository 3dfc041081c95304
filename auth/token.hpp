#pragma once
// Authentication tokens: who a connection is, signed by the deployment.
//
//   im1:<key id>:<user id>:<expiry, Unix seconds>:<signature>
//
// The signature is HMAC-SHA256 with the named key over everything before the
// last ':' ("im1:<kid>:<user>:<exp>"), in unpadded base64url (43 characters).
// ':' appears in neither key ids ([A-Za-z0-9_-]) nor user ids, so the fields
// split unambiguously. Tokens are bearer credentials: whoever holds one is that
// user until it expires, so keep their lifetime short.
//
// Keys: a KeyRing holds every key the server accepts, by id; the first one
// signs. Rotating: add the new key first (it signs from then on), keep the old
// one listed until the tokens it signed have expired, then drop it.
//
// Thread-safety: a KeyRing is immutable once built; all functions are pure.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace im::auth {

inline constexpr std::size_t kMinSecretBytes = 32;
inline constexpr std::size_t kMaxKeyIdBytes = 32;
inline constexpr std::size_t kMaxTokenBytes = 256;

struct Key {
  std::string id;
  std::string secret;
};

class KeyRing {
 public:
  KeyRing() = default;

  /// Parses key entries "KID=SECRET" separated by newlines, spaces or commas;
  /// '#' starts a comment that runs to the end of the line. Throws
  /// std::invalid_argument naming `origin` and the entry on a malformed entry,
  /// a key id outside [A-Za-z0-9_-]{1,32}, a secret shorter than 32 bytes, a
  /// repeated key id, or no key at all.
  static KeyRing parse(std::string_view text, std::string_view origin);
  /// Reads and parses a key file. Throws std::invalid_argument when it cannot.
  static KeyRing load_file(const std::string& path);
  /// For tools: the keys in `path` when given, else in the IM_AUTH_SECRET
  /// environment variable when set, else null. Throws like parse().
  static std::shared_ptr<const KeyRing> from_file_or_env(const std::string& path);

  bool empty() const { return keys_.empty(); }
  const std::vector<Key>& keys() const { return keys_; }
  /// The key that signs new tokens: the first one listed.
  const Key& signing_key() const { return keys_.front(); }
  const Key* find(std::string_view id) const;

 private:
  std::vector<Key> keys_;
};

/// Signs a token for `user` (a valid user id) expiring at `expires_at_s`, with
/// `key`. Throws std::invalid_argument for an invalid user id.
std::string issue_token(const Key& key, std::string_view user, std::int64_t expires_at_s);

/// Seconds since the Unix epoch, from the system clock.
std::int64_t unix_now_s();

struct TokenCheck {
  enum class Status { ok, malformed, unknown_key, bad_signature, expired } status = Status::malformed;
  std::string user;
  std::string key_id;
  std::int64_t expires_at_s = 0;
  /// For humans (goes into the Error frame): never echoes the signature.
  std::string message() const;
};

/// Checks `token`'s form, key, signature (in constant time) and expiry against
/// `now_s`. `user`, `key_id` and `expires_at_s` are filled once the token's
/// form is valid, whatever the verdict.
TokenCheck verify_token(const KeyRing& keys, std::string_view token, std::int64_t now_s);

/// "90s", "15m", "12h", "7d" or plain seconds -> seconds; nullopt when not a
/// positive duration of at most 10 years.
std::optional<std::int64_t> parse_duration_s(std::string_view text);

}  // namespace im::auth
