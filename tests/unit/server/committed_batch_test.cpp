// Unit: answering woken long polls from the committed batch - the matching rule
// (page_from_commit) and a PullOperation driven through its states with a fake
// reader and connection, without services.
#include <catch2/catch.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <asio/io_context.hpp>

#include "protocol/frames.hpp"
#include "server/app/config.hpp"
#include "server/service/committed_batch.hpp"
#include "server/service/pull_operation.hpp"
#include "server/service/service.hpp"
#include "server/service/waiters.hpp"

using namespace im::server;
using im::protocol::MessageRecord;

namespace {

MessageRecord msg(const std::string& owner, std::int64_t seq) {
  MessageRecord m;
  m.seq = seq;
  m.message_id = 1000 + seq;
  m.sender = "alice";
  m.receiver = owner;
  m.body = "m" + std::to_string(seq);
  m.created_at_us = 7;
  m.client_msg_id = static_cast<std::uint64_t>(seq);
  return m;
}

// One inbox "bob" whose committed run is [first, last]; `tombstones` are seqs in
// it that hold no message. A second inbox "carol" comes first in the batch, so
// bob's messages do not start at index 0.
std::shared_ptr<CommittedBatch> batch_for(std::int64_t first, std::int64_t last,
                                          std::vector<std::int64_t> tombstones = {}) {
  auto b = std::make_shared<CommittedBatch>();
  b->messages.push_back(msg("carol", 1));
  b->inboxes.push_back({"carol", 1, 1, 0, 1});
  CommittedBatch::Inbox bob{"bob", first, last, 1, 1};
  for (std::int64_t s = first; s <= last; ++s) {
    if (std::find(tombstones.begin(), tombstones.end(), s) != tombstones.end()) continue;
    b->messages.push_back(msg("bob", s));
    ++bob.end;
  }
  b->inboxes.push_back(bob);
  return b;
}

std::vector<std::int64_t> seqs(std::span<const MessageRecord> ms) {
  std::vector<std::int64_t> out;
  for (const auto& m : ms) out.push_back(m.seq);
  return out;
}

}  // namespace

TEST_CASE("a batch whose run starts right after the cursor answers the pull", "[unit][commit]") {
  const auto b = batch_for(5, 8);
  const auto page = page_from_commit(*b, b->inboxes[1], 4, 100);
  REQUIRE(page);
  CHECK(seqs(page->messages) == std::vector<std::int64_t>{5, 6, 7, 8});
  CHECK(page->messages.front().body == "m5");
  CHECK(page->messages.front().receiver == "bob");
  CHECK(page->next_after_seq == 8);
  CHECK_FALSE(page->has_more);
}

TEST_CASE("a run longer than the limit gives a full page with has_more", "[unit][commit]") {
  const auto b = batch_for(5, 8);
  const auto page = page_from_commit(*b, b->inboxes[1], 4, 3);
  REQUIRE(page);
  CHECK(seqs(page->messages) == std::vector<std::int64_t>{5, 6, 7});
  CHECK(page->next_after_seq == 7);
  CHECK(page->has_more);
  // Exactly the limit: nothing left, no has_more.
  const auto exact = page_from_commit(*b, b->inboxes[1], 4, 4);
  REQUIRE(exact);
  CHECK(exact->next_after_seq == 8);
  CHECK_FALSE(exact->has_more);
}

