#include "server/storage/group_commit_writer.hpp"

#include <algorithm>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "server/common/log.hpp"
#include "server/common/thread_name.hpp"
#include "server/storage/fault_points.hpp"
#include "server/storage/pg_array.hpp"
#include "server/storage/writer_sql.hpp"

namespace im::server {
namespace {

namespace sql = writer_sql;

std::int64_t steady_ticks() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

}  // namespace

WriterStats& WriterStats::operator+=(const WriterStats& o) {
  batches_committed += o.batches_committed;
  batches_failed += o.batches_failed;
  counter_raises += o.counter_raises;
  unique_violation_retries += o.unique_violation_retries;
  deadlock_retries += o.deadlock_retries;
  seqs_given_back += o.seqs_given_back;
  checked_batches += o.checked_batches;
  seqs_tombstoned += o.seqs_tombstoned;
  for (std::size_t i = 0; i < Histogram::kBuckets; ++i) {
    batch_sizes.counts[i] += o.batch_sizes.counts[i];
    commit_us.counts[i] += o.commit_us.counts[i];
  }
  batch_sizes.sum += o.batch_sizes.sum;
  commit_us.sum += o.commit_us.sum;
  return *this;
}

struct GroupCommitWriter::Slot {
  SendCommand* cmd = nullptr;
  /// Index of the receiver's Range in ranges_.
  std::size_t range = 0;
  /// The inbox seq the committed attempt wrote for this send (a message, or a
  /// tombstone if a concurrent writer stored its key first); 0 for none.
  std::int64_t seq = 0;
  /// Index of the first slot with the same (sender, client_msg_id) in this
  /// batch, or the slot's own index: later copies take the first one's result.
  std::size_t leader = 0;
  StoreStatus status;
  protocol::SendAckRecord ack;
  /// What the committed attempt stored at `seq`: the new message's id, or 0
  /// for a tombstone (a resend of a message stored earlier); its client_msg_id.
  std::int64_t stored_id = 0;
  std::uint64_t stored_cmid = 0;
};

GroupCommitWriter::GroupCommitWriter(GroupCommitOptions options, CommitListener& listener)
    : options_(std::move(options)),
      listener_(listener),
      queue_(options_.queue_capacity, options_.batch_max, options_.batch_delay),
      seqs_(options_.redis, options_.redis_timeout) {}

GroupCommitWriter::~GroupCommitWriter() { stop(); }

void GroupCommitWriter::start() {
  thread_ = std::thread([this] {
    name_this_thread(options_.name);
    run();
  });
}

void GroupCommitWriter::close() { queue_.close(); }

void GroupCommitWriter::stop() {
  close();
  if (thread_.joinable()) thread_.join();
}

WriterStats GroupCommitWriter::stats() const {
  constexpr auto kRelaxed = std::memory_order_relaxed;
  return {batches_committed_.load(kRelaxed), batches_failed_.load(kRelaxed),
          counter_raises_.load(kRelaxed), unique_violation_retries_.load(kRelaxed),
          deadlock_retries_.load(kRelaxed), seqs_given_back_.load(kRelaxed),
          seqs_tombstoned_.load(kRelaxed), checked_batches_.load(kRelaxed),
          batch_sizes_.snapshot(),         commit_us_.snapshot()};
}

StoreStatus GroupCommitWriter::submit(SendCommand& cmd) {
  const std::int64_t since = busy_since_.load(std::memory_order_relaxed);
  if (since != 0) {
    const auto stuck = std::chrono::steady_clock::duration(steady_ticks() - since);
    if (stuck > options_.stall_timeout) {
      return {StoreCode::unavailable, "storage is not responding; retry later"};
    }
  }
  switch (queue_.push(cmd)) {
    case BatchQueue<SendCommand>::PushResult::ok: return {};
    case BatchQueue<SendCommand>::PushResult::full:
      return {StoreCode::busy, "send queue is full; retry later"};
    case BatchQueue<SendCommand>::PushResult::closed:
      return {StoreCode::unavailable, "server is shutting down"};
  }
  return {StoreCode::internal, "unreachable"};
}

void GroupCommitWriter::run() {
  std::vector<SendCommand> batch;
  while (queue_.pop_batch(batch)) {
    busy_since_.store(steady_ticks(), std::memory_order_relaxed);
    process(batch);
    busy_since_.store(0, std::memory_order_relaxed);
  }
}

bool GroupCommitWriter::ensure_pg(StoreStatus& status) {
  if (pg_ && pg_->is_open()) return true;
  pg_.reset();
  const auto now = std::chrono::steady_clock::now();
  if (now < pg_retry_at_) {
    status = {StoreCode::unavailable, "database unavailable; retry later"};
    return false;
  }
  try {
    pg_ = open_pg_session(options_.pg, ("im-server " + options_.name).c_str());
    for (const writer_sql::Prepared& statement : writer_sql::kPrepared) {
      pg_->prepare(statement.name, statement.text);
    }
    logs::pg().info("writer connected to PostgreSQL");
    return true;
  } catch (...) {
    status = classify_pg_exception(std::current_exception());
    pg_.reset();
    // Fail fast while the database is down: no connect attempt per batch.
    pg_retry_at_ = now + std::chrono::milliseconds(250);
    return false;
  }
}

void GroupCommitWriter::process(std::vector<SendCommand>& batch) {
  // Tombstoning abandoned seqs is an optimisation (readers fill old gaps
  // anyway), so a long outage must not grow this list without bound.
  constexpr std::size_t kMaxAbandoned = 100000;
  if (abandoned_.size() > kMaxAbandoned) {
    abandoned_.erase(abandoned_.begin(),
                     abandoned_.begin() + static_cast<std::ptrdiff_t>(abandoned_.size() - kMaxAbandoned));
  }
  std::vector<Slot> slots(batch.size());
  // Deduplicate resends inside the batch: the statement must see each
  // (sender, client_msg_id) once, or both copies would get inbox rows.
  std::vector<std::size_t> unique;
  unique.reserve(batch.size());
  {
    std::unordered_map<std::string_view, std::unordered_map<std::uint64_t, std::size_t>> seen;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      slots[i].cmd = &batch[i];
      auto [it, inserted] = seen[batch[i].sender].try_emplace(batch[i].client_msg_id, i);
      slots[i].leader = it->second;
      if (inserted) unique.push_back(i);
    }
  }

