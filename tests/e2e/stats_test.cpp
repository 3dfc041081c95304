// Server::stats(): the one snapshot of every counter, read from a running
// server after known traffic — each count moves by exactly what was done.

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>

#include "tests/support/expect_frame.hpp"
#include "tests/support/raw_client.hpp"
#include "tests/support/test_server.hpp"

namespace {

using namespace im;
using server::ServerStats;

std::uint64_t requests(const ServerStats& s, wire::Body type) {
  return s.service.requests[static_cast<std::size_t>(type)];
}
std::uint64_t errors(const ServerStats& s, wire::ErrorCode code) {
  return s.service.errors[static_cast<std::size_t>(code)];
}

}  // namespace

TEST_CASE("stats: one snapshot counts requests, errors, sends, sessions and batches", "[e2e][stats]") {
  test::TestServer server;
  // The commit bus subscribes on its own thread, soon after start.
  const auto start_until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (server.get().stats().bus.subscriptions == 0 && std::chrono::steady_clock::now() < start_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const ServerStats before = server.get().stats();
  CHECK(before.connections.open == 0);
  CHECK(before.bus.subscriptions == 1);
  CHECK(before.bus.resyncs == 1);
  const std::string alice = "stats-alice-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  {
    test::RawClient c(server.port());
    c.write(protocol::encode_send(c.next_id(), "bob", 1, "before hello"));  // refused: no session
    CHECK(test::body_of<wire::Error>(test::expect_frame(c.read())).code() ==
          wire::ErrorCode::Unauthenticated);
    c.hello(alice);
    for (std::uint64_t i = 1; i <= 3; ++i) test::body_of<wire::SendAck>(c.send(alice, i, "hi"));
    CHECK(test::body_of<wire::Error>(c.send("not a user id!", 9, "x")).code() == wire::ErrorCode::BadRequest);
    test::body_of<wire::PullResult>(c.pull(0, 10));

    const ServerStats s = server.get().stats();
    CHECK(s.connections.open == 1);
    CHECK(s.connections.accepted == before.connections.accepted + 1);
    CHECK(s.service.sessions_open == 1);
    CHECK(s.service.sessions_opened == before.service.sessions_opened + 1);
    CHECK(requests(s, wire::Body::Hello) == requests(before, wire::Body::Hello) + 1);
    CHECK(requests(s, wire::Body::Send) == requests(before, wire::Body::Send) + 5);
    CHECK(requests(s, wire::Body::Pull) == requests(before, wire::Body::Pull) + 1);
    CHECK(errors(s, wire::ErrorCode::Unauthenticated) == errors(before, wire::ErrorCode::Unauthenticated) + 1);
    CHECK(errors(s, wire::ErrorCode::BadRequest) == errors(before, wire::ErrorCode::BadRequest) + 1);
    CHECK(s.service.sends_acked == before.service.sends_acked + 3);
    CHECK(s.service.send_ack_us.count() == before.service.send_ack_us.count() + 3);
    // The send refused before Hello never reached the send handler; the bad receiver did.
    const auto bad = static_cast<std::size_t>(wire::ErrorCode::BadRequest);
    CHECK(s.service.sends_failed[bad] == before.service.sends_failed[bad] + 1);
    CHECK(s.writer.batches_committed >= before.writer.batches_committed + 1);
    CHECK(s.writer.batches_committed <= before.writer.batches_committed + 3);
    // Each committed batch is in both histograms: its size and its commit time.
    CHECK(s.writer.batch_sizes.count() == s.writer.batches_committed);
    CHECK(s.writer.commit_us.count() == s.writer.batches_committed);
    CHECK(s.writer.batch_sizes.sum - before.writer.batch_sizes.sum == 3);
  }
  // The client left: the session closes, once.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  const auto closed = [&] {
    const ServerStats now = server.get().stats();
    return now.service.sessions_open == 0 && now.connections.open == 0;
  };
  while (!closed() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const ServerStats after = server.get().stats();
  CHECK(after.service.sessions_open == 0);
  CHECK(after.connections.open == 0);
  const auto lines = server::format_stats(after);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines.back().rfind("writer stats: batches_committed=", 0) == 0);
}
