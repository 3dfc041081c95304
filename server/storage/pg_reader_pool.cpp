#include "server/storage/pg_reader_pool.hpp"

#include <algorithm>
#include <limits>

#include "protocol/page_size.hpp"
#include "server/common/log.hpp"
#include "server/storage/pg_array.hpp"

namespace im::server {
namespace {

constexpr const char* kPull = "im_pull";
constexpr const char* kHistoryForward = "im_history_forward";
constexpr const char* kHistoryReverse = "im_history_reverse";
constexpr const char* kFillGap = "im_fill_gap";

constexpr const char* kPullSql = R"SQL(
SELECT i.seq, i.message_id, m.sender, m.receiver, m.body,
       (extract(epoch FROM m.created_at) * 1000000)::bigint, m.client_msg_id
FROM inbox i LEFT JOIN messages m ON m.id = i.message_id
WHERE i.owner = $1 AND i.seq > $2
ORDER BY i.seq
LIMIT $3
)SQL";

constexpr const char* kHistoryColumns = R"SQL(
SELECT m.seq, m.id, m.sender, m.receiver, m.body,
       (extract(epoch FROM m.created_at) * 1000000)::bigint, m.client_msg_id
FROM messages m
)SQL";

// Fills several gaps at once: ranges [lo[i], hi[i]].
constexpr const char* kFillGapSql = R"SQL(
INSERT INTO inbox (owner, seq, message_id)
SELECT $1, s, NULL
FROM unnest($2::bigint[], $3::bigint[]) AS g(lo, hi), generate_series(g.lo, g.hi) AS s
ON CONFLICT DO NOTHING
)SQL";

// At most this many seqs are tombstoned by one pull (a larger hole is filled
// over several pulls; each pull still makes progress).
constexpr std::int64_t kMaxFillSpan = 10000;

struct Gap {
  std::int64_t first;  // first missing seq
  std::int64_t last;   // last missing seq
};

protocol::MessageRecord to_message(const pqxx::row& row, std::int64_t seq) {
  protocol::MessageRecord m;
  m.seq = seq;
  m.message_id = row[1].as<std::int64_t>();
  m.sender = row[2].as<std::string>();
  m.receiver = row[3].as<std::string>();
  m.body = row[4].as<std::string>();
  m.created_at_us = row[5].as<std::int64_t>();
  m.client_msg_id = static_cast<std::uint64_t>(row[6].as<std::int64_t>());
  return m;
}

std::string conversation_key(const std::string& a, const std::string& b) {
  return a < b ? a + ' ' + b : b + ' ' + a;
}

}  // namespace

bool GapTracker::should_fill(const std::string& owner, std::int64_t seq) {
  const auto now = Clock::now();
  std::lock_guard lock(mu_);
  // Bounded: forget entries far older than the fill delay.
  if (first_seen_.size() > 100000) {
    std::erase_if(first_seen_, [&](const auto& kv) { return now - kv.second > 10 * fill_after_; });
  }
  auto [it, inserted] = first_seen_.try_emplace({owner, seq}, now);
  return !inserted && now - it->second >= fill_after_;
}

void GapTracker::forget(const std::string& owner, std::int64_t seq) {
  std::lock_guard lock(mu_);
  first_seen_.erase({owner, seq});
}

std::size_t GapTracker::size() const {
  std::lock_guard lock(mu_);
  return first_seen_.size();
}

PgReaderPool::PgReaderPool(ReaderPoolOptions options)
    : gaps_(options.gap_fill),
      pool_(PgJobPoolOptions{
          .pg = std::move(options.pg),
          .application_name = "im-server reader",
          .thread_name = "im-reader",
          .threads = options.threads,
          .queue_capacity = options.queue_capacity,
          .reconnect_backoff = std::chrono::milliseconds(250),
          .prepare =
              [](pqxx::connection& conn) {
                conn.prepare(kPull, kPullSql);
                conn.prepare(kHistoryForward, std::string(kHistoryColumns) +
                                                  "WHERE m.conversation = $1 AND m.id > $2 "
                                                  "ORDER BY m.id ASC LIMIT $3");
                conn.prepare(kHistoryReverse, std::string(kHistoryColumns) +
                                                  "WHERE m.conversation = $1 AND m.id < $2 "
                                                  "ORDER BY m.id DESC LIMIT $3");
                conn.prepare(kFillGap, kFillGapSql);
              },
      }) {}

