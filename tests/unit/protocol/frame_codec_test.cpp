// Unit: the frame codec on whole, split, truncated, oversized, zero-length,
// corrupted and random input.
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"

using namespace im;
using namespace im::protocol;

namespace {

std::vector<std::uint8_t> bytes_of(const OutFrame& f) { return {f.data(), f.data() + f.size()}; }

const wire::Frame* verify(const std::vector<std::uint8_t>& frame, VerifyLimits limits = {}) {
  std::string why;
  return verify_frame(frame, limits, why);
}

std::vector<std::uint8_t> le32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)};
}

MessageRecord sample(int i) {
  return {i + 1, 100 + i, "alice", "bob", "body " + std::to_string(i) + " \xC3\xA9", 1700000000000000 + i,
          static_cast<std::uint64_t>(i) * 7 + 1};
}

}  // namespace

TEST_CASE("every frame type round-trips through encode, decode and verify", "[unit][codec]") {
  SECTION("Hello") {
    const auto b = bytes_of(encode_hello(1, std::string(64, 'u'), "tok", "imctl"));
    const auto d = decode_frame(b, kDefaultMaxFrameBytes);
    REQUIRE(d.status == DecodeStatus::frame);
    CHECK(d.consumed == b.size());
    const auto* f = verify(b);
    REQUIRE(f);
    CHECK(f->request_id() == 1);
    REQUIRE(f->body_type() == wire::Body::Hello);
    CHECK(f->body_as_Hello()->protocol_version() == kProtocolVersion);
    CHECK(f->body_as_Hello()->user()->str() == std::string(64, 'u'));
    CHECK(f->body_as_Hello()->token()->str() == "tok");
  }
  SECTION("Welcome") {
    const auto* f = verify(bytes_of(encode_welcome(2, "srv", 9, {1000, 200, 30, 4000}, 77)));
    REQUIRE(f);
    const auto* w = f->body_as_Welcome();
    REQUIRE(w);
    CHECK(w->session_id() == 9);
    CHECK(w->max_frame_bytes() == 1000);
    CHECK(w->max_body_bytes() == 200);
    CHECK(w->max_pull_limit() == 30);
    CHECK(w->max_wait_ms() == 4000);
    CHECK(w->server_time_us() == 77);
  }
  SECTION("Send and SendAck") {
    const auto* s = verify(bytes_of(encode_send(3, "bob", ~0ull, "")));
    REQUIRE(s);
    CHECK(s->body_as_Send()->receiver()->str() == "bob");
    CHECK(s->body_as_Send()->client_msg_id() == ~0ull);
    CHECK(s->body_as_Send()->body()->str().empty());
    const auto* a = verify(bytes_of(encode_send_ack(3, {5, 6, 7, true})));
    REQUIRE(a);
    CHECK(a->body_as_SendAck()->message_id() == 5);
    CHECK(a->body_as_SendAck()->created_at_us() == 6);
    CHECK(a->body_as_SendAck()->seq() == 7);
    CHECK(a->body_as_SendAck()->duplicate());
  }
  SECTION("Pull and a large PullResult") {
    const auto* p = verify(bytes_of(encode_pull(4, 10, 20, 30)));
    REQUIRE(p);
    CHECK(p->body_as_Pull()->after_seq() == 10);
    CHECK(p->body_as_Pull()->limit() == 20);
    CHECK(p->body_as_Pull()->wait_ms() == 30);
    std::vector<MessageRecord> ms;
    for (int i = 0; i < 1000; ++i) ms.push_back(sample(i));
    const auto b = bytes_of(encode_pull_result(4, ms, 1000, true));
    const auto* r = verify(b, response_verify_limits(1000));
    REQUIRE(r);
    const auto* pr = r->body_as_PullResult();
    REQUIRE(pr->messages()->size() == 1000);
    for (int i = 0; i < 1000; i += 97) {
      const auto got = to_record(*pr->messages()->Get(static_cast<flatbuffers::uoffset_t>(i)));
      const auto want = sample(i);
      CHECK(got.seq == want.seq);
      CHECK(got.message_id == want.message_id);
      CHECK(got.sender == want.sender);
      CHECK(got.body == want.body);
      CHECK(got.created_at_us == want.created_at_us);
      CHECK(got.client_msg_id == want.client_msg_id);
    }
    CHECK(pr->next_after_seq() == 1000);
    CHECK(pr->has_more());
  }
  SECTION("History and HistoryResult") {
    const auto* h = verify(bytes_of(encode_history(5, "carol", 99, 10, true)));
    REQUIRE(h);
    CHECK(h->body_as_History()->peer()->str() == "carol");
    CHECK(h->body_as_History()->cursor() == 99);
    CHECK(h->body_as_History()->reverse());
    std::vector<MessageRecord> ms{sample(1), sample(2)};
    const auto* r = verify(bytes_of(encode_history_result(5, ms, 3, false)));
    REQUIRE(r);
    CHECK(r->body_as_HistoryResult()->messages()->size() == 2);
    CHECK(r->body_as_HistoryResult()->next_cursor() == 3);
  }
  SECTION("Ping, Pong, Error") {
    CHECK(verify(bytes_of(encode_ping(6, 11)))->body_as_Ping()->nonce() == 11);
    const auto* p = verify(bytes_of(encode_pong(6, 11, 12)));
    CHECK(p->body_as_Pong()->server_time_us() == 12);
    const auto* e = verify(bytes_of(encode_error(7, wire::ErrorCode::Busy, "slow down", 250)));
    REQUIRE(e);
    CHECK(e->body_as_Error()->code() == wire::ErrorCode::Busy);
    CHECK(e->body_as_Error()->message()->str() == "slow down");
    CHECK(e->body_as_Error()->retry_after_ms() == 250);
  }
}