  const auto taken = std::chrono::steady_clock::now();
  StoreStatus status;
  for (int attempt = 1;; ++attempt) {
    status = write_batch(slots, unique);
    if (status.code != StoreCode::conflict || attempt >= options_.max_attempts) break;
    (last_conflict_ == Conflict::seq_collision ? unique_violation_retries_ : deadlock_retries_)
        .fetch_add(1, std::memory_order_relaxed);
  }
  if (status.code == StoreCode::conflict) {
    status = {StoreCode::unavailable, "batch kept colliding (seqs or locks); retry later"};
  }
  if (!status.ok()) {
    backend_down_.store(status.code == StoreCode::unavailable, std::memory_order_relaxed);
    batches_failed_.fetch_add(1, std::memory_order_relaxed);
    logs::pg().warn("batch of {} sends failed: {}", batch.size(), status.message);
  } else {
    backend_down_.store(false, std::memory_order_relaxed);
    batches_committed_.fetch_add(1, std::memory_order_relaxed);
    batch_sizes_.record(batch.size());
    commit_us_.record(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                     std::chrono::steady_clock::now() - taken)
                                                     .count()));
  }

  for (std::size_t i = 0; i < slots.size(); ++i) {
    Slot& s = slots[i];
    if (!status.ok()) {
      s.status = status;
    } else if (s.leader != i) {
      const Slot& leader = slots[s.leader];
      s.status = leader.status;
      s.ack = leader.ack;
      s.ack.duplicate = true;
      if (s.status.ok() && (s.cmd->receiver != leader.cmd->receiver || s.cmd->body != leader.cmd->body)) {
        s.status = {StoreCode::conflict, "client_msg_id already used for a different message"};
      }
    }
  }
  if (status.ok()) fault::at_stage(options_.stage_hook, fault::Stage::before_acks);
  for (Slot& s : slots) {
    if (s.cmd->done) s.cmd->done(s.status, s.ack);
  }
  if (status.ok()) {
    // Resends alone wrote no inbox row: there is nothing to wake anyone for.
    auto committed = committed_batch(slots, unique);
    if (!committed->inboxes.empty()) listener_.notify(std::move(committed));
    release_unused();
  }
}

