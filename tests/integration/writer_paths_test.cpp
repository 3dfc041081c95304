// Integration: which mechanism of the group-commit writer answered a hazard,
// not only that the outcome was right. Several mechanisms give the same
// outcome (a counter Redis lost is raised by the fresh-key check before the
// write, and would otherwise be saved by the unique-violation fallback), so
// these tests read the writer's WriterStats, and hold a batch at its stages
// (fault::Stage, IM_FAULT_INJECTION builds) to see when it commits and acks.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <hiredis/hiredis.h>
#include <pqxx/pqxx>

#include "tests/support/send_future.hpp"
#include "server/app/server.hpp"
#include "server/common/log.hpp"
#include "server/service/waiters.hpp"
#include "server/storage/group_commit_writer.hpp"
#include "server/storage/schema.hpp"
#include "tests/support/test_env.hpp"

using namespace im;
using namespace im::server;
using im::test::unique_prefix;

namespace {

/// Redis databases of these tests' own (other tests use 0): FLUSHDB here loses
/// every counter the writer under test has, as FLUSHALL would, without
/// touching counters of tests running beside them.
constexpr int kFlushDb = 9;
constexpr int kHoldDb = 10;
constexpr int kResendDb = 11;

std::string redis_url_db(int db) { return test::redis_url() + "/" + std::to_string(db); }

/// Runs one Redis command in database `db`; returns the integer reply or 0.
long long redis_command(int db, const std::string& command) {
  const RedisEndpoint ep = parse_redis_url(test::redis_url());
  redisContext* c = redisConnect(ep.host.c_str(), ep.port);
  REQUIRE(c);
  REQUIRE(c->err == 0);
  auto* sel = static_cast<redisReply*>(redisCommand(c, "SELECT %d", db));
  REQUIRE(sel);
  REQUIRE(sel->type != REDIS_REPLY_ERROR);
  freeReplyObject(sel);
  auto* r = static_cast<redisReply*>(redisCommand(c, command.c_str()));
  REQUIRE(r);
  const long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
  freeReplyObject(r);
  redisFree(c);
  return v;
}

using SendResult = test::SendResult;

/// One GroupCommitWriter of the test's own, on Redis database `db`, with a
/// unique name (so its PostgreSQL application_name is the test's alone).
struct Writer {
  Waiters waiters;
  std::string name = unique_prefix("im-writer");
  std::unique_ptr<GroupCommitWriter> writer;

  explicit Writer(int db, fault::StageHook hook = {}) {
    logs::set_level("warn");
    {
      pqxx::connection conn(test::pg_url());
      migrate(conn);
    }
    GroupCommitOptions w = writer_options(Config{});
    w.name = name;
    w.pg.url = test::pg_url();
    w.redis = parse_redis_url(redis_url_db(db));
    w.batch_delay = std::chrono::microseconds(100);
    w.stage_hook = std::move(hook);
    writer = std::make_unique<GroupCommitWriter>(w, waiters);
    writer->start();
  }
  std::future<SendResult> send_async(const std::string& from, const std::string& to,
                                     std::uint64_t cmid, const std::string& body) {
    return test::submit_send(*writer, from, to, cmid, body, now_us());
  }