PgReaderPool::~PgReaderPool() { stop(); }

void PgReaderPool::start() { pool_.start(); }

void PgReaderPool::stop() { pool_.stop(); }

std::uint64_t PgReaderPool::gaps_filled() const { return gaps_filled_.load(); }

template <typename Page, typename Run>
void PgReaderPool::submit(Run run, ReadCancel cancelled,
                          std::function<void(const StoreStatus&, Page&&)> done) {
  auto job = [this, run = std::move(run), cancelled = std::move(cancelled), done](
                 pqxx::connection* conn, const StoreStatus& status) {
    if (cancelled && cancelled->load(std::memory_order_relaxed)) {
      // Its connection closed while the read waited in the queue: nobody would
      // receive the page.
      cancelled_.fetch_add(1, std::memory_order_relaxed);
      return done({StoreCode::unavailable, "the connection closed"}, Page{});
    }
    if (!conn) return done(status, Page{});
    Page page;
    try {
      page = run(*conn);
    } catch (...) {
      const StoreStatus st = classify_pg_exception(std::current_exception());
      if (st.code == StoreCode::unavailable) conn->disconnect();  // reconnect on next use
      return done(st, Page{});
    }
    done(StoreStatus{}, std::move(page));
  };
  if (pool_.submit(std::move(job)) != PgJobPool::Submitted::queued) {
    done({StoreCode::busy, "read queue is full; retry later"}, Page{});
  }
}

void PgReaderPool::pull(PullQuery query, std::function<void(const StoreStatus&, PullPage&&)> done) {
  auto cancelled = query.cancelled;
  submit<PullPage>([this, q = std::move(query)](pqxx::connection& c) { return run_pull(c, q); },
                   std::move(cancelled), std::move(done));
}

void PgReaderPool::history(HistoryQuery query,
                           std::function<void(const StoreStatus&, HistoryPage&&)> done) {
  auto cancelled = query.cancelled;
  submit<HistoryPage>([this, q = std::move(query)](pqxx::connection& c) { return run_history(c, q); },
                      std::move(cancelled), std::move(done));
}

