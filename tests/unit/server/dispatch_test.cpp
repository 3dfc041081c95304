// The dispatch table: which request types a client may send, which may come
// before Hello, which need a live session — and the answers dispatch() gives
// for frames no handler sees. Over a FakeConnection; no storage is reached.

#include <catch2/catch.hpp>

#include <set>
#include <string>

#include <asio/io_context.hpp>
#include <flatbuffers/flatbuffers.h>

#include "protocol/frames.hpp"
#include "server/app/config.hpp"
#include "server/common/log.hpp"
#include "server/service/dispatch.hpp"
#include "server/service/service.hpp"
#include "tests/support/fake_connection.hpp"

namespace {

using namespace im;
using server::RequestType;

/// Storage that must not be reached: every frame here is answered before it.
struct NoStore final : server::MessageWriter, server::MessageReader {
  server::StoreStatus submit(server::SendCommand&) override {
    FAIL("a refused request reached the writer");
    return {};
  }
  void pull(server::PullQuery, std::function<void(const server::StoreStatus&, server::PullPage&&)>) override {
    FAIL("a refused request reached the reader");
  }
  void history(server::HistoryQuery,
               std::function<void(const server::StoreStatus&, server::HistoryPage&&)>) override {
    FAIL("a refused request reached the reader");
  }
};

/// A frame of any body type, including those only the server sends: an empty
/// table of that type (the Verifier accepts it; dispatch decides).
protocol::OutFrame frame_of(wire::Body type, std::uint64_t rid) {
  flatbuffers::FlatBufferBuilder b;
  flatbuffers::Offset<void> body;
  if (type != wire::Body::NONE) {
    const auto start = b.StartTable();
    body = flatbuffers::Offset<void>(b.EndTable(start));
  }
  wire::FrameBuilder f(b);
  f.add_request_id(rid);
  f.add_body_type(type);
  if (type != wire::Body::NONE) f.add_body(body);
  b.FinishSizePrefixed(f.Finish(), wire::FrameIdentifier());
  return b.Release();
}

struct Rig {
  asio::io_context io;
  NoStore store;
  server::Waiters waiters;
  server::Service service{server::service_limits(server::Config{}), store, store, waiters, "test", server::ServiceAuth{}};
  std::shared_ptr<test::FakeConnection> conn =
      std::make_shared<test::FakeConnection>(io.get_executor(), 1, &service);

  Rig() { server::logs::set_level("off"); }

  /// Dispatches one frame and returns the one frame written back.
  test::FakeConnection::Written answer(const protocol::OutFrame& out) {
    const auto* frame = flatbuffers::GetSizePrefixedRoot<wire::Frame>(out.data());
    service.on_frame(conn, *frame);
    io.restart();
    io.poll();
    auto written = conn->take_written();
    REQUIRE(written.size() == 1);
    return std::move(written.front());
  }
};

const wire::Frame& frame(const test::FakeConnection::Written& w) {
  return *flatbuffers::GetSizePrefixedRoot<wire::Frame>(w.frame.data());
}

std::string error_message(const test::FakeConnection::Written& w) {
  const auto* e = frame(w).body_as_Error();
  REQUIRE(e != nullptr);
  return e->message() ? e->message()->str() : "";
}

}  // namespace

TEST_CASE("dispatch: the table has one entry per client request type, with its rules", "[unit][dispatch]") {
  std::set<wire::Body> types;
  for (const RequestType& t : server::request_types()) {
    INFO(t.name);
    CHECK(types.insert(t.body).second);  // one entry per type
    CHECK(t.handle != nullptr);
    CHECK(server::find_request_type(t.body) == &t);
    CHECK(std::string(wire::EnumNameBody(t.body)) == std::string(t.name));
    // A type that needs a live session is never allowed before Hello.
    CHECK_FALSE((t.live_session && t.before_hello));
  }
  const std::set<wire::Body> client_types{wire::Body::Hello, wire::Body::Send,    wire::Body::Pull,
                                          wire::Body::History, wire::Body::Ping, wire::Body::Register,
                                          wire::Body::Login};
  CHECK(types == client_types);
  for (const wire::Body before : {wire::Body::Hello, wire::Body::Ping, wire::Body::Register, wire::Body::Login}) {
    CHECK(server::find_request_type(before)->before_hello);
  }
  for (const wire::Body needs : {wire::Body::Send, wire::Body::Pull, wire::Body::History}) {
    CHECK_FALSE(server::find_request_type(needs)->before_hello);
    CHECK(server::find_request_type(needs)->live_session);
  }
}

