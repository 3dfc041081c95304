#pragma once
// PullOperation: one Pull request, including its long poll.
//
// Runs a query; if nothing is deliverable and the request may wait, it stays
// registered in Waiters. When this process's writer commits to the inbox and
// the committed run starts right after the cursor, the pull is answered from
// the committed batch itself (no PostgreSQL read); any other wake (a commit
// from another process, a run that does not start at the cursor) runs the
// query again, as does a pending gap every gap_recheck_ms. At the deadline it
// answers with whatever is there. Every step runs on the connection's
// executor, so the operation's state needs no lock.
//
// A long poll whose answer was complete (everything up to its next cursor, as
// of a known notification count of the inbox) leaves a mark on the connection;
// the next long poll at that cursor, finding no notification since, waits
// without the first query (see Waiters).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include <asio/steady_timer.hpp>

#include "server/service/connection.hpp"
#include "server/service/store.hpp"
#include "server/service/waiters.hpp"

namespace im::server {

struct ServiceContext;

class PullOperation final : public PendingWait,
                            public std::enable_shared_from_this<PullOperation> {
 public:
  PullOperation(ServiceContext& ctx, std::shared_ptr<Connection> conn, std::uint64_t request_id,
                PullQuery query, std::chrono::milliseconds wait);
  ~PullOperation() override;
  void start();
  /// The connection closed: a waiting pull ends now (its answer goes nowhere).
  void end_wait() override;

 private:
  enum class State { querying, waiting, done };
  /// Asks for the query's room (ReadGate); send_query runs once it has it.
  void query();
  void send_query(std::size_t reserved);
  /// The deadline has not passed, and neither shutdown nor the connection's end stops a wait.
  bool may_wait() const;
  void on_result(const StoreStatus& status, PullPage&& page);
  void on_wake(std::shared_ptr<const CommittedBatch> batch, std::size_t inbox,
               std::uint64_t notified);
  /// Answers from `batch` if it settles this pull; false if a query is needed.
  /// `complete`: the inbox's notification count as of which the batch's run is
  /// all there is past the cursor, if known.
  bool answer_from(const std::shared_ptr<const CommittedBatch>& batch, std::size_t inbox,
                   std::optional<std::uint64_t> complete);
  void arm_timer(std::chrono::steady_clock::time_point at);
  /// Answers. `complete`: the answer holds everything past the cursor as of
  /// that notification count of the inbox (then a mark is left).
  void finish(std::span<const protocol::MessageRecord> messages, std::int64_t next_after_seq,
              bool has_more, bool from_commit, std::optional<std::uint64_t> complete);

  ServiceContext& ctx_;
  std::shared_ptr<Connection> conn_;
  std::uint64_t request_id_;
  PullQuery query_;
  std::chrono::steady_clock::time_point deadline_;
  asio::steady_timer timer_;
  State state_ = State::querying;
  bool woken_ = false;  // a commit arrived while a query was running
  bool woken_any_ = false;  // woken at least once (for the answer counters)
  // The first such commit whose run starts right after the cursor: if the
  // query comes back empty, it answers instead of a second query.
  std::shared_ptr<const CommittedBatch> woken_batch_;
  std::size_t woken_inbox_ = 0;
  std::uint64_t woken_notified_ = 0;  // the inbox's notification count with woken_batch_
  std::uint64_t ticket_ = 0;
  std::weak_ptr<Waiters::State> waiters_;  // for the destructor (see there)
  // The inbox's notification count when the running (or last) query was sent:
  // its answer holds everything committed and notified up to then.
  std::uint64_t query_notified_ = 0;
  // While waiting: nothing past the cursor as of this notification count, if known.
  std::optional<std::uint64_t> known_;
  std::uint64_t timer_generation_ = 0;
  std::size_t reserved_ = 0;  // bytes the running query holds in the ReadGate
};

}  // namespace im::server
