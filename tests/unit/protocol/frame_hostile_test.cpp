// Unit: hostile input. Corrupted frames (every byte flipped, random bytes in the
// payload), random garbage, table bombs against the Verifier's limits, and union
// edge cases. Nothing may crash; whatever verifies must be safe to read in full
// (run this under IM_SANITIZE=address,undefined to make "safe" strict).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"
#include "protocol/validate.hpp"

using namespace im;
using namespace im::protocol;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes bytes_of(const OutFrame& f) { return {f.data(), f.data() + f.size()}; }

Bytes le32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)};
}

MessageRecord sample(int i) {
  return {i + 1,
          100 + i,
          "alice",
          "bob",
          "body " + std::to_string(i) + " \xC3\xA9\xF0\x9F\x98\x80",
          1700000000000000 + i,
          static_cast<std::uint64_t>(i) * 7 + 1};
}

std::vector<MessageRecord> samples(int n) {
  std::vector<MessageRecord> v;
  for (int i = 0; i < n; ++i) v.push_back(sample(i));
  return v;
}

/// Reads every field of a verified frame the way a handler would, and returns a
/// checksum so the reads cannot be optimised away. A known body type always has
/// a body (verify_frame guarantees it; handlers dereference body_as_X()).
std::uint64_t read_all(const wire::Frame& f) {
  std::uint64_t sum = f.request_id();
  auto s = [&](const flatbuffers::String* p) {
    if (!p) return;
    const std::string_view v = p->string_view();
    sum += v.size() + (valid_text(v) ? 1u : 0u) + (valid_user_id(v) ? 2u : 0u);
    for (const char c : v) sum += static_cast<unsigned char>(c);
  };
  auto messages = [&](const flatbuffers::Vector<flatbuffers::Offset<wire::Message>>* v) {
    if (!v) return;
    for (const wire::Message* m : *v) {
      const MessageRecord r = to_record(*m);
      sum += static_cast<std::uint64_t>(r.seq + r.message_id + r.created_at_us) + r.client_msg_id +
             r.sender.size() + r.receiver.size() + r.body.size();
    }
  };
  switch (f.body_type()) {
    case wire::Body::NONE: break;
    case wire::Body::Hello: {
      const auto* m = f.body_as_Hello();
      REQUIRE(m);
      sum += m->protocol_version();
      s(m->user()), s(m->token()), s(m->client_name());
      break;
    }
    case wire::Body::Welcome: {
      const auto* m = f.body_as_Welcome();
      REQUIRE(m);
      s(m->server_name());
      sum += m->protocol_version() + m->session_id() + m->max_frame_bytes() + m->max_body_bytes() +
             m->max_pull_limit() + m->max_wait_ms() +
             static_cast<std::uint64_t>(m->server_time_us());
      break;
    }
    case wire::Body::Send: {
      const auto* m = f.body_as_Send();
      REQUIRE(m);
      s(m->receiver()), s(m->body());
      sum += m->client_msg_id();
      break;
    }
    case wire::Body::SendAck: {
      const auto* m = f.body_as_SendAck();
      REQUIRE(m);
      sum += static_cast<std::uint64_t>(m->message_id() + m->created_at_us() + m->seq()) +
             m->duplicate();
      break;
    }
    case wire::Body::Pull: {
      const auto* m = f.body_as_Pull();
      REQUIRE(m);
      sum += static_cast<std::uint64_t>(m->after_seq()) + m->limit() + m->wait_ms();
      break;
    }
    case wire::Body::PullResult: {
      const auto* m = f.body_as_PullResult();
      REQUIRE(m);
      messages(m->messages());
      sum += static_cast<std::uint64_t>(m->next_after_seq()) + m->has_more();
      break;
    }
    case wire::Body::History: {
      const auto* m = f.body_as_History();
      REQUIRE(m);
      s(m->peer());
      sum += static_cast<std::uint64_t>(m->cursor()) + m->limit() + m->reverse();
      break;
    }
    case wire::Body::HistoryResult: {
      const auto* m = f.body_as_HistoryResult();
      REQUIRE(m);
      messages(m->messages());
      sum += static_cast<std::uint64_t>(m->next_cursor()) + m->has_more();
      break;
    }
    case wire::Body::Ping: {
      const auto* m = f.body_as_Ping();
      REQUIRE(m);
      sum += m->nonce();
      break;
    }
    case wire::Body::Pong: {
      const auto* m = f.body_as_Pong();
      REQUIRE(m);
      sum += m->nonce() + static_cast<std::uint64_t>(m->server_time_us());
      break;
    }
    case wire::Body::Error: {
      const auto* m = f.body_as_Error();
      REQUIRE(m);
      s(m->message());
      sum += std::strlen(error_code_name(m->code())) + m->retry_after_ms();
      break;
    }
    default: break;  // a body type from a newer schema: readers ignore it
  }
  return sum;
}