  SendResult send(const std::string& from, const std::string& to, std::uint64_t cmid,
                  const std::string& body) {
    auto f = send_async(from, to, cmid, body);
    REQUIRE(f.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
    return f.get();
  }
};

/// The inbox as stored: (seq, holds a message) in seq order.
std::vector<std::pair<std::int64_t, bool>> inbox_rows(const std::string& owner) {
  pqxx::connection conn(test::pg_url());
  pqxx::nontransaction q(conn);
  std::vector<std::pair<std::int64_t, bool>> out;
  for (const auto& row : q.exec_params(
           "SELECT seq, message_id IS NOT NULL FROM inbox WHERE owner = $1 ORDER BY seq", owner)) {
    out.emplace_back(row[0].as<std::int64_t>(), row[1].as<bool>());
  }
  return out;
}

/// seqs first..last, each holding a message: an inbox with no gap or tombstone.
std::vector<std::pair<std::int64_t, bool>> messages_at(std::int64_t first, std::int64_t last) {
  std::vector<std::pair<std::int64_t, bool>> out;
  for (std::int64_t s = first; s <= last; ++s) out.emplace_back(s, true);
  return out;
}

}  // namespace

TEST_CASE("after Redis loses its counters, the first batch raises them above MAX(seq): no collision",
          "[integration][paths]") {
  Writer w(kFlushDb);
  const std::string alice = unique_prefix("alice");
  const std::string bob = unique_prefix("bob"), carol = unique_prefix("carol");
  const std::string dave = unique_prefix("dave");
  for (std::uint64_t i = 1; i <= 5; ++i) REQUIRE(w.send(alice, bob, i, "before").first.ok());
  for (std::uint64_t i = 11; i <= 13; ++i) REQUIRE(w.send(alice, carol, i, "before").first.ok());

  // Every counter of the writer's Redis database is gone, as after FLUSHALL.
  redis_command(kFlushDb, "FLUSHDB");
  const WriterStats before = w.writer->stats();
  std::vector<std::future<SendResult>> to_bob, to_carol;
  for (std::uint64_t i = 6; i <= 8; ++i) to_bob.push_back(w.send_async(alice, bob, i, "after"));
  for (std::uint64_t i = 14; i <= 15; ++i) to_carol.push_back(w.send_async(alice, carol, i, "after"));
  auto to_dave = w.send_async(alice, dave, 21, "new inbox");

  std::vector<std::int64_t> bob_seqs, carol_seqs;
  for (auto& f : to_bob) {
    const auto [st, ack] = f.get();
    REQUIRE(st.ok());
    bob_seqs.push_back(ack.seq);
  }
  for (auto& f : to_carol) {
    const auto [st, ack] = f.get();
    REQUIRE(st.ok());
    carol_seqs.push_back(ack.seq);
  }
  const auto [dave_status, dave_ack] = to_dave.get();
  REQUIRE(dave_status.ok());

  // The path: bob's and carol's counters came back fresh and were raised by
  // the main path (dave's inbox is new: its fresh counter is right as it is);
  // no attempt collided, so the fallback never ran.
  const WriterStats after = w.writer->stats();
  CHECK(after.counter_raises - before.counter_raises == 2);
  CHECK(after.unique_violation_retries == before.unique_violation_retries);
  CHECK(after.deadlock_retries == before.deadlock_retries);
  // The outcome: seqs continue right after the old maximum, gap-free.
  CHECK(bob_seqs == std::vector<std::int64_t>{6, 7, 8});
  CHECK(carol_seqs == std::vector<std::int64_t>{4, 5});
  CHECK(dave_ack.seq == 1);
  CHECK(inbox_rows(bob) == messages_at(1, 8));
  CHECK(inbox_rows(carol) == messages_at(1, 5));
  CHECK(inbox_rows(dave) == messages_at(1, 1));
}

TEST_CASE("a resend or a refused reuse of a client_msg_id leaves the receiver's inbox untouched",
          "[integration][paths]") {
  Writer w(kResendDb);
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  const auto one = w.send(alice, bob, 1, "one");
  REQUIRE(one.first.ok());
  CHECK(one.second.seq == 1);
  const WriterStats before = w.writer->stats();

  // A resend is answered from the stored message; a different message under
  // the same key is refused. Neither takes a seq of bob's.
  const auto again = w.send(alice, bob, 1, "one");
  REQUIRE(again.first.ok());
  CHECK(again.second.duplicate);
  CHECK(again.second.seq == 1);
  const auto reused = w.send(alice, bob, 1, "not one");
  CHECK(reused.first.code == StoreCode::conflict);
  // Both in one batch with new messages: the new ones take consecutive seqs.
  auto a = w.send_async(alice, bob, 2, "two");
  auto b = w.send_async(alice, bob, 1, "one");
  auto c = w.send_async(alice, bob, 3, "three");
  CHECK(a.get().second.seq == 2);
  CHECK(b.get().second.duplicate);
  CHECK(c.get().second.seq == 3);
  CHECK(w.send(alice, bob, 4, "four").second.seq == 4);

  CHECK(inbox_rows(bob) == messages_at(1, 4));  // no tombstone, no gap
  // The path: each seq allocated for a send that stored nothing was given back.
  const WriterStats after = w.writer->stats();
  CHECK(after.seqs_given_back - before.seqs_given_back == 3);
  CHECK(after.checked_batches - before.checked_batches == 3);  // one per batch holding a resend
  CHECK(after.seqs_tombstoned == before.seqs_tombstoned);
  CHECK(redis_command(kResendDb, "INCRBY im:seq:" + bob + " 0") == 4);  // the counter reads 4
}

namespace {

/// A transaction of the test's that inserts messages and commits when told:
/// another writer whose rows the batch under test meets uncommitted.
struct KeyHolder {
  pqxx::connection conn{test::pg_url()};
  pqxx::work tx{conn};
  const int pid = tx.exec("SELECT pg_backend_pid()")[0][0].as<int>();

  /// Inserts (sender, cmid) for receiver 'nobody', uncommitted.
  void hold(const std::string& sender, std::uint64_t cmid) {
    tx.exec_params(
        "INSERT INTO messages (sender, receiver, conversation, client_msg_id, body, created_at, seq) "
        "VALUES ($1, 'nobody', 'held', $2, 'held', now(), 0)",
        sender, static_cast<std::int64_t>(cmid));
  }

