#pragma once
// GroupCommitWriter: the durable send path.
//
// Sends from every connection go into one bounded BatchQueue. The writer thread
// takes a batch (up to batch_max, or whatever arrived within batch_delay of the
// oldest), allocates the receivers' seqs from Redis in one pipelined round trip,
// writes messages and inbox rows to PostgreSQL with one set-based statement
// that is its own transaction (one round trip; a BEGIN ... COMMIT block only
// when tombstones must commit with it), and only after the commit returns
// calls each send's `done`
// and hands the CommitListener the committed batch: per inbox the committed
// seq run and its messages, so woken long polls can answer without a read.
//
// Each receiver's range is allocated for every distinct send of the batch, but
// only sends that store a new message take a seq (the lowest of the range, in
// batch order): a resend, or a send refused because its client_msg_id was used
// for another message, leaves the receiver's inbox untouched. The batch's one
// statement takes every send to be new and rolls itself back if one is not
// (WriterStats::checked_batches); the batch is then written again by a
// statement that checks each key first. The unused top of a range is given
// back to Redis after the commit (if nobody allocated above it meanwhile;
// else it is tombstoned at once). The compare-and-set
// cannot tell a counter that was lost and rebuilt to the same value from an
// untouched one; then a seq is handed out twice, and the (owner, seq) primary
// key refuses the second writer, which retries unacked (as below).
//
// Seq hazards and how they are answered (see docs/design.md):
// - a seq whose write fails leaves a gap: the writer tombstones the seqs it
//   abandons, and readers fill any gap older than gap_fill_ms;
// - Redis behind PostgreSQL (restarted empty, flushed, evicted): a counter that
//   Redis creates fresh is checked against the inbox's MAX(seq) and raised
//   (WriterStats::counter_raises); a seq that is already taken fails the
//   (owner, seq) primary key, and the batch is retried with counters raised
//   above the stored maximum (WriterStats::unique_violation_retries);
// - commits out of seq order (two processes): readers only return the unbroken
//   run after their cursor, so nothing becomes visible below a passed cursor.
//
// Thread-safety: submit() from any thread; start()/stop() from one thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/common/histogram.hpp"
#include "server/service/store.hpp"
#include "server/storage/batch_queue.hpp"
#include "server/storage/fault_points.hpp"
#include "server/storage/pg_session.hpp"
#include "server/storage/redis_seq.hpp"

namespace im::server {

/// What a writer (or all lanes of a ShardedWriter, summed) has done since it
/// started. The names are stable: the server logs them at stop as
/// "writer stats: batches_committed=N ..." and the fault tier greps that line.
struct WriterStats {
  /// Batches whose commit returned (their sends were then acked).
  std::uint64_t batches_committed = 0;
  /// Batches that failed for good (every send answered with the error).
  std::uint64_t batches_failed = 0;
  /// Counters Redis had lost (created fresh, below the inbox's stored
  /// MAX(seq)) that the main path raised before writing: one per counter,
  /// counted when the range allocated after the raise lies above that maximum.
  std::uint64_t counter_raises = 0;
  /// Attempts that hit the (owner, seq) unique index and were written again
  /// after the fallback raised the batch's counters: a counter behind that
  /// the fresh-key check could not see (e.g. a Redis replica behind).
  std::uint64_t unique_violation_retries = 0;
  /// Attempts rolled back by a deadlock (reused keys across lanes or
  /// processes) and written again.
  std::uint64_t deadlock_retries = 0;
  /// Seqs allocated for sends that stored nothing (resends, refused reuses of
  /// a client_msg_id) and returned to the Redis counter after the commit.
  std::uint64_t seqs_given_back = 0;
  /// Seqs tombstoned right after the commit: unused ones that could not be
  /// given back (allocated above meanwhile, or Redis failed), and ones whose
  /// send lost its key to a concurrent writer.
  std::uint64_t seqs_tombstoned = 0;
  /// Attempts whose optimistic statement found a send already stored and
  /// that were written again with the existence check (writer_sql::kInsertCheckedSql).
  std::uint64_t checked_batches = 0;
  /// Sends per committed batch.
  Histogram::Snapshot batch_sizes;
  /// From a batch taken off the queue to its commit returning (every attempt), µs.
  Histogram::Snapshot commit_us;

  WriterStats& operator+=(const WriterStats& o);
};

// Neutral where Config sets the field: build it with writer_options(Config)
// (server/app/config.hpp), which holds the defaults.
struct GroupCommitOptions {
  /// The writer thread's name, also its PostgreSQL application_name
  /// ("im-server im-writer"); lanes of a ShardedWriter get "-0", "-1", ...
  std::string name = "im-writer";
  PgSessionOptions pg;
  RedisEndpoint redis;
  std::chrono::milliseconds redis_timeout{1000};
  std::size_t batch_max = 0;
  std::chrono::microseconds batch_delay{0};
  std::size_t queue_capacity = 0;
  /// Attempts for one batch when seqs collide (a Redis counter behind).
  int max_attempts = 4;
  /// Sends fail fast as unavailable while the backends are known to be down
  /// or a batch has been stuck this long.
  std::chrono::milliseconds stall_timeout{3000};
  /// Test-only: called on the writer thread at each fault::Stage of a batch
  /// (only in IM_FAULT_INJECTION builds; empty and never called otherwise).
  fault::StageHook stage_hook;
};

class GroupCommitWriter final : public MessageWriter {
 public:
  GroupCommitWriter(GroupCommitOptions options, CommitListener& listener);
  ~GroupCommitWriter() override;

  /// Starts the writer thread.
  void start();
  /// Refuses new sends; what is queued is still committed and acked.
  void close();
  /// close(), then waits until everything queued is acked and joins the thread.
  void stop();

