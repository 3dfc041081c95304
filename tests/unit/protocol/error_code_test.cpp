// Unit: error codes and union type numbers are part of the wire contract:
// numbers never change, names (error_code_name) are stable and distinct.
#include <catch2/catch.hpp>

#include <cstring>
#include <set>
#include <string>

#include "protocol/frames.hpp"

using namespace im;
using namespace im::protocol;

TEST_CASE("protocol errors: every code has its stable, distinct name", "[unit][protocol][errors]") {
  // The table in protocol/README.md; clients and logs match on these.
  const std::pair<wire::ErrorCode, const char*> table[] = {
      {wire::ErrorCode::Unknown, "unknown"},
      {wire::ErrorCode::BadRequest, "bad_request"},
      {wire::ErrorCode::Unauthenticated, "unauthenticated"},
      {wire::ErrorCode::Forbidden, "forbidden"},
      {wire::ErrorCode::NotFound, "not_found"},
      {wire::ErrorCode::TooLarge, "too_large"},
      {wire::ErrorCode::RateLimited, "rate_limited"},
      {wire::ErrorCode::Unavailable, "unavailable"},
      {wire::ErrorCode::Internal, "internal"},
      {wire::ErrorCode::ProtocolError, "protocol_error"},
      {wire::ErrorCode::Busy, "busy"},
      {wire::ErrorCode::AlreadyExists, "already_exists"},
  };
  // A code added to the schema must be added here (and to the README) too.
  REQUIRE(std::size(table) == static_cast<std::size_t>(wire::ErrorCode::MAX) + 1);
  std::set<std::string> names;
  for (std::size_t i = 0; i < std::size(table); ++i) {
    const auto [code, name] = table[i];
    INFO("code " << i);
    CHECK(static_cast<std::size_t>(code) == i);  // numbers never change
    const char* got = error_code_name(code);
    REQUIRE(got != nullptr);
    CHECK(std::string(got) == name);
    CHECK(std::string(got).find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos);
    CHECK(error_code_name(code) == got);  // the same static string every time
    names.insert(got);
  }
  CHECK(names.size() == std::size(table));
}

TEST_CASE("protocol errors: a code from a newer peer names as unknown",
          "[unit][protocol][errors]") {
  for (const int c : {12, 13, 100, 0xFFFF}) {
    INFO("code " << c);
    const char* name = error_code_name(static_cast<wire::ErrorCode>(c));
    REQUIRE(name != nullptr);
    CHECK(std::strcmp(name, "unknown") == 0);
  }
}

TEST_CASE("protocol errors: body union type numbers are fixed", "[unit][protocol][errors]") {
  CHECK(static_cast<int>(wire::Body::NONE) == 0);
  CHECK(static_cast<int>(wire::Body::Hello) == 1);
  CHECK(static_cast<int>(wire::Body::Welcome) == 2);
  CHECK(static_cast<int>(wire::Body::Send) == 3);
  CHECK(static_cast<int>(wire::Body::SendAck) == 4);
  CHECK(static_cast<int>(wire::Body::Pull) == 5);
  CHECK(static_cast<int>(wire::Body::PullResult) == 6);
  CHECK(static_cast<int>(wire::Body::History) == 7);
  CHECK(static_cast<int>(wire::Body::HistoryResult) == 8);
  CHECK(static_cast<int>(wire::Body::Ping) == 9);
  CHECK(static_cast<int>(wire::Body::Pong) == 10);
  CHECK(static_cast<int>(wire::Body::Error) == 11);
  CHECK(static_cast<int>(wire::Body::Register) == 12);
  CHECK(static_cast<int>(wire::Body::Login) == 13);
  CHECK(static_cast<int>(wire::Body::AuthResult) == 14);
  CHECK(wire::Body::MAX == wire::Body::AuthResult);
  CHECK(std::string(wire::FrameIdentifier()) == "IMP1");
  CHECK(kProtocolVersion == 1);
}
