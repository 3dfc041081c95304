// Unit: the field checks applied after verification: user ids, UTF-8, text.
// UTF-8 is checked against an independent oracle (Unicode 15, table 3-7) on
// every 1- and 2-byte string, every 3-byte string that starts with a 3-byte
// lead, the edges of every 4-byte lead, and random strings.
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "protocol/validate.hpp"

using namespace im::protocol;

namespace {

using namespace std::string_literals;

/// Well-formed UTF-8 byte sequences, written as The Unicode Standard's table
/// 3-7 states them (ranges per byte), not as a decoder would compute them.
bool oracle_utf8(std::string_view s) {
  std::size_t i = 0;
  // Byte k of the current sequence, or 0x100 (in no range) past the end.
  auto b = [&](std::size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0x100u;
  };
  auto in = [](unsigned c, unsigned lo, unsigned hi) { return c >= lo && c <= hi; };
  while (i < s.size()) {
    const unsigned c0 = b(0);
    std::size_t len = 0;
    if (c0 <= 0x7F) {
      len = 1;
    } else if (in(c0, 0xC2, 0xDF)) {
      len = in(b(1), 0x80, 0xBF) ? 2 : 0;
    } else if (in(c0, 0xE0, 0xEF)) {
      const unsigned lo = c0 == 0xE0 ? 0xA0 : 0x80, hi = c0 == 0xED ? 0x9F : 0xBF;
      len = in(b(1), lo, hi) && in(b(2), 0x80, 0xBF) ? 3 : 0;
    } else if (in(c0, 0xF0, 0xF4)) {
      const unsigned lo = c0 == 0xF0 ? 0x90 : 0x80, hi = c0 == 0xF4 ? 0x8F : 0xBF;
      len = in(b(1), lo, hi) && in(b(2), 0x80, 0xBF) && in(b(3), 0x80, 0xBF) ? 4 : 0;
    }
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string bytes(std::initializer_list<unsigned> list) {
  std::string s;
  for (const unsigned b : list) s.push_back(static_cast<char>(b));
  return s;
}

}  // namespace

TEST_CASE("protocol validate: user id length is 1-64 bytes", "[unit][protocol][validate]") {
  CHECK_FALSE(valid_user_id(""));
  CHECK(valid_user_id("a"));
  CHECK(valid_user_id(std::string(63, 'x')));
  CHECK(valid_user_id(std::string(64, 'x')));
  CHECK_FALSE(valid_user_id(std::string(65, 'x')));
  CHECK_FALSE(valid_user_id(std::string(1000, 'x')));
  CHECK(kMaxUserIdBytes == 64);
}

TEST_CASE("protocol validate: user id characters are [A-Za-z0-9._-]",
          "[unit][protocol][validate]") {
  // Every single byte, against the rule.
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (valid_user_id(std::string(1, ch)) != allowed) FAIL("byte " << c << " alone");
    if (valid_user_id("ab"s + ch + "cd") != allowed) FAIL("byte " << c << " inside");
  }
  for (const char* ok : {".", "_", "-", "..", "alice.b", "bob_c", "carol-d", "A.b_C-9", "0"}) {
    INFO(ok);
    CHECK(valid_user_id(ok));
  }
  for (const std::string& bad :
       {"a b"s, " alice"s, "alice "s, "a/b"s, "../etc"s, "a\\b"s, "a@b"s, "a:b"s, "a+b"s, "a\tb"s,
        "a\nb"s, "\xC3\xA9"s, "j\xC3\xBCrgen"s, "\xE7\x94\xA8\xE6\x88\xB7"s, "a\0b"s, "\0"s,
        "alice\0"s}) {
    INFO(bad);
    CHECK_FALSE(valid_user_id(bad));
  }
  // 64 bytes that would be 32 characters: the limit is bytes, and the bytes are not allowed.
  CHECK_FALSE(valid_user_id(std::string(32, '\xC3') + std::string(32, '\xA9')));
}

TEST_CASE("protocol validate: UTF-8 named cases", "[unit][protocol][validate]") {
  SECTION("well-formed") {
    for (const std::string& ok :
         {""s, "plain ascii"s, bytes({0x7F}), "\xC3\xA9"s /* U+00E9 */, bytes({0xC2, 0x80}),
          bytes({0xDF, 0xBF}), "\xE2\x82\xAC"s /* U+20AC */, bytes({0xE0, 0xA0, 0x80}) /* U+0800 */,
          bytes({0xED, 0x9F, 0xBF}) /* U+D7FF */, bytes({0xEE, 0x80, 0x80}) /* U+E000 */,
          bytes({0xEF, 0xBF, 0xBF}) /* U+FFFF */, "\xF0\x9F\x98\x80"s /* U+1F600 */,
          bytes({0xF0, 0x90, 0x80, 0x80}) /* U+10000 */,
          bytes({0xF4, 0x8F, 0xBF, 0xBF}) /* U+10FFFF */,
          "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z"s, "nul\0inside"s}) {
      INFO(ok);
      CHECK(valid_utf8(ok));
    }
  }
  SECTION("overlong encodings") {
    for (const std::string& bad :
         {bytes({0xC0, 0x80}) /* NUL */, bytes({0xC0, 0xAF}) /* '/' */, bytes({0xC1, 0xBF}),
          bytes({0xE0, 0x80, 0xAF}), bytes({0xE0, 0x9F, 0xBF}) /* U+07FF */,
          bytes({0xF0, 0x80, 0x80, 0xAF}), bytes({0xF0, 0x8F, 0xBF, 0xBF}) /* U+FFFF */}) {
      CHECK_FALSE(valid_utf8(bad));
    }
  }
  SECTION("surrogates") {
    for (const std::string& bad : {bytes({0xED, 0xA0, 0x80}) /* U+D800 */,
                                   bytes({0xED, 0xAF, 0xBF}), bytes({0xED, 0xB0, 0x80}),
                                   bytes({0xED, 0xBF, 0xBF}) /* U+DFFF */,
                                   bytes({0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80}) /* CESU pair */}) {
      CHECK_FALSE(valid_utf8(bad));
    }
  }
  SECTION("above U+10FFFF and impossible leads") {
    for (const std::string& bad :
         {bytes({0xF4, 0x90, 0x80, 0x80}) /* U+110000 */, bytes({0xF5, 0x80, 0x80, 0x80}),
          bytes({0xF7, 0xBF, 0xBF, 0xBF}), bytes({0xF8, 0x88, 0x80, 0x80, 0x80}),
          bytes({0xFC, 0x84, 0x80, 0x80, 0x80, 0x80}), bytes({0xFE}), bytes({0xFF})}) {
      CHECK_FALSE(valid_utf8(bad));
    }
  }
  SECTION("truncated sequences") {
    for (const std::string& bad :
         {bytes({0xC3}), bytes({0xE2, 0x82}), bytes({0xE2}), bytes({0xF0, 0x9F, 0x98}),
          bytes({0xF0}), "abc\xE2\x82"s, "\xE2\x82 abc"s, "\xF0\x9F\x98"s + "a"}) {
      CHECK_FALSE(valid_utf8(bad));
    }
  }
  SECTION("a view that ends inside a sequence, followed in memory by its rest") {
    // The bytes after the view would complete the sequence: the check must
    // stop at the view's end and never look past it.
    const std::string whole = "a\xE2\x82\xAC\xF0\x9F\x98\x80\xC3\xA9";
    for (const std::size_t n : {2u, 3u, 5u, 6u, 7u, 9u}) {
      INFO("first " << n << " bytes");
      CHECK_FALSE(valid_utf8(std::string_view(whole.data(), n)));
    }
    for (const std::size_t n : {0u, 1u, 4u, 8u, 10u}) {
      CHECK(valid_utf8(std::string_view(whole.data(), n)));
    }
  }
  SECTION("stray or missing continuation bytes") {
    for (const std::string& bad : {bytes({0x80}), bytes({0xBF}), "a\x80z"s, "\xC3\xA9\xA9"s,
                                   bytes({0xC3, 0x28}), bytes({0xE2, 0x28, 0xA1}),
                                   bytes({0xE2, 0x82, 0x28}), bytes({0xF0, 0x9F, 0x98, 0x28})}) {
      CHECK_FALSE(valid_utf8(bad));
    }
  }
}

TEST_CASE("protocol validate: UTF-8 agrees with table 3-7 on every short sequence",
          "[unit][protocol][validate]") {
  int mismatches = 0;
  std::string first;
  auto check = [&](const std::string& s) {
    if (valid_utf8(s) != oracle_utf8(s) && mismatches++ == 0) {
      for (const char c : s) first += std::to_string(static_cast<unsigned char>(c)) + " ";
    }
  };
  for (unsigned a = 0; a < 256; ++a) {
    check(bytes({a}));
    for (unsigned b = 0; b < 256; ++b) {
      check(bytes({a, b}));
      if (a >= 0xE0 && a <= 0xEF) {
        for (unsigned c = 0; c < 256; ++c) check(bytes({a, b, c}));
      }
      if (a >= 0xF0 && a <= 0xF7) {
        for (const unsigned c : {0x00u, 0x7Fu, 0x80u, 0xBFu, 0xC0u}) {
          for (const unsigned d : {0x00u, 0x7Fu, 0x80u, 0xBFu, 0xC0u}) check(bytes({a, b, c, d}));
        }
      }
    }
  }
  INFO("first mismatch: " << first);
  CHECK(mismatches == 0);
  CHECK(oracle_utf8("\xF0\x9F\x98\x80"));  // the oracle itself is not all-false
}

TEST_CASE("protocol validate: UTF-8 agrees with table 3-7 on random strings",
          "[unit][protocol][validate]") {
  std::mt19937 rng(4242);
  // Bytes drawn mostly from the interesting high range, so that random strings
  // are often (but not always) well-formed.
  const unsigned pool[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                           0xDF, 0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF};
  int valid = 0, mismatches = 0;
  for (int round = 0; round < 50000; ++round) {
    std::string s(rng() % 12, '\0');
    for (char& c : s) c = static_cast<char>(pool[rng() % std::size(pool)]);
    const bool want = oracle_utf8(s);
    valid += want;
    if (valid_utf8(s) != want) ++mismatches;
  }
  CHECK(mismatches == 0);
  CHECK(valid > 1000);
}

TEST_CASE("protocol validate: text is UTF-8 without NUL", "[unit][protocol][validate]") {
  CHECK(valid_text(""));
  CHECK(valid_text("hello \xE2\x82\xAC \xF0\x9F\x98\x80"));
  CHECK(valid_text("tabs\tand\nnewlines\r\n"));
  for (const std::string& nul : {"\0"s, "a\0b"s, "\0start"s, "end\0"s}) {
    CHECK(valid_utf8(nul));  // NUL is valid UTF-8 ...
    CHECK_FALSE(valid_text(nul));  // ... but PostgreSQL text cannot hold it
  }
  CHECK_FALSE(valid_text(bytes({0xC0, 0x80})));  // "modified UTF-8" NUL is still no NUL
  CHECK_FALSE(valid_text(bytes({0xC0, 0xAF})));
  CHECK_FALSE(valid_text(bytes({0xED, 0xA0, 0x80})));
  CHECK_FALSE(valid_text("ok\xFF"));
}
