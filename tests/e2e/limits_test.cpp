// End-to-end: connection caps, the handshake, frame (slowloris) and idle
// deadlines, and the per-user send rate limit, on a real server over real
// PostgreSQL and Redis. Deadlines are a few hundred milliseconds here; every
// wait is bounded.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include <asio/read.hpp>
#include <asio/write.hpp>

#include "client/client.hpp"
#include "tests/support/expect_frame.hpp"
#include "tests/support/raw_client.hpp"
#include "tests/support/test_server.hpp"

using namespace im;
using namespace std::chrono_literals;
using im::test::body_of;
using im::test::expect_frame;
using im::test::TestServer;
using im::test::unique_prefix;
using Clock = std::chrono::steady_clock;

namespace {

/// A blocking test client whose every read is bounded by poll(2).
/// (TimedClient's timeouts rely on SO_RCVTIMEO, which Asio's blocking read_some
/// does not honour: it polls again without a timeout. A test of deadlines
/// must not hang when the deadline is not enforced, so it uses this.)
class TimedClient {
 public:
  /// Connects to 127.0.0.1:`port`, from `source` if given (another loopback address).
  explicit TimedClient(std::uint16_t port, const std::string& source = "") : socket_(io_) {
    socket_.open(asio::ip::tcp::v4());
    if (!source.empty()) socket_.bind({asio::ip::make_address(source), 0});
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
    socket_.set_option(asio::ip::tcp::no_delay(true));
  }

  std::uint64_t next_id() { return ++request_id_; }
  void write(const protocol::OutFrame& f) { asio::write(socket_, asio::buffer(f.data(), f.size())); }
  /// Throws if the server has closed the connection (EPIPE, ECONNRESET).
  void write_bytes(const std::vector<std::uint8_t>& b) { asio::write(socket_, asio::buffer(b)); }

