// End-to-end: malformed, oversized and out-of-order input gets the right error
// code, closes only the offending connection, and leaves other clients and the
// stored data untouched.
#include <catch2/catch.hpp>

#include <set>
#include <thread>

#include "tests/support/expect_frame.hpp"
#include "tests/support/raw_client.hpp"
#include "tests/support/test_server.hpp"

using namespace im;
using im::test::body_of;
using im::test::error_code_of;
using im::test::expect_frame;
using im::test::RawClient;
using im::test::TestServer;
using im::test::unique_prefix;

namespace {

std::vector<std::uint8_t> le32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)};
}

std::vector<std::uint8_t> bytes_of(const protocol::OutFrame& f) {
  return {f.data(), f.data() + f.size()};
}

wire::ErrorCode expect_error(RawClient& c) { return error_code_of(expect_frame(c.read(), "Error")); }

}  // namespace

TEST_CASE("bad frames get the right error and close only their connection", "[e2e]") {
  TestServer server([](server::Config& c) { c.max_frame_bytes = 64 * 1024; c.max_body_bytes = 1000; });
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");

  // A well-behaved client keeps a session open through all of this.
  RawClient good(server.port());
  good.hello(alice);
  std::uint64_t cmid = 0;
  auto good_still_works = [&] {
    ++cmid;
    body_of<wire::SendAck>(good.send(bob, cmid, "still here " + std::to_string(cmid)));
  };

  struct Case {
    const char* name;
    bool hello_first;
    std::vector<std::uint8_t> bytes;
    wire::ErrorCode code;
  };
  auto garbage = le32(16);
  for (int i = 0; i < 16; ++i) garbage.push_back(static_cast<std::uint8_t>(0xA5 + i));
  auto wrong_id = bytes_of(protocol::encode_ping(1, 1));
  wrong_id[8] = 'X';  // the file identifier follows the prefix and the root offset
  auto short_length = bytes_of(protocol::encode_ping(1, 1));
  short_length[0] = static_cast<std::uint8_t>(short_length[0] - 4);  // prefix lies: trailing bytes
  const std::vector<Case> cases = {
      {"zero length", false, le32(0), wire::ErrorCode::ProtocolError},
      {"above max_frame_bytes", true, le32(64 * 1024 + 1), wire::ErrorCode::TooLarge},
      {"huge length", true, le32(0xFFFFFFFFu), wire::ErrorCode::TooLarge},
      {"above the pre-Hello limit", false, le32(5000), wire::ErrorCode::TooLarge},
      {"random bytes", true, garbage, wire::ErrorCode::ProtocolError},
      {"wrong file identifier", false, wrong_id, wire::ErrorCode::ProtocolError},
      {"prefix shorter than the buffer", false, short_length, wire::ErrorCode::ProtocolError},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      RawClient bad(server.port());
      if (c.hello_first) bad.hello(unique_prefix("bad"));
      bad.write_bytes(c.bytes);
      CHECK(expect_error(bad) == c.code);
      CHECK(bad.closed_by_server());
      good_still_works();
    }
  }
}

