#pragma once
// RateLimiter: one token bucket per key (the Service keys it by user id).
// A bucket holds up to `burst` tokens and refills at `rate` tokens a second;
// each acquire() takes one token or, when none is left, says how long until
// one will be.
//
// Memory stays bounded: a bucket that has refilled to full behaves exactly like
// a new one, so it is dropped. Each shard sweeps such buckets when it has
// doubled in size since its last sweep or when the sweep interval has passed,
// so the limiter holds only the keys active within about one refill time
// (burst / rate) plus the sweep interval. A shard that still holds
// max_keys / shards buckets after a sweep admits new keys without tracking
// them (counted in untracked()) rather than grow.
//
// Thread-safety: keys are spread over shards, each behind its own mutex;
// acquire() may be called from any thread. Time is passed in (no clock
// inside), so tests drive it; `now` should not go backwards (if it does, no
// tokens are added).

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace im::server {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    double rate = 0;           // tokens per second; 0 or less: unlimited
    std::uint32_t burst = 1;   // bucket size, at least 1
    std::size_t max_keys = 1u << 20;
    std::chrono::milliseconds sweep_interval{10000};
  };

  struct Decision {
    bool allowed = true;
    /// When refused: time until the next token (at least 1 ms).
    std::chrono::milliseconds retry_after{0};
  };

  explicit RateLimiter(Options options);

  bool enabled() const { return options_.rate > 0; }

  /// Takes one token from `key`'s bucket at time `now`.
  Decision acquire(std::string_view key, Clock::time_point now);

  /// Buckets held now (for tests and logs).
  std::size_t size() const;
  /// Acquires let through without a bucket because a shard was full.
  std::uint64_t untracked() const { return untracked_.load(std::memory_order_relaxed); }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Bucket, Hash, std::equal_to<>> buckets;
    Clock::time_point last_sweep{};
    std::size_t sweep_at = 0;
  };
  static constexpr std::size_t kShards = 16;

  /// Tokens in `b` at `now`, capped at burst.
  double refilled(const Bucket& b, Clock::time_point now) const;
  void sweep(Shard& shard, Clock::time_point now);

  const Options options_;
  const std::size_t max_per_shard_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::uint64_t> untracked_{0};
};

}  // namespace im::server