TEST_CASE("a stream of frames decodes the same whatever the chunk sizes", "[unit][codec]") {
  std::vector<std::vector<std::uint8_t>> frames = {
      bytes_of(encode_hello(1, "alice", "", "t")), bytes_of(encode_send(2, "bob", 1, "hi")),
      bytes_of(encode_ping(3, 3)), bytes_of(encode_pull(4, 0, 10, 0))};
  std::vector<std::uint8_t> stream;
  for (const auto& f : frames) stream.insert(stream.end(), f.begin(), f.end());

  for (std::size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    std::vector<std::uint8_t> buffer;
    std::vector<std::uint64_t> ids;
    for (std::size_t off = 0; off < stream.size(); off += chunk) {
      const auto end = std::min(stream.size(), off + chunk);
      buffer.insert(buffer.end(), stream.begin() + static_cast<std::ptrdiff_t>(off),
                    stream.begin() + static_cast<std::ptrdiff_t>(end));
      for (;;) {
        const auto d = decode_frame(buffer, kDefaultMaxFrameBytes);
        REQUIRE(d.status != DecodeStatus::error);
        if (d.status == DecodeStatus::need_more) break;
        const std::vector<std::uint8_t> frame(d.frame.begin(), d.frame.end());
        const auto* f = verify(frame);
        REQUIRE(f);
        ids.push_back(f->request_id());
        buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(d.consumed));
      }
    }
    INFO("chunk size " << chunk);
    CHECK(ids == std::vector<std::uint64_t>{1, 2, 3, 4});
    CHECK(buffer.empty());
  }
}

TEST_CASE("a truncated frame is never a frame", "[unit][codec]") {
  const auto b = bytes_of(encode_send(9, "bob", 1, "some body text"));
  for (std::size_t cut = 0; cut < b.size(); ++cut) {
    const std::vector<std::uint8_t> part(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(cut));
    INFO("cut at " << cut);
    CHECK(decode_frame(part, kDefaultMaxFrameBytes).status == DecodeStatus::need_more);
    // A truncated buffer that claims to be whole fails verification.
    if (cut >= kLengthPrefixBytes) CHECK_FALSE(verify(part));
  }
}

TEST_CASE("zero and oversized lengths are errors decided from the header alone", "[unit][codec]") {
  auto zero = decode_frame(le32(0), 1024);
  CHECK(zero.status == DecodeStatus::error);
  CHECK(zero.error == wire::ErrorCode::ProtocolError);

  auto big = decode_frame(le32(1025), 1024);  // no payload has arrived: still decided
  CHECK(big.status == DecodeStatus::error);
  CHECK(big.error == wire::ErrorCode::TooLarge);
  CHECK(decode_frame(le32(0xFFFFFFFFu), 1024).error == wire::ErrorCode::TooLarge);

  CHECK(decode_frame(le32(1024), 1024).status == DecodeStatus::need_more);  // exactly max is fine
  wire::ErrorCode code{};
  CHECK(check_frame_length(1024, 1024, code) == nullptr);
  CHECK(check_frame_length(1025, 1024, code) != nullptr);
  CHECK(code == wire::ErrorCode::TooLarge);

  // The header alone is three bytes short of a length: need more.
  CHECK(decode_frame(std::vector<std::uint8_t>{0, 0, 0}, 1024).status == DecodeStatus::need_more);
}

