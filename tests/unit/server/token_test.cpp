// Unit: authentication tokens (HMAC-SHA256, key ids, expiry), key files and
// Argon2id password hashes. No services.
#include <catch2/catch.hpp>

#include <string>

#include "auth/password.hpp"
#include "auth/token.hpp"

using namespace im::auth;

namespace {

const std::string kSecretA(32, 'a');
const std::string kSecretB = "0123456789abcdef0123456789abcdef-b";

KeyRing ring(const std::string& text) { return KeyRing::parse(text, "test"); }

}  // namespace

TEST_CASE("tokens: issued, then verified with the user, key and expiry they carry",
          "[unit][auth]") {
  const KeyRing keys = ring("k1=" + kSecretA);
  const std::string t = issue_token(keys.signing_key(), "alice.b-C_9", 2000000000);
  CHECK(t.rfind("im1:k1:alice.b-C_9:2000000000:", 0) == 0);
  CHECK(t.size() == std::string("im1:k1:alice.b-C_9:2000000000:").size() + 43);
  const TokenCheck c = verify_token(keys, t, 1999999999);
  CHECK(c.status == TokenCheck::Status::ok);
  CHECK(c.user == "alice.b-C_9");
  CHECK(c.key_id == "k1");
  CHECK(c.expires_at_s == 2000000000);
  // Deterministic: the same inputs sign the same token.
  CHECK(issue_token(keys.signing_key(), "alice.b-C_9", 2000000000) == t);
  CHECK_THROWS_AS(issue_token(keys.signing_key(), "not a user", 1), std::invalid_argument);
}

TEST_CASE("tokens: expired, forged, wrong-key and malformed ones are refused", "[unit][auth]") {
  const KeyRing keys = ring("k1=" + kSecretA);
  const std::string t = issue_token(keys.signing_key(), "alice", 1000);
  CHECK(verify_token(keys, t, 999).status == TokenCheck::Status::ok);
  CHECK(verify_token(keys, t, 1000).status == TokenCheck::Status::expired);  // at expiry: over
  CHECK(verify_token(keys, t, 1000).message().find("expired") != std::string::npos);

  // Changing any signed field breaks the signature.
  std::string other_user = t;
  other_user.replace(other_user.find("alice"), 5, "mallo");
  CHECK(verify_token(keys, other_user, 0).status == TokenCheck::Status::bad_signature);
  std::string later = t;
  later.replace(later.find(":1000:"), 6, ":9999:");
  CHECK(verify_token(keys, later, 0).status == TokenCheck::Status::bad_signature);
  std::string flipped = t;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  CHECK(verify_token(keys, flipped, 0).status == TokenCheck::Status::bad_signature);

  // Signed by a key this server does not hold, or with a different secret under the same id.
  const KeyRing theirs = ring("k9=" + kSecretA);
  const TokenCheck unknown = verify_token(keys, issue_token(theirs.signing_key(), "alice", 1000), 0);
  CHECK(unknown.status == TokenCheck::Status::unknown_key);
  CHECK(unknown.message().find("k9") != std::string::npos);
  const KeyRing same_id = ring("k1=" + kSecretB);
  CHECK(verify_token(keys, issue_token(same_id.signing_key(), "alice", 1000), 0).status ==
        TokenCheck::Status::bad_signature);

  for (const std::string& bad :
       {std::string(), std::string("im1"), std::string("garbage"), "im2" + t.substr(3),
        t.substr(0, t.size() - 1), t + "A", t + ":x", "im1:k1:alice:-5:" + t.substr(t.size() - 43),
        "im1:k1:alice:12a:" + t.substr(t.size() - 43), "im1:k1:al ice:1000:" + t.substr(t.size() - 43),
        "im1::alice:1000:" + t.substr(t.size() - 43), "im1:k1::1000:" + t.substr(t.size() - 43),
        std::string(300, 'x')}) {
    INFO(bad);
    const TokenCheck c = verify_token(keys, bad, 0);
    CHECK(c.status == TokenCheck::Status::malformed);
    CHECK(c.message().find(t.substr(t.size() - 43)) == std::string::npos);
  }
}