  /// One verified frame, or nullopt on end of stream or after `timeout`.
  std::optional<test::Received> read(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto d = protocol::decode_frame(buffer_, 64u << 20);
      if (d.status == protocol::DecodeStatus::error) throw std::runtime_error(d.reason);
      if (d.status == protocol::DecodeStatus::frame) {
        test::Received r{std::vector<std::uint8_t>(d.frame.begin(), d.frame.end())};
        buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(d.consumed));
        std::string why;
        if (!protocol::verify_frame(r.bytes, protocol::response_verify_limits(100000), why)) {
          throw std::runtime_error("server sent a bad frame: " + why);
        }
        return r;
      }
      if (!receive(deadline)) return std::nullopt;
    }
  }

  /// Keeps the kernel from buffering much for this socket (a client that reads slowly).
  void shrink_receive_buffer() { socket_.set_option(asio::socket_base::receive_buffer_size(4096)); }

  /// Reads and discards until the server ends the stream or `timeout` passes;
  /// returns the bytes read, and whether the stream ended.
  std::pair<std::size_t, bool> drain(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::size_t total = buffer_.size();
    buffer_.clear();
    while (receive(deadline)) {
      total += buffer_.size();
      buffer_.clear();
    }
    return {total, eof_};
  }

  /// True once the server ends the stream within `timeout` (frames before it are discarded).
  bool closed_by_server(std::chrono::milliseconds timeout = 3s) {
    const auto deadline = Clock::now() + timeout;
    while (receive(deadline)) buffer_.clear();
    return eof_;
  }

  /// Half-closes: the server sees end of stream after what was written.
  void shutdown_send() { socket_.shutdown(asio::ip::tcp::socket::shutdown_send); }

  void hello(const std::string& user) {
    write(protocol::encode_hello(next_id(), user, "", "limits-test"));
    auto r = read();
    if (!r) throw std::runtime_error("hello as " + user + ": no response");
    if (r->frame()->body_type() != wire::Body::Welcome) {
      throw std::runtime_error("hello as " + user + " was not welcomed: got " + r->describe());
    }
  }
  test::Received send(const std::string& to, std::uint64_t client_msg_id, const std::string& body) {
    write(protocol::encode_send(next_id(), to, client_msg_id, body));
    return must(read(), "send");
  }
  test::Received pull(std::int64_t after, std::uint32_t limit, std::uint32_t wait_ms = 0) {
    write(protocol::encode_pull(next_id(), after, limit, wait_ms));
    return must(read(std::chrono::milliseconds(wait_ms) + 5s), "pull");
  }

 private:
  static test::Received must(std::optional<test::Received> r, const char* what) {
    if (!r) throw std::runtime_error(std::string("no response to ") + what);
    return std::move(*r);
  }
  /// Appends what arrives before `deadline`; false on timeout or end of stream.
  bool receive(Clock::time_point deadline) {
    if (eof_) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    ::pollfd pfd{socket_.native_handle(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return false;
    std::uint8_t chunk[65536];
    const auto n = ::recv(socket_.native_handle(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
    if (n <= 0) {
      eof_ = true;  // end of stream, or reset
      return false;
    }
    buffer_.insert(buffer_.end(), chunk, chunk + n);
    return true;
  }

  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  std::vector<std::uint8_t> buffer_;
  std::uint64_t request_id_ = 0;
  bool eof_ = false;
};

std::vector<std::uint8_t> bytes_of(const protocol::OutFrame& f) {
  return {f.data(), f.data() + f.size()};
}

/// The fatal Error a server sends before closing: request id 0, then end of stream.
struct Fatal {
  wire::ErrorCode code = wire::ErrorCode::Unknown;
  std::string message;
  std::uint32_t retry_after_ms = 0;
};

Fatal expect_fatal(TimedClient& c, std::chrono::milliseconds timeout = 5s) {
  const auto r = expect_frame(c.read(timeout), "fatal Error");
  const auto& e = body_of<wire::Error>(r);
  CHECK(r.frame()->request_id() == 0);
  Fatal f{e.code(), e.message() ? e.message()->str() : "", e.retry_after_ms()};
  CHECK(c.closed_by_server());
  return f;
}

void require_ack(const test::Received& r) { body_of<wire::SendAck>(r); }

std::size_t inbox_size(TimedClient& c) {
  return test::page_size(body_of<wire::PullResult>(c.pull(0, 1000)));
}

void require_pong(TimedClient& c, std::uint64_t nonce) {
  c.write(protocol::encode_ping(c.next_id(), nonce));
  CHECK(body_of<wire::Pong>(expect_frame(c.read(3s), "Pong")).nonce() == nonce);
}

/// Connects until the server admits a connection (a closed one's slot is
/// released once the server has seen the close), bounded by `timeout`.
std::unique_ptr<TimedClient> connect_when_admitted(std::uint16_t port, const std::string& user,
                                                   std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto c = std::make_unique<TimedClient>(port);
    c->write(protocol::encode_hello(c->next_id(), user, "", "limits-test"));
    auto r = c->read(2s);
    if (r && r->frame()->body_type() == wire::Body::Welcome) return c;
    std::this_thread::sleep_for(20ms);
  }
  return nullptr;
}

}  // namespace

TEST_CASE("limits: a connection above --max-connections gets busy and is closed", "[e2e]") {
  TestServer server([](server::Config& c) {
    c.max_connections = 3;
    c.max_connections_per_ip = 0;  // only the total cap
  });
  const std::string p = unique_prefix("cap");
  std::vector<std::unique_ptr<TimedClient>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<TimedClient>(server.port()));
    open.back()->hello(p + "-u" + std::to_string(i));
  }

  for (int attempt = 0; attempt < 3; ++attempt) {
    TimedClient extra(server.port());
    const Fatal f = expect_fatal(extra);
    CHECK(f.code == wire::ErrorCode::Busy);
    CHECK_THAT(f.message, Catch::Contains("too many connections"));
    CHECK(f.retry_after_ms > 0);
  }

  // The open connections are unaffected.
  require_ack(open[0]->send(p + "-u1", 1, "still here"));
  CHECK(inbox_size(*open[1]) == 1);
  require_pong(*open[2], 5);

  // Closing one frees its slot.
  open.pop_back();
  auto again = connect_when_admitted(server.port(), p + "-again");
  REQUIRE(again);
  require_ack(again->send(p + "-u1", 2, "after a slot was freed"));
  CHECK(inbox_size(*open[1]) == 2);
}