TEST_CASE("tombstones in the run advance the cursor without counting", "[unit][commit]") {
  // 5 and 8 are tombstones (keys a concurrent writer stored first): 6, 7 are messages.
  const auto b = batch_for(5, 8, {5, 8});
  const auto all = page_from_commit(*b, b->inboxes[1], 4, 10);
  REQUIRE(all);
  CHECK(seqs(all->messages) == std::vector<std::int64_t>{6, 7});
  CHECK(all->next_after_seq == 8);
  CHECK_FALSE(all->has_more);
  // A full page stops at its last message; the tombstone after it is left.
  const auto two = page_from_commit(*b, b->inboxes[1], 4, 2);
  REQUIRE(two);
  CHECK(seqs(two->messages) == std::vector<std::int64_t>{6, 7});
  CHECK(two->next_after_seq == 7);
  CHECK(two->has_more);
  // Only tombstones: an empty page that still moves the cursor.
  const auto t = batch_for(5, 5, {5});
  const auto none = page_from_commit(*t, t->inboxes[1], 4, 10);
  REQUIRE(none);
  CHECK(none->messages.empty());
  CHECK(none->next_after_seq == 5);
}

TEST_CASE("a gap, a cursor ahead, or an unknown run falls back to a query", "[unit][commit]") {
  const auto b = batch_for(5, 8);
  // Cursor behind the run: seq 4 is held by another writer or a failed write.
  CHECK_FALSE(page_from_commit(*b, b->inboxes[1], 3, 100));
  CHECK_FALSE(page_from_commit(*b, b->inboxes[1], 0, 100));
  // Cursor at or inside or past the run.
  CHECK_FALSE(page_from_commit(*b, b->inboxes[1], 5, 100));
  CHECK_FALSE(page_from_commit(*b, b->inboxes[1], 8, 100));
  CHECK_FALSE(page_from_commit(*b, b->inboxes[1], 20, 100));
  // A limit of 0 is never answered from a batch.
  CHECK_FALSE(page_from_commit(*b, b->inboxes[1], 4, 0));
  // A commit from another process names the inbox only.
  const auto remote = CommittedBatch::names_only({"bob"});
  CHECK_FALSE(page_from_commit(*remote, remote->inboxes[0], 4, 100));
  CHECK_FALSE(page_from_commit(*remote, remote->inboxes[0], -1, 100));
}

TEST_CASE("waiters hand each woken pull the shared batch and its inbox", "[unit][service]") {
  Waiters w;
  std::vector<std::pair<const CommittedBatch*, std::size_t>> bob;
  int carol = 0;
  const auto t1 =
      w.add("bob", [&](const std::shared_ptr<const CommittedBatch>& b, std::size_t i, std::uint64_t) {
         bob.emplace_back(b.get(), i);
       }).ticket;
  w.add("bob", [&](const std::shared_ptr<const CommittedBatch>& b, std::size_t i, std::uint64_t) {
    bob.emplace_back(b.get(), i);
  });
  w.add("carol",
        [&](const std::shared_ptr<const CommittedBatch>&, std::size_t, std::uint64_t) { ++carol; });
  const std::shared_ptr<const CommittedBatch> b = batch_for(5, 8);
  w.notify(CommittedBatch::names_only({"dave"}));
  CHECK(bob.empty());
  w.notify(b);
  REQUIRE(bob.size() == 2);
  CHECK(bob[0] == std::pair<const CommittedBatch*, std::size_t>{b.get(), 1});
  CHECK(bob[1] == bob[0]);
  CHECK(carol == 1);
  w.remove("bob", t1);
  CHECK(w.size() == 2);
  w.notify_all();
  CHECK(bob.size() == 3);
  CHECK(bob.back().first == nullptr);
  CHECK(carol == 2);
}

// ---- PullOperation through its states -----------------------------------------

