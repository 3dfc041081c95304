#pragma once
// Connection: what a request handler may do with the connection a request came
// on. Implemented by net::Session; handlers never see the socket.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <asio/any_io_executor.hpp>

#include "protocol/frames.hpp"

namespace im::server {

class InboxMark;

/// A request that waits (a long poll). When its connection closes it is ended
/// at once, so that it lets go of the connection instead of holding it until
/// its deadline.
class PendingWait {
 public:
  virtual ~PendingWait() = default;
  /// Called on the connection's executor.
  virtual void end_wait() = 0;
};

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
  /// Long polls of this connection (expired entries are pruned as new ones come).
  std::vector<std::weak_ptr<PendingWait>> waits;
  /// What the last answered long poll proved about the session's inbox (see
  /// Waiters): lets the next one wait without a query.
  std::shared_ptr<InboxMark> inbox_mark;

  /// Ends every long poll of the connection; the session calls it as it closes.
  void end_waits() {
    auto all = std::move(waits);
    waits.clear();
    for (auto& w : all) {
      if (auto p = w.lock()) p->end_wait();
    }
  }
  bool closing = false;
};

}  // namespace im::server
