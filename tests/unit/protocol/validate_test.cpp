// Unit: user ids and UTF-8 text checks.
#include <catch2/catch.hpp>

#include "protocol/validate.hpp"

using namespace im::protocol;

TEST_CASE("user ids: 1-64 bytes of letters, digits, '.', '_', '-'", "[unit][validate]") {
  CHECK(valid_user_id("a"));
  CHECK(valid_user_id("Alice.B_c-9"));
  CHECK(valid_user_id(std::string(64, 'x')));
  CHECK_FALSE(valid_user_id(""));
  CHECK_FALSE(valid_user_id(std::string(65, 'x')));
  for (const char* bad : {"a b", "a/b", "a@b", "a:b", "a\nb", "\xC3\xA9", "a\tb", "a+b"}) {
    INFO(bad);
    CHECK_FALSE(valid_user_id(bad));
  }
  CHECK_FALSE(valid_user_id(std::string("a\0b", 3)));
}

TEST_CASE("UTF-8: well-formed sequences only", "[unit][validate]") {
  CHECK(valid_utf8(""));
  CHECK(valid_utf8("plain ascii"));
  CHECK(valid_utf8("\xC3\xA9"));          // é, 2 bytes
  CHECK(valid_utf8("\xE2\x82\xAC"));      // €, 3 bytes
  CHECK(valid_utf8("\xF0\x9F\x98\x80"));  // 😀, 4 bytes
  CHECK(valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  CHECK_FALSE(valid_utf8("\xC0\xAF"));          // overlong '/'
  CHECK_FALSE(valid_utf8("\xE0\x80\xAF"));      // overlong, 3 bytes
  CHECK_FALSE(valid_utf8("\xF0\x80\x80\xAF"));  // overlong, 4 bytes
  CHECK_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate U+D800
  CHECK_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(valid_utf8("\x80"));              // stray continuation
  CHECK_FALSE(valid_utf8("\xC3"));              // truncated
  CHECK_FALSE(valid_utf8("\xE2\x82"));          // truncated
  CHECK_FALSE(valid_utf8("\xC3\x28"));          // bad continuation
  CHECK_FALSE(valid_utf8("\xFF"));              // never valid
}

TEST_CASE("text: UTF-8 without NUL", "[unit][validate]") {
  CHECK(valid_text("hello \xE2\x82\xAC"));
  CHECK(valid_utf8(std::string("a\0b", 3)));         // NUL is valid UTF-8...
  CHECK_FALSE(valid_text(std::string("a\0b", 3)));   // ...but not storable text
  CHECK_FALSE(valid_text("\xC0\xAF"));
}
