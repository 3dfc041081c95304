// net::Session over loopback TCP against a fake SessionHandler: its deadlines,
// its backpressure, a client that never reads, fail(), shutdown, and the
// events it reports (on_open once after Hello, on_input_closed before
// on_close, on_close exactly once, every queued byte unqueued) — without
// PostgreSQL, Redis or the Service.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>

#include "protocol/frames.hpp"
#include "server/app/config.hpp"
#include "server/common/log.hpp"
#include "server/net/net_stats.hpp"
#include "server/net/session.hpp"
#include "server/service/session_handler.hpp"
#include "tests/support/expect_frame.hpp"
#include "tests/support/raw_client.hpp"

namespace {

using namespace im;
using namespace std::chrono_literals;
using server::Connection;
using server::SessionLimits;
using test::RawClient;

/// What the handler does with a request other than Hello (Hello is always
/// answered with Welcome and opens the session).
enum class Mode {
  answer,  // Pong at once
  hold,    // kept until release(): a request pending (a long poll)
  fail,    // the connection fails: one Error, then closed
  big,     // a large answer at once (kBigAnswer bytes)
};
constexpr std::size_t kBigAnswer = 64 * 1024;

class FakeHandler final : public server::SessionHandler {
 public:
  explicit FakeHandler(Mode mode) : mode_(mode) {}

  void on_frame(const std::shared_ptr<Connection>& conn, const wire::Frame& frame) override {
    const std::uint64_t rid = frame.request_id();
    if (frame.body_type() == wire::Body::Hello) {
      ++hellos;
      const auto* hello = frame.body_as_Hello();
      const std::string user = hello->user() ? hello->user()->str() : "";
      conn->respond(protocol::encode_welcome(rid, "fake", conn->id(), {}, 0, {user, 0}));
      conn->open_session(user);
      return;
    }
    ++requests;
    const std::uint64_t nonce = frame.body_type() == wire::Body::Ping ? frame.body_as_Ping()->nonce() : 0;
    switch (mode_) {
      case Mode::answer: return conn->respond(protocol::encode_pong(rid, nonce, 0));
      case Mode::hold: {
        std::lock_guard lock(mu_);
        held_.push_back({conn, rid, nonce});
        return;
      }
      case Mode::fail:
        return conn->fail(protocol::encode_error(rid, wire::ErrorCode::Unauthenticated, "refused"));
      case Mode::big:
        return conn->respond(protocol::encode_error(rid, wire::ErrorCode::Internal,
                                                    std::string(kBigAnswer, 'x')));
    }
  }
  void on_open(Connection&) override {
    if (closes > 0) ++out_of_order;
    ++opens;
  }
  void on_input_closed(Connection&) override {
    if (closes > 0) ++out_of_order;
    ++inputs_closed;
  }
  void on_close(Connection&) override { ++closes; }
  void on_queued(const protocol::OutFrame& frame) override { queued += frame.size(); }
  void on_unqueued(std::size_t bytes) override { unqueued += bytes; }
  void on_written(Connection&) override { ++written; }

  /// Answers up to `n` held requests, oldest first (on their connection's executor).
  void release(std::size_t n) {
    std::vector<Held> go;
    {
      std::lock_guard lock(mu_);
      n = std::min(n, held_.size());
      go.assign(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(n));
      held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    for (auto& h : go) h.conn->respond(protocol::encode_pong(h.rid, h.nonce, 0));
  }

  std::size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }

  std::atomic<int> hellos{0};
  std::atomic<int> requests{0};
  std::atomic<int> opens{0};
  std::atomic<int> inputs_closed{0};
  std::atomic<int> closes{0};
  std::atomic<int> out_of_order{0};  // an event after on_close
  std::atomic<int> written{0};
  std::atomic<std::size_t> queued{0};
  std::atomic<std::size_t> unqueued{0};

