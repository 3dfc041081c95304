// Unit: libimclient against a scripted peer on loopback (no PostgreSQL or
// Redis): pipelining with out-of-order responses, timeouts, reconnects, send
// retries that keep one client_msg_id, and typed server errors.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <set>
#include <mutex>
#include <thread>

#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include "client/client.hpp"
#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"

using namespace im;
using namespace std::chrono_literals;

namespace {

/// A blocking fake server: accepts connections one at a time on its own
/// thread and calls `on_frame` for each request; the handler answers with
/// `reply` (any order) or closes the connection. Handlers run on the server's
/// thread and must not use Catch assertions (Catch is not thread-safe): they
/// record what they saw, and the test checks it.
class FakeServer {
 public:
  struct Conn {
    asio::ip::tcp::socket& socket;
    void reply(const protocol::OutFrame& f) { asio::write(socket, asio::buffer(f.data(), f.size())); }
    void close() {
      std::error_code ec;
      socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
      socket.close(ec);
    }
  };
  using Handler = std::function<void(Conn&, const wire::Frame&, int connection)>;

  explicit FakeServer(Handler handler)
      : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}), handler_(std::move(handler)) {
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeServer() {
    stopping_ = true;
    // shutdown() (not close()) wakes a thread blocked in accept() or read().
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    {
      std::lock_guard lock(mu_);
      std::error_code ec;
      if (current_) current_->shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    }
    thread_.join();
    CHECK(bad_frames_ == 0);  // every frame the client sent verified
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int connections() const { return connections_.load(); }

 private:
  void serve() {
    while (!stopping_) {
      asio::ip::tcp::socket socket(io_);
      std::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec) return;
      {
        std::lock_guard lock(mu_);
        current_ = &socket;
      }
      const int n = ++connections_;
      Conn conn{socket};
      std::vector<std::uint8_t> buf(4);
      while (socket.is_open()) {
        buf.resize(4);
        if (asio::read(socket, asio::buffer(buf.data(), 4), ec) != 4 || ec) break;
        const std::uint32_t len = protocol::read_length_prefix(buf);
        buf.resize(4 + len);
        if (asio::read(socket, asio::buffer(buf.data() + 4, len), ec) != len || ec) break;
        std::string why;
        const wire::Frame* f = protocol::verify_frame(buf, {}, why);
        if (!f) {  // Catch assertions belong to the test's thread: counted, checked there
          ++bad_frames_;
          break;
        }
        handler_(conn, *f, n);
      }
      std::lock_guard lock(mu_);
      current_ = nullptr;
    }
  }

  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  Handler handler_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> bad_frames_{0};
  std::mutex mu_;
  asio::ip::tcp::socket* current_ = nullptr;
};

void welcome(FakeServer::Conn& c, const wire::Frame& f) {
  c.reply(protocol::encode_welcome(f.request_id(), "fake", 1, {1u << 20, 1000, 100, 1000}, 0));
}

client::Options options_for(const FakeServer& s) {
  client::Options o;
  o.port = s.port();
  o.user = "alice";
  o.request_timeout = 2000ms;
  o.backoff_initial = 10ms;
  return o;
}

}  // namespace

TEST_CASE("pipelined requests are matched to out-of-order responses by id", "[unit][client]") {
  std::vector<std::uint64_t> held;  // request ids of Pings, answered in reverse
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    held.push_back(f.request_id());
    if (held.size() == 3) {
      for (auto it = held.rbegin(); it != held.rend(); ++it) {
        c.reply(protocol::encode_send_ack(*it, {static_cast<std::int64_t>(*it) * 10, 1, 1, false}));
      }
    }
  });
  client::AsyncClient c(options_for(server));
  std::vector<std::promise<client::Result<client::SendAck>>> done(3);
  for (int i = 0; i < 3; ++i) {
    c.send("bob", "m" + std::to_string(i), static_cast<std::uint64_t>(i + 1),
           [&, i](client::Result<client::SendAck> r) { done[static_cast<std::size_t>(i)].set_value(r); });
  }
  std::vector<std::int64_t> ids;
  for (auto& p : done) {
    auto r = p.get_future().get();
    REQUIRE(r.ok());
    ids.push_back(r->message_id);
  }
  // Each callback got the ack for its own request, although they came reversed.
  CHECK(ids[0] < ids[1]);
  CHECK(ids[1] < ids[2]);
  CHECK(server.connections() == 1);
}

TEST_CASE("a request without an answer times out", "[unit][client]") {
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    // Never answers pings.
  });
  auto o = options_for(server);
  o.request_timeout = 200ms;
  client::Client c(o);
  const auto start = std::chrono::steady_clock::now();
  auto r = c.ping();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == client::Error::Kind::timeout);
  CHECK(r.error().retryable());
  CHECK(std::chrono::steady_clock::now() - start >= 200ms);
}