  StoreStatus submit(SendCommand& cmd) override;

  /// Counters for logs and tests; each read on its own (relaxed), so a
  /// snapshot taken while batches run need not be consistent across fields.
  WriterStats stats() const;

 private:
  struct Slot;              // one send of a batch, with its allocated seq and result
  class SeqTakers;          // which send took each seq of an attempt's ranges
  class BatchTransaction;   // the attempt's statements: one autocommitted, or a block
  struct StatementArgs;     // the batch's sends as the statements' seven arrays
  /// Where an attempt failed, which recover() needs to know what it means.
  enum class Step { plan_seqs, write };

  void run();
  void process(std::vector<SendCommand>& batch);
  bool ensure_pg(StoreStatus& status);
  /// One attempt at the batch: plan seqs, insert, answer resends, commit.
  /// Every failure goes through recover(); a `conflict` is worth retrying.
  StoreStatus write_batch(std::vector<Slot>& slots, const std::vector<std::size_t>& unique);

  // Planning seqs: ranges_ from Redis, raised above PostgreSQL's MAX(seq)
  // where Redis has lost a counter.
  void plan_seqs(std::vector<Slot>& slots, const std::vector<std::size_t>& unique);
  void raise_fresh_counters(const std::vector<std::string>& owners,
                            const std::vector<std::int64_t>& counts, std::vector<std::int64_t>& last);
  /// After a seq collision: every counter of the batch above its inbox's MAX(seq).
  void raise_counters_above_stored(const std::vector<Slot>& slots,
                                   const std::vector<std::size_t>& unique);
  /// Each owner's MAX(seq) in PostgreSQL, in the given order (none: an empty inbox).
  std::vector<std::optional<std::int64_t>> stored_max_seqs(std::span<const std::string_view> owners);

  // Writing: the steps of write_batch after the seqs are planned.
  bool fits_one_statement() const;
  /// Numbers the sends and writes them: the optimistic statement, or the
  /// checked one once it met a stored key. Returns the statement's rows.
  pqxx::result insert(BatchTransaction& tx, std::vector<Slot>& slots,
                      const std::vector<std::size_t>& unique, SeqTakers& takers);
  /// The sends as $1..$7; sets each slot's stored_cmid.
  StatementArgs statement_args(std::vector<Slot>& slots, const std::vector<std::size_t>& unique);
  /// Each stored message to its send; a seq whose send stored nothing to lost_.
  void match_stored(const pqxx::result& rows, std::vector<Slot>& slots,
                    const std::vector<std::size_t>& unique, const SeqTakers& takers);
  /// Sends that stored nothing: the stored message's ack, or conflict for a reused key.
  void answer_resends(pqxx::transaction_base& tx, std::vector<Slot>& slots,
                      const std::vector<std::size_t>& unique);
  /// Negative control (fault point ack_before_commit): acks, then rolls back.
  StoreStatus ack_then_roll_back(std::vector<Slot>& slots, const std::vector<std::size_t>& unique);
  /// Writes abandoned_ as tombstones in `tx`; the caller clears it once tx commits.
  void tombstone_abandoned(pqxx::transaction_base& tx);

  /// What a failed attempt means: a retry (conflict) or the batch's status.
  StoreStatus recover(Step step, const std::exception_ptr& error, const std::vector<Slot>& slots,
                      const std::vector<std::size_t>& unique);

  static std::shared_ptr<const CommittedBatch> committed_batch(std::vector<Slot>& slots,
                                                               const std::vector<std::size_t>& unique);
  /// After a commit: gives back (or tombstones) the seqs no send took.
  void release_unused();
  /// The unused tops of ranges_ back to Redis; what cannot go back, to abandoned_.
  void give_back_unused();
  /// After a failed attempt: every seq it allocated is abandoned.
  void abandon_ranges();

  GroupCommitOptions options_;
  CommitListener& listener_;
  BatchQueue<SendCommand> queue_;
  RedisSeqAllocator seqs_;
  std::unique_ptr<pqxx::connection> pg_;
  std::chrono::steady_clock::time_point pg_retry_at_{};
  std::thread thread_;
  /// One receiver's seqs allocated for the current attempt: first..last, of
  /// which the committed statement used first..first+used-1.
  struct Range {
    std::string owner;
    std::int64_t first = 0;
    std::int64_t last = 0;
    std::int64_t used = 0;
  };
  std::vector<Range> ranges_;
  /// Seqs of the attempt in progress whose send lost its key to a concurrent
  /// writer: tombstoned after the commit (release_unused).
  std::vector<std::pair<std::string, std::int64_t>> lost_;
  /// Seqs allocated by a failed attempt, tombstoned by a later transaction.
  std::vector<std::pair<std::string, std::int64_t>> abandoned_;
  /// steady_clock ticks when the batch in progress began, 0 when idle.
  std::atomic<std::int64_t> busy_since_{0};
  /// Set while the last batch failed as unavailable; cleared on success.
  std::atomic<bool> backend_down_{false};
  /// Kind of the last conflict write_batch returned, for the retry counters.
  enum class Conflict { seq_collision, deadlock };
  Conflict last_conflict_ = Conflict::seq_collision;
  std::atomic<std::uint64_t> batches_committed_{0};
  std::atomic<std::uint64_t> batches_failed_{0};
  std::atomic<std::uint64_t> counter_raises_{0};
  std::atomic<std::uint64_t> unique_violation_retries_{0};
  std::atomic<std::uint64_t> deadlock_retries_{0};
  std::atomic<std::uint64_t> seqs_given_back_{0};
  std::atomic<std::uint64_t> checked_batches_{0};
  Histogram batch_sizes_;
  Histogram commit_us_;
  std::atomic<std::uint64_t> seqs_tombstoned_{0};
};

}  // namespace im::server
