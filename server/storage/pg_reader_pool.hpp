#pragma once
// PgReaderPool: answers Pull and History from PostgreSQL on its own threads,
// each with its own connection, fed by a bounded job queue (a PgJobPool).
//
// Pull returns only the unbroken run of seqs after the cursor, so a message
// that commits late (another writer, another process) can never appear below a
// cursor a reader has already passed. A missing seq that stays missing longer
// than gap_fill is claimed with a tombstone (INSERT ... ON CONFLICT DO NOTHING):
// either the late message or the tombstone wins, never both, and a writer that
// loses the race never acks.
//
// Thread-safety: pull()/history() from any thread; callbacks run on a pool thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "server/service/store.hpp"
#include "server/storage/pg_job_pool.hpp"

namespace im::server {

// Neutral where Config sets the field: build it with reader_options(Config)
// (server/app/config.hpp), which holds the defaults.
struct ReaderPoolOptions {
  PgSessionOptions pg;
  std::size_t threads = 0;
  std::size_t queue_capacity = 16384;
  std::chrono::milliseconds gap_fill{0};
};

/// Remembers when each inbox gap was first seen, to fill it once it is old.
/// Thread-safe.
class GapTracker {
 public:
  explicit GapTracker(std::chrono::milliseconds fill_after) : fill_after_(fill_after) {}
  /// Records the gap (owner, seq) if new; true once it is older than fill_after.
  bool should_fill(const std::string& owner, std::int64_t seq);
  void forget(const std::string& owner, std::int64_t seq);
  std::size_t size() const;

 private:
  using Clock = std::chrono::steady_clock;
  const std::chrono::milliseconds fill_after_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::int64_t>, Clock::time_point> first_seen_;
};

class PgReaderPool final : public MessageReader {
 public:
  explicit PgReaderPool(ReaderPoolOptions options);
  ~PgReaderPool() override;

  void start();
  /// Runs the queued jobs, then joins the threads.
  void stop();

  void pull(PullQuery query, std::function<void(const StoreStatus&, PullPage&&)> done) override;
  void history(HistoryQuery query,
               std::function<void(const StoreStatus&, HistoryPage&&)> done) override;

  std::uint64_t gaps_filled() const;
  /// Reads dropped unrun because their connection had closed meanwhile.
  std::uint64_t reads_cancelled() const { return cancelled_.load(); }

 private:
  /// Queues `run` (a query on a pool connection) and reports its page or error.
  template <typename Page, typename Run>
  void submit(Run run, ReadCancel cancelled, std::function<void(const StoreStatus&, Page&&)> done);
  PullPage run_pull(pqxx::connection& conn, const PullQuery& q);
  HistoryPage run_history(pqxx::connection& conn, const HistoryQuery& q);

  GapTracker gaps_;
  std::atomic<std::uint64_t> gaps_filled_{0};
  std::atomic<std::uint64_t> cancelled_{0};
  PgJobPool pool_;  // last: its threads stop before the members they use go
};

}  // namespace im::server
