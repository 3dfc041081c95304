// Unit: the in-memory store behind the dispatch fuzz target
// (tests/support/memory_store.hpp) behaves like the PostgreSQL adapters as the
// service sees them, so what the fuzzer checks against it means something.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <asio/io_context.hpp>

#include "server/service/waiters.hpp"
#include "server/service/committed_batch.hpp"
#include "tests/support/memory_store.hpp"

using im::server::StoreCode;
using im::server::StoreStatus;
using im::test::MemoryStore;

namespace {

struct Fixture {
  asio::io_context io;
  im::server::Waiters waiters;
  MemoryStore store{io.get_executor(), waiters};

  struct Outcome {
    bool called = false;
    StoreStatus status;
    im::protocol::SendAckRecord ack;
  };

  // Submits one send; the outcome fills in when the loop runs the commit.
  StoreStatus submit(Outcome& out, const std::string& from, const std::string& to,
                     std::uint64_t cmid, const std::string& body) {
    im::server::SendCommand c;
    c.sender = from;
    c.receiver = to;
    c.client_msg_id = cmid;
    c.body = body;
    c.received_at_us = static_cast<std::int64_t>(cmid) * 10;
    c.done = [&out](const StoreStatus& s, const im::protocol::SendAckRecord& a) {
      out = {true, s, a};
    };
    return store.submit(c);
  }
  void run() {
    io.restart();
    io.run();
  }
  im::server::PullPage pull(const std::string& owner, std::int64_t after, std::uint32_t limit) {
    im::server::PullPage page;
    store.pull({owner, after, limit}, [&](const StoreStatus& s, im::server::PullPage&& p) {
      REQUIRE(s.ok());
      page = std::move(p);
    });
    run();
    return page;
  }
  im::server::HistoryPage history(const std::string& user, const std::string& peer,
                                  std::int64_t cursor, std::uint32_t limit, bool reverse) {
    im::server::HistoryPage page;
    store.history({user, peer, cursor, limit, reverse},
                  [&](const StoreStatus& s, im::server::HistoryPage&& p) {
                    REQUIRE(s.ok());
                    page = std::move(p);
                  });
    run();
    return page;
  }
};

std::vector<std::int64_t> ids(const std::vector<im::protocol::MessageRecord>& ms) {
  std::vector<std::int64_t> out;
  for (const auto& m : ms) out.push_back(m.message_id);
  return out;
}

}  // namespace

TEST_CASE("memory store: seqs per inbox, idempotent resends, conflicts", "[unit][fuzz]") {
  Fixture f;
  Fixture::Outcome a, b, c, d, e;
  REQUIRE(f.submit(a, "alice", "bob", 1, "one").ok());
  REQUIRE(f.submit(b, "alice", "carol", 2, "two").ok());
  REQUIRE(f.submit(c, "dave", "bob", 1, "three").ok());
  REQUIRE(f.submit(d, "alice", "bob", 1, "one").ok());    // resend in the same batch
  REQUIRE(f.submit(e, "alice", "bob", 2, "other").ok());  // reused id, another message
  CHECK_FALSE(a.called);  // nothing completes inside submit()
  f.run();
  CHECK((a.status.ok() && a.ack.seq == 1 && a.ack.message_id == 1 && !a.ack.duplicate));
  CHECK((b.status.ok() && b.ack.seq == 1 && b.ack.message_id == 2));
  CHECK((c.status.ok() && c.ack.seq == 2 && c.ack.message_id == 3));
  CHECK((d.status.ok() && d.ack.duplicate && d.ack.message_id == 1 && d.ack.seq == 1));
  CHECK(d.ack.created_at_us == a.ack.created_at_us);
  CHECK(e.status.code == StoreCode::conflict);
  CHECK(e.ack.duplicate);
  CHECK(f.store.size() == 3);
  CHECK(f.store.check().empty());

  Fixture::Outcome later;
  REQUIRE(f.submit(later, "alice", "bob", 1, "one").ok());  // resend in a later batch
  f.run();
  CHECK((later.status.ok() && later.ack.duplicate && later.ack.message_id == 1));
  CHECK(f.store.inbox_size("bob") == 2);
}

