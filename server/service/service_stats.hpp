#pragma once
// ServiceStats: what the service layer counts — requests by type, every Error
// a client was sent by code, sends acked and failed (by code) with their ack
// latency, sessions — as relaxed atomics, so counting costs an uncontended
// atomic add on the path it counts. Snapshot() gives plain numbers.
//
// Thread-safety: every member may be touched from any thread.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "protocol/frames.hpp"
#include "server/common/histogram.hpp"

namespace im::server {

inline constexpr std::size_t kBodyTypes = static_cast<std::size_t>(wire::Body::MAX) + 1;
inline constexpr std::size_t kErrorCodes = static_cast<std::size_t>(wire::ErrorCode::MAX) + 1;

struct ServiceStats {
  using Counter = std::atomic<std::uint64_t>;

  std::array<Counter, kBodyTypes> requests{};   // by body type, as dispatched
  std::array<Counter, kErrorCodes> errors{};    // Error frames queued for clients, by code
  Counter sends_acked{0};
  std::array<Counter, kErrorCodes> sends_failed{};  // a Send answered with an Error, by code
  Histogram send_ack_us;  // from the Send's arrival to its ack (durable), µs
  Counter sessions_open{0};    // Hello succeeded, not closed yet
  Counter sessions_opened{0};  // since start

  static void add(Counter& c, std::uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

  struct Snapshot {
    std::array<std::uint64_t, kBodyTypes> requests{};
    std::array<std::uint64_t, kErrorCodes> errors{};
    std::uint64_t sends_acked = 0;
    std::array<std::uint64_t, kErrorCodes> sends_failed{};
    Histogram::Snapshot send_ack_us;
    std::uint64_t sessions_open = 0;
    std::uint64_t sessions_opened = 0;
  };
  Snapshot snapshot() const {
    Snapshot s;
    for (std::size_t i = 0; i < kBodyTypes; ++i) s.requests[i] = requests[i].load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < kErrorCodes; ++i) {
      s.errors[i] = errors[i].load(std::memory_order_relaxed);
      s.sends_failed[i] = sends_failed[i].load(std::memory_order_relaxed);
    }
    s.sends_acked = sends_acked.load(std::memory_order_relaxed);
    s.send_ack_us = send_ack_us.snapshot();
    s.sessions_open = sessions_open.load(std::memory_order_relaxed);
    s.sessions_opened = sessions_opened.load(std::memory_order_relaxed);
    return s;
  }
};

}  // namespace im::server
