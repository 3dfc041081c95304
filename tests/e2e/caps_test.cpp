// End-to-end: the request caps a server applies rather than refuses
// (--max-pull-limit on Pull and History, --max-wait-ms on long polls) and the
// frame-size cap after Hello (--max-frame-bytes), each set small so a request
// above it is cheap. Bodies are a few bytes: every page stays far below 1 MiB.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "tests/support/expect_frame.hpp"
#include "tests/support/raw_client.hpp"
#include "tests/support/test_server.hpp"

using namespace im;
using namespace std::chrono_literals;
using im::test::body_of;
using im::test::expect_frame;
using im::test::page_size;
using im::test::RawClient;
using im::test::Received;
using im::test::TestServer;
using im::test::unique_prefix;
using Clock = std::chrono::steady_clock;

namespace {

/// `from` sends `count` short messages to `to`, pipelined; every one is acked.
void fill_inbox(RawClient& from, const std::string& to, int count) {
  for (int i = 1; i <= count; ++i) {
    from.write(protocol::encode_send(from.next_id(), to, static_cast<std::uint64_t>(i),
                                     "m" + std::to_string(i)));
  }
  for (int i = 0; i < count; ++i) body_of<wire::SendAck>(expect_frame(from.read(), "SendAck"));
}

/// The seqs of a PullResult, checked to be consecutive from `after` + 1.
std::vector<std::int64_t> seqs_of(const wire::PullResult& p, std::int64_t after) {
  std::vector<std::int64_t> out;
  if (p.messages()) {
    for (const auto* m : *p.messages()) out.push_back(m->seq());
  }
  for (std::size_t i = 0; i < out.size(); ++i) CHECK(out[i] == after + 1 + static_cast<std::int64_t>(i));
  return out;
}

Received history(RawClient& c, const std::string& peer, std::int64_t cursor, std::uint32_t limit,
                 bool reverse) {
  c.write(protocol::encode_history(c.next_id(), peer, cursor, limit, reverse));
  return expect_frame(c.read(), "HistoryResult");
}

/// The message ids of a HistoryResult, checked to be strictly ascending (or
/// descending for `reverse`).
std::vector<std::int64_t> ids_of(const wire::HistoryResult& h, bool reverse) {
  std::vector<std::int64_t> out;
  if (h.messages()) {
    for (const auto* m : *h.messages()) out.push_back(m->message_id());
  }
  for (std::size_t i = 1; i < out.size(); ++i) {
    if (reverse) {
      CHECK(out[i] < out[i - 1]);
    } else {
      CHECK(out[i] > out[i - 1]);
    }
  }
  return out;
}

std::vector<std::uint8_t> bytes_of(const protocol::OutFrame& f) { return {f.data(), f.data() + f.size()}; }

/// A Send frame whose length prefix N is exactly `n`: the FlatBuffer is
/// followed by zero bytes, which the Verifier ignores (the prefix still equals
/// the bytes that follow it).
std::vector<std::uint8_t> send_of_length(std::uint64_t rid, const std::string& to, std::uint64_t cmid,
                                         const std::string& body, std::uint32_t n) {
  auto bytes = bytes_of(protocol::encode_send(rid, to, cmid, body));
  REQUIRE(bytes.size() - protocol::kLengthPrefixBytes <= n);
  bytes.resize(protocol::kLengthPrefixBytes + n, 0);
  std::memcpy(bytes.data(), &n, sizeof n);  // little-endian, as the wire
  return bytes;
}

}  // namespace

TEST_CASE("caps: --max-pull-limit caps Pull and History pages, and limit 0 gives the default page",
          "[e2e]") {
  // A cap above the default page (100), so the two are told apart.
  constexpr std::uint32_t kCap = 120;
  constexpr int kStored = 130;
  TestServer server([](server::Config& c) { c.max_pull_limit = kCap; });
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  RawClient a(server.port()), b(server.port());
  a.hello(alice);
  b.hello(bob);
  fill_inbox(a, bob, kStored);

  SECTION("Pull") {
    const auto capped = b.pull(0, 1000);
    const auto& p = body_of<wire::PullResult>(capped);
    CHECK(seqs_of(p, 0).size() == kCap);  // exactly the cap, not the 1000 asked for
    CHECK(p.has_more());
    CHECK(p.next_after_seq() == kCap);

    const auto at_cap = b.pull(0, kCap);
    CHECK(page_size(body_of<wire::PullResult>(at_cap)) == kCap);

    const auto by_default = b.pull(0, 0);
    const auto& d = body_of<wire::PullResult>(by_default);
    CHECK(seqs_of(d, 0).size() == 100);
    CHECK(d.has_more());
    CHECK(d.next_after_seq() == 100);

    const auto rest = b.pull(kCap, 1000);
    const auto& r = body_of<wire::PullResult>(rest);
    CHECK(seqs_of(r, kCap).size() == kStored - kCap);
    CHECK_FALSE(r.has_more());
  }
  SECTION("History, both directions") {
    for (const bool reverse : {false, true}) {
      INFO("reverse " << reverse);
      const auto capped = history(b, alice, 0, 1000, reverse);
      const auto& h = body_of<wire::HistoryResult>(capped);
      const auto ids = ids_of(h, reverse);
      CHECK(ids.size() == kCap);
      CHECK(h.has_more());
      if (!ids.empty()) CHECK(h.next_cursor() == ids.back());

      const auto by_default = history(b, alice, 0, 0, reverse);
      const auto& d = body_of<wire::HistoryResult>(by_default);
      CHECK(ids_of(d, reverse).size() == 100);
      CHECK(d.has_more());

      const auto rest = history(b, alice, h.next_cursor(), 1000, reverse);
      const auto& r = body_of<wire::HistoryResult>(rest);
      CHECK(ids_of(r, reverse).size() == kStored - kCap);
      CHECK_FALSE(r.has_more());
    }
  }
}

