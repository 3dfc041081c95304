// End-to-end: a real server (in-process, port 0) over real PostgreSQL and
// Redis, driven over TCP with raw frames.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include <pqxx/pqxx>

#include "tests/support/expect_frame.hpp"
#include "tests/support/raw_client.hpp"
#include "tests/support/test_env.hpp"
#include "tests/support/test_server.hpp"

using namespace im;
using im::test::body_of;
using im::test::expect_frame;
using im::test::RawClient;
using im::test::TestServer;
using im::test::unique_prefix;

namespace {

const wire::SendAck& ack_of(const test::Received& r) { return body_of<wire::SendAck>(r); }
const wire::PullResult& pull_of(const test::Received& r) { return body_of<wire::PullResult>(r); }
wire::ErrorCode error_of(const test::Received& r) { return test::error_code_of(r); }

/// Reads `user`'s whole inbox from 0 following the cursor.
std::vector<protocol::MessageRecord> read_inbox(RawClient& c) {
  std::vector<protocol::MessageRecord> out;
  std::int64_t cursor = 0;
  for (int page = 0; page < 1000; ++page) {
    const auto r = c.pull(cursor, 1000);
    const auto& p = pull_of(r);
    if (p.messages()) {
      for (const auto* m : *p.messages()) out.push_back(protocol::to_record(*m));
    }
    cursor = p.next_after_seq();
    if (!p.has_more()) break;
  }
  return out;
}

}  // namespace

TEST_CASE("send is acked durably and pulled with seq 1", "[e2e]") {
  TestServer server;
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  RawClient a(server.port()), b(server.port());
  a.hello(alice);
  b.hello(bob);

  const auto sent = a.send(bob, 42, "hi");
  const auto& ack = ack_of(sent);
  CHECK(ack.message_id() > 0);
  CHECK(ack.seq() == 1);
  CHECK_FALSE(ack.duplicate());

  const auto pulled = b.pull(0, 10);
  const auto& page = pull_of(pulled);
  REQUIRE(page.messages()->size() == 1);
  const auto m = protocol::to_record(*page.messages()->Get(0));
  CHECK(m.seq == 1);
  CHECK(m.sender == alice);
  CHECK(m.receiver == bob);
  CHECK(m.body == "hi");
  CHECK(m.client_msg_id == 42);
  CHECK(m.message_id == ack.message_id());
  CHECK(m.created_at_us == ack.created_at_us());
  CHECK(page.next_after_seq() == 1);
  CHECK_FALSE(page.has_more());
}

TEST_CASE("concurrent senders get seqs 1..N in order per receiver", "[e2e]") {
  TestServer server;
  const std::string receiver = unique_prefix("rcv");
  constexpr int kSenders = 8, kPerSender = 60;
  std::vector<std::string> senders;
  for (int s = 0; s < kSenders; ++s) senders.push_back(unique_prefix("snd" + std::to_string(s)));

  std::vector<std::thread> threads;
  std::vector<std::vector<std::int64_t>> acked_seqs(kSenders);
  for (int s = 0; s < kSenders; ++s) {
    threads.emplace_back([&, s] {
      RawClient c(server.port());
      c.hello(senders[static_cast<std::size_t>(s)]);
      // Pipeline all sends, then read the acks (they may come in any order).
      std::map<std::uint64_t, std::uint64_t> cmid_by_request;
      for (int i = 1; i <= kPerSender; ++i) {
        const std::uint64_t rid = c.next_id();
        cmid_by_request[rid] = static_cast<std::uint64_t>(i);
        c.write(protocol::encode_send(rid, receiver, static_cast<std::uint64_t>(i),
                                      "m" + std::to_string(i)));
      }
      std::vector<std::int64_t> seq_by_cmid(kPerSender + 1, 0);
      for (int i = 0; i < kPerSender; ++i) {
        auto r = c.read();
        if (!r || r->frame()->body_type() != wire::Body::SendAck) continue;
        seq_by_cmid[cmid_by_request[r->frame()->request_id()]] = r->frame()->body_as_SendAck()->seq();
      }
      acked_seqs[static_cast<std::size_t>(s)] = seq_by_cmid;
    });
  }
  for (auto& t : threads) t.join();

  RawClient reader(server.port());
  reader.hello(receiver);
  const auto inbox = read_inbox(reader);
  REQUIRE(inbox.size() == kSenders * kPerSender);
  std::set<std::pair<std::string, std::uint64_t>> seen;
  std::map<std::string, std::uint64_t> last_cmid;
  for (std::size_t i = 0; i < inbox.size(); ++i) {
    CHECK(inbox[i].seq == static_cast<std::int64_t>(i + 1));  // gap-free, 1..N
    CHECK(seen.insert({inbox[i].sender, inbox[i].client_msg_id}).second);  // no duplicates
    // Pipelined sends from one connection keep their order.
    CHECK(inbox[i].client_msg_id > last_cmid[inbox[i].sender]);
    last_cmid[inbox[i].sender] = inbox[i].client_msg_id;
  }
  // Every ack names the seq the message was delivered at.
  for (int s = 0; s < kSenders; ++s) {
    for (int i = 1; i <= kPerSender; ++i) {
      const std::int64_t seq = acked_seqs[static_cast<std::size_t>(s)][static_cast<std::size_t>(i)];
      REQUIRE(seq >= 1);
      CHECK(inbox[static_cast<std::size_t>(seq - 1)].sender == senders[static_cast<std::size_t>(s)]);
      CHECK(inbox[static_cast<std::size_t>(seq - 1)].client_msg_id == static_cast<std::uint64_t>(i));
    }
  }
}

