// Histogram buckets and the stats lines the server logs at stop.

#include <catch2/catch.hpp>

#include <string>

#include "server/app/stats.hpp"
#include "server/common/histogram.hpp"

using im::server::Histogram;

TEST_CASE("histogram: power-of-two buckets, an overflow bucket, quantile bounds", "[unit][stats]") {
  CHECK(Histogram::bucket(0) == 0);
  CHECK(Histogram::bucket(1) == 0);
  CHECK(Histogram::bucket(2) == 1);
  CHECK(Histogram::bucket(3) == 2);
  CHECK(Histogram::bucket(4) == 2);
  CHECK(Histogram::bucket(5) == 3);
  CHECK(Histogram::bucket(1u << 20) == 20);
  CHECK(Histogram::bucket((1u << 20) + 1) == 21);
  CHECK(Histogram::bucket(~std::uint64_t{0}) == Histogram::kBuckets - 1);
  for (std::size_t i = 0; i + 1 < Histogram::kBuckets; ++i) {
    // Each bucket's bound is the largest value it holds.
    CHECK(Histogram::bucket(Histogram::Snapshot::upper_bound(i)) == i);
    CHECK(Histogram::bucket(Histogram::Snapshot::upper_bound(i) + 1) == i + 1);
  }
  Histogram h;
  CHECK(h.snapshot().quantile_bound(0.5) == 0);
  for (int i = 0; i < 90; ++i) h.record(100);   // bucket of 128
  for (int i = 0; i < 10; ++i) h.record(5000);  // bucket of 8192
  const auto s = h.snapshot();
  CHECK(s.count() == 100);
  CHECK(s.sum == 90 * 100 + 10 * 5000);
  CHECK(s.quantile_bound(0.5) == 128);
  CHECK(s.quantile_bound(0.9) == 128);
  CHECK(s.quantile_bound(0.99) == 8192);
}

TEST_CASE("stats lines: counters by type and code by name, the writer's line in its stable form",
          "[unit][stats]") {
  im::server::ServerStats s;
  s.service.requests[static_cast<std::size_t>(im::wire::Body::Send)] = 7;
  s.service.errors[static_cast<std::size_t>(im::wire::ErrorCode::TooLarge)] = 2;
  s.writer.batches_committed = 5;
  s.writer.checked_batches = 1;
  s.connections.accepted = 3;
  const auto lines = im::server::format_stats(s);
  const auto has = [&](const std::string& text) {
    for (const auto& l : lines) {
      if (l.find(text) != std::string::npos) return true;
    }
    return false;
  };
  CHECK(has("stats: requests Send=7"));
  CHECK_FALSE(has("Hello="));  // zero counters are left out
  CHECK(has("stats: errors TooLarge=2"));
  CHECK(has("accepted=3"));
  CHECK(lines.back() ==
        "writer stats: batches_committed=5 batches_failed=0 counter_raises=0 "
        "unique_violation_retries=0 deadlock_retries=0 seqs_given_back=0 seqs_tombstoned=0 "
        "checked_batches=1");
}
