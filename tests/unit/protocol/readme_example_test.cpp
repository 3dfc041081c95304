// Unit: the worked example in protocol/README.md. The bytes a client in another
// language would compare against must be a valid frame, and still be what our
// encoder writes (update the README if flatbuffers ever lays them out anew).
#include <catch2/catch.hpp>

#include <vector>

#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"

using namespace im;
using namespace im::protocol;

namespace {

// Copied from protocol/README.md, "Worked example: a Ping".
const std::vector<std::uint8_t> kReadmePing = {
    0x44, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00, 0x49, 0x4d, 0x50, 0x31, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x0a, 0x00, 0x1a, 0x00, 0x0c, 0x00, 0x07, 0x00, 0x08, 0x00, 0x0a, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x09, 0x18, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x06, 0x00, 0x00, 0x00,
    0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};

}  // namespace

TEST_CASE("protocol readme: the worked Ping example", "[unit][protocol][readme]") {
  SECTION("the bytes decode and verify as Ping{nonce: 42} with request id 7") {
    const Decoded d = decode_frame(kReadmePing, kDefaultMaxFrameBytes);
    REQUIRE(d.status == DecodeStatus::frame);
    CHECK(d.consumed == 72);
    CHECK(read_length_prefix(kReadmePing) == 68);
    std::string why;
    const wire::Frame* f = verify_frame(d.frame, VerifyLimits{}, why);
    INFO(why);
    REQUIRE(f);
    CHECK(f->request_id() == 7);
    CHECK(f->body_type() == wire::Body::Ping);
    REQUIRE(f->body_as_Ping());
    CHECK(f->body_as_Ping()->nonce() == 42);
  }
  SECTION("they are exactly what encode_ping(7, 42) writes") {
    const OutFrame out = encode_ping(7, 42);
    const std::vector<std::uint8_t> encoded(out.data(), out.data() + out.size());
    CHECK(encoded == kReadmePing);
  }
}