TEST_CASE("wrong identifiers and lying length prefixes are rejected", "[unit][codec]") {
  auto b = bytes_of(encode_ping(1, 1));
  auto wrong = b;
  wrong[8] = 'X';
  CHECK_FALSE(verify(wrong));
  auto longer = b;
  longer.push_back(0);  // the prefix no longer matches the buffer
  CHECK_FALSE(verify(longer));
  CHECK_FALSE(verify(std::vector<std::uint8_t>(b.begin(), b.begin() + 8)));
  CHECK(verify(b));
}

TEST_CASE("corrupted frames never crash: they verify or are rejected", "[unit][codec]") {
  std::vector<MessageRecord> ms{sample(1), sample(2), sample(3)};
  const auto original = bytes_of(encode_pull_result(1, ms, 3, false));
  std::mt19937 rng(12345);
  int rejected = 0, accepted = 0;
  for (std::size_t i = kLengthPrefixBytes; i < original.size(); ++i) {
    for (std::uint8_t x : {std::uint8_t{0x01}, std::uint8_t{0x80}, std::uint8_t{0xFF}}) {
      auto b = original;
      b[i] ^= x;
      const auto* f = verify(b, response_verify_limits(10));
      if (!f) {
        ++rejected;
        continue;
      }
      ++accepted;
      // A verified buffer is safe to read in full.
      if (f->body_type() == wire::Body::PullResult && f->body_as_PullResult()->messages()) {
        for (const auto* m : *f->body_as_PullResult()->messages()) (void)to_record(*m);
      }
    }
  }
  CHECK(rejected > 0);
  CHECK(accepted + rejected == static_cast<int>((original.size() - kLengthPrefixBytes) * 3));
}

TEST_CASE("random bytes never crash the decoder or the verifier", "[unit][codec]") {
  std::mt19937 rng(777);
  int verified = 0;
  for (int round = 0; round < 20000; ++round) {
    const std::size_t n = rng() % 128;
    std::vector<std::uint8_t> b(n);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    if (n >= 4 && round % 2 == 0) {  // half the time, a consistent length prefix
      const auto len = le32(static_cast<std::uint32_t>(n - 4));
      std::copy(len.begin(), len.end(), b.begin());
    }
    const auto d = decode_frame(b, 1024);
    if (d.status == DecodeStatus::frame) {
      const std::vector<std::uint8_t> frame(d.frame.begin(), d.frame.end());
      if (verify(frame)) ++verified;
    }
  }
  CHECK(verified < 20000);  // garbage is (overwhelmingly) rejected
}

TEST_CASE("the verifier's table limit rejects table bombs", "[unit][codec]") {
  std::vector<MessageRecord> ms;
  for (int i = 0; i < 200; ++i) ms.push_back(sample(i));
  const auto b = bytes_of(encode_pull_result(1, ms, 200, false));
  CHECK_FALSE(verify(b, VerifyLimits{}));                   // server limits: 64 tables
  CHECK(verify(b, response_verify_limits(200)));            // a client expecting 200 messages
  CHECK_FALSE(verify(b, response_verify_limits(50)));
}

TEST_CASE("a frame without a body verifies with type NONE", "[unit][codec]") {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.FinishSizePrefixed(wire::CreateFrame(fbb, 5), wire::FrameIdentifier());
  const std::vector<std::uint8_t> b(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  const auto* f = verify(b);
  REQUIRE(f);
  CHECK(f->request_id() == 5);
  CHECK(f->body_type() == wire::Body::NONE);
}

TEST_CASE("error code names are stable and distinct", "[unit][codec]") {
  std::set<std::string> names;
  for (int c = 0; c <= 10; ++c) names.insert(error_code_name(static_cast<wire::ErrorCode>(c)));
  CHECK(names.size() == 11);
  CHECK(std::string(error_code_name(wire::ErrorCode::BadRequest)) == "bad_request");
  CHECK(std::string(error_code_name(wire::ErrorCode::Unavailable)) == "unavailable");
  CHECK(std::string(error_code_name(wire::ErrorCode::ProtocolError)) == "protocol_error");
  CHECK(static_cast<int>(wire::ErrorCode::Busy) == 10);  // numbers are part of the contract
  CHECK(static_cast<int>(wire::ErrorCode::Internal) == 8);
}
