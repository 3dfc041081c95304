#pragma once
// Histogram: counts values in power-of-two buckets, lock-free, for latencies
// (in microseconds) and sizes on hot paths: record() is two relaxed atomic
// adds. Bucket 0 holds values <= 1, bucket i (1 <= i < kBuckets - 1) values in
// (2^(i-1), 2^i], and the last every value above 2^(kBuckets - 2). A snapshot
// is plain data (the metrics endpoint's cumulative buckets derive from it).
//
// Thread-safety: record() from any thread; snapshot() too (each bucket is read
// on its own, so a snapshot taken while values arrive may be off by those).

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace im::server {

class Histogram {
 public:
  static constexpr std::size_t kBuckets = 40;  // up to 2^38 (µs: 3 days) then overflow

  struct Snapshot {
    std::array<std::uint64_t, kBuckets> counts{};
    std::uint64_t sum = 0;

    /// The largest value bucket i holds (the last: the type's maximum).
    static std::uint64_t upper_bound(std::size_t i) {
      return i + 1 < kBuckets ? std::uint64_t{1} << i : std::numeric_limits<std::uint64_t>::max();
    }
    std::uint64_t count() const {
      std::uint64_t n = 0;
      for (const auto c : counts) n += c;
      return n;
    }
    /// An upper bound of the q-quantile (0 < q <= 1): the bound of the bucket
    /// it falls in; 0 when empty.
    std::uint64_t quantile_bound(double q) const {
      const std::uint64_t n = count();
      if (n == 0) return 0;
      auto rank = static_cast<std::uint64_t>(q * static_cast<double>(n));
      if (rank == 0) rank = 1;
      std::uint64_t seen = 0;
      for (std::size_t i = 0; i < kBuckets; ++i) {
        seen += counts[i];
        if (seen >= rank) return upper_bound(i);
      }
      return upper_bound(kBuckets - 1);
    }
  };

  static std::size_t bucket(std::uint64_t value) {
    if (value <= 1) return 0;
    const auto i = static_cast<std::size_t>(std::bit_width(value - 1));  // 2^(i-1) < value <= 2^i
    return i < kBuckets - 1 ? i : kBuckets - 1;
  }

  void record(std::uint64_t value) {
    counts_[bucket(value)].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(value, std::memory_order_relaxed);
  }

  Snapshot snapshot() const {
    Snapshot s;
    for (std::size_t i = 0; i < kBuckets; ++i) s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> sum_{0};
};

}  // namespace im::server