TEST_CASE("limits: a connection above --max-connections-per-ip gets busy while other addresses connect",
          "[e2e]") {
  TestServer server([](server::Config& c) {
    c.max_connections = 100;
    c.max_connections_per_ip = 2;
  });
  const std::string p = unique_prefix("perip");
  TimedClient a(server.port()), b(server.port());
  a.hello(p + "-a");
  b.hello(p + "-b");

  TimedClient third(server.port());
  const Fatal f = expect_fatal(third);
  CHECK(f.code == wire::ErrorCode::Busy);
  CHECK_THAT(f.message, Catch::Contains("too many connections from 127.0.0.1"));

  // Another source address has its own allowance (the total cap is far).
  TimedClient other(server.port(), "127.0.0.2");
  other.hello(p + "-other");
  require_pong(other, 1);

  require_ack(a.send(p + "-b", 1, "unaffected"));
  CHECK(inbox_size(b) == 1);
}

TEST_CASE("limits: no successful Hello within --handshake-timeout-ms closes the connection",
          "[e2e]") {
  TestServer server([](server::Config& c) { c.handshake_timeout_ms = 300; });
  const std::string p = unique_prefix("hs");

  // Connects and says nothing.
  const auto t0 = Clock::now();
  TimedClient silent(server.port());
  // Pings, which are allowed before Hello, but never says Hello.
  TimedClient pinger(server.port());
  require_pong(pinger, 1);
  // Says Hello in time: the handshake deadline no longer applies.
  TimedClient good(server.port());
  good.hello(p + "-good");

  const Fatal f = expect_fatal(silent);
  const auto elapsed = Clock::now() - t0;
  CHECK(f.code == wire::ErrorCode::ProtocolError);
  CHECK_THAT(f.message, Catch::Contains("handshake timeout"));
  CHECK(elapsed >= 290ms);
  CHECK(elapsed < 3s);
  CHECK(expect_fatal(pinger).code == wire::ErrorCode::ProtocolError);

  std::this_thread::sleep_for(300ms);  // well past the handshake deadline
  require_pong(good, 2);
  require_ack(good.send(p + "-bob", 1, "welcomed in time"));
}

TEST_CASE("limits: a frame that does not arrive whole within --frame-timeout-ms (slowloris)",
          "[e2e]") {
  TestServer server([](server::Config& c) { c.frame_timeout_ms = 300; });
  const std::string p = unique_prefix("slow");
  const auto frame = bytes_of(protocol::encode_send(99, p + "-bob", 1, "a slow message"));
  REQUIRE(frame.size() > 40);

  TimedClient good(server.port()), bob(server.port());
  good.hello(p + "-good");
  bob.hello(p + "-bob");

  SECTION("one byte, then nothing") {
    TimedClient stall(server.port());
    stall.hello(p + "-stall");
    const auto t0 = Clock::now();
    stall.write_bytes({frame[0]});
    // Meanwhile other clients are served at once.
    require_ack(good.send(p + "-bob", 1, "meanwhile"));
    CHECK(inbox_size(bob) == 1);
    CHECK(Clock::now() - t0 < 250ms);

    const Fatal f = expect_fatal(stall);
    const auto elapsed = Clock::now() - t0;
    CHECK(f.code == wire::ErrorCode::ProtocolError);
    CHECK_THAT(f.message, Catch::Contains("frame timeout"));
    CHECK(elapsed >= 290ms);
    CHECK(elapsed < 3s);
  }
  SECTION("a byte every 50 ms: always active, but the frame never completes in time") {
    TimedClient drip(server.port());
    drip.hello(p + "-drip");
    const auto t0 = Clock::now();
    std::size_t sent = 0;
    bool cut = false;
    // The frame would take ~frame.size() * 50 ms (over 2 s); the deadline is 300 ms.
    while (sent < frame.size() && Clock::now() - t0 < 5s) {
      try {
        drip.write_bytes({frame[sent]});
      } catch (const std::exception&) {
        cut = true;  // the server closed: the write failed
        break;
      }
      ++sent;
      std::this_thread::sleep_for(50ms);
      if (Clock::now() - t0 > 1s) break;
    }
    CHECK(sent < frame.size());
    if (!cut) {
      const Fatal f = expect_fatal(drip);
      CHECK(f.code == wire::ErrorCode::ProtocolError);
      CHECK_THAT(f.message, Catch::Contains("frame timeout"));
    }
    require_ack(good.send(p + "-bob", 2, "after the drip"));
  }
  SECTION("whole frames, however slow between them, are fine") {
    TimedClient patient(server.port());
    patient.hello(p + "-patient");
    for (std::uint64_t i = 1; i <= 3; ++i) {
      std::this_thread::sleep_for(200ms);  // between frames: not a frame timeout
      require_ack(patient.send(p + "-bob", i, "whole"));
    }
  }
}