struct Tally {
  int verified = 0;
  int rejected = 0;
};

/// Verifies `b` (a whole frame in its own allocation) and, if it verifies,
/// reads all of it. A rejection must say why.
void verify_and_read(const Bytes& b, const VerifyLimits& limits, Tally& t) {
  std::string why;
  if (const wire::Frame* f = verify_frame(b, limits, why)) {
    volatile std::uint64_t sink = read_all(*f);
    (void)sink;
    ++t.verified;
  } else {
    if (why.empty()) FAIL("rejected without a reason");
    ++t.rejected;
  }
}

std::vector<Bytes> victims() {
  return {bytes_of(encode_hello(1, "alice", "tok", "imctl/0.1")),
          bytes_of(encode_welcome(2, "srv", 3, {1024, 512, 100, 1000}, 4)),
          bytes_of(encode_send(3, "bob", 77, "hello \xE2\x82\xAC")),
          bytes_of(encode_pull_result(4, samples(3), 3, true)),
          bytes_of(encode_history_result(5, samples(2), 9, false)),
          bytes_of(encode_error(6, wire::ErrorCode::Unavailable, "later", 200))};
}

const VerifyLimits kClientLimits = response_verify_limits(16);

}  // namespace

TEST_CASE("protocol hostile: every byte flipped either verifies safely or is rejected",
          "[unit][protocol][hostile]") {
  for (const Bytes& original : victims()) {
    Tally t;
    for (std::size_t i = 0; i < original.size(); ++i) {
      for (const std::uint8_t x : {std::uint8_t{0x01}, std::uint8_t{0x80}, std::uint8_t{0xFF}}) {
        Bytes b = original;
        b[i] ^= x;
        const int rejected_before = t.rejected;
        verify_and_read(b, kClientLimits, t);
        // The envelope is checked exactly: a changed length prefix (bytes
        // 0-3) or identifier (8-11) byte is always rejected.
        const bool envelope = i < 4 || (i >= 8 && i < 12);
        if (envelope && t.rejected == rejected_before) {
          FAIL("flipping envelope byte " << i << " with " << int{x} << " still verified");
        }
      }
    }
    INFO("frame of " << original.size() << " bytes");
    CHECK(t.verified + t.rejected == static_cast<int>(original.size() * 3));
    CHECK(t.rejected >= 8 * 3);
    CHECK(t.verified > 0);  // flips inside scalar values stay valid
  }
}

TEST_CASE("protocol hostile: a flipped scalar verifies and reads back changed",
          "[unit][protocol][hostile]") {
  // Find the request id's bytes by their distinctive value, then change one.
  const std::uint64_t id = 0x1122334455667788ull;
  const Bytes original = bytes_of(encode_ping(id, 5));
  const std::uint8_t pattern[] = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
  const auto at =
      std::search(original.begin(), original.end(), std::begin(pattern), std::end(pattern));
  REQUIRE(at != original.end());
  Bytes b = original;
  b[static_cast<std::size_t>(at - original.begin())] ^= 0xFF;
  std::string why;
  const wire::Frame* f = verify_frame(b, VerifyLimits{}, why);
  REQUIRE(f);
  CHECK(f->request_id() == (id ^ 0xFFull));
  REQUIRE(f->body_as_Ping());
  CHECK(f->body_as_Ping()->nonce() == 5);
}

TEST_CASE("protocol hostile: random bytes written into a payload never crash",
          "[unit][protocol][hostile]") {
  std::mt19937 rng(20240601);
  for (const Bytes& original : victims()) {
    Tally t;
    for (int round = 0; round < 1500; ++round) {
      Bytes b = original;
      const int writes = 1 + static_cast<int>(rng() % 8);
      for (int w = 0; w < writes; ++w) {
        const std::size_t at = kLengthPrefixBytes + 8 + rng() % (b.size() - kLengthPrefixBytes - 8);
        b[at] = static_cast<std::uint8_t>(rng());
      }
      verify_and_read(b, kClientLimits, t);
      verify_and_read(b, VerifyLimits{}, t);  // and under the server's limits
    }
    CHECK(t.verified + t.rejected == 3000);
    CHECK(t.rejected > 0);
  }
}

