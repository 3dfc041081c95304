#pragma once
// Waiters: the long-poll registry. A pull that found nothing registers a wake
// callback for its inbox; the group-commit writer calls notify() after each
// commit with the batch it committed, and each matching pull is handed the
// batch (shared, not copied) and the index of its inbox in it.
//
// Notification counts and quiet marks. Every inbox the registry tracks (one
// with a waiter or a mark) counts the notifications that named it. A pull that
// answered everything up to seq S, complete as of the inbox's n-th
// notification, leaves a mark (S, n) on its connection. The client's next pull
// (cursor S) registers; if the count is still n, nothing was committed past S
// and notified since, and whatever commits later wakes it: it waits without
// asking PostgreSQL. This is what keeps a follower's every next poll from
// costing an empty query.
// A commit that is never notified (another process crashed between COMMIT and
// PUBLISH, or its PUBLISH was lost) is found by the query at the poll's
// deadline, as it is for a poll already waiting; the mark widens that window by
// the time between two polls, and resync() (after the Redis subscription was
// broken) makes every mark stale and every waiter query again.
//
// Thread-safety: all members may be called from any thread. Wake callbacks are
// invoked outside the lock and must only post work (never block). Marks may
// outlive the Waiters.

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

/// What an answered pull proved about its inbox (see Waiters). Opaque; it
/// keeps its inbox tracked, so that the count it holds stays comparable.
class InboxMark;

class Waiters final : public CommitListener {
 public:
  /// `batch` is null on notify_all() (shutdown) and resync(); `inbox` indexes
  /// batch->inboxes; `notified` is the inbox's notification count after this one.
  using Wake = std::function<void(const std::shared_ptr<const CommittedBatch>& batch,
                                  std::size_t inbox, std::uint64_t notified)>;

  Waiters();
  ~Waiters() override;

  struct Added {
    std::uint64_t ticket = 0;    // for remove()
    std::uint64_t notified = 0;  // the inbox's notification count at registration
  };
  /// Registers `wake` for `owner`'s inbox.
  Added add(const std::string& owner, Wake wake);
  void remove(const std::string& owner, std::uint64_t ticket);
  /// The inbox's notification count now; only meaningful while it is tracked
  /// (a registered waiter or a mark holds it).
  std::uint64_t notified(const std::string& owner) const;

  /// A mark: nothing past `seq` was committed to `owner`'s inbox as of its
  /// `notified`-th notification. Null if the inbox is not tracked.
  std::shared_ptr<InboxMark> mark(const std::string& owner, std::int64_t seq,
                                  std::uint64_t notified);
  /// True when `mark` proves `owner`'s inbox empty past `after_seq` now, given
  /// its count `notified_now`: same inbox, same cursor, no notification since.
  static bool quiet(const InboxMark* mark, const std::string& owner, std::int64_t after_seq,
                    std::uint64_t notified_now);

  void notify(const std::shared_ptr<const CommittedBatch>& batch) override;
  /// Wakes every waiter (shutdown) with no batch.
  void notify_all();
  /// Notifications may have been lost (the commit channel broke): every mark
  /// becomes stale and every waiter queries again.
  void resync() override;

  std::size_t size() const;
  /// Inboxes tracked (with a waiter or a mark).
  std::size_t tracked() const;

  /// How woken long polls were answered: from the committed batch, or by a
  /// query (a remote commit, a gap, a cursor that did not match, a timeout).
  void count_answer(bool from_commit) {
    (from_commit ? from_commit_ : from_query_).fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t answered_from_commit() const { return from_commit_.load(); }
  std::uint64_t answered_from_query() const { return from_query_.load(); }
  /// Pulls that a mark spared a query.
  void count_quiet_start() { quiet_starts_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t quiet_starts() const { return quiet_starts_.load(); }

  struct State;  // shared with the marks
  /// What remove() needs, for a holder that may outlive this object (an
  /// operation freed late, e.g. by a read pool that stops after the service).
  std::weak_ptr<State> handle() const { return state_; }
  /// remove() through a handle; nothing if the state is gone.
  static void remove(const std::weak_ptr<State>& handle, const std::string& owner,
                     std::uint64_t ticket);

 private:
  std::shared_ptr<State> state_;
  std::atomic<std::uint64_t> from_commit_{0};
  std::atomic<std::uint64_t> from_query_{0};
  std::atomic<std::uint64_t> quiet_starts_{0};
};

}  // namespace im::server