std::shared_ptr<const CommittedBatch> GroupCommitWriter::committed_batch(
    std::vector<Slot>& slots, const std::vector<std::size_t>& unique) {
  // Called after every `done`: the commands' bodies and senders are moved
  // into the batch, which is built once and shared by every woken waiter.
  auto batch = std::make_shared<CommittedBatch>();
  std::unordered_map<std::string_view, std::size_t> index;
  index.reserve(unique.size());
  // Pass 1: one inbox per receiver, its seq run, and its message count (in end).
  for (std::size_t i : unique) {
    const Slot& s = slots[i];
    if (s.seq == 0) continue;  // took no seq: nothing was written to its inbox
    auto [it, inserted] = index.try_emplace(s.cmd->receiver, batch->inboxes.size());
    if (inserted) {
      batch->inboxes.push_back({s.cmd->receiver, s.seq, s.seq, 0, 0});
    } else {
      CommittedBatch::Inbox& box = batch->inboxes[it->second];
      // The statement hands each receiver consecutive seqs in batch order;
      // should that ever not hold, the run is unknown and waiters query.
      if (s.seq != box.last_seq + 1) box.first_seq = 0;
      box.last_seq = s.seq;
    }
    if (s.stored_id != 0) ++batch->inboxes[it->second].end;
  }
  std::uint32_t offset = 0;
  for (CommittedBatch::Inbox& box : batch->inboxes) {
    const std::uint32_t n = box.end;
    box.begin = box.end = offset;
    offset += n;
  }
  // Pass 2: each inbox's messages, contiguous and in seq order.
  batch->messages.resize(offset);
  for (std::size_t i : unique) {
    Slot& s = slots[i];
    if (s.stored_id == 0) continue;
    CommittedBatch::Inbox& box = batch->inboxes[index.find(s.cmd->receiver)->second];
    protocol::MessageRecord& m = batch->messages[box.end++];
    m.seq = s.seq;
    m.message_id = s.stored_id;
    m.sender = std::move(s.cmd->sender);
    m.receiver = box.owner;
    m.body = std::move(s.cmd->body);
    m.created_at_us = s.cmd->received_at_us;
    m.client_msg_id = s.stored_cmid;
  }
  return batch;
}

// Which send took each seq of the attempt's ranges: a stored row names its
// (receiver, seq), and this finds the send it belongs to.
class GroupCommitWriter::SeqTakers {
 public:
  /// `none` marks a seq no send took.
  SeqTakers(std::vector<Range>& ranges, std::size_t none) : ranges_(ranges), none_(none) {
    base_.reserve(ranges.size());
    std::size_t seqs_allocated = 0;
    for (const Range& r : ranges) {
      base_.push_back(seqs_allocated);
      seqs_allocated += static_cast<std::size_t>(r.last - r.first + 1);
    }
    took_.assign(seqs_allocated, none);
  }

  /// Slot `i` takes its seq, s.seq (the range's next): one more of the range used.
  void take(std::size_t i, const Slot& s) {
    took_.at(position(s.range, s.seq)) = i;
    ++ranges_[s.range].used;
  }
  std::size_t taker(std::size_t range, std::int64_t seq) const {
    return took_.at(position(range, seq));
  }
  /// The attempt's statement rolled back: no seq is taken, none used.
  void clear() {
    std::fill(took_.begin(), took_.end(), none_);
    for (Range& r : ranges_) r.used = 0;
  }