TEST_CASE("a resend with the same client_msg_id returns the first ack and stores nothing",
          "[e2e]") {
  TestServer server;
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  RawClient a(server.port());
  a.hello(alice);
  const auto first = a.send(bob, 7, "once");
  const auto second = a.send(bob, 7, "once");
  CHECK(ack_of(second).message_id() == ack_of(first).message_id());
  CHECK(ack_of(second).seq() == ack_of(first).seq());
  CHECK(ack_of(second).created_at_us() == ack_of(first).created_at_us());
  CHECK(ack_of(second).duplicate());

  // Pipelined copies inside one batch, and from a second connection.
  RawClient a2(server.port());
  a2.hello(alice);
  for (int i = 0; i < 3; ++i) a.write(protocol::encode_send(a.next_id(), bob, 8, "twice"));
  const auto other = a2.send(bob, 8, "twice");
  std::set<std::int64_t> ids{ack_of(other).message_id()};
  for (int i = 0; i < 3; ++i) ids.insert(ack_of(expect_frame(a.read(), "SendAck")).message_id());
  CHECK(ids.size() == 1);

  // Reusing a key for a different message is refused.
  CHECK(error_of(a.send(bob, 7, "something else")) == wire::ErrorCode::BadRequest);

  RawClient b(server.port());
  b.hello(bob);
  const auto inbox = read_inbox(b);
  REQUIRE(inbox.size() == 2);
  CHECK(inbox[0].body == "once");
  CHECK(inbox[1].body == "twice");
}

TEST_CASE("pull pages with limit, next cursor and has_more", "[e2e]") {
  TestServer server;
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  RawClient a(server.port()), b(server.port());
  a.hello(alice);
  b.hello(bob);
  for (int i = 1; i <= 25; ++i) ack_of(a.send(bob, static_cast<std::uint64_t>(i), std::to_string(i)));

  std::int64_t cursor = 0;
  std::vector<std::size_t> sizes;
  std::vector<bool> more;
  for (int page = 0; page < 5; ++page) {
    const auto r = b.pull(cursor, 10);
    const auto& p = pull_of(r);
    sizes.push_back(p.messages()->size());
    more.push_back(p.has_more());
    if (p.messages()->size() > 0) CHECK(p.messages()->Get(0)->seq() == cursor + 1);
    cursor = p.next_after_seq();
    if (!p.has_more()) break;
  }
  CHECK(sizes == std::vector<std::size_t>{10, 10, 5});
  CHECK(more == std::vector<bool>{true, true, false});
  CHECK(cursor == 25);
  // Past the end: empty, cursor unchanged.
  const auto r = b.pull(25, 10);
  CHECK(pull_of(r).messages()->size() == 0);
  CHECK(pull_of(r).next_after_seq() == 25);
}

TEST_CASE("a long poll is woken by a send and otherwise times out empty", "[e2e]") {
  TestServer server;
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  RawClient b(server.port());
  b.hello(bob);

  SECTION("woken by a commit") {
    const auto start = std::chrono::steady_clock::now();
    std::thread sender([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      RawClient a(server.port());
      a.hello(alice);
      ack_of(a.send(bob, 1, "wake up"));
    });
    const auto r = b.pull(0, 10, 20000);
    const auto waited = std::chrono::steady_clock::now() - start;
    sender.join();
    const auto& p = pull_of(r);
    REQUIRE(p.messages()->size() == 1);
    CHECK(p.messages()->Get(0)->body()->str() == "wake up");
    // Answered by the commit, long before the 20 s deadline.
    CHECK(waited < std::chrono::seconds(15));
  }
  SECTION("times out empty") {
    const auto start = std::chrono::steady_clock::now();
    const auto r = b.pull(0, 10, 400);
    CHECK(pull_of(r).messages()->size() == 0);
    CHECK(pull_of(r).next_after_seq() == 0);
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(400));
  }
}

