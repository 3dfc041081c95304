#pragma once
// Connection: what a request handler may do with the connection a request came
// on. Implemented by net::Session (and tests' FakeConnection); handlers never
// see the socket.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>

#include <asio/any_io_executor.hpp>

#include "protocol/frames.hpp"
#include "server/service/session_state.hpp"

namespace im::server {

class Connection {
 public:
  virtual ~Connection() = default;

  /// Queues the response to one request (thread-safe; posts to the
  /// connection's executor). Each request gets exactly one.
  virtual void respond(protocol::OutFrame frame) = 0;
  /// Queues a response at once; only on the connection's executor (respond()
  /// posts). Used where a read's reservation is handed over to the queued
  /// bytes, so that nothing starts in between.
  virtual void respond_now(protocol::OutFrame frame) { respond(std::move(frame)); }
  /// Response bytes queued for the client that its socket has not taken yet.
  virtual std::size_t queued_bytes() const { return 0; }
  /// The most response bytes the connection keeps for its client (beyond it a
  /// client that does not read is reset); reads wait to stay within it.
  virtual std::size_t outgoing_budget() const { return std::numeric_limits<std::size_t>::max(); }
  /// Sends `frame` (an Error), then closes the connection once it is written.
  /// Call on the connection's executor.
  virtual void fail(protocol::OutFrame frame) = 0;
  /// Hello succeeded for `user`: the connection leaves its handshake (its
  /// deadline and smaller frame limit end) and reports the open session to its
  /// SessionHandler (on_open). Call on the connection's executor, once.
  virtual void open_session(std::string_view user) = 0;
  /// The executor every handler step of this connection runs on.
  virtual asio::any_io_executor executor() = 0;
  virtual std::uint64_t id() const = 0;
  /// No request can follow (responses still go out).
  virtual bool closing() const = 0;
  /// The connection is gone: nothing more reaches the client.
  virtual bool closed() const = 0;

  /// The service's state for this connection (on the connection's executor).
  SessionState& state() { return state_; }
  const SessionState& state() const { return state_; }

 private:
  SessionState state_;
};

}  // namespace im::server