TEST_CASE("limits: --idle-timeout-ms closes a silent connection while Ping keeps one open",
          "[e2e]") {
  TestServer server([](server::Config& c) { c.idle_timeout_ms = 300; });
  const std::string p = unique_prefix("idle");
  TimedClient idle(server.port()), pinger(server.port());
  idle.hello(p + "-idle");
  pinger.hello(p + "-pinger");
  const auto t0 = Clock::now();

  // The pinger pings every 100 ms for a second, far past the idle timeout.
  std::uint64_t nonce = 0;
  while (Clock::now() - t0 < 1s) {
    require_pong(pinger, ++nonce);
    std::this_thread::sleep_for(100ms);
  }
  require_ack(pinger.send(p + "-idle", 1, "kept alive"));

  const Fatal f = expect_fatal(idle, 1s);
  CHECK(f.code == wire::ErrorCode::ProtocolError);
  CHECK_THAT(f.message, Catch::Contains("idle timeout"));
}

TEST_CASE("limits: a long poll longer than the idle timeout is not idle", "[e2e]") {
  TestServer server([](server::Config& c) { c.idle_timeout_ms = 300; });
  const std::string p = unique_prefix("lp");
  TimedClient waiter(server.port());
  waiter.hello(p + "-waiter");

  const auto t0 = Clock::now();
  const auto r = waiter.pull(0, 10, 1200);  // nothing arrives: answered empty at 1.2 s
  const auto waited = Clock::now() - t0;
  body_of<wire::PullResult>(r);
  CHECK(waited >= 1100ms);
  // The idle time starts again once the answer is out, not at the Pull.
  std::this_thread::sleep_for(150ms);
  require_pong(waiter, 1);

  // A long poll woken by a message after the idle timeout also completes.
  waiter.write(protocol::encode_pull(waiter.next_id(), 0, 10, 5000));
  std::this_thread::sleep_for(600ms);
  TimedClient sender(server.port());
  sender.hello(p + "-sender");
  require_ack(sender.send(p + "-waiter", 1, "wake up"));
  const auto woken = expect_frame(waiter.read(3s), "PullResult");
  CHECK(test::page_size(body_of<wire::PullResult>(woken)) == 1);
}

TEST_CASE("limits: sends above --send-rate/--send-burst get rate_limited and store nothing",
          "[e2e]") {
  TestServer server([](server::Config& c) {
    c.send_rate = 1;  // one token a second: none comes back during the burst below
    c.send_burst = 5;
  });
  const std::string p = unique_prefix("rl");
  const std::string alice = p + "-alice", bob = p + "-bob", carol = p + "-carol";
  TimedClient a(server.port()), b(server.port()), c(server.port());
  a.hello(alice);
  b.hello(bob);
  c.hello(carol);

  // Twenty pipelined sends: the burst is acked, the rest refused.
  for (std::uint64_t i = 1; i <= 20; ++i) {
    a.write(protocol::encode_send(a.next_id(), bob, i, "m" + std::to_string(i)));
  }
  int acked = 0, limited = 0;
  std::uint32_t retry_after = 0;
  for (int i = 0; i < 20; ++i) {
    const auto r = expect_frame(a.read(), "SendAck or Error");
    if (r.frame()->body_type() == wire::Body::SendAck) {
      ++acked;
    } else {
      const auto& e = body_of<wire::Error>(r);
      CHECK(e.code() == wire::ErrorCode::RateLimited);
      CHECK(r.frame()->request_id() != 0);  // an answer, not a fatal error
      retry_after = std::max(retry_after, e.retry_after_ms());
      ++limited;
    }
  }
  CHECK(acked == 5);
  CHECK(limited == 15);
  CHECK(retry_after > 0);
  CHECK(retry_after <= 1000);
  CHECK(inbox_size(b) == 5);  // nothing refused was stored

  // Another user has their own bucket; the limited connection stays usable.
  require_ack(c.send(bob, 1, "from carol"));
  require_pong(a, 1);

  // After the hinted wait, a retry of a refused send (same client_msg_id) goes through.
  std::this_thread::sleep_for(std::chrono::milliseconds(retry_after + 50));
  require_ack(a.send(bob, 6, "m6"));
  CHECK(inbox_size(b) == 7);
}

