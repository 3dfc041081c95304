#pragma once
// Waiters: the long-poll registry. A pull that found nothing registers a wake
// callback for its inbox; the group-commit writer calls notify() after each
// commit with the batch it committed, and each matching pull is handed the
// batch (shared, not copied) and the index of its inbox in it.
//
// Thread-safety: all members may be called from any thread. Wake callbacks are
// invoked outside the lock and must only post work (never block).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/service/store.hpp"

namespace im::server {

class Waiters final : public CommitListener {
 public:
  /// `batch` is null on notify_all() (shutdown); `inbox` indexes batch->inboxes.
  using Wake = std::function<void(const std::shared_ptr<const CommittedBatch>& batch,
                                  std::size_t inbox)>;

  /// Registers `wake` for `owner`'s inbox; returns a ticket for remove().
  std::uint64_t add(const std::string& owner, Wake wake);
  void remove(const std::string& owner, std::uint64_t ticket);

  void notify(const std::shared_ptr<const CommittedBatch>& batch) override;
  /// Wakes every waiter (shutdown) with no batch.
  void notify_all();

  std::size_t size() const;

  /// How woken long polls were answered: from the committed batch, or by a
  /// query (a remote commit, a gap, a cursor that did not match, a timeout).
  void count_answer(bool from_commit) {
    (from_commit ? from_commit_ : from_query_).fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t answered_from_commit() const { return from_commit_.load(); }
  std::uint64_t answered_from_query() const { return from_query_.load(); }

 private:
  // Shared so that notify() can collect the callbacks to run outside the lock
  // without copying (and allocating) each std::function.
  using WakePtr = std::shared_ptr<const Wake>;
  mutable std::mutex mu_;
  std::uint64_t next_ticket_ = 1;
  std::unordered_map<std::string, std::unordered_map<std::uint64_t, WakePtr>> by_owner_;
  std::atomic<std::uint64_t> from_commit_{0};
  std::atomic<std::uint64_t> from_query_{0};
};

}  // namespace im::server
