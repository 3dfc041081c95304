#pragma once
// SessionHandler: how a connection talks to whatever serves it (the Service;
// a fake in the session's unit tests). The network layer hands over verified
// frames and reports the connection's life: opened (after a successful Hello),
// no more requests, closed — each at most once, in that order — and the bytes
// of responses it holds, so the handler can bound memory across connections.
//
// Thread-safety: every call comes on the connection's executor; one handler
// serves all connections, so an implementation's shared state must be
// thread-safe.

#include <cstddef>
#include <memory>

#include "protocol/frames.hpp"
#include "server/service/connection.hpp"

namespace im::server {

class SessionHandler {
 public:
  virtual ~SessionHandler() = default;

  /// One verified request frame. Each gets exactly one response (respond or fail).
  virtual void on_frame(const std::shared_ptr<Connection>& conn, const wire::Frame& frame) = 0;
  /// Hello succeeded (Connection::open_session): the session is open. Once.
  virtual void on_open(Connection& conn) = 0;
  /// No request can follow (end of stream, a read error, a fatal frame, a
  /// deadline, shutdown); responses still go out. Once, before on_close.
  virtual void on_input_closed(Connection& conn) = 0;
  /// The connection is gone; nothing more reaches the client. Exactly once,
  /// however the connection ended.
  virtual void on_close(Connection& conn) = 0;
  /// A frame (a response, or the session's own Error) was queued for the
  /// client: its size counts until on_unqueued.
  virtual void on_queued(const protocol::OutFrame& frame) = 0;
  /// `bytes` queued earlier left: written to the socket, or dropped at close.
  virtual void on_unqueued(std::size_t bytes) = 0;
  /// The client took bytes: there is room in its outgoing budget again.
  virtual void on_written(Connection& conn) = 0;
};

}  // namespace im::server