namespace {
/// `filler` (user P-filler) fills P-reader's inbox with 15 messages of 60,000
/// bytes, a page of about 900 KB (kPage); `stalled` says Hello as P-reader
/// with a tiny receive buffer: a client that reads slowly, if at all.
constexpr std::size_t kPage = 15 * 60000;
void fill_and_stall(TimedClient& filler, TimedClient& stalled, const std::string& p) {
  filler.hello(p + "-filler");
  const std::string body(60000, 'x');
  for (std::uint64_t i = 1; i <= 15; ++i) require_ack(filler.send(p + "-reader", i, body));
  stalled.shrink_receive_buffer();
  stalled.hello(p + "-reader");
}
}  // namespace

TEST_CASE("limits: a client that never reads is reset by --write-timeout-ms", "[e2e]") {
  TestServer server([](server::Config& c) { c.write_timeout_ms = 1500; });
  const std::string p = unique_prefix("noread");
  TimedClient good(server.port());
  good.hello(p + "-good");
  TimedClient filler(server.port());
  TimedClient stalled(server.port());
  fill_and_stall(filler, stalled, p);
  // 45 pipelined pulls of the whole page: about 40 MB of responses, far more
  // than the kernel's buffers plus the server's 16 MiB per-connection budget:
  // reads wait for room, writes stall, and the write deadline resets it.
  constexpr int kPulls = 45;
  for (int i = 0; i < kPulls; ++i) stalled.write(protocol::encode_pull(stalled.next_id(), 0, 100, 0));
  std::this_thread::sleep_for(2s);  // the server answers into a connection nobody reads

  // Meanwhile, and afterwards, other clients are served.
  require_ack(good.send(p + "-other", 1, "unaffected"));
  require_pong(good, 9);
  const auto [received, ended] = stalled.drain(20s);
  INFO("received " << received << " bytes; ended " << ended);
  // The server dropped it (a reset: what the kernel still held is gone too)
  // before answering everything.
  CHECK(ended);
  CHECK(received < static_cast<std::size_t>(kPulls) * kPage);
  require_ack(good.send(p + "-other", 2, "still unaffected"));
  CHECK(inbox_size(filler) == 0);  // the filler's own inbox: nothing stored by accident
}

TEST_CASE("limits: a client that pipelines Pings and never reads is reset once 16 MiB of answers "
          "are queued",
          "[e2e]") {
  // Pings need no read, so the ReadGate does not hold them back, and each is
  // answered at once, so the inflight limit never stops reading: only the
  // per-connection queue cap bounds what their Pongs take. The write deadline
  // is off here, so that nothing else ends the connection.
  TestServer server([](server::Config& c) { c.write_timeout_ms = 0; });
  const std::string p = unique_prefix("pingflood");
  TimedClient good(server.port());
  good.hello(p + "-good");
  TimedClient flood(server.port());
  flood.shrink_receive_buffer();
  flood.hello(p + "-flood");
  // 1.5 M Pings (~50 MB of Pongs): far more than the cap plus kernel buffers.
  constexpr int kChunks = 150, kPerChunk = 10000;
  bool reset = false;
  for (int c = 0; c < kChunks && !reset; ++c) {
    std::vector<std::uint8_t> chunk;
    for (int i = 0; i < kPerChunk; ++i) {
      const protocol::OutFrame f = protocol::encode_ping(flood.next_id(), 1);
      chunk.insert(chunk.end(), f.data(), f.data() + f.size());
    }
    try {
      flood.write_bytes(chunk);
    } catch (const std::exception&) {
      reset = true;  // the server reset the connection
    }
  }
  const auto [received, ended] = flood.drain(5s);
  INFO("reset while writing: " << reset << "; received " << received << " bytes; ended " << ended);
  CHECK((reset || ended));
  require_pong(good, 9);  // others are served meanwhile
}

