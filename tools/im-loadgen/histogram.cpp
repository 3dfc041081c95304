#include "tools/im-loadgen/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace im::loadgen {
namespace {
// 64 sub-buckets per power of two: values below 64 are exact, the rest within
// 1/64 (~1.6%) of the true value.
constexpr int kSubBits = 6;
constexpr std::size_t kSub = std::size_t{1} << kSubBits;
constexpr std::size_t kBuckets = kSub * 40;
}  // namespace

Histogram::Histogram() : buckets_(kBuckets, 0) {}

std::size_t Histogram::bucket_of(std::int64_t v) {
  const auto u = static_cast<std::uint64_t>(std::max<std::int64_t>(v, 0));
  if (u < kSub) return static_cast<std::size_t>(u);
  const int msb = 63 - std::countl_zero(u);  // >= kSubBits
  const int shift = msb - kSubBits;
  const std::size_t group = static_cast<std::size_t>(shift + 1);
  const std::size_t sub = static_cast<std::size_t>(u >> shift) - kSub;
  return std::min(kBuckets - 1, group * kSub + sub);
}

std::int64_t Histogram::upper_edge(std::size_t bucket) {
  if (bucket < kSub) return static_cast<std::int64_t>(bucket);
  const std::size_t group = bucket / kSub;
  const std::size_t sub = bucket % kSub;
  const int shift = static_cast<int>(group) - 1;
  return static_cast<std::int64_t>(((kSub + sub + 1) << shift) - 1);
}

void Histogram::record(std::int64_t value_us) {
  ++buckets_[bucket_of(value_us)];
  ++count_;
  max_ = std::max(max_, value_us);
}

void Histogram::merge(const Histogram& other) {
  for (std::size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
}

std::int64_t Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= std::max<std::uint64_t>(rank, 1)) return std::min(upper_edge(i), max_);
  }
  return max_;
}

}  // namespace im::loadgen