namespace {

struct FakeConnection final : Connection {
  explicit FakeConnection(asio::io_context& io) : io_(io) {}
  void respond(im::protocol::OutFrame frame) override { frames.push_back(std::move(frame)); }
  void fail(im::protocol::OutFrame frame) override { frames.push_back(std::move(frame)); }
  asio::any_io_executor executor() override { return io_.get_executor(); }
  void open_session(std::string_view) override {}
  std::uint64_t id() const override { return 1; }
  bool closing() const override { return false; }
  bool closed() const override { return false; }
  asio::io_context& io_;
  std::vector<im::protocol::OutFrame> frames;
};

// Holds each pull until the test answers it.
struct FakeReader final : MessageReader {
  void pull(PullQuery q, std::function<void(const StoreStatus&, PullPage&&)> done) override {
    queries.push_back(q);
    pending.push_back(std::move(done));
  }
  void history(HistoryQuery, std::function<void(const StoreStatus&, HistoryPage&&)>) override {}
  void answer(PullPage page) {
    REQUIRE_FALSE(pending.empty());
    auto done = std::move(pending.front());
    pending.pop_front();
    done(StoreStatus{}, std::move(page));
  }
  std::vector<PullQuery> queries;
  std::deque<std::function<void(const StoreStatus&, PullPage&&)>> pending;
};

struct NoWriter final : MessageWriter {
  StoreStatus submit(SendCommand&) override { return {StoreCode::unavailable, "test"}; }
};

struct Answer {
  std::vector<std::int64_t> seqs;
  std::int64_t next = 0;
  bool has_more = false;
};

Answer decode(const im::protocol::OutFrame& f) {
  const auto* frame = flatbuffers::GetSizePrefixedRoot<im::wire::Frame>(f.data());
  const auto* r = frame->body_as_PullResult();
  REQUIRE(r);
  Answer a;
  if (r->messages()) {
    for (const auto* m : *r->messages()) a.seqs.push_back(m->seq());
  }
  a.next = r->next_after_seq();
  a.has_more = r->has_more();
  return a;
}

PullPage empty_page(std::int64_t after) {
  PullPage p;
  p.next_after_seq = after;
  return p;
}

struct Rig {
  asio::io_context io;
  FakeReader reader;
  NoWriter writer;
  Waiters waiters;
  ServiceLimits limits = service_limits(Config{});
  std::unique_ptr<Service> service;
  std::shared_ptr<FakeConnection> conn = std::make_shared<FakeConnection>(io);
  Rig() {
    limits.gap_recheck_ms = 1000000;
    service = std::make_unique<Service>(limits, writer, reader, waiters, "test", ServiceAuth{});
    conn->state().user = "bob";
  }
  void pull(std::int64_t after, std::uint32_t limit) {
    PullQuery q{"bob", after, limit};
    // An hour: only wakes (never the deadline) can end these long polls.
    std::make_shared<PullOperation>(service->context(), conn, 1, q, std::chrono::hours(1))->start();
  }
  void run() {
    io.restart();
    io.poll();
  }
};

}  // namespace

TEST_CASE("a waiting pull is answered from a matching batch without a query", "[unit][commit]") {
  Rig rig;
  rig.pull(4, 3);
  rig.reader.answer(empty_page(4));  // nothing yet: the pull waits
  rig.run();
  REQUIRE(rig.conn->frames.empty());
  rig.waiters.notify(batch_for(5, 8));
  rig.run();
  REQUIRE(rig.conn->frames.size() == 1);
  const Answer a = decode(rig.conn->frames[0]);
  CHECK(a.seqs == std::vector<std::int64_t>{5, 6, 7});
  CHECK(a.next == 7);
  CHECK(a.has_more);
  CHECK(rig.reader.queries.size() == 1);  // only the first query
  CHECK(rig.waiters.size() == 0);
  CHECK(rig.waiters.answered_from_commit() == 1);
  // A second batch in quick succession finds the pull done: no second answer.
  rig.waiters.notify(batch_for(9, 9));
  rig.run();
  CHECK(rig.conn->frames.size() == 1);
}

