// Unit: framing. decode_frame on streams cut at every point and fed in every
// chunk size, zero and oversized lengths decided from the header alone, the
// exact maximum, and verify_frame's envelope checks (prefix, identifier).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"

using namespace im;
using namespace im::protocol;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes bytes_of(const OutFrame& f) { return {f.data(), f.data() + f.size()}; }

Bytes le32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)};
}

const wire::Frame* verify(const Bytes& frame, std::string& why) {
  return verify_frame(frame, VerifyLimits{}, why);
}

/// One frame of every body type, request ids 1..11 in order.
std::vector<Bytes> one_of_each() {
  std::vector<MessageRecord> ms(3);
  for (int i = 0; i < 3; ++i) {
    ms[static_cast<std::size_t>(i)] = {i + 1, i + 10, "alice", "bob", "m\xC3\xA9ssage", 5, 7};
  }
  return {bytes_of(encode_hello(1, "alice", "token", "test")),
          bytes_of(encode_welcome(2, "srv", 3, {1024, 512, 100, 1000}, 4)),
          bytes_of(encode_send(3, "bob", 99, "hi \xF0\x9F\x98\x80")),
          bytes_of(encode_send_ack(4, {1, 2, 3, false})),
          bytes_of(encode_pull(5, 0, 10, 0)),
          bytes_of(encode_pull_result(6, ms, 3, false)),
          bytes_of(encode_history(7, "bob", 0, 10, true)),
          bytes_of(encode_history_result(8, ms, 10, true)),
          bytes_of(encode_ping(9, 1)),
          bytes_of(encode_pong(10, 1, 2)),
          bytes_of(encode_error(11, wire::ErrorCode::Busy, "later", 100))};
}

}  // namespace

TEST_CASE("protocol codec: the length prefix is 4 bytes little-endian", "[unit][protocol][codec]") {
  CHECK(read_length_prefix(Bytes{0x01, 0x02, 0x03, 0x04}) == 0x04030201u);
  CHECK(read_length_prefix(Bytes{0xFF, 0xFF, 0xFF, 0xFF}) == 0xFFFFFFFFu);
  CHECK(read_length_prefix(Bytes{0x00, 0x00, 0x10, 0x00, 0xAA}) == kDefaultMaxFrameBytes);
  CHECK(read_length_prefix(le32(0x80000001u)) == 0x80000001u);
  CHECK(kLengthPrefixBytes == 4);
  CHECK(kDefaultMaxFrameBytes == 1024u * 1024u);
}

TEST_CASE("protocol codec: a stream of frames decodes the same in every chunk size",
          "[unit][protocol][codec]") {
  const std::vector<Bytes> frames = one_of_each();
  Bytes stream;
  for (const Bytes& f : frames) stream.insert(stream.end(), f.begin(), f.end());

  // Feed the stream `chunk` bytes at a time into a receive buffer, as a socket
  // would, and handle every frame as soon as decode_frame reports one.
  for (std::size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    INFO("chunk size " << chunk);
    Bytes buffer;
    std::size_t next = 0;  // index of the frame we expect next
    bool ok = true;        // one REQUIRE per chunk size keeps this fast
    std::string failure;
    for (std::size_t off = 0; off < stream.size() && ok; off += chunk) {
      const std::size_t end = std::min(stream.size(), off + chunk);
      buffer.insert(buffer.end(), stream.begin() + static_cast<std::ptrdiff_t>(off),
                    stream.begin() + static_cast<std::ptrdiff_t>(end));
      for (;;) {
        const Decoded d = decode_frame(buffer, kDefaultMaxFrameBytes);
        if (d.status == DecodeStatus::need_more) {
          // need_more exactly while the next frame is incomplete.
          if (next < frames.size() && buffer.size() >= frames[next].size()) {
            ok = false;
            failure = "need_more with a whole frame buffered";
          }
          CHECK(d.consumed == 0);
          break;
        }
        if (d.status == DecodeStatus::error || next >= frames.size() ||
            d.consumed != frames[next].size() || d.frame.size() != frames[next].size() ||
            d.frame.data() != buffer.data() ||
            !std::equal(d.frame.begin(), d.frame.end(), frames[next].begin())) {
          ok = false;
          failure = "wrong frame " + std::to_string(next);
          break;
        }
        const Bytes frame(d.frame.begin(), d.frame.end());
        std::string why;
        const wire::Frame* f = verify(frame, why);
        if (!f || f->request_id() != next + 1 ||
            static_cast<std::size_t>(f->body_type()) != next + 1) {
          ok = false;
          failure = "frame " + std::to_string(next) + " did not verify: " + why;
          break;
        }
        ++next;
        buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(d.consumed));
      }
    }
    INFO(failure);
    REQUIRE(ok);
    CHECK(next == frames.size());
    CHECK(buffer.empty());
  }
}