TEST_CASE("protocol hostile: random garbage never crashes decode or verify",
          "[unit][protocol][hostile]") {
  std::mt19937 rng(777);
  constexpr std::uint32_t kMax = 256;
  Tally t;
  int frames = 0;
  for (int round = 0; round < 30000; ++round) {
    Bytes b(rng() % 300);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    // Most rounds get a plausible envelope, so the Verifier itself is reached.
    if (b.size() >= 12 && round % 4 != 0) {
      const Bytes len = le32(static_cast<std::uint32_t>(b.size() - 4));
      std::copy(len.begin(), len.end(), b.begin());
      std::memcpy(b.data() + 8, "IMP1", 4);
      if (round % 2 == 0) {  // a root offset that lands inside the buffer
        const Bytes root = le32(static_cast<std::uint32_t>(4 + rng() % (b.size() - 8)));
        std::copy(root.begin(), root.end(), b.begin() + 4);
      }
    }
    // decode_frame against an independent statement of its contract.
    const Decoded d = decode_frame(b, kMax);
    const std::uint64_t length = b.size() >= 4 ? read_length_prefix(b) : 0;
    if (b.size() < 4) {
      if (d.status != DecodeStatus::need_more) FAIL("short header not need_more");
    } else if (length == 0 || length > kMax) {
      if (d.status != DecodeStatus::error) FAIL("bad length " << length << " not an error");
    } else if (b.size() - 4 < length) {
      if (d.status != DecodeStatus::need_more) FAIL("partial frame not need_more");
    } else if (d.status != DecodeStatus::frame || d.consumed != 4 + length ||
               d.frame.data() != b.data() || d.frame.size() != 4 + length) {
      FAIL("whole frame of length " << length << " not returned exactly");
    }
    if (d.status == DecodeStatus::frame) {
      ++frames;
      verify_and_read(Bytes(d.frame.begin(), d.frame.end()), VerifyLimits{}, t);
    }
  }
  CHECK(frames > 10000);
  CHECK(t.verified + t.rejected == frames);
  CHECK(t.rejected > 0);
}

TEST_CASE("protocol hostile: the table limit rejects a PullResult with too many messages",
          "[unit][protocol][hostile][limits]") {
  // A PullResult frame holds 2 + n tables: Frame, PullResult, n Messages.
  SECTION("the server's default limits: 62 messages pass, 63 do not") {
    const VerifyLimits server{};
    REQUIRE(server.max_tables == 64);
    std::string why;
    const Bytes fits = bytes_of(encode_pull_result(1, samples(62), 62, false));
    CHECK(verify_frame(fits, server, why) != nullptr);
    const Bytes bomb = bytes_of(encode_pull_result(1, samples(63), 63, false));
    CHECK(verify_frame(bomb, server, why) == nullptr);
    CHECK_FALSE(why.empty());
  }
  SECTION("response_verify_limits(n) admits n messages and rejects one past its tables") {
    for (const std::uint32_t n : {0u, 1u, 10u, 100u, 1000u}) {
      INFO("max_messages " << n);
      const VerifyLimits limits = response_verify_limits(n);
      REQUIRE(limits.max_tables >= n + 2);
      const auto most = static_cast<int>(limits.max_tables - 2);
      std::string why;
      for (const bool history : {false, true}) {
        auto encode = [&](int count) {
          const auto ms = samples(count);
          return bytes_of(history ? encode_history_result(1, ms, 0, false)
                                  : encode_pull_result(1, ms, 0, false));
        };
        CHECK(verify_frame(encode(static_cast<int>(n)), limits, why) != nullptr);
        CHECK(verify_frame(encode(most), limits, why) != nullptr);
        CHECK(verify_frame(encode(most + 1), limits, why) == nullptr);
      }
    }
  }
}

TEST_CASE("protocol hostile: response_verify_limits grows with n and never wraps",
          "[unit][protocol][limits]") {
  std::uint32_t previous = 0;
  for (const std::uint32_t n : {0u, 1u, 1000u, 100000u, 1u << 30, (1u << 31) - 8, 1u << 31,
                                std::numeric_limits<std::uint32_t>::max()}) {
    INFO("max_messages " << n);
    const VerifyLimits limits = response_verify_limits(n);
    const std::uint64_t needed = std::uint64_t{n} + 2;  // Frame + result + n Messages
    const std::uint64_t cap = std::numeric_limits<std::uint32_t>::max();
    CHECK(limits.max_tables >= std::min(needed, cap));
    CHECK(limits.max_tables >= previous);
    CHECK(limits.max_depth >= 3);  // Frame -> PullResult -> Message
    previous = limits.max_tables;
  }
}