TEST_CASE("server errors arrive as typed values", "[unit][client]") {
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    c.reply(protocol::encode_error(f.request_id(), wire::ErrorCode::TooLarge, "body too big"));
  });
  client::Client c(options_for(server));
  auto r = c.send("bob", "x");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == client::Error::Kind::server);
  CHECK(r.error().code == wire::ErrorCode::TooLarge);
  CHECK(r.error().message == "body too big");
  CHECK_FALSE(r.error().retryable());
  CHECK(r.error().to_string() == "too_large: body too big");
}

TEST_CASE("a refused Hello fails the request with the server's error", "[unit][client]") {
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    c.reply(protocol::encode_error(f.request_id(), wire::ErrorCode::Unauthenticated, "no such user"));
  });
  client::Client c(options_for(server));
  auto r = c.pull(0);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == wire::ErrorCode::Unauthenticated);
}

TEST_CASE("send retries after a lost connection with the same client_msg_id", "[unit][client]") {
  std::mutex mu;
  std::vector<std::uint64_t> cmids;
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int connection) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    if (f.body_type() != wire::Body::Send) return c.close();  // the send then fails the test
    {
      std::lock_guard lock(mu);
      cmids.push_back(f.body_as_Send()->client_msg_id());
    }
    if (connection == 1) return c.close();  // the first attempt's ack is lost
    c.reply(protocol::encode_send_ack(f.request_id(), {5, 1, 1, true}));
  });
  client::Client c(options_for(server));
  auto r = c.send("bob", "hello");  // client_msg_id 0: the library picks one
  REQUIRE(r.ok());
  CHECK(r->attempts == 2);
  CHECK(r->duplicate);
  std::lock_guard lock(mu);
  REQUIRE(cmids.size() == 2);
  CHECK(cmids[0] == cmids[1]);
  CHECK(cmids[0] == r->client_msg_id);
  CHECK(cmids[0] != 0);
  CHECK(server.connections() == 2);  // it reconnected and said Hello again
}

TEST_CASE("retries on Unavailable stop after send_attempts", "[unit][client]") {
  std::atomic<int> sends{0};
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    ++sends;
    c.reply(protocol::encode_error(f.request_id(), wire::ErrorCode::Unavailable, "db down"));
  });
  auto o = options_for(server);
  o.send_attempts = 3;
  client::Client c(o);
  auto r = c.send("bob", "x", 99);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == wire::ErrorCode::Unavailable);
  CHECK(sends == 3);
}

TEST_CASE("nothing listening is a retryable connect failure", "[unit][client]") {
  std::uint16_t port;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }  // closed again: nothing listens there now
  client::Options o;
  o.port = port;
  o.user = "alice";
  client::Client c(o);
  auto r = c.ping();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == client::Error::Kind::connect_failed);
  CHECK(r.error().retryable());
}

TEST_CASE("generated client_msg_ids are non-zero and distinct", "[unit][client]") {
  std::set<std::uint64_t> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(client::new_client_msg_id());
  CHECK(ids.size() == 10000);
  CHECK(ids.count(0) == 0);
}

TEST_CASE("a send that one server leaves unanswered is retried on the failover server",
          "[unit][client]") {
  std::mutex mu;
  std::vector<std::uint64_t> cmids;
  auto record = [&](const wire::Frame& f) {
    std::lock_guard lock(mu);
    cmids.push_back(f.body_type() == wire::Body::Send ? f.body_as_Send()->client_msg_id() : 0);
  };
  // A zombie: says Welcome, then never answers a Send.
  FakeServer zombie([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    record(f);
  });
  FakeServer healthy([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    record(f);
    c.reply(protocol::encode_send_ack(f.request_id(), {7, 1, 1, false}));
  });
  auto o = options_for(zombie);
  o.request_timeout = 200ms;
  o.failover = {{"127.0.0.1", healthy.port()}};
  client::Client c(o);
  auto r = c.send("bob", "hello");
  REQUIRE(r.ok());
  CHECK(r->message_id == 7);
  CHECK(r->attempts == 2);
  CHECK(healthy.connections() == 1);
  std::lock_guard lock(mu);
  REQUIRE(cmids.size() == 2);
  CHECK(cmids[0] == cmids[1]);  // one idempotency key on both servers
}

TEST_CASE("without failover endpoints a timeout keeps the connection", "[unit][client]") {
  std::atomic<int> pings{0};
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    if (f.body_type() != wire::Body::Ping) return c.close();  // the ping then fails the test
    if (++pings == 1) return;  // the first ping is never answered
    c.reply(protocol::encode_pong(f.request_id(), f.body_as_Ping()->nonce(), 0));
  });
  auto o = options_for(server);
  o.request_timeout = 200ms;
  client::Client c(o);
  REQUIRE_FALSE(c.ping().ok());
  REQUIRE(c.ping().ok());
  CHECK(server.connections() == 1);
}