TEST_CASE("protocol codec: one byte at a time, a frame appears exactly at its last byte",
          "[unit][protocol][codec]") {
  const std::vector<Bytes> frames = one_of_each();
  Bytes stream;
  std::vector<std::size_t> ends;  // stream offset just past each frame
  for (const Bytes& f : frames) {
    stream.insert(stream.end(), f.begin(), f.end());
    ends.push_back(stream.size());
  }
  // Without erasing: decode from a moving offset into the whole stream, the
  // way a reader with one receive buffer does.
  std::size_t offset = 0;
  std::vector<std::size_t> seen_at;
  for (std::size_t have = 0; have <= stream.size(); ++have) {
    const std::span<const std::uint8_t> avail(stream.data() + offset, have - offset);
    const Decoded d = decode_frame(avail, kDefaultMaxFrameBytes);
    REQUIRE(d.status != DecodeStatus::error);
    if (d.status == DecodeStatus::frame) {
      CHECK(d.frame.data() == stream.data() + offset);
      offset += d.consumed;
      seen_at.push_back(have);
      --have;  // retry the same bytes: a second frame may already be complete
    }
  }
  CHECK(seen_at == ends);
  CHECK(offset == stream.size());
}

TEST_CASE("protocol codec: a truncated frame gives need_more at every cut point",
          "[unit][protocol][codec]") {
  for (const Bytes& whole : one_of_each()) {
    for (std::size_t cut = 0; cut < whole.size(); ++cut) {
      const Bytes part(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut));
      const Decoded d = decode_frame(part, kDefaultMaxFrameBytes);
      if (d.status != DecodeStatus::need_more || d.consumed != 0 || !d.frame.empty()) {
        FAIL("cut at " << cut << " of " << whole.size() << " was not need_more");
      }
      // The same bytes presented to verify_frame as if whole are rejected.
      std::string why;
      if (verify(part, why) != nullptr || why.empty()) {
        FAIL("truncated frame (" << cut << " of " << whole.size() << " bytes) verified");
      }
    }
    // The limit does not change this: exactly the frame's length is allowed.
    const Bytes part(whole.begin(), whole.end() - 1);
    CHECK(decode_frame(part, static_cast<std::uint32_t>(whole.size() - 4)).status ==
          DecodeStatus::need_more);
    CHECK(decode_frame(whole, kDefaultMaxFrameBytes).status == DecodeStatus::frame);
  }
}

TEST_CASE("protocol codec: a zero length is a protocol error", "[unit][protocol][codec]") {
  for (const Bytes& input : {le32(0), Bytes{0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}}) {
    const Decoded d = decode_frame(input, kDefaultMaxFrameBytes);
    CHECK(d.status == DecodeStatus::error);
    CHECK(d.error == wire::ErrorCode::ProtocolError);
    CHECK(std::strlen(d.reason) > 0);
    CHECK(d.consumed == 0);
    CHECK(d.frame.empty());
  }
  wire::ErrorCode code = wire::ErrorCode::Unknown;
  CHECK(check_frame_length(0, kDefaultMaxFrameBytes, code) != nullptr);
  CHECK(code == wire::ErrorCode::ProtocolError);
}

TEST_CASE("protocol codec: a length above the maximum is TooLarge from the header alone",
          "[unit][protocol][codec]") {
  const auto max = GENERATE(std::uint32_t{1}, std::uint32_t{4096}, kDefaultMaxFrameBytes);
  INFO("max_frame_bytes " << max);
  for (const std::uint32_t length :
       {max + 1, max + 2, 2 * max, std::numeric_limits<std::uint32_t>::max()}) {
    INFO("length " << length);
    Bytes header = le32(length);
    // Three header bytes cannot decide anything yet.
    CHECK(decode_frame(std::span(header).first(3), max).status == DecodeStatus::need_more);
    // Four can: no payload byte has arrived, nothing needs to be allocated.
    const Decoded d = decode_frame(header, max);
    CHECK(d.status == DecodeStatus::error);
    CHECK(d.error == wire::ErrorCode::TooLarge);
    CHECK(std::strlen(d.reason) > 0);
    CHECK(d.consumed == 0);
    wire::ErrorCode code = wire::ErrorCode::Unknown;
    CHECK(check_frame_length(length, max, code) != nullptr);
    CHECK(code == wire::ErrorCode::TooLarge);
  }
}

