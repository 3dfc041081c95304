#pragma once
// How the client's parts (connection.cpp, session.cpp, async_client.cpp) make
// an Error. Internal to libimclient: not installed with client.hpp.
//
// Thread-safety: pure functions.

#include <string>
#include <utility>

#include "client/client.hpp"

namespace im::client {

inline Error make_error(Error::Kind kind, std::string message) {
  Error e;
  e.kind = kind;
  e.message = std::move(message);
  return e;
}

/// The server's Error frame as a value (Kind::server).
inline Error from_wire(const wire::Error& e) {
  Error out;
  out.kind = Error::Kind::server;
  out.code = e.code();
  out.message = e.message() ? e.message()->str() : "";
  out.retry_after_ms = e.retry_after_ms();
  return out;
}

}  // namespace im::client