 private:
  std::size_t position(std::size_t range, std::int64_t seq) const {
    return base_[range] + static_cast<std::size_t>(seq - ranges_[range].first);
  }

  std::vector<Range>& ranges_;
  std::size_t none_;
  /// took_[base_[k] + seq - ranges_[k].first]: the slot that took that seq.
  std::vector<std::size_t> base_;
  std::vector<std::size_t> took_;
};

// The attempt's statements. A batch that is one statement runs outside a
// transaction block, and a statement outside one commits atomically by itself:
// one round trip to PostgreSQL instead of three (BEGIN, the statement,
// COMMIT), which on a busy machine each wait for the backend to be scheduled.
// A block is opened only when more must commit with it (fits_one_statement).
class GroupCommitWriter::BatchTransaction {
 public:
  BatchTransaction(pqxx::connection& conn, bool one_statement)
      : conn_(conn), one_statement_(one_statement) {}

  /// Starts the transaction, or starts it again after its statement failed.
  pqxx::transaction_base& begin() {
    current_ = nullptr;
    autocommit_.reset();
    block_.reset();
    if (one_statement_) {
      current_ = &autocommit_.emplace(conn_, "batch");
    } else {
      current_ = &block_.emplace(conn_, "batch");
    }
    return *current_;
  }
  /// The transaction begin() started.
  pqxx::transaction_base& operator*() const { return *current_; }
  pqxx::transaction_base* operator->() const { return current_; }

 private:
  pqxx::connection& conn_;
  bool one_statement_;
  std::optional<pqxx::nontransaction> autocommit_;
  std::optional<pqxx::work> block_;
  pqxx::transaction_base* current_ = nullptr;
};

/// $1..$7 of both batch statements (writer_sql::kInputCte).
struct GroupCommitWriter::StatementArgs {
  std::string ord, sender, receiver, cmid, body, created, seq;
};

StoreStatus GroupCommitWriter::write_batch(std::vector<Slot>& slots,
                                           const std::vector<std::size_t>& unique) {
  StoreStatus status;
  if (!ensure_pg(status)) return status;
  Step step = Step::plan_seqs;
  try {
    plan_seqs(slots, unique);
    fault::maybe_crash(fault::Point::crash_after_seq_alloc);

    step = Step::write;
    SeqTakers takers(ranges_, slots.size());
    BatchTransaction tx(*pg_, fits_one_statement());
    const pqxx::result stored = insert(tx, slots, unique, takers);
    match_stored(stored, slots, unique, takers);
    answer_resends(*tx, slots, unique);
    fault::maybe_crash(fault::Point::crash_after_insert);
    if (fault::fires(fault::Point::ack_before_commit)) return ack_then_roll_back(slots, unique);

    // Seqs abandoned by earlier attempts commit as tombstones with the batch.
    // No send is acked before the commit returns: process() acks afterwards.
    if (!abandoned_.empty()) tombstone_abandoned(*tx);
    fault::at_stage(options_.stage_hook, fault::Stage::before_commit);
    tx->commit();
    fault::maybe_crash(fault::Point::crash_after_commit);
    abandoned_.clear();
    return {};
  } catch (...) {
    return recover(step, std::current_exception(), slots, unique);
  }
}

// ---- Planning seqs ----