TEST_CASE("invalid requests get an error and the connection stays usable", "[e2e]") {
  TestServer server([](server::Config& c) { c.max_body_bytes = 1000; });
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  RawClient c(server.port());

  // Before Hello: only Hello and Ping.
  c.write(protocol::encode_send(c.next_id(), bob, 1, "hi"));
  CHECK(expect_error(c) == wire::ErrorCode::Unauthenticated);
  c.write(protocol::encode_pull(c.next_id(), 0, 10, 0));
  CHECK(expect_error(c) == wire::ErrorCode::Unauthenticated);
  c.write(protocol::encode_ping(c.next_id(), 99));
  CHECK(body_of<wire::Pong>(expect_frame(c.read(), "Pong")).nonce() == 99);

  // Bad user ids in Hello.
  for (const std::string& user : {std::string(""), std::string(65, 'a'), std::string("a b"),
                                  std::string("bob/x"), std::string("b\xC3\xB6")}) {
    c.write(protocol::encode_hello(c.next_id(), user, "", "t"));
    CHECK(expect_error(c) == wire::ErrorCode::BadRequest);
  }
  c.hello(alice);
  c.write(protocol::encode_hello(c.next_id(), alice, "", "t"));
  CHECK(expect_error(c) == wire::ErrorCode::BadRequest);  // Hello twice

  CHECK(error_code_of(c.send("not valid!", 1, "x")) == wire::ErrorCode::BadRequest);
  CHECK(error_code_of(c.send(bob, 0, "x")) == wire::ErrorCode::BadRequest);
  CHECK(error_code_of(c.send(bob, 2, std::string(1001, 'x'))) ==
        wire::ErrorCode::TooLarge);
  CHECK(error_code_of(c.send(bob, 3, "bad \xC0\xAF utf8")) ==
        wire::ErrorCode::BadRequest);
  CHECK(error_code_of(c.send(bob, 4, std::string("nul\0byte", 8))) ==
        wire::ErrorCode::BadRequest);
  c.write(protocol::encode_pull(c.next_id(), -1, 10, 0));
  CHECK(expect_error(c) == wire::ErrorCode::BadRequest);
  c.write(protocol::encode_history(c.next_id(), "", 0, 10, false));
  CHECK(expect_error(c) == wire::ErrorCode::BadRequest);
  // A response type sent as a request, and request id 0.
  c.write(protocol::encode_send_ack(c.next_id(), {}));
  CHECK(expect_error(c) == wire::ErrorCode::BadRequest);
  c.write(protocol::encode_ping(0, 1));
  CHECK(expect_error(c) == wire::ErrorCode::BadRequest);

  // None of that stored anything; the connection still works.
  const auto ok = c.send(bob, 5, "valid");
  CHECK(body_of<wire::SendAck>(ok).seq() == 1);

  // Pull limit above the server maximum is capped, not refused.
  RawClient b(server.port());
  b.hello(bob);
  const auto page = b.pull(0, 1000000);
  CHECK(test::page_size(body_of<wire::PullResult>(page)) == 1);
}

TEST_CASE("frames split across many writes and pipelined in one write are read", "[e2e]") {
  TestServer server;
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  RawClient c(server.port());
  c.hello(alice);
  std::vector<std::uint8_t> all;
  for (std::uint64_t i = 1; i <= 5; ++i) {
    const auto f = bytes_of(protocol::encode_send(c.next_id(), bob, i, "p" + std::to_string(i)));
    all.insert(all.end(), f.begin(), f.end());
  }
  // One byte at a time for the first frame, the rest in one write.
  for (std::size_t i = 0; i < 20; ++i) c.write_bytes({all[i]});
  c.write_bytes(std::vector<std::uint8_t>(all.begin() + 20, all.end()));
  std::set<std::int64_t> seqs;
  for (int i = 0; i < 5; ++i) seqs.insert(body_of<wire::SendAck>(expect_frame(c.read(), "SendAck")).seq());
  CHECK(seqs == std::set<std::int64_t>{1, 2, 3, 4, 5});
}

TEST_CASE("clean shutdown acks every send already received", "[e2e]") {
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  constexpr int kSends = 50;
  std::vector<std::int64_t> acked;
  {
    // A long batch delay keeps the sends queued in the writer when stop() runs.
    TestServer server([](server::Config& c) { c.batch_delay_us = 1000000; c.batch_max = 10000; });
    RawClient c(server.port());
    c.hello(alice);
    for (int i = 1; i <= kSends; ++i) {
      c.write(protocol::encode_send(c.next_id(), bob, static_cast<std::uint64_t>(i), "bye"));
    }
    // Wait until the server has read them (a ping is answered in order of
    // reading, after every send before it was handed to the writer).
    c.write(protocol::encode_ping(c.next_id(), 1));
    body_of<wire::Pong>(expect_frame(c.read(), "Pong"));
    std::thread stopper([&] { server.stop(); });
    for (int i = 0; i < kSends; ++i) {
      acked.push_back(body_of<wire::SendAck>(expect_frame(c.read(), "SendAck")).seq());
    }
    stopper.join();
    CHECK(c.closed_by_server());
  }
  // Everything acked is stored: a new server returns all of it.
  TestServer again;
  RawClient b(again.port());
  b.hello(bob);
  const auto page = b.pull(0, 1000);
  CHECK(test::page_size(body_of<wire::PullResult>(page)) == kSends);
  CHECK(acked.size() == kSends);
}
