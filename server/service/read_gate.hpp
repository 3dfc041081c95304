#pragma once
// ReadGate: bounds the memory that reads (Pull, History) can make the server
// spend, per connection and in all, so that a client that pipelines reads and
// never takes their answers cannot run the server out of memory.
//
// A read reserves its page's worst case (protocol::worst_page_bytes: the
// limit times the largest message, at most the page byte cap) before it goes
// to the reader pool, and holds it until its response is queued on the
// connection; from then on the queued bytes count (in ResponseBudget too)
// until the socket has taken them.
//  - Per connection: at most max_reads_per_connection reads run at once, and
//    one starts only while its worst case fits beside the bytes the connection
//    already has queued and reserved, within its outgoing budget (the bytes
//    after which a client that does not read is reset). A read that does not
//    fit waits, in arrival order, until the client has read or a read ended:
//    a client that reads is slowed to its own pace, never refused. A read
//    alone on a connection with nothing queued always starts.
//  - In all: reserved plus queued response bytes of every connection stay
//    within ResponseBudget's capacity. A read that would pass it is refused
//    at once (busy, with a retry hint) and nothing is read for it.
//  - A closed connection's waiting reads are dropped unread; its running ones
//    are cancelled before they reach PostgreSQL (ReadCancel), or their page is
//    freed unencoded.
//
// Thread-safety: ResponseBudget is lock-free and shared by all connections;
// every ReadGate call for a connection runs on that connection's executor.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "server/service/connection.hpp"
#include "server/service/store.hpp"

namespace im::server {

/// Bytes of responses in memory across all connections: reserved by reads
/// being built, and queued for sockets.
class ResponseBudget {
 public:
  /// `capacity` 0: unlimited (only counted).
  explicit ResponseBudget(std::size_t capacity = 0) : capacity_(capacity) {}
  /// Takes `bytes` if they fit under the capacity.
  bool try_reserve(std::size_t bytes);
  /// Takes `bytes` whatever the capacity (a response that is already built).
  void add(std::size_t bytes);
  void release(std::size_t bytes);

  std::size_t capacity() const { return capacity_; }
  std::size_t used() const { return used_.load(std::memory_order_relaxed); }
  /// The most used at once since start.
  std::size_t peak() const { return peak_.load(std::memory_order_relaxed); }
  /// try_reserve calls that did not fit.
  std::uint64_t refusals() const { return refusals_.load(std::memory_order_relaxed); }

 private:
  void note_peak(std::size_t used);

  const std::size_t capacity_;
  std::atomic<std::size_t> used_{0};
  std::atomic<std::size_t> peak_{0};
  std::atomic<std::uint64_t> refusals_{0};
};

class ReadGate {
 public:
  ReadGate(std::size_t max_reads_per_connection, ResponseBudget& budget)
      : max_reads_(max_reads_per_connection == 0 ? 1 : max_reads_per_connection),
        budget_(budget) {}

  /// A read of at most `worst` bytes for `conn`: `start` runs (now or once it
  /// fits) holding the reservation, which the read gives back with release();
  /// or `refuse` runs, now, if the server-wide budget has no room (the caller
  /// answers busy). Neither runs if the connection closes first.
  void submit(Connection& conn, std::size_t worst, std::function<void()> start,
              std::function<void()> refuse);
  /// A read ended (its response, if any, queued just after): frees its reservation.
  void release(Connection& conn, std::size_t worst);
  /// Starts the waiting reads that now fit (the client read, or a read ended).
  void pump(Connection& conn);
  /// The connection closed: its waiting reads are dropped, running ones cancelled.
  void drop(Connection& conn);
  /// Set once `conn` has closed; for the reads' queries.
  ReadCancel cancel_token(Connection& conn);

  ResponseBudget& budget() { return budget_; }
  std::size_t max_reads_per_connection() const { return max_reads_; }
  /// Reads that had to wait for their connection's budget or slots.
  std::uint64_t waited() const { return waited_.load(std::memory_order_relaxed); }
  /// Reads dropped unrun because their connection closed while they waited.
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  bool fits(const Connection& conn, std::size_t worst) const;

  const std::size_t max_reads_;
  ResponseBudget& budget_;
  std::atomic<std::uint64_t> waited_{0};
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace im::server