TEST_CASE("dispatch: frames no handler sees are answered bad_request, the connection stays open",
          "[unit][dispatch]") {
  Rig rig;
  SECTION("request id 0") {
    const auto w = rig.answer(protocol::encode_ping(0, 1));
    CHECK(frame(w).body_as_Error()->code() == wire::ErrorCode::BadRequest);
    CHECK(error_message(w) == "request_id must be non-zero");
  }
  SECTION("no body") {
    const auto w = rig.answer(frame_of(wire::Body::NONE, 5));
    CHECK(frame(w).request_id() == 5);
    CHECK(error_message(w) == "frame has no body");
  }
  SECTION("every type only the server sends") {
    for (const wire::Body type : {wire::Body::Welcome, wire::Body::SendAck, wire::Body::PullResult,
                                  wire::Body::HistoryResult, wire::Body::Pong, wire::Body::Error,
                                  wire::Body::AuthResult}) {
      INFO(wire::EnumNameBody(type));
      const auto w = rig.answer(frame_of(type, 9));
      CHECK(frame(w).body_as_Error()->code() == wire::ErrorCode::BadRequest);
      CHECK(error_message(w) == "not a request type a client may send");
    }
  }
  CHECK_FALSE(rig.conn->failed());
}

TEST_CASE("dispatch: before Hello only Hello, Ping, Register and Login are served", "[unit][dispatch]") {
  Rig rig;
  for (const auto& out : {protocol::encode_send(2, "bob", 1, "hi"), protocol::encode_pull(3, 0, 10, 0),
                          protocol::encode_history(4, "bob", 0, 10, false)}) {
    const auto w = rig.answer(out);
    CHECK(frame(w).body_as_Error()->code() == wire::ErrorCode::Unauthenticated);
    CHECK(error_message(w) == "send Hello first");
  }
  CHECK(frame(rig.answer(protocol::encode_ping(5, 42))).body_as_Pong()->nonce() == 42);
  // Register and Login reach their handler: this server offers no accounts.
  const auto reg = rig.answer(protocol::encode_register(6, "alice", "a long enough password"));
  CHECK(frame(reg).body_as_Error()->code() == wire::ErrorCode::Forbidden);
  CHECK(rig.service.context().stats->sessions_open == 0);
  // Hello (--auth none) opens the session: the connection is told, the handler counts it.
  CHECK(frame(rig.answer(protocol::encode_hello(7, "alice", "", "test"))).body_type() ==
        wire::Body::Welcome);
  CHECK(rig.conn->state().user == "alice");
  CHECK(rig.service.context().stats->sessions_open == 1);
  CHECK(rig.service.context().stats->sessions_opened == 1);
  rig.conn->close();
  CHECK(rig.service.context().stats->sessions_open == 0);
  CHECK(rig.service.context().stats->sessions_opened == 1);
}

TEST_CASE("dispatch: once the session's token expired, requests that need a live session fail the "
          "connection, while Ping is still answered", "[unit][dispatch]") {
  Rig rig;
  rig.conn->state().user = "alice";
  rig.conn->state().auth_expires_us = 1;  // long past
  CHECK(frame(rig.answer(protocol::encode_ping(1, 3))).body_as_Pong()->nonce() == 3);
  CHECK_FALSE(rig.conn->failed());
  const auto w = rig.answer(protocol::encode_pull(2, 0, 10, 0));
  CHECK(w.from_fail);
  CHECK(frame(w).body_as_Error()->code() == wire::ErrorCode::Unauthenticated);
  CHECK_THAT(error_message(w), Catch::Contains("token has expired"));
}