TEST_CASE("protocol codec: a length of exactly the maximum is accepted",
          "[unit][protocol][codec]") {
  SECTION("a real frame with the limit set to its length") {
    const Bytes f = bytes_of(encode_send(1, "bob", 1, std::string(1000, 'x')));
    const auto n = static_cast<std::uint32_t>(f.size() - kLengthPrefixBytes);
    CHECK(decode_frame(f, n).status == DecodeStatus::frame);
    CHECK(decode_frame(f, n - 1).status == DecodeStatus::error);
    CHECK(decode_frame(f, n - 1).error == wire::ErrorCode::TooLarge);
  }
  SECTION("the 1 MiB default: header alone needs more, the whole is a frame") {
    Bytes big = le32(kDefaultMaxFrameBytes);
    wire::ErrorCode code = wire::ErrorCode::Unknown;
    CHECK(check_frame_length(kDefaultMaxFrameBytes, kDefaultMaxFrameBytes, code) == nullptr);
    CHECK(decode_frame(big, kDefaultMaxFrameBytes).status == DecodeStatus::need_more);
    big.resize(kLengthPrefixBytes + kDefaultMaxFrameBytes - 1, 0);
    CHECK(decode_frame(big, kDefaultMaxFrameBytes).status == DecodeStatus::need_more);
    big.push_back(0);
    big.push_back(0xEE);  // the first byte of the next frame
    const Decoded d = decode_frame(big, kDefaultMaxFrameBytes);
    REQUIRE(d.status == DecodeStatus::frame);
    CHECK(d.consumed == kLengthPrefixBytes + kDefaultMaxFrameBytes);
    CHECK(d.frame.size() == kLengthPrefixBytes + kDefaultMaxFrameBytes);
    // Accepted as a frame, then rejected by the verifier: it is all zeros.
    std::string why;
    CHECK(verify_frame(d.frame, VerifyLimits{}, why) == nullptr);
  }
  SECTION("a length of 1 is within any limit") {
    const Bytes tiny{1, 0, 0, 0, 0x42};
    const Decoded d = decode_frame(tiny, 1);
    REQUIRE(d.status == DecodeStatus::frame);
    CHECK(d.consumed == 5);
    std::string why;
    CHECK(verify_frame(d.frame, VerifyLimits{}, why) == nullptr);
    CHECK_FALSE(why.empty());
  }
}

TEST_CASE("protocol codec: a wrong file identifier is rejected", "[unit][protocol][codec]") {
  const Bytes good = bytes_of(encode_ping(1, 1));
  std::string why;
  REQUIRE(verify(good, why));
  for (std::size_t i = 8; i < 12; ++i) {
    for (const std::uint8_t value : {std::uint8_t{0}, std::uint8_t{'X'}, std::uint8_t{0xFF}}) {
      Bytes bad = good;
      bad[i] = value;
      why.clear();
      INFO("identifier byte " << i << " = " << int{value});
      CHECK(verify(bad, why) == nullptr);
      CHECK(why.find("identifier") != std::string::npos);
    }
  }
  Bytes next_version = good;
  next_version[11] = '2';  // "IMP2"
  CHECK(verify(next_version, why) == nullptr);
}

TEST_CASE("protocol codec: verify_frame wants one whole size-prefixed frame",
          "[unit][protocol][codec]") {
  const Bytes good = bytes_of(encode_pull(1, 0, 0, 0));
  std::string why;
  REQUIRE(verify(good, why));

  SECTION("a prefix that disagrees with the span") {
    Bytes longer = good;
    longer.insert(longer.end(), 8, 0);  // trailing bytes: the prefix is now short
    CHECK(verify(longer, why) == nullptr);
    Bytes lying = good;
    lying[0] = static_cast<std::uint8_t>(lying[0] + 8);  // the prefix claims more
    CHECK(verify(lying, why) == nullptr);
    CHECK_FALSE(why.empty());
  }
  SECTION("two frames in one span are not one frame") {
    Bytes two = good;
    two.insert(two.end(), good.begin(), good.end());
    CHECK(verify(two, why) == nullptr);
  }
  SECTION("too short to hold a root, with a consistent prefix") {
    for (std::size_t n = 0; n < 16; ++n) {
      Bytes b(n, 0);
      if (n >= 4) {
        const Bytes p = le32(static_cast<std::uint32_t>(n - 4));
        std::copy(p.begin(), p.end(), b.begin());
      }
      if (n >= 12) std::memcpy(b.data() + 8, "IMP1", 4);
      INFO("size " << n);
      CHECK(verify(b, why) == nullptr);
    }
  }
  SECTION("the payload without its prefix") {
    const Bytes bare(good.begin() + 4, good.end());
    CHECK(verify(bare, why) == nullptr);
  }
}
