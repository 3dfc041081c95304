#pragma once
// BatchQueue: the bounded hand-off between I/O threads and the group-commit writer.
//
// Producers (any thread) push items; one consumer takes them in batches of at
// most `max_batch`, waiting at most `max_delay` after the oldest waiting item
// arrived for the batch to fill. FIFO order is kept, so requests pipelined on
// one connection stay in order. Capacity is bounded: push fails when full, and
// the caller answers "busy" instead of growing memory.
//
// Thread-safety: all members may be called concurrently.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <vector>

namespace im::server {

template <typename T>
class BatchQueue {
 public:
  using Clock = std::chrono::steady_clock;

  BatchQueue(std::size_t capacity, std::size_t max_batch, std::chrono::microseconds max_delay)
      : capacity_(capacity), max_batch_(max_batch), max_delay_(max_delay) {}

  enum class PushResult { ok, full, closed };

  /// Appends `item` unless the queue is full or closed (then `item` is untouched).
  PushResult push(T& item) {
    {
      std::lock_guard lock(mu_);
      if (closed_) return PushResult::closed;
      if (items_.size() >= capacity_) return PushResult::full;
      if (items_.empty()) oldest_ = Clock::now();
      items_.push_back(std::move(item));
    }
    cv_.notify_one();
    return PushResult::ok;
  }

  /// Blocks until a batch is ready and moves it into `out` (cleared first).
  /// A batch is ready when max_batch items wait, when the oldest has waited
  /// max_delay, or when the queue is closed (then whatever is left is drained).
  /// Returns false once the queue is closed and empty.
  bool pop_batch(std::vector<T>& out) {
    out.clear();
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return false;
    const auto deadline = oldest_ + max_delay_;
    cv_.wait_until(lock, deadline, [&] { return closed_ || items_.size() >= max_batch_; });
    const std::size_t n = std::min(items_.size(), max_batch_);
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
    // Items left behind have waited at least as long as the batch just taken.
    if (!items_.empty()) oldest_ = Clock::now() - max_delay_;
    return true;
  }

  /// Refuses further pushes; pop_batch drains what is left, then returns false.
  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return items_.size();
  }

 private:
  const std::size_t capacity_;
  const std::size_t max_batch_;
  const std::chrono::microseconds max_delay_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> items_;
  Clock::time_point oldest_{};
  bool closed_ = false;
};

}  // namespace im::server
