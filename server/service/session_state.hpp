#pragma once
// SessionState: what the service keeps for one connection — who it is, until
// when, its long polls and its reads. The connection holds it (one per
// connection, made and freed with it) but never looks inside: the network
// layer knows only frames, bytes and deadlines.
//
// Thread-safety: touched only on the connection's executor.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace im::server {

class InboxMark;

/// A request that waits (a long poll). When its connection stops taking
/// requests it is ended at once, so that it answers with what is there instead
/// of holding the connection until its deadline.
class PendingWait {
 public:
  virtual ~PendingWait() = default;
  /// Called on the connection's executor.
  virtual void end_wait() = 0;
};

struct SessionState {
  std::string user;  // empty until Hello
  bool open = false;  // the handler saw on_open (and counts the session)
  /// When the session's token expires (µs since the epoch); 0: never.
  std::int64_t auth_expires_us = 0;
  /// Long polls of this connection (expired entries are pruned as new ones come).
  std::vector<std::weak_ptr<PendingWait>> waits;
  /// What the last answered long poll proved about the session's inbox (see
  /// Waiters): lets the next one wait without a query.
  std::shared_ptr<InboxMark> inbox_mark;

  /// Ends every long poll of the connection.
  void end_waits() {
    auto all = std::move(waits);
    waits.clear();
    for (auto& w : all) {
      if (auto p = w.lock()) p->end_wait();
    }
  }

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