TEST_CASE("a long poll waits on past seqs that hold no message and answers with the next message",
          "[e2e]") {
  // Seqs 1 and 2 of bob's inbox hold no message (tombstones of failed
  // writes, written here by hand). A long poll at cursor 0 must not be
  // answered with nothing: it moves past them and waits for a message.
  TestServer server;
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  {
    pqxx::connection conn(test::pg_url());
    pqxx::nontransaction q(conn);
    q.exec_params("INSERT INTO inbox (owner, seq, message_id) VALUES ($1, 1, NULL), ($1, 2, NULL)", bob);
  }
  RawClient b(server.port());
  b.hello(bob);
  std::thread sender([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    RawClient a(server.port());
    a.hello(alice);
    // Redis has no counter for bob: the writer raises it above MAX(seq).
    CHECK(ack_of(a.send(bob, 1, "after the tombstones")).seq() == 3);
  });
  const auto r = b.pull(0, 10, 20000);
  sender.join();
  const auto& p = pull_of(r);
  REQUIRE(p.messages()->size() == 1);
  CHECK(p.messages()->Get(0)->seq() == 3);
  CHECK(p.next_after_seq() == 3);
}

TEST_CASE("history pages one conversation both ways", "[e2e]") {
  TestServer server;
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob"),
                    carol = unique_prefix("carol");
  RawClient a(server.port()), b(server.port()), c(server.port());
  a.hello(alice);
  b.hello(bob);
  c.hello(carol);
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 6; ++i) {
    auto& from = i % 2 == 0 ? a : b;
    ids.push_back(ack_of(from.send(i % 2 == 0 ? bob : alice, static_cast<std::uint64_t>(i + 1),
                                   "m" + std::to_string(i)))
                      .message_id());
    ack_of(c.send(alice, static_cast<std::uint64_t>(i + 1), "noise"));  // another conversation
  }
  auto history = [&](RawClient& who, const std::string& peer, std::int64_t cursor, bool reverse) {
    who.write(protocol::encode_history(who.next_id(), peer, cursor, 4, reverse));
    const auto r = expect_frame(who.read(), "HistoryResult");
    const auto& h = body_of<wire::HistoryResult>(r);
    std::vector<std::int64_t> got;
    if (h.messages()) {
      for (const auto* m : *h.messages()) got.push_back(m->message_id());
    }
    return std::make_tuple(got, h.next_cursor(), h.has_more());
  };
  // Newest first, then older.
  auto [newest, cur, more] = history(a, bob, 0, true);
  CHECK(newest == std::vector<std::int64_t>{ids[5], ids[4], ids[3], ids[2]});
  CHECK(more);
  auto [older, cur2, more2] = history(a, bob, cur, true);
  CHECK(older == std::vector<std::int64_t>{ids[1], ids[0]});
  CHECK_FALSE(more2);
  // Forward from the start, seen from the other side.
  auto [fwd, cur3, more3] = history(b, alice, 0, false);
  CHECK(fwd == std::vector<std::int64_t>{ids[0], ids[1], ids[2], ids[3]});
  CHECK(more3);
  auto [fwd2, cur4, more4] = history(b, alice, cur3, false);
  CHECK(fwd2 == std::vector<std::int64_t>{ids[4], ids[5]});
  CHECK_FALSE(more4);
  (void)cur4;
  (void)cur2;
}

TEST_CASE("a long poll on one server process is woken by a commit on another", "[e2e]") {
  TestServer first, second;
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  RawClient b(second.port());
  b.hello(bob);
  const auto start = std::chrono::steady_clock::now();
  std::thread sender([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    RawClient a(first.port());
    a.hello(alice);
    ack_of(a.send(bob, 1, "across processes"));
  });
  const auto r = b.pull(0, 10, 20000);
  const auto waited = std::chrono::steady_clock::now() - start;
  sender.join();
  REQUIRE(pull_of(r).messages()->size() == 1);
  CHECK(pull_of(r).messages()->Get(0)->body()->str() == "across processes");
  CHECK(waited < std::chrono::seconds(15));  // woken through Redis, not by the deadline
}
