// Unit: every frame type survives encode_* -> decode_frame -> verify_frame with
// every field intact, including edge values (empty strings, 64-byte user ids,
// extreme integers, unicode text, a large PullResult).
#include <catch2/catch.hpp>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"

using namespace im;
using namespace im::protocol;

namespace {

constexpr auto kU64Max = std::numeric_limits<std::uint64_t>::max();
constexpr auto kU32Max = std::numeric_limits<std::uint32_t>::max();
constexpr auto kI64Max = std::numeric_limits<std::int64_t>::max();
constexpr auto kI64Min = std::numeric_limits<std::int64_t>::min();

const std::string kMaxUser(64, 'u');
// Latin, CJK, Arabic, an emoji (4-byte) and U+10FFFF.
const std::string kUnicode =
    "h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 "
    "\xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF";

/// Holds an encoded frame in its own (heap, hence aligned) buffer and checks
/// that the codec hands it back whole: one frame, consuming every byte.
struct Received {
  std::vector<std::uint8_t> bytes;
  const wire::Frame* frame = nullptr;

  explicit Received(const OutFrame& out, VerifyLimits limits = {},
                    std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes)
      : bytes(out.data(), out.data() + out.size()) {
    REQUIRE(bytes.size() > kLengthPrefixBytes);
    CHECK(read_length_prefix(bytes) == bytes.size() - kLengthPrefixBytes);
    CHECK(std::memcmp(bytes.data() + 8, "IMP1", 4) == 0);
    const Decoded d = decode_frame(bytes, max_frame_bytes);
    REQUIRE(d.status == DecodeStatus::frame);
    CHECK(d.consumed == bytes.size());
    CHECK(d.frame.data() == bytes.data());
    CHECK(d.frame.size() == bytes.size());
    std::string why;
    frame = verify_frame(d.frame, limits, why);
    INFO("verify_frame: " << why);
    REQUIRE(frame != nullptr);
    CHECK(why.empty());
  }
};

std::string str(const flatbuffers::String* s) {
  REQUIRE(s != nullptr);  // the encoders always write strings, even empty ones
  return s->str();
}

MessageRecord message(int i, std::string body) {
  MessageRecord m;
  m.seq = i + 1;
  m.message_id = 1'000'000 + i;
  m.sender = "sender." + std::to_string(i % 7);
  m.receiver = kMaxUser;
  m.body = std::move(body);
  m.created_at_us = 1'700'000'000'000'000 + i;
  m.client_msg_id = kU64Max - static_cast<std::uint64_t>(i);
  return m;
}

void check_messages(const flatbuffers::Vector<flatbuffers::Offset<wire::Message>>* got,
                    const std::vector<MessageRecord>& want) {
  REQUIRE(got != nullptr);
  REQUIRE(got->size() == want.size());
  for (flatbuffers::uoffset_t i = 0; i < got->size(); ++i) {
    const MessageRecord r = to_record(*got->Get(i));
    INFO("message " << i);
    CHECK(r.seq == want[i].seq);
    CHECK(r.message_id == want[i].message_id);
    CHECK(r.sender == want[i].sender);
    CHECK(r.receiver == want[i].receiver);
    CHECK(r.body == want[i].body);
    CHECK(r.created_at_us == want[i].created_at_us);
    CHECK(r.client_msg_id == want[i].client_msg_id);
  }
}

}  // namespace

TEST_CASE("protocol round trip: Hello", "[unit][protocol][frames]") {
  const auto request_id = GENERATE(std::uint64_t{1}, kU64Max);
  const auto user = GENERATE(std::string("a"), kMaxUser, std::string());
  const Received r(encode_hello(request_id, user, "", kUnicode));
  CHECK(r.frame->request_id() == request_id);
  REQUIRE(r.frame->body_type() == wire::Body::Hello);
  const wire::Hello* m = r.frame->body_as_Hello();
  REQUIRE(m);
  CHECK(m->protocol_version() == kProtocolVersion);
  CHECK(str(m->user()) == user);
  CHECK(str(m->token()).empty());
  CHECK(str(m->client_name()) == kUnicode);
}

