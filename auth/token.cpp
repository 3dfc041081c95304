#include "auth/token.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "protocol/validate.hpp"

namespace im::auth {
namespace {

constexpr std::string_view kVersion = "im1";
constexpr std::size_t kSignatureChars = 43;  // 32 bytes, unpadded base64url

bool valid_key_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxKeyIdBytes) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

std::string sign(const Key& key, std::string_view payload) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), key.secret.data(), static_cast<int>(key.secret.size()),
           reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac,
           &mac_len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  // Standard base64 from OpenSSL, then the URL-safe alphabet without padding.
  unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(b64, mac, static_cast<int>(mac_len));
  std::string out(reinterpret_cast<const char*>(b64), static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

bool parse_int(std::string_view s, std::int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

KeyRing KeyRing::parse(std::string_view text, std::string_view origin) {
  KeyRing ring;
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '#') {
      while (i < text.size() && text[i] != '\n') ++i;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',') {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < text.size() && text[end] != ' ' && text[end] != '\t' && text[end] != '\r' &&
           text[end] != '\n' && text[end] != ',') {
      ++end;
    }
    const std::string_view entry = text.substr(i, end - i);
    i = end;
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos) {
      throw std::invalid_argument(fmt::format(
          "{}: a key must be written KEY_ID=SECRET (an entry has no '=')", origin));
    }
    Key key{std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1))};
    if (!valid_key_id(key.id)) {
      throw std::invalid_argument(fmt::format(
          "{}: key id '{}' must be 1-{} characters of [A-Za-z0-9_-]", origin,
          key.id.substr(0, 40), kMaxKeyIdBytes));
    }
    if (key.secret.size() < kMinSecretBytes) {
      throw std::invalid_argument(fmt::format(
          "{}: the secret of key '{}' is {} bytes; at least {} are needed "
          "(e.g. openssl rand -hex 32)",
          origin, key.id, key.secret.size(), kMinSecretBytes));
    }
    if (ring.find(key.id) != nullptr) {
      throw std::invalid_argument(fmt::format("{}: key id '{}' is listed twice", origin, key.id));
    }
    ring.keys_.push_back(std::move(key));
  }
  if (ring.keys_.empty()) {
    throw std::invalid_argument(fmt::format("{}: holds no key (expected KEY_ID=SECRET)", origin));
  }
  return ring;
}

KeyRing KeyRing::load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument("cannot read the key file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
}

std::shared_ptr<const KeyRing> KeyRing::from_file_or_env(const std::string& path) {
  if (!path.empty()) return std::make_shared<const KeyRing>(load_file(path));
  if (const char* secret = std::getenv("IM_AUTH_SECRET"); secret != nullptr && *secret != 0) {
    return std::make_shared<const KeyRing>(parse(secret, "IM_AUTH_SECRET"));
  }
  return nullptr;
}

std::int64_t unix_now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const Key* KeyRing::find(std::string_view id) const {
  for (const Key& k : keys_) {
    if (k.id == id) return &k;
  }
  return nullptr;
}

std::string issue_token(const Key& key, std::string_view user, std::int64_t expires_at_s) {
  if (!protocol::valid_user_id(user)) {
    throw std::invalid_argument("cannot issue a token: '" + std::string(user) +
                                "' is not a valid user id");
  }
  const std::string payload = fmt::format("{}:{}:{}:{}", kVersion, key.id, user, expires_at_s);
  return payload + ":" + sign(key, payload);
}

std::string TokenCheck::message() const {
  switch (status) {
    case Status::ok: return "token valid";
    case Status::malformed: return "token is malformed (expected im1:KEY:USER:EXPIRY:SIGNATURE)";
    case Status::unknown_key:
      return fmt::format("token is signed with key '{}', which this server does not hold", key_id);
    case Status::bad_signature: return "token signature does not match";
    case Status::expired: return fmt::format("token expired at {} (Unix seconds)", expires_at_s);
  }
  return "token rejected";
}

TokenCheck verify_token(const KeyRing& keys, std::string_view token, std::int64_t now_s) {
  TokenCheck check;
  if (token.size() > kMaxTokenBytes) return check;
  std::string_view parts[5];
  std::size_t start = 0;
  for (int i = 0; i < 5; ++i) {
    const std::size_t colon = i < 4 ? token.find(':', start) : token.size();
    if (colon == std::string_view::npos) return check;
    parts[i] = token.substr(start, colon - start);
    start = colon + 1;
  }
  if (parts[4].find(':') != std::string_view::npos) return check;
  std::int64_t expires = 0;
  if (parts[0] != kVersion || !valid_key_id(parts[1]) || !protocol::valid_user_id(parts[2]) ||
      !parse_int(parts[3], expires) || parts[4].size() != kSignatureChars) {
    return check;
  }
  check.key_id.assign(parts[1]);
  check.user.assign(parts[2]);
  check.expires_at_s = expires;
  const Key* key = keys.find(parts[1]);
  if (key == nullptr) {
    check.status = TokenCheck::Status::unknown_key;
    return check;
  }
  const std::string_view payload = token.substr(0, token.size() - kSignatureChars - 1);
  const std::string expected = sign(*key, payload);
  if (CRYPTO_memcmp(expected.data(), parts[4].data(), kSignatureChars) != 0) {
    check.status = TokenCheck::Status::bad_signature;
    return check;
  }
  check.status = expires <= now_s ? TokenCheck::Status::expired : TokenCheck::Status::ok;
  return check;
}

std::optional<std::int64_t> parse_duration_s(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::int64_t unit = 1;
  switch (text.back()) {
    case 's': unit = 1; text.remove_suffix(1); break;
    case 'm': unit = 60; text.remove_suffix(1); break;
    case 'h': unit = 3600; text.remove_suffix(1); break;
    case 'd': unit = 86400; text.remove_suffix(1); break;
    default: break;
  }
  std::int64_t n = 0;
  if (!parse_int(text, n) || n <= 0) return std::nullopt;
  constexpr std::int64_t kTenYears = 10LL * 366 * 86400;
  if (n > kTenYears / unit) return std::nullopt;
  return n * unit;
}

}  // namespace im::auth