 private:
  struct Held {
    std::shared_ptr<Connection> conn;
    std::uint64_t rid;
    std::uint64_t nonce;
  };
  const Mode mode_;
  std::mutex mu_;
  std::vector<Held> held_;
};

/// Polls `done` every few milliseconds for up to `limit`; returns its last value.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

/// One listening socket on 127.0.0.1 whose first connection becomes a Session
/// served by `handler`, on an I/O thread of its own.
struct Rig {
  Rig(SessionLimits limits_in, Mode mode) : limits(limits_in), handler(mode) {
    server::logs::set_level("off");
    acceptor.async_accept([this](const std::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec) return;
      auto s = std::make_shared<server::Session>(std::move(socket), nullptr, 1, handler, limits,
                                                 stats, [this](std::uint64_t) { ++on_close_calls; });
      session = s;
      s->start();
    });
    thread = std::thread([this] { io.run(); });
  }
  ~Rig() {
    work.reset();
    io.stop();
    thread.join();
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  std::uint16_t port() const { return acceptor.local_endpoint().port(); }
  void shutdown_session() {
    asio::post(io, [this] {
      if (auto s = session.lock()) s->shutdown();
    });
  }
  /// After the session closed: the events it reported add up.
  void check_closed_once() {
    REQUIRE(eventually([&] { return handler.closes.load() >= 1; }));
    std::this_thread::sleep_for(20ms);  // a second on_close would come by now
    CHECK(handler.closes == 1);
    CHECK(on_close_calls == 1);
    CHECK(handler.inputs_closed <= 1);
    CHECK(handler.out_of_order == 0);
    // Every byte queued for the client left the queue: written, or freed at close.
    CHECK(eventually([&] { return handler.queued.load() == handler.unqueued.load(); }));
  }

  const SessionLimits limits;
  server::NetStats stats;
  FakeHandler handler;
  std::atomic<int> on_close_calls{0};
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  std::weak_ptr<server::Session> session;
  std::thread thread;
};

SessionLimits quick_limits() {
  // The server's defaults, without its deadlines (each test sets the one it checks).
  SessionLimits l = server::session_limits(server::Config{});
  l.handshake_timeout = 0ms;
  l.frame_timeout = 0ms;
  l.idle_timeout = 0ms;
  l.write_timeout = 0ms;
  return l;
}

const wire::Error& error_of(const test::Received& r) { return test::body_of<wire::Error>(r); }

}  // namespace

TEST_CASE("session: Hello opens the session once, and a client that leaves closes it exactly once") {
  Rig rig(quick_limits(), Mode::answer);
  {
    RawClient c(rig.port());
    c.hello("alice");
    CHECK(eventually([&] { return rig.handler.opens.load() == 1; }));
    c.write(protocol::encode_ping(c.next_id(), 7));
    CHECK(test::body_of<wire::Pong>(test::expect_frame(c.read())).nonce() == 7);
    // A second Hello reaches the handler, but the session is open already.
    c.hello("alice");
    CHECK(rig.handler.hellos == 2);
    CHECK(rig.handler.opens == 1);
  }
  rig.check_closed_once();
  CHECK(rig.handler.inputs_closed == 1);  // end of stream: no request can follow
  CHECK(rig.handler.opens == 1);
  CHECK(rig.handler.written > 0);
}

TEST_CASE("session: no Hello within the handshake deadline gets one Error, then the connection closes") {
  SessionLimits l = quick_limits();
  l.handshake_timeout = 100ms;
  Rig rig(l, Mode::answer);
  RawClient c(rig.port());
  // Pings are answered meanwhile: only a successful Hello ends the handshake.
  c.write(protocol::encode_ping(c.next_id(), 1));
  CHECK(test::body_of<wire::Pong>(test::expect_frame(c.read())).nonce() == 1);
  const auto r = test::expect_frame(c.read(3s), "the handshake timeout's Error");
  CHECK(error_of(r).code() == wire::ErrorCode::ProtocolError);
  CHECK_THAT(error_of(r).message()->str(), Catch::Contains("handshake timeout"));
  CHECK(r.frame()->request_id() == 0);
  CHECK(c.closed_by_server());
  rig.check_closed_once();
  CHECK(rig.handler.opens == 0);
  CHECK(rig.stats.handshake_timeouts.total() == 1);
}

TEST_CASE("session: the idle deadline counts only while no request is pending") {
  SessionLimits l = quick_limits();
  l.idle_timeout = 150ms;
  Rig rig(l, Mode::hold);
  RawClient c(rig.port());
  c.hello("alice");
  c.write(protocol::encode_ping(c.next_id(), 1));
  // A pending request (a long poll) is not idleness: nothing arrives.
  CHECK_FALSE(c.read(500ms).has_value());
  rig.handler.release(1);
  CHECK(test::body_of<wire::Pong>(test::expect_frame(c.read())).nonce() == 1);
  // Idle from the answer on: the deadline fires.
  const auto r = test::expect_frame(c.read(3s), "the idle timeout's Error");
  CHECK_THAT(error_of(r).message()->str(), Catch::Contains("idle timeout"));
  CHECK(c.closed_by_server());
  rig.check_closed_once();
  CHECK(rig.stats.idle_timeouts.total() == 1);
}

TEST_CASE("session: a frame that does not arrive whole within the frame deadline ends the connection") {
  SessionLimits l = quick_limits();
  l.frame_timeout = 100ms;
  Rig rig(l, Mode::answer);
  RawClient c(rig.port());
  c.hello("alice");
  const protocol::OutFrame ping = protocol::encode_ping(c.next_id(), 1);
  c.write_bytes({ping.data(), ping.data() + 6});  // the prefix and a little: a slowloris
  const auto r = test::expect_frame(c.read(3s), "the frame timeout's Error");
  CHECK(error_of(r).code() == wire::ErrorCode::ProtocolError);
  CHECK_THAT(error_of(r).message()->str(), Catch::Contains("frame timeout"));
  CHECK(c.closed_by_server());
  rig.check_closed_once();
  CHECK(rig.handler.requests == 0);
}