TEST_CASE("protocol round trip: Welcome", "[unit][protocol][frames]") {
  const ServerLimits limits{kDefaultMaxFrameBytes, 65536, kU32Max, 60000, 300000};
  const auto now = GENERATE(kI64Min, std::int64_t{0}, kI64Max);
  const Received r(
      encode_welcome(9, "im-server \xE2\x9C\x93", kU64Max, limits, now, {"alice.b-1", kI64Max}));
  CHECK(r.frame->request_id() == 9);
  const wire::Welcome* m = r.frame->body_as_Welcome();
  REQUIRE(m);
  CHECK(m->protocol_version() == kProtocolVersion);
  CHECK(str(m->server_name()) == "im-server \xE2\x9C\x93");
  CHECK(m->session_id() == kU64Max);
  CHECK(m->max_frame_bytes() == kDefaultMaxFrameBytes);
  CHECK(m->max_body_bytes() == 65536);
  CHECK(m->max_pull_limit() == kU32Max);
  CHECK(m->max_wait_ms() == 60000);
  CHECK(m->server_time_us() == now);
  CHECK(m->idle_timeout_ms() == 300000);
  CHECK(str(m->user()) == "alice.b-1");
  CHECK(m->token_expires_at_us() == kI64Max);
}

TEST_CASE("protocol round trip: Register, Login and AuthResult", "[unit][protocol][frames]") {
  const std::string password = GENERATE(std::string("correct horse"), kUnicode,
                                        std::string(1024, 'p'));
  const Received reg(encode_register(5, "alice", password));
  REQUIRE(reg.frame->body_as_Register());
  CHECK(reg.frame->request_id() == 5);
  CHECK(str(reg.frame->body_as_Register()->user()) == "alice");
  CHECK(str(reg.frame->body_as_Register()->password()) == password);
  const Received login(encode_login(kU64Max, "bob", password));
  REQUIRE(login.frame->body_as_Login());
  CHECK(login.frame->request_id() == kU64Max);
  CHECK(str(login.frame->body_as_Login()->user()) == "bob");
  CHECK(str(login.frame->body_as_Login()->password()) == password);
  const Received result(encode_auth_result(6, "bob", "im1:k:bob:1:sig", kI64Max));
  const auto* a = result.frame->body_as_AuthResult();
  REQUIRE(a);
  CHECK(str(a->user()) == "bob");
  CHECK(str(a->token()) == "im1:k:bob:1:sig");
  CHECK(a->expires_at_us() == kI64Max);
}

TEST_CASE("protocol round trip: Send", "[unit][protocol][frames]") {
  // The codec is byte-transparent: text rules (valid_text) are applied by the
  // server after verification, so even a NUL survives the round trip.
  const auto body = GENERATE(std::string(), kUnicode, std::string(64 * 1024, 'x'),
                             std::string("nul\0inside", 10));
  const auto client_msg_id = GENERATE(std::uint64_t{1}, kU64Max);
  const Received r(encode_send(3, kMaxUser, client_msg_id, body));
  const wire::Send* m = r.frame->body_as_Send();
  REQUIRE(m);
  CHECK(str(m->receiver()) == kMaxUser);
  CHECK(m->client_msg_id() == client_msg_id);
  REQUIRE(m->body());
  CHECK(m->body()->string_view() == body);
}

