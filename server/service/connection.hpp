#pragma once
// Connection: what a request handler may do with the connection a request came
// on. Implemented by net::Session; handlers never see the socket.

#include <cstdint>
#include <string>

#include <asio/any_io_executor.hpp>

#include "protocol/frames.hpp"

namespace im::server {

class Connection {
 public:
  virtual ~Connection() = default;

  /// Queues the response to one request (thread-safe; posts to the
  /// connection's executor). Each request gets exactly one.
  virtual void respond(protocol::OutFrame frame) = 0;
  /// Sends `frame` (an Error), then closes the connection once it is written.
  /// Call on the connection's executor.
  virtual void fail(protocol::OutFrame frame) = 0;
  /// The executor every handler step of this connection runs on.
  virtual asio::any_io_executor executor() = 0;
  virtual std::uint64_t id() const = 0;

  // Session state, touched only on the connection's executor.
  std::string user;  // empty until Hello
  /// When the session's token expires (µs since the epoch); 0: never.
  std::int64_t auth_expires_us = 0;
  bool closing = false;
};

}  // namespace im::server