TEST_CASE("caps: a --max-pull-limit below 100 also caps the default page", "[e2e]") {
  TestServer server([](server::Config& c) { c.max_pull_limit = 5; });
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  RawClient a(server.port()), b(server.port());
  a.hello(alice);
  b.hello(bob);
  fill_inbox(a, bob, 8);

  for (const std::uint32_t limit : {0u, 6u, 0xFFFFFFFFu}) {
    INFO("limit " << limit);
    const auto page = b.pull(0, limit);
    const auto& p = body_of<wire::PullResult>(page);
    CHECK(seqs_of(p, 0).size() == 5);
    CHECK(p.has_more());
    const auto h = history(b, alice, 0, limit, false);
    CHECK(ids_of(body_of<wire::HistoryResult>(h), false).size() == 5);
    CHECK(body_of<wire::HistoryResult>(h).has_more());
  }
}

TEST_CASE("caps: a long poll asking longer than --max-wait-ms ends empty after about the cap",
          "[e2e]") {
  constexpr auto kCap = 300ms;
  constexpr std::uint32_t kAsked = 10000;
  TestServer server([](server::Config& c) { c.max_wait_ms = 300; });
  RawClient b(server.port());
  b.hello(unique_prefix("bob"));

  const auto t0 = Clock::now();
  const auto r = b.pull(0, 10, kAsked);
  const auto waited = Clock::now() - t0;
  const auto& p = body_of<wire::PullResult>(r);
  CHECK(page_size(p) == 0);
  CHECK(p.next_after_seq() == 0);
  CHECK_FALSE(p.has_more());
  INFO("waited " << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() << " ms");
  // Loose bounds: it did wait (about the cap), and ended long before the asked wait.
  CHECK(waited >= kCap - 50ms);
  CHECK(waited < std::chrono::milliseconds(kAsked / 2));
}

TEST_CASE("caps: after Hello a frame of --max-frame-bytes is accepted and one byte more is "
          "too_large and closes",
          "[e2e]") {
  constexpr std::uint32_t kMaxFrame = 8192;  // above the 4 KiB pre-Hello limit
  TestServer server([](server::Config& c) {
    c.max_frame_bytes = kMaxFrame;
    c.max_body_bytes = kMaxFrame - 1024;  // the body cap is not what is tested here
  });
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  const std::string body(kMaxFrame - 1200, 'x');
  RawClient good(server.port());
  good.hello(bob);

  SECTION("exactly the limit, and one byte under") {
    RawClient c(server.port());
    c.hello(alice);
    c.write_bytes(send_of_length(c.next_id(), bob, 1, body, kMaxFrame));
    body_of<wire::SendAck>(expect_frame(c.read(), "SendAck"));
    c.write_bytes(send_of_length(c.next_id(), bob, 2, body, kMaxFrame - 1));
    body_of<wire::SendAck>(expect_frame(c.read(), "SendAck"));
    // Both stored; a page is cut at max_frame_bytes, so they come one a page.
    const auto page = good.pull(0, 10);
    const auto& p = body_of<wire::PullResult>(page);
    REQUIRE(page_size(p) == 1);
    CHECK(p.has_more());
    CHECK(p.messages()->Get(0)->body()->str() == body);
    const auto second = good.pull(p.next_after_seq(), 10);
    const auto& p2 = body_of<wire::PullResult>(second);
    REQUIRE(page_size(p2) == 1);
    CHECK_FALSE(p2.has_more());
    CHECK(p2.messages()->Get(0)->seq() == 2);
  }
  SECTION("one byte above the limit") {
    RawClient c(server.port());
    c.hello(alice);
    // The length prefix decides: the first bytes of the frame are enough (the
    // rest, never read, would make the close a reset that can discard the Error).
    auto bytes = send_of_length(c.next_id(), bob, 3, body, kMaxFrame + 1);
    bytes.resize(64);
    c.write_bytes(bytes);
    const auto r = expect_frame(c.read(), "Error");
    CHECK(test::error_code_of(r) == wire::ErrorCode::TooLarge);
    CHECK(r.frame()->request_id() == 0);
    CHECK(c.closed_by_server());
    // Nothing stored; other connections unaffected.
    CHECK(page_size(body_of<wire::PullResult>(good.pull(0, 10))) == 0);
  }
}
