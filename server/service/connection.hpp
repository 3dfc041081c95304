#pragma once
// Connection: what a request handler may do with the connection a request came
// on. Implemented by net::Session; handlers never see the socket.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
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
  /// No request can follow (responses still go out).
  bool closing = false;
  /// The connection is gone: nothing more reaches the client.
  bool closed = false;

  /// Reads of this connection waiting for room, and those running (ReadGate).
  struct WaitingRead {
    std::size_t worst = 0;
    std::function<void()> start;
    std::function<void()> refuse;
  };
  struct Reads {
    std::size_t running = 0;
    std::size_t reserved = 0;  // bytes reserved by the running reads
    // waiting[head ...] wait, in arrival order. A vector: an idle connection
    // holds no memory for it.
    std::vector<WaitingRead> waiting;
    std::size_t head = 0;
    bool waiting_empty() const { return head == waiting.size(); }
  } reads;
  /// Set when the connection closes, for reads already queued in storage (made
  /// on a connection's first read).
  std::shared_ptr<std::atomic<bool>> gone;
};

}  // namespace im::server