TEST_CASE("limits: a failed connection is closed within a second even when it neither reads nor "
          "lets its long poll end",
          "[e2e]") {
  TestServer server;
  const std::string p = unique_prefix("failstuck");
  TimedClient filler(server.port());
  TimedClient stalled(server.port());
  fill_and_stall(filler, stalled, p);
  // About 9 MB of responses nobody reads: more than the kernel holds, less
  // than the server's 16 MiB queue, so the server's writes stall.
  constexpr int kPulls = 10;
  for (int i = 0; i < kPulls; ++i) stalled.write(protocol::encode_pull(stalled.next_id(), 0, 100, 0));
  // A long poll past the end keeps a request pending (the idle deadline never
  // fires), then a bad frame fails the connection: its Error queues behind
  // the stalled writes.
  stalled.write(protocol::encode_pull(stalled.next_id(), 15, 100, 30000));
  std::this_thread::sleep_for(500ms);
  stalled.write_bytes({8, 0, 0, 0, 'g', 'a', 'r', 'b', 'a', 'g', 'e', '!'});
  std::this_thread::sleep_for(2s);
  // The server has closed it by now (its kernel may still hold unsent bytes
  // for it): a frame sent to a closed socket is answered with a reset, so
  // draining ends long before the long poll's 30 s, and what the server still
  // had queued is gone. Without the close, the stream stays open.
  try {
    stalled.write(protocol::encode_ping(stalled.next_id(), 1));
  } catch (const std::exception&) {
    // already reset
  }
  const auto [received, ended] = stalled.drain(5s);
  INFO("received " << received << " bytes; ended " << ended);
  CHECK(ended);
  CHECK(received < static_cast<std::size_t>(kPulls) * kPage);
}

TEST_CASE("hostile: garbage after a valid frame, a frame cut short, and a frame of many tables",
          "[e2e]") {
  TestServer server;
  const std::string p = unique_prefix("hostile");
  TimedClient good(server.port());
  good.hello(p + "-good");

  // A valid Ping followed in the same write by garbage: the Ping is answered,
  // then the garbage closes the connection.
  {
    TimedClient c(server.port());
    auto bytes = bytes_of(protocol::encode_ping(c.next_id(), 42));
    const std::vector<std::uint8_t> junk = {12, 0, 0, 0, 'n', 'o', 't', ' ', 'a', ' ',
                                            'f', 'r', 'a', 'm', 'e', '!'};
    bytes.insert(bytes.end(), junk.begin(), junk.end());
    c.write_bytes(bytes);
    body_of<wire::Pong>(expect_frame(c.read(), "Pong"));
    CHECK(expect_fatal(c).code == wire::ErrorCode::ProtocolError);
    require_pong(good, 1);
  }
  // Half a Send, then the client shuts its side: nothing is stored, the server
  // closes the connection, others are unaffected.
  {
    TimedClient c(server.port());
    c.hello(p + "-cut");
    auto send = bytes_of(protocol::encode_send(c.next_id(), p + "-victim", 1, "half of me"));
    send.resize(send.size() / 2);
    c.write_bytes(send);
    c.shutdown_send();
    CHECK(c.closed_by_server());
    CHECK(inbox_size(good) == 0);
    TimedClient victim(server.port());
    victim.hello(p + "-victim");
    CHECK(inbox_size(victim) == 0);
  }
  // A frame of a server-to-client type stuffed with tables (a PullResult of
  // 200 messages): above the Verifier's table limit, refused before dispatch.
  {
    TimedClient c(server.port());
    c.hello(p + "-tables");
    std::vector<protocol::MessageRecord> many(200);
    for (auto& m : many) {
      m.sender = "a";
      m.receiver = "b";
    }
    c.write(protocol::encode_pull_result(c.next_id(), many, 1, false));
    CHECK(expect_fatal(c).code == wire::ErrorCode::ProtocolError);
    require_pong(good, 2);
  }
}

TEST_CASE("pipelining: thousands of requests in one write are all answered, in order", "[e2e]") {
  // The server reads what has arrived in one go and handles every whole frame
  // in it; past max_inflight (1024) pending requests it holds the rest back,
  // unread, until responses go out. 3,000 Pings in one write cross both: many
  // reads of 64 KiB with frames split across them, and the hold-back.
  TestServer server;
  TimedClient c(server.port());
  c.hello(unique_prefix("pipe"));
  constexpr std::uint64_t kCount = 3000;
  std::vector<std::uint8_t> all;
  const std::uint64_t first_id = c.next_id();
  for (std::uint64_t i = 0; i < kCount; ++i) {
    const auto f = protocol::encode_ping(first_id + i, 1000 + i);
    all.insert(all.end(), f.data(), f.data() + f.size());
  }
  c.write_bytes(all);
  for (std::uint64_t i = 0; i < kCount; ++i) {
    const auto r = expect_frame(c.read(10s), "Pong");
    REQUIRE(body_of<wire::Pong>(r).nonce() == 1000 + i);
    REQUIRE(r.frame()->request_id() == first_id + i);
  }
}