TEST_CASE("protocol hostile: the depth limit counts nested tables", "[unit][protocol][limits]") {
  const Bytes result = bytes_of(encode_pull_result(1, samples(1), 1, false));  // depth 3
  const Bytes ping = bytes_of(encode_ping(1, 1));                              // depth 2
  std::string why;
  CHECK(verify_frame(result, {.max_depth = 3, .max_tables = 64}, why) != nullptr);
  CHECK(verify_frame(result, {.max_depth = 2, .max_tables = 64}, why) == nullptr);
  CHECK(verify_frame(ping, {.max_depth = 2, .max_tables = 64}, why) != nullptr);
  CHECK(verify_frame(ping, {.max_depth = 1, .max_tables = 64}, why) == nullptr);
}

TEST_CASE("protocol hostile: the table limit counts visits, not distinct tables",
          "[unit][protocol][hostile][limits]") {
  // protocol/README.md §1: a vector naming one Message n times costs n tables.
  auto repeated = [](int n) {
    flatbuffers::FlatBufferBuilder fbb;
    const auto m = wire::CreateMessage(fbb, 1, 1, fbb.CreateString("a"), fbb.CreateString("b"),
                                       fbb.CreateString("hi"), 1, 1);
    const std::vector<flatbuffers::Offset<wire::Message>> same(static_cast<std::size_t>(n), m);
    const auto result = wire::CreatePullResult(fbb, fbb.CreateVector(same), 1, false);
    fbb.FinishSizePrefixed(wire::CreateFrame(fbb, 1, wire::Body::PullResult, result.Union()),
                           wire::FrameIdentifier());
    return Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  };
  std::string why;
  CHECK(verify_frame(repeated(62), VerifyLimits{}, why) != nullptr);  // 2 + 62 = 64 visits
  CHECK(verify_frame(repeated(63), VerifyLimits{}, why) == nullptr);
  CHECK(VerifyLimits{}.max_depth == 8);  // never reached: this schema nests 3 deep at most
}

TEST_CASE("protocol hostile: a frame with no body verifies with body type NONE",
          "[unit][protocol][hostile]") {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.FinishSizePrefixed(wire::CreateFrame(fbb, 5), wire::FrameIdentifier());
  const Bytes b(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  std::string why;
  const wire::Frame* f = verify_frame(b, VerifyLimits{}, why);
  REQUIRE(f);
  CHECK(f->request_id() == 5);
  CHECK(f->body_type() == wire::Body::NONE);
  CHECK(f->body() == nullptr);
  CHECK(f->body_as_Ping() == nullptr);
  CHECK(f->body_as_Hello() == nullptr);
}

TEST_CASE("protocol hostile: a body type without its body is rejected",
          "[unit][protocol][hostile]") {
  // FlatBuffers itself accepts a union whose type is set but whose value is
  // absent; every handler dereferences body_as_X() once the type matches, so
  // verify_frame must not let such a frame through.
  for (int type = 1; type <= static_cast<int>(wire::Body::MAX) + 1; ++type) {
    INFO("body type " << type);
    flatbuffers::FlatBufferBuilder fbb;
    fbb.FinishSizePrefixed(wire::CreateFrame(fbb, 5, static_cast<wire::Body>(type)),
                           wire::FrameIdentifier());
    const Bytes b(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    std::string why;
    CHECK(verify_frame(b, VerifyLimits{}, why) == nullptr);
    CHECK_FALSE(why.empty());
  }
}

TEST_CASE("protocol hostile: an unknown body type from a newer schema verifies and is ignorable",
          "[unit][protocol][hostile]") {
  flatbuffers::FlatBufferBuilder fbb;
  const auto future = wire::CreatePing(fbb, 1);  // any table stands in for a future type
  fbb.FinishSizePrefixed(
      wire::CreateFrame(fbb, 0, static_cast<wire::Body>(200), future.Union()),
      wire::FrameIdentifier());
  const Bytes b(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  std::string why;
  const wire::Frame* f = verify_frame(b, VerifyLimits{}, why);
  INFO(why);
  REQUIRE(f);
  CHECK(f->request_id() == 0);
  CHECK(static_cast<int>(f->body_type()) == 200);
  CHECK(f->body_as_Ping() == nullptr);  // no known accessor claims it
  CHECK(f->body_as_Error() == nullptr);
  volatile std::uint64_t sink = read_all(*f);
  (void)sink;
}
