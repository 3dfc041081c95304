// Unit: how ShardedWriter assigns inboxes to writer lanes and splits the queue
// capacity between them, without services (a writer that is never started
// connects to nothing).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "server/app/config.hpp"
#include "server/service/waiters.hpp"
#include "server/storage/sharded_writer.hpp"
#include "tests/support/writer_lanes.hpp"

using im::server::writer_lane;
using im::test::receiver_in_lane;

TEST_CASE("writer_lane keeps a receiver in one lane and spreads receivers evenly", "[unit][lanes]") {
  std::vector<int> per_lane(4);
  for (int i = 0; i < 4000; ++i) {
    const std::string r = "user" + std::to_string(i);
    const std::size_t lane = writer_lane(r, 4);
    REQUIRE(lane < 4);
    CHECK(writer_lane(r, 4) == lane);
    CHECK(writer_lane(r, 1) == 0);
    ++per_lane[lane];
  }
  for (int n : per_lane) {
    CHECK(n > 800);
    CHECK(n < 1200);
  }
}

TEST_CASE("writer_lane is the same in every process (FNV-1a), not a per-run hash", "[unit][lanes]") {
  // Fixed values, so that a receiver's lane is predictable in tests and when
  // reading logs: FNV-1a 64 of "" is the offset basis.
  CHECK(writer_lane("", 1000) == 14695981039346656037ull % 1000);
  CHECK(writer_lane("a", 1000) == 0xaf63dc4c8601ec8cull % 1000);
}

namespace {

/// Sends to `receiver` until the writer refuses one; returns how many it took.
/// The writer is never started, so nothing leaves its queues.
int fill(im::server::ShardedWriter& writer, const std::string& receiver) {
  for (int n = 0; n < 1000; ++n) {
    im::server::SendCommand cmd{"alice", receiver, "x", static_cast<std::uint64_t>(n + 1), 0, {}};
    const im::server::StoreStatus status = writer.submit(cmd);
    if (!status.ok()) {
      CHECK(status.code == im::server::StoreCode::busy);
      return n;
    }
  }
  FAIL("the queue never filled");
  return -1;
}

}  // namespace

TEST_CASE("each lane queues its share of the queue capacity, at least one batch", "[unit][lanes]") {
  im::server::Waiters waiters;
  im::server::GroupCommitOptions options = im::server::writer_options(im::server::Config{});
  options.batch_max = 2;
  SECTION("10 over 2 lanes: 5 each, and a full lane does not refuse the other's sends") {
    options.queue_capacity = 10;
    im::server::ShardedWriter writer(options, 2, waiters);
    CHECK(fill(writer, receiver_in_lane("user", 0, 2)) == 5);
    CHECK(fill(writer, receiver_in_lane("user", 1, 2)) == 5);
  }
  SECTION("rounded up: 10 over 3 lanes is 4 each") {
    options.queue_capacity = 10;
    im::server::ShardedWriter writer(options, 3, waiters);
    for (std::size_t lane = 0; lane < 3; ++lane) CHECK(fill(writer, receiver_in_lane("user", lane, 3)) == 4);
  }
  SECTION("never below batch_max: 3 over 4 lanes is 2 each") {
    options.queue_capacity = 3;
    im::server::ShardedWriter writer(options, 4, waiters);
    for (std::size_t lane = 0; lane < 4; ++lane) CHECK(fill(writer, receiver_in_lane("user", lane, 4)) == 2);
  }
  SECTION("one lane is the whole queue") {
    options.queue_capacity = 10;
    im::server::ShardedWriter writer(options, 1, waiters);
    CHECK(fill(writer, "anyone") == 10);
  }
}
