// Unit: how ShardedWriter assigns inboxes to writer lanes, without services.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "server/storage/sharded_writer.hpp"

using im::server::writer_lane;

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