TEST_CASE("tokens: rotation - the first key signs, every listed key verifies", "[unit][auth]") {
  const KeyRing old_ring = ring("old=" + kSecretA);
  const std::string old_token = issue_token(old_ring.signing_key(), "bob", 5000);
  const KeyRing rotated = ring("new=" + kSecretB + "\nold=" + kSecretA);
  CHECK(rotated.signing_key().id == "new");
  CHECK(verify_token(rotated, old_token, 0).status == TokenCheck::Status::ok);
  const std::string new_token = issue_token(rotated.signing_key(), "bob", 5000);
  CHECK(new_token.find(":new:") != std::string::npos);
  CHECK(verify_token(rotated, new_token, 0).status == TokenCheck::Status::ok);
  // Once the old key is dropped, its tokens stop working.
  const KeyRing retired = ring("new=" + kSecretB);
  CHECK(verify_token(retired, old_token, 0).status == TokenCheck::Status::unknown_key);
  CHECK(verify_token(retired, new_token, 0).status == TokenCheck::Status::ok);
}

TEST_CASE("key rings: entries, comments, separators and clear errors", "[unit][auth]") {
  const KeyRing keys = ring("# keys\n a=" + kSecretA + " , b=" + kSecretB + "\r\n# end");
  REQUIRE(keys.keys().size() == 2);
  CHECK(keys.find("a") != nullptr);
  CHECK(keys.find("b")->secret == kSecretB);
  CHECK(keys.find("c") == nullptr);
  // A secret may contain '=' (base64): only the first one separates.
  CHECK(ring("k=" + kSecretA + "==").signing_key().secret == kSecretA + "==");
  // A secret is literal text, never decoded (protocol/README.md, Tokens): the
  // 64 hex digits of `openssl rand -hex 32` are a 64-byte key, not 32 bytes.
  const std::string hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  CHECK(ring("k=" + hex).signing_key().secret == hex);
  // A secret of 16 bytes written as 32 hex digits is long enough as text.
  CHECK(ring("k=" + hex.substr(0, 32)).signing_key().secret.size() == 32);

  auto error_of = [](const std::string& text) {
    try {
      KeyRing::parse(text, "IM_AUTH_SECRET");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of("").find("holds no key") != std::string::npos);
  CHECK(error_of("# only a comment\n").find("holds no key") != std::string::npos);
  CHECK(error_of(kSecretA).find("KEY_ID=SECRET") != std::string::npos);
  CHECK(error_of("k=short").find("at least 32") != std::string::npos);
  CHECK(error_of("bad:id=" + kSecretA).find("key id") != std::string::npos);
  CHECK(error_of("=" + kSecretA).find("key id") != std::string::npos);
  CHECK(error_of("k=" + kSecretA + " k=" + kSecretB).find("twice") != std::string::npos);
  // The secret is never quoted back.
  CHECK(error_of("k=short-secret").find("short-secret") == std::string::npos);
  CHECK(error_of("k=x").rfind("IM_AUTH_SECRET:", 0) == 0);
  CHECK_THROWS_AS(KeyRing::load_file("/nonexistent/im-keys"), std::invalid_argument);
}

TEST_CASE("durations for token lifetimes", "[unit][auth]") {
  CHECK(parse_duration_s("90") == 90);
  CHECK(parse_duration_s("90s") == 90);
  CHECK(parse_duration_s("15m") == 900);
  CHECK(parse_duration_s("12h") == 43200);
  CHECK(parse_duration_s("7d") == 604800);
  for (const char* bad : {"", "0", "-5m", "m", "1.5h", "5w", "99999d", "1h30m"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration_s(bad).has_value());
  }
}

TEST_CASE("passwords: Argon2id hashes that verify only the right password", "[unit][auth]") {
  const std::string hash = hash_password("correct horse battery");
  CHECK(hash.rfind("$argon2id$", 0) == 0);
  CHECK(hash.find("correct") == std::string::npos);
  CHECK(verify_password(hash, "correct horse battery"));
  CHECK_FALSE(verify_password(hash, "correct horse batterY"));
  CHECK_FALSE(verify_password(hash, ""));
  CHECK_FALSE(verify_password("not a hash", "correct horse battery"));
  // Salted: the same password hashes differently each time.
  CHECK(hash_password("correct horse battery") != hash);

  CHECK(password_problem("12345678").empty());
  CHECK_FALSE(password_problem("1234567").empty());
  CHECK_FALSE(password_problem(std::string(1025, 'x')).empty());
  CHECK_FALSE(password_problem(std::string("abcdefgh\0", 9)).empty());
  CHECK_FALSE(password_problem("abcdefgh\xff").empty());
}