TEST_CASE("protocol round trip: SendAck", "[unit][protocol][frames]") {
  const bool duplicate = GENERATE(false, true);
  const SendAckRecord ack{kI64Max, 1'700'000'000'123'456, kI64Max - 1, duplicate};
  const Received r(encode_send_ack(kU64Max, ack));
  CHECK(r.frame->request_id() == kU64Max);
  const wire::SendAck* m = r.frame->body_as_SendAck();
  REQUIRE(m);
  CHECK(m->message_id() == kI64Max);
  CHECK(m->created_at_us() == 1'700'000'000'123'456);
  CHECK(m->seq() == kI64Max - 1);
  CHECK(m->duplicate() == duplicate);
}

TEST_CASE("protocol round trip: Pull", "[unit][protocol][frames]") {
  const auto after = GENERATE(std::int64_t{0}, kI64Max);
  const auto limit = GENERATE(std::uint32_t{0}, kU32Max);
  const Received r(encode_pull(4, after, limit, kU32Max - limit));
  const wire::Pull* m = r.frame->body_as_Pull();
  REQUIRE(m);
  CHECK(m->after_seq() == after);
  CHECK(m->limit() == limit);
  CHECK(m->wait_ms() == kU32Max - limit);
}

TEST_CASE("protocol round trip: PullResult, empty and large", "[unit][protocol][frames]") {
  SECTION("no messages") {
    const Received r(encode_pull_result(5, {}, 42, false));
    const wire::PullResult* m = r.frame->body_as_PullResult();
    REQUIRE(m);
    check_messages(m->messages(), {});
    CHECK(m->next_after_seq() == 42);
    CHECK_FALSE(m->has_more());
  }
  SECTION("1000 messages with unicode, empty and 4 KiB bodies") {
    std::vector<MessageRecord> ms;
    for (int i = 0; i < 1000; ++i) {
      std::string body = i % 3 == 0 ? kUnicode + std::to_string(i)
                         : i % 3 == 1 ? std::string()
                                      : std::string(4096, static_cast<char>('a' + i % 26));
      ms.push_back(message(i, std::move(body)));
    }
    const OutFrame out = encode_pull_result(5, ms, 1000, true);
    // Above the 1 MiB default, as a response can be: clients accept larger frames.
    REQUIRE(out.size() > kLengthPrefixBytes + kDefaultMaxFrameBytes);
    const Received r(out, response_verify_limits(1000), 64u << 20);
    const wire::PullResult* m = r.frame->body_as_PullResult();
    REQUIRE(m);
    check_messages(m->messages(), ms);
    CHECK(m->next_after_seq() == 1000);
    CHECK(m->has_more());
  }
}

TEST_CASE("protocol round trip: History", "[unit][protocol][frames]") {
  const bool reverse = GENERATE(false, true);
  const auto cursor = GENERATE(std::int64_t{0}, kI64Max);
  const Received r(encode_history(6, kMaxUser, cursor, 25, reverse));
  const wire::History* m = r.frame->body_as_History();
  REQUIRE(m);
  CHECK(str(m->peer()) == kMaxUser);
  CHECK(m->cursor() == cursor);
  CHECK(m->limit() == 25);
  CHECK(m->reverse() == reverse);
}

TEST_CASE("protocol round trip: HistoryResult", "[unit][protocol][frames]") {
  std::vector<MessageRecord> ms;
  for (int i = 0; i < 50; ++i) ms.push_back(message(i, kUnicode));
  ms.push_back(MessageRecord{});  // every field at its default, strings empty
  const bool has_more = GENERATE(false, true);
  const Received r(encode_history_result(7, ms, kI64Min, has_more),
                   response_verify_limits(static_cast<std::uint32_t>(ms.size())));
  const wire::HistoryResult* m = r.frame->body_as_HistoryResult();
  REQUIRE(m);
  check_messages(m->messages(), ms);
  CHECK(m->next_cursor() == kI64Min);
  CHECK(m->has_more() == has_more);
}

TEST_CASE("protocol round trip: Ping and Pong", "[unit][protocol][frames]") {
  const auto nonce = GENERATE(std::uint64_t{0}, std::uint64_t{42}, kU64Max);
  const Received ping(encode_ping(8, nonce));
  REQUIRE(ping.frame->body_as_Ping());
  CHECK(ping.frame->request_id() == 8);
  CHECK(ping.frame->body_as_Ping()->nonce() == nonce);

  const Received pong(encode_pong(8, nonce, kI64Min));
  REQUIRE(pong.frame->body_as_Pong());
  CHECK(pong.frame->request_id() == 8);
  CHECK(pong.frame->body_as_Pong()->nonce() == nonce);
  CHECK(pong.frame->body_as_Pong()->server_time_us() == kI64Min);
}

TEST_CASE("protocol round trip: Error with every code", "[unit][protocol][frames]") {
  for (int c = static_cast<int>(wire::ErrorCode::MIN); c <= static_cast<int>(wire::ErrorCode::MAX);
       ++c) {
    const auto code = static_cast<wire::ErrorCode>(c);
    INFO("code " << c);
    const Received r(encode_error(0, code, c % 2 ? kUnicode : "", static_cast<std::uint32_t>(c)));
    CHECK(r.frame->request_id() == 0);  // notifications (and fatal errors) carry id 0
    const wire::Error* m = r.frame->body_as_Error();
    REQUIRE(m);
    CHECK(m->code() == code);
    CHECK(str(m->message()) == (c % 2 ? kUnicode : ""));
    CHECK(m->retry_after_ms() == static_cast<std::uint32_t>(c));
  }
  // retry_after_ms defaults to 0.
  const Received r(encode_error(1, wire::ErrorCode::BadRequest, "x"));
  REQUIRE(r.frame->body_as_Error());
  CHECK(r.frame->body_as_Error()->retry_after_ms() == 0);
}

TEST_CASE("protocol round trip: each body type answers only its own accessor",
          "[unit][protocol][frames]") {
  const std::vector<OutFrame> frames = [] {
    std::vector<OutFrame> v;
    v.push_back(encode_hello(1, "a", "", ""));
    v.push_back(encode_welcome(1, "s", 1, {}, 0));
    v.push_back(encode_send(1, "a", 1, ""));
    v.push_back(encode_send_ack(1, {}));
    v.push_back(encode_pull(1, 0, 0, 0));
    v.push_back(encode_pull_result(1, {}, 0, false));
    v.push_back(encode_history(1, "a", 0, 0, false));
    v.push_back(encode_history_result(1, {}, 0, false));
    v.push_back(encode_ping(1, 0));
    v.push_back(encode_pong(1, 0, 0));
    v.push_back(encode_error(1, wire::ErrorCode::Internal, ""));
    v.push_back(encode_register(1, "a", "p"));
    v.push_back(encode_login(1, "a", "p"));
    v.push_back(encode_auth_result(1, "a", "t", 0));
    return v;
  }();
  // Union type numbers are part of the wire contract (protocol/README.md).
  REQUIRE(frames.size() == static_cast<std::size_t>(wire::Body::MAX));
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const Received r(frames[i]);
    const auto type = static_cast<int>(r.frame->body_type());
    CHECK(type == static_cast<int>(i) + 1);
    const void* bodies[] = {r.frame->body_as_Hello(),   r.frame->body_as_Welcome(),
                            r.frame->body_as_Send(),    r.frame->body_as_SendAck(),
                            r.frame->body_as_Pull(),    r.frame->body_as_PullResult(),
                            r.frame->body_as_History(), r.frame->body_as_HistoryResult(),
                            r.frame->body_as_Ping(),    r.frame->body_as_Pong(),
                            r.frame->body_as_Error(),   r.frame->body_as_Register(),
                            r.frame->body_as_Login(),   r.frame->body_as_AuthResult()};
    for (std::size_t j = 0; j < std::size(bodies); ++j) {
      INFO("frame " << i << ", accessor " << j);
      CHECK((bodies[j] != nullptr) == (i == j));
    }
  }
}