TEST_CASE("a batch that leaves a gap before its run makes the pull query", "[unit][commit]") {
  Rig rig;
  rig.pull(3, 100);
  rig.reader.answer(empty_page(3));
  rig.run();
  rig.waiters.notify(batch_for(5, 8));  // seq 4 is not in it
  rig.run();
  CHECK(rig.conn->frames.empty());
  REQUIRE(rig.reader.queries.size() == 2);
  CHECK(rig.reader.queries[1].after_seq == 3);
  // A wake from another process also queries (the pull is querying now, so
  // the wake is remembered, and the empty result queries once more).
  rig.waiters.notify(CommittedBatch::names_only({"bob"}));
  rig.run();
  rig.reader.answer(empty_page(3));
  rig.run();
  CHECK(rig.conn->frames.empty());
  REQUIRE(rig.reader.queries.size() == 3);
  PullPage page = empty_page(3);
  page.messages = {msg("bob", 4)};
  page.next_after_seq = 4;
  rig.reader.answer(std::move(page));
  rig.run();
  REQUIRE(rig.conn->frames.size() == 1);
  CHECK(decode(rig.conn->frames[0]).seqs == std::vector<std::int64_t>{4});
  CHECK(rig.waiters.answered_from_query() == 1);
}

TEST_CASE("a batch that commits while the query runs answers an empty result", "[unit][commit]") {
  Rig rig;
  rig.pull(4, 100);
  // The first query is in flight when the commit lands (and did not see it).
  rig.waiters.notify(batch_for(5, 6));
  rig.run();
  rig.reader.answer(empty_page(4));
  rig.run();
  REQUIRE(rig.conn->frames.size() == 1);
  CHECK(decode(rig.conn->frames[0]).seqs == std::vector<std::int64_t>{5, 6});
  CHECK(rig.reader.queries.size() == 1);
}

TEST_CASE("a query that saw the commit answers from its own page", "[unit][commit]") {
  Rig rig;
  rig.pull(4, 100);
  rig.waiters.notify(batch_for(5, 6));
  rig.run();
  PullPage page = empty_page(4);
  page.messages = {msg("bob", 5), msg("bob", 6), msg("bob", 7)};
  page.next_after_seq = 7;
  rig.reader.answer(std::move(page));
  rig.run();
  REQUIRE(rig.conn->frames.size() == 1);
  CHECK(decode(rig.conn->frames[0]).seqs == std::vector<std::int64_t>{5, 6, 7});
}

TEST_CASE("shutdown wakes a waiting pull, which answers by a query", "[unit][commit]") {
  Rig rig;
  rig.pull(4, 100);
  rig.reader.answer(empty_page(4));
  rig.run();
  rig.service->begin_shutdown();
  rig.run();
  REQUIRE(rig.reader.queries.size() == 2);
  rig.reader.answer(empty_page(4));
  rig.run();
  REQUIRE(rig.conn->frames.size() == 1);
  CHECK(decode(rig.conn->frames[0]).seqs.empty());
  CHECK(decode(rig.conn->frames[0]).next == 4);
}

// ---- quiet marks: the next long poll skips the empty query only when safe ------

namespace {
/// Long polls at 4 (empty, waits), answered 5..8 by a batch: leaves a mark at 8.
void answered_up_to_8(Rig& rig) {
  rig.pull(4, 100);
  rig.reader.answer(empty_page(4));
  rig.run();
  rig.waiters.notify(batch_for(5, 8));
  rig.run();
  REQUIRE(rig.conn->frames.size() == 1);
  REQUIRE(decode(rig.conn->frames[0]).next == 8);
  REQUIRE(rig.reader.queries.size() == 1);
}
}  // namespace

