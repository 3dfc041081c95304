#pragma once
// LogThrottle: counts events (rejections, timeouts) and lets a log line about
// them through at most once per interval, so a flood of refusals costs a
// counter increment each instead of a log line each.
//
// Thread-safety: lock-free; note() may be called from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>

namespace im::server {

class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;

  explicit LogThrottle(std::chrono::milliseconds interval = std::chrono::seconds(1))
      : interval_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count()) {}

  /// Counts one event. Returns how many events the caller's line should
  /// report (this one and those held back since the last line), or 0 when no
  /// line should be written now.
  std::uint64_t note(Clock::time_point now = Clock::now()) {
    total_.fetch_add(1, std::memory_order_relaxed);
    pending_.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t now_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
    std::int64_t next = next_ns_.load(std::memory_order_relaxed);
    if (now_ns < next) return 0;
    // One thread wins the interval; the others only count.
    if (!next_ns_.compare_exchange_strong(next, now_ns + interval_ns_, std::memory_order_relaxed)) {
      return 0;
    }
    return pending_.exchange(0, std::memory_order_relaxed);
  }

  /// Every event counted so far.
  std::uint64_t total() const { return total_.load(std::memory_order_relaxed); }

 private:
  const std::int64_t interval_ns_;
  std::atomic<std::int64_t> next_ns_{std::numeric_limits<std::int64_t>::min()};
  std::atomic<std::uint64_t> pending_{0};
  std::atomic<std::uint64_t> total_{0};
};

}  // namespace im::server