TEST_CASE("memory store: pull pages by cursor, history both ways", "[unit][fuzz]") {
  Fixture f;
  std::vector<Fixture::Outcome> outs(5);
  f.submit(outs[0], "alice", "bob", 1, "a1");
  f.submit(outs[1], "bob", "alice", 1, "b1");
  f.submit(outs[2], "alice", "erin", 2, "elsewhere");
  f.submit(outs[3], "alice", "bob", 3, "a3");
  f.submit(outs[4], "carol", "bob", 1, "c1");
  f.run();

  auto p = f.pull("bob", 0, 2);
  CHECK(ids(p.messages) == std::vector<std::int64_t>{1, 4});
  CHECK((p.next_after_seq == 2 && p.has_more));
  p = f.pull("bob", 2, 2);
  CHECK(ids(p.messages) == std::vector<std::int64_t>{5});
  CHECK((p.next_after_seq == 3 && !p.has_more));
  p = f.pull("bob", 3, 2);
  CHECK((p.messages.empty() && p.next_after_seq == 3 && !p.has_more));
  p = f.pull("nobody", 7, 2);
  CHECK((p.messages.empty() && p.next_after_seq == 7));

  // alice <-> bob holds ids 1, 2, 4.
  auto h = f.history("alice", "bob", 0, 2, false);
  CHECK(ids(h.messages) == std::vector<std::int64_t>{1, 2});
  CHECK((h.next_cursor == 2 && h.has_more));
  h = f.history("bob", "alice", 2, 2, false);
  CHECK(ids(h.messages) == std::vector<std::int64_t>{4});
  CHECK(!h.has_more);
  h = f.history("alice", "bob", 0, 2, true);  // 0 with reverse: from the newest
  CHECK(ids(h.messages) == std::vector<std::int64_t>{4, 2});
  CHECK((h.next_cursor == 2 && h.has_more));
  h = f.history("alice", "bob", 2, 5, true);
  CHECK(ids(h.messages) == std::vector<std::int64_t>{1});
  CHECK((h.next_cursor == 1 && !h.has_more));
}

TEST_CASE("memory store: scheduled faults, and commits wake waiters", "[unit][fuzz]") {
  Fixture f;
  int woken = 0;
  const auto ticket = f.waiters.add(
      "bob", [&](const std::shared_ptr<const im::server::CommittedBatch>& batch, std::size_t inbox,
                 std::uint64_t) {
        ++woken;
        // The commit names bob's run: seq 1, the one message stored.
        REQUIRE(batch);
        CHECK(batch->inboxes[inbox].owner == "bob");
        CHECK(batch->inboxes[inbox].first_seq == 1);
        CHECK(batch->inboxes[inbox].last_seq == 1);
      });
  Fixture::Outcome busy, closed, lost, ok;
  f.store.faults().submit_busy = 1;
  CHECK(f.submit(busy, "alice", "bob", 1, "x").code == StoreCode::busy);
  f.store.faults().submit_unavailable = 1;
  CHECK(f.submit(closed, "alice", "bob", 1, "x").code == StoreCode::unavailable);
  f.store.faults().commit_unavailable = 1;
  REQUIRE(f.submit(lost, "alice", "bob", 1, "x").ok());
  f.run();
  CHECK((lost.called && lost.status.code == StoreCode::unavailable));
  CHECK(f.store.size() == 0);
  CHECK(woken == 0);
  REQUIRE(f.submit(ok, "alice", "bob", 1, "x").ok());  // the retry stores it, once
  f.run();
  CHECK((ok.status.ok() && !ok.ack.duplicate && ok.ack.seq == 1));
  CHECK(woken == 1);
  CHECK_FALSE(busy.called);
  CHECK_FALSE(closed.called);
  f.waiters.remove("bob", ticket.ticket);

  f.store.faults().read_unavailable = 1;
  StoreStatus read_status;
  f.store.pull({"bob", 0, 10}, [&](const StoreStatus& s, im::server::PullPage&&) { read_status = s; });
  f.run();
  CHECK(read_status.code == StoreCode::unavailable);
  CHECK(f.pull("bob", 0, 10).messages.size() == 1);
  CHECK(f.store.check().empty());
}