void GroupCommitWriter::plan_seqs(std::vector<Slot>& slots, const std::vector<std::size_t>& unique) {
  // Group by receiver, keeping batch order inside each receiver's range.
  std::unordered_map<std::string_view, std::size_t> index;
  std::vector<std::string> owners;
  std::vector<std::int64_t> counts;
  for (std::size_t i : unique) {
    auto [it, inserted] = index.try_emplace(slots[i].cmd->receiver, owners.size());
    if (inserted) {
      owners.push_back(slots[i].cmd->receiver);
      counts.push_back(0);
    }
    ++counts[it->second];
  }
  std::vector<std::int64_t> last;
  seqs_.allocate(owners, counts, last);
  raise_fresh_counters(owners, counts, last);

  ranges_.clear();
  ranges_.reserve(owners.size());
  for (std::size_t k = 0; k < owners.size(); ++k) {
    ranges_.push_back({std::move(owners[k]), last[k] - counts[k] + 1, last[k], 0});
  }
  for (std::size_t i : unique) {
    slots[i].range = index[slots[i].cmd->receiver];
    slots[i].seq = 0;
  }
}

void GroupCommitWriter::raise_fresh_counters(const std::vector<std::string>& owners,
                                             const std::vector<std::int64_t>& counts,
                                             std::vector<std::int64_t>& last) {
  // A counter that came back equal to the count was just created: a new
  // receiver, or Redis lost the key. Raise it above what PostgreSQL holds.
  std::vector<std::size_t> fresh;
  for (std::size_t k = 0; k < owners.size(); ++k) {
    if (last[k] == counts[k]) fresh.push_back(k);
  }
  if (fresh.empty()) return;
  std::vector<std::string_view> names;
  for (std::size_t k : fresh) names.push_back(owners[k]);
  const std::vector<std::optional<std::int64_t>> stored = stored_max_seqs(names);

  std::vector<std::string> raised_owners;
  std::vector<std::int64_t> raised_counts;
  std::vector<std::size_t> raised_index;
  std::vector<std::int64_t> raised_max;
  for (std::size_t j = 0; j < stored.size(); ++j) {
    if (!stored[j]) continue;  // a new receiver: the fresh counter is right
    const std::int64_t stored_max = *stored[j];
    const std::size_t k = fresh[j];
    // What we got may be below stored rows: abandon it (tombstoned later,
    // a no-op where a row exists) and allocate again above the maximum.
    for (std::int64_t s = last[k] - counts[k] + 1; s <= last[k]; ++s) {
      abandoned_.emplace_back(owners[k], s);
    }
    seqs_.raise_floor(owners[k], stored_max);
    raised_owners.push_back(owners[k]);
    raised_counts.push_back(counts[k]);
    raised_index.push_back(k);
    raised_max.push_back(stored_max);
  }
  if (raised_owners.empty()) return;
  std::vector<std::int64_t> again;
  seqs_.allocate(raised_owners, raised_counts, again);
  for (std::size_t j = 0; j < raised_index.size(); ++j) {
    last[raised_index[j]] = again[j];
    // Counted only if the raise took: the new range starts above the
    // maximum (else the insert collides and the fallback takes over).
    if (again[j] - raised_counts[j] >= raised_max[j]) {
      counter_raises_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void GroupCommitWriter::raise_counters_above_stored(const std::vector<Slot>& slots,
                                                    const std::vector<std::size_t>& unique) {
  std::vector<std::string_view> names;
  std::unordered_map<std::string_view, bool> seen;
  for (std::size_t i : unique) {
    if (seen.try_emplace(slots[i].cmd->receiver, true).second) names.push_back(slots[i].cmd->receiver);
  }
  const std::vector<std::optional<std::int64_t>> stored = stored_max_seqs(names);
  for (std::size_t j = 0; j < stored.size(); ++j) {
    if (stored[j]) seqs_.raise_floor(std::string(names[j]), *stored[j]);
  }
}

std::vector<std::optional<std::int64_t>> GroupCommitWriter::stored_max_seqs(
    std::span<const std::string_view> owners) {
  PgArray names;
  for (std::string_view owner : owners) names.add(owner);
  pqxx::nontransaction tx(*pg_);
  const pqxx::result r = tx.exec_prepared(sql::kMaxSeq.name, std::move(names).str());
  std::vector<std::optional<std::int64_t>> max(r.size());
  for (std::size_t row = 0; row < r.size(); ++row) {
    if (!r[row][1].is_null()) max[row] = r[row][1].as<std::int64_t>();
  }
  return max;
}

// ---- Writing ----

bool GroupCommitWriter::fits_one_statement() const {
  // Tombstones for abandoned seqs must commit with the batch; the two fault
  // points need a moment between insert and commit.
  return abandoned_.empty() && !fault::enabled(fault::Point::crash_after_insert) &&
         !fault::enabled(fault::Point::ack_before_commit);
}

pqxx::result GroupCommitWriter::insert(BatchTransaction& tx, std::vector<Slot>& slots,
                                       const std::vector<std::size_t>& unique, SeqTakers& takers) {
  // Each send's seq if every send is new: the next of its receiver's range.
  for (std::size_t i : unique) {
    Slot& s = slots[i];
    s.stored_id = 0;
    s.seq = ranges_[s.range].first + ranges_[s.range].used;
    takers.take(i, s);
  }
  const StatementArgs a = statement_args(slots, unique);
  try {
    return tx.begin().exec_prepared(sql::kInsertBatch.name, a.ord, a.sender, a.receiver, a.cmid,
                                    a.body, a.created, a.seq);
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() != sql::kResendInBatch) throw;
  }
  // Nothing of the batch was stored. Again, with only the new sends
  // taking seqs (from each range's first).
  checked_batches_.fetch_add(1, std::memory_order_relaxed);
  takers.clear();
  for (std::size_t i : unique) slots[i].seq = 0;
  fault::at_stage(options_.stage_hook, fault::Stage::before_checked);
  pqxx::result r = tx.begin().exec_params(sql::kInsertCheckedSql.c_str(), a.ord, a.sender,
                                          a.receiver, a.cmid, a.body, a.created, a.seq);
  for (const auto& row : r) {
    if (row[0].is_null()) continue;
    const auto i = row[0].as<std::size_t>();
    Slot& s = slots[i];
    s.seq = row[1].as<std::int64_t>();
    takers.take(i, s);
  }
  return r;
}

GroupCommitWriter::StatementArgs GroupCommitWriter::statement_args(
    std::vector<Slot>& slots, const std::vector<std::size_t>& unique) {
  PgArray ord, sender, receiver, cmid, body, created, seq;
  // Negative control: fresh keys make every resend a new message.
  const bool skip_idempotency = fault::fires(fault::Point::skip_idempotency);
  std::size_t body_bytes = 0;
  for (std::size_t i : unique) body_bytes += slots[i].cmd->body.size() + 8;
  body.reserve(body_bytes);
  for (std::size_t i : unique) {
    Slot& s = slots[i];
    const SendCommand& c = *s.cmd;
    ord.add(static_cast<std::int64_t>(i));
    sender.add(c.sender);
    receiver.add(c.receiver);
    // The key the batch stores (the committed batch hands it to readers).
    s.stored_cmid =
        skip_idempotency ? c.client_msg_id ^ static_cast<std::uint64_t>(now_us()) : c.client_msg_id;
    cmid.add(static_cast<std::int64_t>(s.stored_cmid));
    body.add(c.body);
    created.add(c.received_at_us);
    seq.add(s.seq);
  }
  return {std::move(ord).str(),  std::move(sender).str(), std::move(receiver).str(),
          std::move(cmid).str(), std::move(body).str(),   std::move(created).str(),
          std::move(seq).str()};
}

void GroupCommitWriter::match_stored(const pqxx::result& rows, std::vector<Slot>& slots,
                                     const std::vector<std::size_t>& unique,
                                     const SeqTakers& takers) {
  // The messages stored, matched to their sends by (receiver, seq).
  std::unordered_map<std::string_view, std::size_t> range_of;
  for (std::size_t k = 0; k < ranges_.size(); ++k) range_of.emplace(ranges_[k].owner, k);
  for (const auto& row : rows) {
    if (!row[0].is_null()) continue;
    const std::size_t k = range_of.at(std::string_view(row[3].c_str(), row[3].size()));
    Slot& s = slots.at(takers.taker(k, row[1].as<std::int64_t>()));
    s.status = {};
    s.stored_id = row[2].as<std::int64_t>();
    s.ack = {s.stored_id, s.cmd->received_at_us, s.seq, false};
  }
  // A seq whose send stored nothing lost its key to a concurrent writer:
  // no message will ever take it, so it is tombstoned after the commit.
  for (std::size_t i : unique) {
    const Slot& s = slots[i];
    if (s.seq != 0 && s.stored_id == 0) lost_.emplace_back(s.cmd->receiver, s.seq);
  }
}

void GroupCommitWriter::answer_resends(pqxx::transaction_base& tx, std::vector<Slot>& slots,
                                       const std::vector<std::size_t>& unique) {
  // Every send that stored nothing is a resend: answer it from the stored message.
  PgArray dup_ord, dup_sender, dup_cmid;
  bool any_dup = false;
  for (std::size_t i : unique) {
    Slot& s = slots[i];
    if (s.stored_id != 0) continue;
    dup_ord.add(static_cast<std::int64_t>(i));
    dup_sender.add(s.cmd->sender);
    dup_cmid.add(static_cast<std::int64_t>(s.cmd->client_msg_id));
    any_dup = true;
  }
  if (!any_dup) return;
  const pqxx::result d = tx.exec_prepared(sql::kFindExisting.name, std::move(dup_ord).str(),
                                          std::move(dup_sender).str(), std::move(dup_cmid).str());
  for (const auto& row : d) {
    Slot& s = slots[row[0].as<std::size_t>()];
    s.ack = {row[1].as<std::int64_t>(), row[4].as<std::int64_t>(), row[5].as<std::int64_t>(), true};
    if (row[2].as<std::string>() != s.cmd->receiver || row[3].as<std::string>() != s.cmd->body) {
      s.status = {StoreCode::conflict, "client_msg_id already used for a different message"};
    } else {
      s.status = {};
    }
  }
}

StoreStatus GroupCommitWriter::ack_then_roll_back(std::vector<Slot>& slots,
                                                  const std::vector<std::size_t>& unique) {
  // Negative control: acknowledge, then let the transaction roll back.
  for (std::size_t i : unique) {
    Slot& s = slots[i];
    if (!s.status.ok() || !s.cmd->done) continue;
    s.cmd->done(s.status, s.ack);
    s.cmd->done = nullptr;
  }
  abandon_ranges();
  return {StoreCode::unavailable, "fault point ack_before_commit"};
}

void GroupCommitWriter::tombstone_abandoned(pqxx::transaction_base& tx) {
  PgArray owners, seqs;
  for (const auto& [o, s] : abandoned_) {
    owners.add(o);
    seqs.add(s);
  }
  tx.exec_prepared(sql::kTombstone.name, std::move(owners).str(), std::move(seqs).str());
}

// ---- Recovery ----

// Every failure abandons the attempt's seqs (there are none yet while they
// are planned): a later transaction tombstones them, which is safe even when
// the outcome is unknown, as ON CONFLICT DO NOTHING leaves a committed message
// in place. Then:
// - writing, an (owner, seq) taken: a Redis counter is behind PostgreSQL (or
//   a reader tombstoned a seq we were slow to write); every counter of the
//   batch is raised above the stored maximum and the batch retried;
// - writing, a deadlock: retried as it is;
// - planning, Redis failed: unavailable;
// - anything else fails the batch with its classified status. Planning drops
//   the connection on any PostgreSQL failure (its one query, MAX(seq), failing
//   leaves nothing to keep), writing only when it is lost.
StoreStatus GroupCommitWriter::recover(Step step, const std::exception_ptr& error,
                                       const std::vector<Slot>& slots,
                                       const std::vector<std::size_t>& unique) {
  abandon_ranges();
  try {
    std::rethrow_exception(error);
  } catch (const RedisError& e) {
    if (step == Step::plan_seqs) return {StoreCode::unavailable, e.what()};
  } catch (const pqxx::unique_violation& e) {
    if (step == Step::write) {
      logs::pg().warn("seq collision, retrying batch: {}", e.what());
      last_conflict_ = Conflict::seq_collision;
      try {
        raise_counters_above_stored(slots, unique);
      } catch (...) {
        // Raising counters is planning seqs: a failure means what it does there.
        return recover(Step::plan_seqs, std::current_exception(), slots, unique);
      }
      return {StoreCode::conflict, "seq collision"};
    }
  } catch (const pqxx::deadlock_detected& e) {
    // Two batches inserting the same (sender, client_msg_id) keys in opposite
    // orders (a key reused for receivers in two lanes or two processes) wait
    // for each other; PostgreSQL rolls one back. Nothing of it was stored:
    // the new attempt waits for the other batch's keys like any insert, then
    // finds them taken or free.
    if (step == Step::write) {
      logs::pg().warn("batch rolled back by a deadlock, retrying: {}", e.what());
      last_conflict_ = Conflict::deadlock;
      return {StoreCode::conflict, "deadlock"};
    }
  } catch (...) {
  }
  StoreStatus st = classify_pg_exception(error);
  if (step == Step::plan_seqs || st.code == StoreCode::unavailable) pg_.reset();
  return st;
}

// ---- After the commit, and after a failed attempt ----

void GroupCommitWriter::abandon_ranges() {
  for (const Range& r : ranges_) {
    for (std::int64_t s = r.first; s <= r.last; ++s) abandoned_.emplace_back(r.owner, s);
  }
  ranges_.clear();
  lost_.clear();  // inside the ranges just abandoned
}

void GroupCommitWriter::release_unused() {
  // The commit cleared abandoned_: what is in it below is tombstoned now.
  give_back_unused();
  // Seqs whose key a concurrent writer stored first: a gap below this
  // batch's messages until tombstoned (readers wait at it meanwhile).
  seqs_tombstoned_.fetch_add(lost_.size(), std::memory_order_relaxed);
  for (auto& [owner, seq] : lost_) abandoned_.emplace_back(std::move(owner), seq);
  lost_.clear();
  ranges_.clear();
  if (abandoned_.empty()) return;
  try {
    pqxx::nontransaction tx(*pg_);
    tombstone_abandoned(tx);
    abandoned_.clear();
  } catch (...) {
    // Left in abandoned_: the next transaction tombstones them (or readers
    // fill the gap after gap_fill_ms).
    if (classify_pg_exception(std::current_exception()).code == StoreCode::unavailable) pg_.reset();
  }
}

void GroupCommitWriter::give_back_unused() {
  std::vector<std::string> owners;
  std::vector<std::int64_t> from, to;
  for (const Range& r : ranges_) {
    if (r.first + r.used > r.last) continue;
    owners.push_back(r.owner);
    from.push_back(r.last);
    to.push_back(r.first + r.used - 1);
  }
  if (owners.empty()) return;
  std::vector<bool> given;
  try {
    seqs_.give_back(owners, from, to, given);
  } catch (const RedisError& e) {
    logs::pg().warn("could not give back unused seqs, tombstoning them: {}", e.what());
    given.assign(owners.size(), false);
  }
  for (std::size_t j = 0; j < owners.size(); ++j) {
    const auto unused = static_cast<std::uint64_t>(from[j] - to[j]);
    if (given[j]) {
      seqs_given_back_.fetch_add(unused, std::memory_order_relaxed);
      continue;
    }
    // Someone allocated above the range (another process): its unused seqs
    // would be a gap below their messages. Tombstone them now.
    seqs_tombstoned_.fetch_add(unused, std::memory_order_relaxed);
    for (std::int64_t s = to[j] + 1; s <= from[j]; ++s) abandoned_.emplace_back(owners[j], s);
  }
}

}  // namespace im::server
