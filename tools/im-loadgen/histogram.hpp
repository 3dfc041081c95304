#pragma once
// Histogram: latency percentiles with bounded memory and ~1% relative error
// (log-linear buckets, as HdrHistogram does). Not thread-safe: keep one per
// thread and merge().

#include <cstdint>
#include <vector>

namespace im::loadgen {

class Histogram {
 public:
  Histogram();
  void record(std::int64_t value_us);
  void merge(const Histogram& other);
  /// The value at quantile q in [0, 1] (upper edge of its bucket), 0 if empty.
  std::int64_t quantile(double q) const;
  std::int64_t max() const { return max_; }
  std::uint64_t count() const { return count_; }

 private:
  static std::size_t bucket_of(std::int64_t v);
  static std::int64_t upper_edge(std::size_t bucket);
  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0;
  std::int64_t max_ = 0;
};

}  // namespace im::loadgen
