#include "server/service/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace im::server {
namespace {
constexpr std::size_t kMinSweepSize = 1024;
}  // namespace

RateLimiter::RateLimiter(Options options)
    : options_(options),
      max_per_shard_(std::max<std::size_t>(1, options.max_keys / kShards)) {
  for (auto& shard : shards_) shard.sweep_at = kMinSweepSize;
}

double RateLimiter::refilled(const Bucket& b, Clock::time_point now) const {
  const double elapsed = std::chrono::duration<double>(now - b.updated).count();
  if (elapsed <= 0) return b.tokens;
  return std::min<double>(options_.burst, b.tokens + elapsed * options_.rate);
}

RateLimiter::Decision RateLimiter::acquire(std::string_view key, Clock::time_point now) {
  if (!enabled()) return {};
  Shard& shard = shards_[Hash{}(key) % kShards];
  std::lock_guard lock(shard.mu);
  if (shard.buckets.size() >= shard.sweep_at || now - shard.last_sweep >= options_.sweep_interval) {
    sweep(shard, now);
  }
  auto it = shard.buckets.find(key);
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= max_per_shard_) {
      untracked_.fetch_add(1, std::memory_order_relaxed);
      return {};
    }
    // A new key starts with a full bucket; this acquire takes one token.
    shard.buckets.emplace(std::string(key), Bucket{double(options_.burst) - 1, now});
    return {};
  }
  Bucket& b = it->second;
  b.tokens = refilled(b, now);
  if (now > b.updated) b.updated = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return {};
  }
  const double wait_ms = std::ceil((1 - b.tokens) / options_.rate * 1000.0);
  return {false, std::chrono::milliseconds(std::max<std::int64_t>(1, std::int64_t(wait_ms)))};
}

void RateLimiter::sweep(Shard& shard, Clock::time_point now) {
  // A full bucket is the same as no bucket: forget it.
  std::erase_if(shard.buckets, [&](const auto& kv) { return refilled(kv.second, now) >= options_.burst; });
  shard.last_sweep = now;
  shard.sweep_at = std::max(kMinSweepSize, 2 * shard.buckets.size());
}

std::size_t RateLimiter::size() const {
  std::size_t n = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard.mu);
    n += shard.buckets.size();
  }
  return n;
}

}  // namespace im::server