TEST_CASE("a server that is down is skipped for the next endpoint", "[unit][client]") {
  std::uint16_t dead_port;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    dead_port = a.local_endpoint().port();
  }
  FakeServer healthy([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    c.reply(protocol::encode_send_ack(f.request_id(), {9, 1, 1, false}));
  });
  client::Options o = options_for(healthy);
  o.port = dead_port;
  o.failover = {{"127.0.0.1", healthy.port()}};
  client::Client c(o);
  auto r = c.send("bob", "x");
  REQUIRE(r.ok());
  CHECK(r->attempts == 2);
}

TEST_CASE("server lists parse, with clear errors", "[unit][client]") {
  auto ok = client::parse_servers("127.0.0.1:7400,[::1]:7401,im.example:1");
  REQUIRE(ok.ok());
  REQUIRE(ok->size() == 3);
  CHECK((*ok)[0].host == "127.0.0.1");
  CHECK((*ok)[0].port == 7400);
  CHECK((*ok)[1].host == "::1");
  CHECK((*ok)[1].port == 7401);
  CHECK((*ok)[2].host == "im.example");
  for (const char* bad : {"", "host", ":7400", "h:0", "h:65536", "h:99999999999", "h:7x", "a:1,",
                          "::1:7400", "[::1:7400", "a:1,,b:2"}) {
    INFO(bad);
    auto r = client::parse_servers(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("bad server list") == 0);
  }
}

TEST_CASE("a send waiting to retry fails with closed when its client goes", "[unit][client]") {
  std::atomic<int> sends{0};
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    ++sends;
    c.reply(protocol::encode_error(f.request_id(), wire::ErrorCode::Unavailable, "db down", 60000));
  });
  std::promise<client::Result<client::SendAck>> done;
  auto future = done.get_future();
  {
    client::AsyncClient c(options_for(server));
    c.send("bob", "x", 7, [&](client::Result<client::SendAck> r) { done.set_value(std::move(r)); });
    for (int i = 0; i < 500 && sends == 0; ++i) std::this_thread::sleep_for(5ms);
    REQUIRE(sends == 1);
    std::this_thread::sleep_for(50ms);  // the Unavailable is in: the send waits 60 s to retry
  }
  // Answered by the destructor, not dropped.
  REQUIRE(future.wait_for(0s) == std::future_status::ready);
  const auto r = future.get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == client::Error::Kind::closed);
  CHECK(sends == 1);
}

TEST_CASE("a request after close() connects and is answered though a write was in flight",
          "[unit][client]") {
  std::atomic<bool> release{false};
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int connection) {
    if (f.body_type() == wire::Body::Hello) {
      welcome(c, f);
      // The first connection is not read for a while: the client's writes back up.
      while (connection == 1 && !release) std::this_thread::sleep_for(1ms);
      return;
    }
    if (connection == 1) return;  // closed by the client: nothing to answer on
    c.reply(protocol::encode_pong(f.request_id(), f.body_as_Ping()->nonce(), 0));
  });
  client::AsyncClient c(options_for(server));
  std::promise<client::Result<client::Welcome>> welcomed;
  c.connect([&](client::Result<client::Welcome> r) { welcomed.set_value(std::move(r)); });
  REQUIRE(welcomed.get_future().get().ok());
  // Far more than the sockets' buffers hold, in one request: a write stays in flight.
  const std::string big(8u << 20, 'x');
  c.send("bob", big, 1, [](client::Result<client::SendAck>) {});
  std::this_thread::sleep_for(100ms);
  c.close();
  release = true;
  std::promise<client::Result<std::chrono::microseconds>> pong;
  c.ping([&](client::Result<std::chrono::microseconds> r) { pong.set_value(std::move(r)); });
  const auto r = pong.get_future().get();
  INFO((r.ok() ? std::string("ok") : r.error().to_string()));
  CHECK(r.ok());
  CHECK(server.connections() == 2);
}

TEST_CASE("a client destroyed with requests in flight answers each of them (closed)", "[unit][client]") {
  FakeServer server([&](FakeServer::Conn& c, const wire::Frame& f, int) {
    if (f.body_type() == wire::Body::Hello) return welcome(c, f);
    // Never answers anything else.
  });
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> closed{0}, other{0};
    {
      client::AsyncClient c(options_for(server));
      for (int i = 0; i < 50; ++i) {
        c.ping([&](client::Result<std::chrono::microseconds> r) {
          ++(!r.ok() && r.error().kind == client::Error::Kind::closed ? closed : other);
        });
        c.send("bob", "x", 0, [&](client::Result<client::SendAck> r) {
          ++(!r.ok() && r.error().kind == client::Error::Kind::closed ? closed : other);
        });
      }
      // Some rounds end before the connection is up, some after the requests went out.
      std::this_thread::sleep_for(std::chrono::milliseconds(round % 4 * 5));
    }
    INFO("round " << round);
    CHECK(closed == 100);
    CHECK(other == 0);
  }
}