  /// Waits (up to 10 s) until a session waits for this transaction's locks.
  void wait_for_blocked() const {
    pqxx::connection c(test::pg_url());
    for (int i = 0; i < 1000; ++i) {
      pqxx::nontransaction q(c);
      if (q.exec_params("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                        pid)[0][0]
              .as<int>() > 0) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL("no session waited for the key holder");
  }
};

}  // namespace

TEST_CASE("a send whose key another writer holds uncommitted waits, and takes no seq once it commits",
          "[integration][paths]") {
  // Another writer (a transaction of the test's) has inserted alice's key 7
  // and not committed: the batch's insert waits for that row's lock. Once the
  // other commits, the key is stored (by it), so this send is a reuse of the
  // key and must leave bob's inbox untouched.
  Writer w(kResendDb);
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  KeyHolder holder;
  holder.hold(alice, 7);
  const WriterStats before = w.writer->stats();
  auto reused = w.send_async(alice, bob, 7, "seven");
  holder.wait_for_blocked();
  holder.tx.commit();
  REQUIRE(reused.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  CHECK(reused.get().first.code == StoreCode::conflict);  // the key holds another message
  CHECK(w.send(alice, bob, 8, "eight").second.seq == 1);
  CHECK(inbox_rows(bob) == messages_at(1, 1));
  // The path: the optimistic statement rolled back, the checked one wrote.
  const WriterStats after = w.writer->stats();
  CHECK(after.checked_batches - before.checked_batches == 1);
  CHECK(after.seqs_given_back - before.seqs_given_back == 1);
  CHECK(after.seqs_tombstoned == before.seqs_tombstoned);
}

#ifdef IM_FAULT_INJECTION

namespace {

/// Holds the writer thread at armed stages of a batch until the test lets it
/// go: while held, nothing of the batch can happen (acks are given on the
/// writer thread), so what the test sees then is what the writer had done
/// before that stage, with no timing involved.
class StageGate {
 public:
  /// The writer stops at each of `stages` once (the next batch to reach it).
  void arm(std::set<fault::Stage> stages) {
    std::lock_guard lock(mu_);
    armed_ = std::move(stages);
  }

  fault::StageHook hook() {
    return [this](fault::Stage stage) {
      std::unique_lock lock(mu_);
      if (armed_.erase(stage) == 0) return;
      held_ = stage;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !held_; });
    };
  }

  /// Waits (up to 10 s) until the writer is held at `stage`.
  void wait_held(fault::Stage stage) {
    std::unique_lock lock(mu_);
    REQUIRE(cv_.wait_for(lock, std::chrono::seconds(10), [&] { return held_ == stage; }));
  }

  /// Lets a held writer go on.
  void release() {
    std::lock_guard lock(mu_);
    held_.reset();
    cv_.notify_all();
  }

  /// Disarms every stage and releases: declared after the writer, it lets the
  /// writer's stop() finish when a failed check leaves a batch held.
  struct Opener {
    StageGate& gate;
    ~Opener() {
      {
        std::lock_guard lock(gate.mu_);
        gate.armed_.clear();
      }
      gate.release();
    }
  };

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<fault::Stage> armed_;
  std::optional<fault::Stage> held_;
};

/// Whether (sender, client_msg_id) is committed, as any other session sees it.
bool committed(const std::string& sender, std::uint64_t cmid) {
  pqxx::connection conn(test::pg_url());
  pqxx::nontransaction q(conn);
  return q.exec_params("SELECT count(*) FROM messages WHERE sender = $1 AND client_msg_id = $2",
                       sender, static_cast<std::int64_t>(cmid))[0][0]
             .as<int>() == 1;
}

/// The writer's PostgreSQL session state ("idle", "idle in transaction", ...).
std::string backend_state(const std::string& writer_name) {
  pqxx::connection conn(test::pg_url());
  pqxx::nontransaction q(conn);
  const pqxx::result r = q.exec_params(
      "SELECT state FROM pg_stat_activity WHERE application_name = $1", "im-server " + writer_name);
  REQUIRE(r.size() == 1);
  return r[0][0].as<std::string>();
}

bool ready(std::future<SendResult>& f) {
  return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

}  // namespace

TEST_CASE("an ack never precedes the commit", "[integration][paths]") {
  StageGate gate;
  Writer w(kHoldDb, gate.hook());
  const StageGate::Opener open_on_exit{gate};
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");

  SECTION("BEGIN ... COMMIT (tombstones for abandoned seqs commit with the batch)") {
    // Bob has a message; Redis loses his counter. The next batch gets seq 1
    // again, abandons it for one above the maximum, and must commit its
    // tombstone with the batch: a transaction block with a real COMMIT.
    REQUIRE(w.send(alice, bob, 1, "one").first.ok());
    redis_command(kHoldDb, "DEL im:seq:" + bob);
    gate.arm({fault::Stage::before_commit, fault::Stage::before_acks});
    auto f = w.send_async(alice, bob, 2, "two");

    gate.wait_held(fault::Stage::before_commit);
    CHECK(backend_state(w.name) == "idle in transaction");  // inserted, not committed
    CHECK_FALSE(committed(alice, 2));
    CHECK_FALSE(ready(f));  // no ack for what is not committed
    gate.release();

    gate.wait_held(fault::Stage::before_acks);
    CHECK(backend_state(w.name) == "idle");
    CHECK(committed(alice, 2));
    CHECK_FALSE(ready(f));
    gate.release();

    const auto [status, ack] = f.get();
    REQUIRE(status.ok());
    CHECK(ack.seq == 2);
    CHECK(inbox_rows(bob) == messages_at(1, 2));
  }

  SECTION("one statement outside a transaction block (it commits by itself)") {
    gate.arm({fault::Stage::before_commit, fault::Stage::before_acks});
    auto f = w.send_async(alice, bob, 1, "one");

    gate.wait_held(fault::Stage::before_commit);
    CHECK(backend_state(w.name) == "idle");  // no transaction block open
    CHECK(committed(alice, 1));             // the statement committed itself
    gate.release();

    gate.wait_held(fault::Stage::before_acks);
    CHECK(committed(alice, 1));
    CHECK_FALSE(ready(f));
    gate.release();

    const auto [status, ack] = f.get();
    REQUIRE(status.ok());
    CHECK(ack.seq == 1);
    CHECK(inbox_rows(bob) == messages_at(1, 1));
  }
}

TEST_CASE("unused seqs that cannot be given back (allocated above meanwhile) are tombstoned at once",
          "[integration][paths]") {
  StageGate gate;
  Writer w(kHoldDb, gate.hook());
  const StageGate::Opener open_on_exit{gate};
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  REQUIRE(w.send(alice, bob, 1, "one").first.ok());
  const WriterStats before = w.writer->stats();

  // A resend takes seq 2 from Redis; before its batch commits, another
  // process allocates seq 3 for bob. Giving 2 back would hand it out again
  // below 3, so the writer tombstones it instead.
  gate.arm({fault::Stage::before_acks});
  auto f = w.send_async(alice, bob, 1, "one");
  gate.wait_held(fault::Stage::before_acks);
  CHECK(redis_command(kHoldDb, "INCR im:seq:" + bob) == 3);
  gate.release();
  const auto [status, ack] = f.get();
  REQUIRE(status.ok());
  CHECK(ack.duplicate);

  // The tombstone is written right after the acks, before the next batch.
  CHECK(w.send(alice, bob, 2, "two").second.seq == 4);
  const WriterStats after = w.writer->stats();
  CHECK(after.seqs_tombstoned - before.seqs_tombstoned == 1);
  CHECK(after.seqs_given_back == before.seqs_given_back);
  const std::vector<std::pair<std::int64_t, bool>> want{{1, true}, {2, false}, {4, true}};
  CHECK(inbox_rows(bob) == want);
}

TEST_CASE("a send that loses its key to a concurrent writer during the checked write leaves a "
          "tombstone at its seq, not a gap",
          "[integration][paths]") {
  // The batch holds a resend (key 1), so the optimistic statement rolls back;
  // before the checked one runs, another writer inserts key 7 and has not
  // committed. The check cannot see it, so key 7 takes bob's seq 2; its
  // insert waits, and once the other commits it stores nothing: seq 2 would
  // be a gap below bob's later messages.
  StageGate gate;
  Writer w(kHoldDb, gate.hook());
  const StageGate::Opener open_on_exit{gate};
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  REQUIRE(w.send(alice, bob, 1, "one").first.ok());
  const WriterStats before = w.writer->stats();
  gate.arm({fault::Stage::before_checked});
  auto resend = w.send_async(alice, bob, 1, "one");
  auto lost = w.send_async(alice, bob, 7, "seven");
  gate.wait_held(fault::Stage::before_checked);
  KeyHolder holder;
  holder.hold(alice, 7);
  gate.release();
  holder.wait_for_blocked();
  holder.tx.commit();
  REQUIRE(lost.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  CHECK(resend.get().second.duplicate);
  CHECK(lost.get().first.code == StoreCode::conflict);
  CHECK(w.send(alice, bob, 8, "eight").second.seq == 3);

  // Seq 2 holds no message and is no gap: it was tombstoned after the commit.
  const std::vector<std::pair<std::int64_t, bool>> want{{1, true}, {2, false}, {3, true}};
  CHECK(inbox_rows(bob) == want);
  const WriterStats after = w.writer->stats();
  CHECK(after.seqs_tombstoned - before.seqs_tombstoned == 1);
  CHECK(after.checked_batches - before.checked_batches == 1);
}

#endif  // IM_FAULT_INJECTION