PullPage PgReaderPool::run_pull(pqxx::connection& conn, const PullQuery& q) {
  PullPage page;
  // No seq lies after the largest cursor a client can send, and
  // `after_seq + 1` below would overflow (undefined behaviour) for it.
  if (q.after_seq == std::numeric_limits<std::int64_t>::max()) {
    page.next_after_seq = q.after_seq;
    return page;
  }
  for (int round = 0; round < 3; ++round) {
    page = PullPage{};
    page.next_after_seq = q.after_seq;
    pqxx::result r;
    {
      pqxx::nontransaction tx(conn);
      r = tx.exec_prepared(kPull, q.owner, q.after_seq, static_cast<std::int64_t>(q.limit) + 1);
    }
    // The page is the unbroken run after the cursor; every hole in the rest of
    // the fetched window is a gap (missing seqs with a stored one after them).
    std::int64_t expected = q.after_seq + 1;
    std::size_t row_index = 0;
    protocol::PageFill fill(q.max_bytes);
    for (; row_index < r.size(); ++row_index) {
      const pqxx::row row = r[row_index];
      const auto seq = row[0].as<std::int64_t>();
      if (seq != expected) break;
      // Full (by count or bytes) with a contiguous row left: has_more.
      if (page.messages.size() == q.limit) break;
      if (!row[1].is_null()) {
        auto m = to_message(row, seq);
        if (!fill.take(m)) break;
        page.messages.push_back(std::move(m));
      }
      page.next_after_seq = seq;
      ++expected;
    }
    std::vector<Gap> gaps;
    for (std::size_t i = row_index; i < r.size(); ++i) {
      const auto seq = r[i][0].as<std::int64_t>();
      if (seq != expected) gaps.push_back({expected, seq - 1});
      expected = seq + 1;
    }
    if (row_index == r.size() || gaps.empty() || gaps.front().first != page.next_after_seq + 1) {
      // Rows are left over, or the fetch was cut by its LIMIT (tombstones use
      // rows without adding messages): either way there may be more.
      page.has_more = row_index < r.size() || r.size() == static_cast<std::size_t>(q.limit) + 1;
      return page;
    }
    // Every gap in the window starts ageing now, not only the first: after a
    // crash an inbox can hold many scattered holes, and a reader must not wait
    // gap_fill once per hole. Aged gaps are filled together.
    PgArray lo, hi;
    std::int64_t span = 0;
    std::vector<std::int64_t> filled_starts;
    for (std::size_t i = 0; i < gaps.size(); ++i) {
      const bool aged = gaps_.should_fill(q.owner, gaps[i].first);
      if (i == 0 && !aged) {
        for (std::size_t j = 1; j < gaps.size(); ++j) gaps_.should_fill(q.owner, gaps[j].first);
        break;
      }
      if (!aged || span >= kMaxFillSpan) continue;
      const std::int64_t last = std::min(gaps[i].last, gaps[i].first + (kMaxFillSpan - span) - 1);
      lo.add(gaps[i].first);
      hi.add(last);
      span += last - gaps[i].first + 1;
      filled_starts.push_back(gaps[i].first);
    }
    if (filled_starts.empty()) {
      page.gap_pending = true;
      return page;
    }
    pqxx::result filled;
    try {
      pqxx::work tx(conn, "fill_gap");
      // A writer still holding a slot (uncommitted) blocks us: give up
      // quickly; its transaction commits, or PostgreSQL ends it.
      tx.exec("SET LOCAL statement_timeout = 1000");
      filled = tx.exec_prepared(kFillGap, q.owner, std::move(lo).str(), std::move(hi).str());
      tx.commit();
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != "57014") throw;  // only query_canceled (our timeout) is expected
      page.gap_pending = true;
      return page;
    }
    for (std::int64_t first : filled_starts) gaps_.forget(q.owner, first);
    {
      gaps_filled_.fetch_add(static_cast<std::uint64_t>(filled.affected_rows()));
    }
    logs::pg().warn("filled {} inbox gap(s) of {} from seq {} with {} tombstone(s)",
                            filled_starts.size(), q.owner, filled_starts.front(),
                            filled.affected_rows());
  }
  page.gap_pending = true;
  return page;
}

HistoryPage PgReaderPool::run_history(pqxx::connection& conn, const HistoryQuery& q) {
  const std::string conversation = conversation_key(q.user, q.peer);
  std::int64_t cursor = q.cursor;
  if (q.reverse && cursor <= 0) cursor = std::numeric_limits<std::int64_t>::max();
  pqxx::nontransaction tx(conn);
  const pqxx::result r = tx.exec_prepared(q.reverse ? kHistoryReverse : kHistoryForward,
                                          conversation, cursor,
                                          static_cast<std::int64_t>(q.limit) + 1);
  HistoryPage page;
  page.next_cursor = q.cursor;
  protocol::PageFill fill(q.max_bytes);
  for (const auto& row : r) {
    if (page.messages.size() == q.limit) {
      page.has_more = true;
      break;
    }
    auto m = to_message(row, row[0].as<std::int64_t>());
    if (!fill.take(m)) {
      page.has_more = true;
      break;
    }
    page.messages.push_back(std::move(m));
    page.next_cursor = page.messages.back().message_id;
  }
  return page;
}

}  // namespace im::server