TEST_CASE("pipelining: frames at any offset of a read, and frames cut anywhere, are handled",
          "[e2e]") {
  TestServer server;
  const std::string p = unique_prefix("offsets");
  TimedClient c(server.port());
  c.hello(p + "-a");
  // A Ping padded by 3 bytes (FlatBuffers ignores bytes after the root's data),
  // then five Sends, in one buffer: the Sends sit at odd offsets of the
  // server's read buffer, and their 8-byte fields must still be read safely
  // (UBSan checks this in CI).
  int sent = 0;
  auto batch = [&](std::uint64_t nonce) {
    auto bytes = bytes_of(protocol::encode_ping(c.next_id(), nonce));
    bytes.insert(bytes.end(), {0, 0, 0});
    const auto length = static_cast<std::uint32_t>(bytes.size() - protocol::kLengthPrefixBytes);
    std::memcpy(bytes.data(), &length, sizeof length);  // little-endian, as the wire
    for (int i = 0; i < 5; ++i, ++sent) {
      const auto f = protocol::encode_send(c.next_id(), p + "-b", static_cast<std::uint64_t>(100 + sent),
                                           "odd " + std::to_string(sent));
      bytes.insert(bytes.end(), f.data(), f.data() + f.size());
    }
    return bytes;
  };
  auto expect_answers = [&](std::uint64_t nonce) {
    const auto pong = expect_frame(c.read(), "Pong");
    CHECK(body_of<wire::Pong>(pong).nonce() == nonce);
    const std::uint64_t first = pong.frame()->request_id() + 1;
    for (std::uint64_t i = 0; i < 5; ++i) {
      const auto r = expect_frame(c.read(), "SendAck");
      require_ack(r);
      CHECK(r.frame()->request_id() == first + i);
    }
  };
  // In one write: one read on the server (most likely), frames at odd offsets.
  c.write_bytes(batch(7));
  expect_answers(7);
  // In pieces of 7 bytes: every frame is cut somewhere, prefixes too.
  const auto all = batch(8);
  for (std::size_t at = 0; at < all.size(); at += 7) {
    c.write_bytes({all.begin() + static_cast<std::ptrdiff_t>(at),
                   all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), at + 7))});
    std::this_thread::sleep_for(1ms);
  }
  expect_answers(8);
  TimedClient b(server.port());
  b.hello(p + "-b");
  const auto r = b.pull(0, 100);
  const auto* m = body_of<wire::PullResult>(r).messages();
  REQUIRE(m);
  REQUIRE(m->size() == 10);
  for (std::uint32_t i = 0; i < 10; ++i) {
    CHECK(m->Get(i)->body()->str() == "odd " + std::to_string(i));
    CHECK(m->Get(i)->seq() == i + 1);
  }
}

TEST_CASE("limits: libimclient keeps an idle session open with Pings under --idle-timeout-ms",
          "[e2e]") {
  TestServer server([](server::Config& c) { c.idle_timeout_ms = 600; });
  client::Options o;
  o.port = server.port();
  o.user = unique_prefix("idle-client");
  client::Client c(o);
  const auto first = c.connect();
  REQUIRE(first);
  CHECK(first->limits.idle_timeout_ms == 600);  // announced in Welcome
  std::this_thread::sleep_for(2s);              // more than three idle timeouts, no request
  const auto later = c.connect();
  REQUIRE(later);
  CHECK(later->session_id == first->session_id);  // the same session: never closed as idle
  CHECK(c.send(o.user, "still the same session"));
}

TEST_CASE("limits: a long poll ends when its connection closes, releasing the session", "[e2e]") {
  TestServer server;
  auto wait_for_polls = [&](std::size_t n, std::chrono::milliseconds within) {
    const auto deadline = Clock::now() + within;
    while (server.get().long_polls() != n && Clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    return server.get().long_polls() == n;
  };
  {
    TimedClient c(server.port());
    c.hello(unique_prefix("gone"));
    for (int i = 0; i < 3; ++i) c.write(protocol::encode_pull(c.next_id(), 0, 10, 30000));
    REQUIRE(wait_for_polls(3, 5s));
  }  // the client goes away with three 30-second long polls pending
  // Ended at the close, not 30 s later: a client cannot pin sessions (and
  // their memory) beyond the connection cap by opening long polls and leaving.
  CHECK(wait_for_polls(0, 3s));
}
