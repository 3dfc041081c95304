#pragma once
// Catch2 checks for tests that read the server's responses. Each checks what
// arrived before reading it: a missing frame or a frame of another type fails
// the test with what did arrive ("expected SendAck, got Error{too_large: ...}")
// instead of dereferencing a null body. A server bug must fail a check, never
// crash the test binary (which hides every later test case of the run).
//
// Header-only, for test executables that link Catch2.

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <utility>

#include "tests/support/raw_client.hpp"

namespace im::test {

/// The name of a body type, as the schema spells it ("SendAck").
inline std::string body_name(wire::Body type) {
  const char* name = wire::EnumNameBody(type);
  return name && *name ? name : "body type " + std::to_string(static_cast<int>(type));
}

/// The frame that arrived; fails the test (naming `what`) if none did.
inline Received expect_frame(std::optional<Received> r, const char* what = "response") {
  INFO("waiting for a " << what);
  REQUIRE(r.has_value());
  return std::move(*r);
}

/// The body of `r` as a T (wire::SendAck, wire::PullResult, ...); fails the
/// test naming the actual type (and an Error's code and message) otherwise.
template <typename T>
const T& body_of(const Received& r) {
  const std::string wanted = body_name(wire::BodyTraits<T>::enum_value);
  INFO("expected " << wanted << ", got " << r.describe());
  REQUIRE(body_name(r.frame()->body_type()) == wanted);
  const T* body = r.frame()->template body_as<T>();
  REQUIRE(body != nullptr);
  return *body;
}

/// The code of an Error response; fails the test if `r` is not an Error.
inline wire::ErrorCode error_code_of(const Received& r) { return body_of<wire::Error>(r).code(); }

/// The messages of a page, empty when the vector is absent.
template <typename Page>
std::size_t page_size(const Page& p) {
  return p.messages() ? p.messages()->size() : 0;
}

}  // namespace im::test