TEST_CASE("session: at max_inflight pending requests nothing more is read until a response goes out") {
  SessionLimits l = quick_limits();
  l.max_inflight = 4;
  Rig rig(l, Mode::hold);
  RawClient c(rig.port());
  c.hello("alice");  // answered at once: it does not count once its Welcome is queued
  for (std::uint64_t i = 1; i <= 10; ++i) c.write(protocol::encode_ping(c.next_id(), i));
  CHECK(eventually([&] { return rig.handler.requests.load() == 4; }));
  std::this_thread::sleep_for(100ms);
  CHECK(rig.handler.requests == 4);  // held back, unread
  rig.handler.release(1);
  CHECK(test::body_of<wire::Pong>(test::expect_frame(c.read())).nonce() == 1);
  CHECK(eventually([&] { return rig.handler.requests.load() == 5; }));
  std::this_thread::sleep_for(50ms);
  CHECK(rig.handler.requests == 5);
  // The rest, one answer at a time: every request is handled, in order.
  for (std::uint64_t i = 2; i <= 10; ++i) {
    REQUIRE(eventually([&] { return rig.handler.held() > 0; }));
    rig.handler.release(1);
    CHECK(test::body_of<wire::Pong>(test::expect_frame(c.read())).nonce() == i);
  }
  CHECK(rig.handler.requests == 10);
}

TEST_CASE("session: a client that never reads is reset at max_queued_bytes, and its queue is freed") {
  SessionLimits l = quick_limits();
  l.max_queued_bytes = 1u << 20;
  Rig rig(l, Mode::big);
  RawClient c(rig.port());
  c.hello("alice");
  // 64 MiB of answers: far more than the kernel's socket buffers hold, so they
  // pile up in the session's queue until it passes 1 MiB.
  std::vector<std::uint8_t> pings;
  for (std::uint64_t i = 1; i <= 1000; ++i) {
    const protocol::OutFrame f = protocol::encode_ping(c.next_id(), i);
    pings.insert(pings.end(), f.data(), f.data() + f.size());
  }
  c.write_bytes(pings);
  rig.check_closed_once();
  // Reset once the queue passed its cap: most answers were never queued.
  CHECK(rig.handler.queued > l.max_queued_bytes);
  CHECK(rig.handler.queued < 1000 * kBigAnswer / 2);
}

TEST_CASE("session: a client that stops reading is reset by the write deadline") {
  SessionLimits l = quick_limits();
  l.write_timeout = 200ms;
  l.max_queued_bytes = 256u << 20;  // the queue cap is not what ends it
  Rig rig(l, Mode::big);
  RawClient c(rig.port());
  c.hello("alice");
  std::vector<std::uint8_t> pings;
  for (std::uint64_t i = 1; i <= 400; ++i) {
    const protocol::OutFrame f = protocol::encode_ping(c.next_id(), i);
    pings.insert(pings.end(), f.data(), f.data() + f.size());
  }
  c.write_bytes(pings);  // 25 MiB of answers, never read
  rig.check_closed_once();
  CHECK(rig.stats.write_timeouts.total() == 1);
}

TEST_CASE("session: fail() sends one Error, the frames after it are not handled, then it closes") {
  Rig rig(quick_limits(), Mode::fail);
  RawClient c(rig.port());
  c.hello("alice");
  std::vector<std::uint8_t> three;
  for (std::uint64_t i = 1; i <= 3; ++i) {
    const protocol::OutFrame f = protocol::encode_ping(c.next_id(), i);
    three.insert(three.end(), f.data(), f.data() + f.size());
  }
  c.write_bytes(three);  // one read: the failing frame and two behind it
  const auto r = test::expect_frame(c.read(), "fail()'s Error");
  CHECK(error_of(r).code() == wire::ErrorCode::Unauthenticated);
  CHECK(c.closed_by_server());
  rig.check_closed_once();
  CHECK(rig.handler.requests == 1);
  CHECK(rig.handler.inputs_closed == 1);
}

TEST_CASE("session: shutdown stops reading and closes once every pending response is written") {
  Rig rig(quick_limits(), Mode::hold);
  RawClient c(rig.port());
  c.hello("alice");
  c.write(protocol::encode_ping(c.next_id(), 1));
  c.write(protocol::encode_ping(c.next_id(), 2));
  REQUIRE(eventually([&] { return rig.handler.requests.load() == 2; }));
  rig.shutdown_session();
  REQUIRE(eventually([&] { return rig.handler.inputs_closed.load() == 1; }));
  c.write(protocol::encode_ping(c.next_id(), 3));  // after the drain began: not handled
  std::this_thread::sleep_for(50ms);
  CHECK(rig.handler.closes == 0);  // two answers still owed
  rig.handler.release(2);
  CHECK(test::body_of<wire::Pong>(test::expect_frame(c.read())).nonce() == 1);
  CHECK(test::body_of<wire::Pong>(test::expect_frame(c.read())).nonce() == 2);
  CHECK(c.closed_by_server());
  rig.check_closed_once();
  CHECK(rig.handler.requests == 2);
}