TEST_CASE("a follower's next long poll at the answered cursor waits without a query",
          "[unit][commit]") {
  Rig rig;
  answered_up_to_8(rig);
  // A commit to another inbox is no reason to query.
  rig.waiters.notify(CommittedBatch::names_only({"dave"}));
  rig.pull(8, 100);
  rig.run();
  CHECK(rig.reader.queries.size() == 1);
  CHECK(rig.waiters.quiet_starts() == 1);
  CHECK(rig.waiters.size() == 1);
  rig.waiters.notify(batch_for(9, 10));
  rig.run();
  REQUIRE(rig.conn->frames.size() == 2);
  CHECK(decode(rig.conn->frames[1]).seqs == std::vector<std::int64_t>{9, 10});
  // ... and so on, poll after poll, with no query at all.
  rig.pull(10, 100);
  rig.run();
  rig.waiters.notify(batch_for(11, 11));
  rig.run();
  REQUIRE(rig.conn->frames.size() == 3);
  CHECK(decode(rig.conn->frames[2]).seqs == std::vector<std::int64_t>{11});
  CHECK(rig.reader.queries.size() == 1);
  CHECK(rig.waiters.quiet_starts() == 2);
}

TEST_CASE("a commit notified between two polls makes the next poll query", "[unit][commit]") {
  Rig rig;
  answered_up_to_8(rig);
  // Another process committed to bob (names only) while no poll was waiting.
  rig.waiters.notify(CommittedBatch::names_only({"bob"}));
  rig.pull(8, 100);
  rig.run();
  REQUIRE(rig.reader.queries.size() == 2);
  CHECK(rig.reader.queries[1].after_seq == 8);
  CHECK(rig.waiters.quiet_starts() == 0);
}

TEST_CASE("two batches notified before the poll runs: the answer from the first leaves no "
          "usable mark",
          "[unit][commit]") {
  Rig rig;
  rig.pull(4, 100);
  rig.reader.answer(empty_page(4));
  rig.run();
  // Both commits land before the poll's executor runs: it answers 5..6 from the
  // first; 7..8 are committed too, so the next poll at 6 must not skip its query.
  rig.waiters.notify(batch_for(5, 6));
  rig.waiters.notify(batch_for(7, 8));
  rig.run();
  REQUIRE(rig.conn->frames.size() == 1);
  CHECK(decode(rig.conn->frames[0]).next == 6);
  rig.pull(6, 100);
  rig.run();
  REQUIRE(rig.reader.queries.size() == 2);
  CHECK(rig.reader.queries[1].after_seq == 6);
}

TEST_CASE("a page cut by its limit, a gap or a lost channel leaves no usable mark",
          "[unit][commit]") {
  SECTION("limit: the batch run goes on past the answer") {
    Rig rig;
    rig.pull(4, 2);
    rig.reader.answer(empty_page(4));
    rig.run();
    rig.waiters.notify(batch_for(5, 8));
    rig.run();
    REQUIRE(decode(rig.conn->frames[0]).has_more);
    rig.pull(6, 2);
    rig.run();
    CHECK(rig.reader.queries.size() == 2);
  }
  SECTION("gap: the query saw later seqs past a missing one") {
    Rig rig;
    rig.pull(4, 100);
    PullPage page = empty_page(4);
    page.gap_pending = true;
    rig.reader.answer(std::move(page));
    rig.run();
    rig.waiters.notify(batch_for(5, 5));  // the missing seq commits
    rig.run();
    REQUIRE(rig.conn->frames.size() == 1);
    rig.pull(5, 100);
    rig.run();
    CHECK(rig.reader.queries.size() == 2);
  }
  SECTION("resync: notifications may have been lost") {
    Rig rig;
    answered_up_to_8(rig);
    rig.waiters.resync();
    rig.pull(8, 100);
    rig.run();
    CHECK(rig.reader.queries.size() == 2);
  }
  SECTION("another cursor") {
    Rig rig;
    answered_up_to_8(rig);
    rig.pull(7, 100);
    rig.run();
    CHECK(rig.reader.queries.size() == 2);
  }
}

TEST_CASE("a mark keeps its inbox counted until it is replaced", "[unit][commit]") {
  Rig rig;
  answered_up_to_8(rig);
  CHECK(rig.waiters.size() == 0);
  CHECK(rig.waiters.tracked() == 1);  // the mark holds bob's count
  rig.conn->state().inbox_mark.reset();
  CHECK(rig.waiters.tracked() == 0);
}
