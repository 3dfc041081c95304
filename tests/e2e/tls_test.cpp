// End-to-end: TLS on the listener (--tls-cert/--tls-key) and in libimclient,
// with certificates made at test time. A real server over real PostgreSQL and
// Redis; every wait is bounded.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/write.hpp>
#include <openssl/ssl.h>

#include "client/client.hpp"
#include "tests/support/expect_frame.hpp"
#include "tests/support/raw_client.hpp"
#include "tests/support/test_certs.hpp"
#include "tests/support/test_server.hpp"

using namespace im;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using im::test::RawClient;
using im::test::TestCerts;
using im::test::TestServer;
using im::test::unique_prefix;

namespace {

std::function<void(server::Config&)> with_tls(const TestCerts& certs,
                                              std::uint32_t handshake_timeout_ms = 10000) {
  return [&certs, handshake_timeout_ms](server::Config& c) {
    c.tls_cert = certs.server_cert;
    c.tls_key = certs.server_key;
    c.handshake_timeout_ms = handshake_timeout_ms;
  };
}

client::Options tls_options(std::uint16_t port, const std::string& ca_file, const std::string& user) {
  client::Options o;
  o.host = "127.0.0.1";
  o.port = port;
  o.user = user;
  o.tls = true;
  o.tls_ca_file = ca_file;
  o.connect_timeout = 5s;
  o.request_timeout = 5s;
  return o;
}

/// A blocking TLS test client on a raw asio::ssl::stream, for what
/// libimclient will not do (old protocol versions, never saying Hello, never
/// answering close_notify). It does not verify the server: these tests are
/// about the server's side. Every operation is bounded by a timeout.
class RawTlsClient {
 public:
  /// `tune` adjusts the client's context before the connection is made.
  explicit RawTlsClient(std::uint16_t port,
                        const std::function<void(asio::ssl::context&)>& tune = {})
      : ctx_(asio::ssl::context::tls_client) {
    ctx_.set_verify_mode(asio::ssl::verify_none);
    if (tune) tune(ctx_);
    stream_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(io_, ctx_);
    stream_->next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
  }

  std::error_code handshake(std::chrono::milliseconds timeout = 5s) {
    return run([this](auto done) { stream_->async_handshake(asio::ssl::stream_base::client, done); },
               timeout);
  }

  std::error_code write(const protocol::OutFrame& f, std::chrono::milliseconds timeout = 5s) {
    return run([&](auto done) { asio::async_write(*stream_, asio::buffer(f.data(), f.size()), done); },
               timeout);
  }

  /// One verified frame, or nullopt with last_error() set (eof: close_notify received).
  std::optional<test::Received> read(std::chrono::milliseconds timeout = 5s) {
    test::Received r;
    r.bytes.resize(protocol::kLengthPrefixBytes);
    error_ = run([&](auto done) { asio::async_read(*stream_, asio::buffer(r.bytes), done); }, timeout);
    if (error_) return std::nullopt;
    const std::uint32_t length = protocol::read_length_prefix(r.bytes);
    if (length == 0 || length > (1u << 20)) throw std::runtime_error("bad frame length from server");
    r.bytes.resize(protocol::kLengthPrefixBytes + length);
    error_ = run(
        [&](auto done) {
          asio::async_read(*stream_, asio::buffer(r.bytes.data() + protocol::kLengthPrefixBytes, length),
                           done);
        },
        timeout);
    if (error_) return std::nullopt;
    std::string why;
    if (!protocol::verify_frame(r.bytes, protocol::response_verify_limits(100000), why)) {
      throw std::runtime_error("server sent a bad frame: " + why);
    }
    return r;
  }
  std::error_code last_error() const { return error_; }

  /// True once the server closes the TCP connection (FIN or reset) within
  /// `timeout`. Reads the socket under TLS directly: call after TLS is done.
  bool tcp_closed_by_server(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const int fd = stream_->next_layer().native_handle();
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      ::pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      std::uint8_t sink[4096];
      const auto n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
      if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR))) return true;
    }
  }

 private:
  /// Starts an operation with a completion handler and runs the I/O context
  /// until it completes or `timeout` passes (then cancels it: timed_out).
  template <typename Start>
  std::error_code run(Start start, std::chrono::milliseconds timeout) {
    auto result = std::make_shared<std::optional<std::error_code>>();
    start([result](const std::error_code& ec, auto&&...) { *result = ec; });
    io_.restart();
    io_.run_for(timeout);
    if (*result) return **result;
    std::error_code ignored;
    stream_->next_layer().cancel(ignored);
    io_.restart();
    io_.run_for(2s);
    return asio::error::timed_out;
  }

  asio::io_context io_;
  asio::ssl::context ctx_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>> stream_;
  std::error_code error_;
};

}  // namespace

TEST_CASE("TLS: send and pull round trip through libimclient", "[e2e][tls]") {
  TestCerts certs;
  TestServer server(with_tls(certs));
  const std::string alice = unique_prefix("alice"), bob = unique_prefix("bob");
  client::Client a(tls_options(server.port(), certs.ca_cert, alice));
  client::Client b(tls_options(server.port(), certs.ca_cert, bob));

  const auto ack = a.send(bob, "over TLS");
  INFO((ack ? "" : ack.error().to_string()));
  REQUIRE(ack);
  CHECK(ack->seq == 1);

  // Pipelined sends (the server gathers their acks into shared writes) and one
  // large body (a pull result spanning several TLS records).
  constexpr int kPipelined = 50;
  std::vector<std::promise<client::Result<client::SendAck>>> acks(kPipelined);
  for (int i = 0; i < kPipelined; ++i) {
    a.async().send(bob, "m" + std::to_string(i), 0,
                   [&acks, i](client::Result<client::SendAck> r) { acks[static_cast<std::size_t>(i)].set_value(std::move(r)); });
  }
  for (auto& p : acks) {
    auto f = p.get_future();
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    REQUIRE(f.get());
  }
  const std::string big(60 * 1024, 'x');
  REQUIRE(a.send(bob, big));

  auto page = b.pull(0, 1000, 0);
  INFO((page ? "" : page.error().to_string()));
  REQUIRE(page);
  REQUIRE(page->messages.size() == kPipelined + 2);
  CHECK(page->messages.front().body == "over TLS");
  CHECK(page->messages.front().sender == alice);
  for (int i = 0; i < kPipelined; ++i) {
    CHECK(page->messages[static_cast<std::size_t>(i) + 1].body == "m" + std::to_string(i));
  }
  CHECK(page->messages.back().body == big);

  // A new connection gets a new TLS session.
  a.close();
  const auto again = a.send(bob, "after reconnect");
  INFO((again ? "" : again.error().to_string()));
  CHECK(again);
}

TEST_CASE("TLS: a plain TCP client gets nothing useful, and the server keeps serving TLS",
          "[e2e][tls]") {
  TestCerts certs;
  TestServer server(with_tls(certs));
  RawClient plain(server.port());
  plain.write(protocol::encode_hello(plain.next_id(), unique_prefix("plain"), "", "plain-test"));
  std::optional<test::Received> reply;
  try {
    reply = plain.read(3s);
  } catch (const std::exception&) {
    // A TLS alert is not a frame either.
  }
  CHECK_FALSE(reply);
  CHECK(plain.closed_by_server(5s));

  // libimclient without TLS says so clearly.
  client::Options o = tls_options(server.port(), "", unique_prefix("plain"));
  o.tls = false;
  o.send_attempts = 1;
  client::Client c(o);
  const auto w = c.connect();
  CHECK_FALSE(w);

  client::Client good(tls_options(server.port(), certs.ca_cert, unique_prefix("good")));
  const auto rtt = good.ping();
  INFO((rtt ? "" : rtt.error().to_string()));
  CHECK(rtt);
}

TEST_CASE("TLS: the client verifies the server's certificate chain and name", "[e2e][tls]") {
  TestCerts certs, other;
  TestServer server(with_tls(certs));
  const std::string user = unique_prefix("verify");

  SECTION("a certificate from another CA is refused") {
    client::Client c(tls_options(server.port(), other.ca_cert, user));
    const auto w = c.connect();
    REQUIRE_FALSE(w);
    CHECK(w.error().kind == client::Error::Kind::connect_failed);
    CHECK_THAT(w.error().to_string(), Contains("certificate verify failed") &&
                                          Contains("unable to get local issuer certificate"));
  }
  SECTION("the system's CAs do not know the test CA") {
    client::Client c(tls_options(server.port(), "", user));
    const auto w = c.connect();
    REQUIRE_FALSE(w);
    CHECK(w.error().kind == client::Error::Kind::connect_failed);
    CHECK_THAT(w.error().message, Contains("certificate verify failed"));
  }
  SECTION("a name the certificate does not carry is refused") {
    client::Options o = tls_options(server.port(), certs.ca_cert, user);
    o.tls_server_name = "im.example.org";
    client::Client c(o);
    const auto w = c.connect();
    REQUIRE_FALSE(w);
    CHECK(w.error().kind == client::Error::Kind::connect_failed);
    CHECK_THAT(w.error().message, Contains("hostname mismatch"));
  }
  SECTION("a name it carries is accepted") {
    client::Options o = tls_options(server.port(), certs.ca_cert, user);
    o.tls_server_name = "localhost";
    client::Client c(o);
    const auto w = c.connect();
    INFO((w ? "" : w.error().to_string()));
    CHECK(w);
  }
  SECTION("an unreadable CA file is a clear connect error") {
    client::Client c(tls_options(server.port(), certs.dir + "/missing-ca.pem", user));
    const auto w = c.connect();
    REQUIRE_FALSE(w);
    CHECK(w.error().kind == client::Error::Kind::connect_failed);
    CHECK_THAT(w.error().message, Contains("missing-ca.pem") && Contains("cannot read"));
  }
}

TEST_CASE("TLS: a TLS client against a plain server fails the handshake clearly", "[e2e][tls]") {
  TestCerts certs;
  TestServer server;
  client::Client c(tls_options(server.port(), certs.ca_cert, unique_prefix("tls2plain")));
  const auto w = c.connect();
  REQUIRE_FALSE(w);
  CHECK(w.error().kind == client::Error::Kind::connect_failed);
  CHECK_THAT(w.error().message, Contains("TLS handshake with 127.0.0.1"));
}

TEST_CASE("TLS: a client that offers at most TLS 1.1 is refused", "[e2e][tls]") {
  TestCerts certs;
  TestServer server(with_tls(certs));
  // Security level 0: this OpenSSL would otherwise refuse to offer TLS 1.1 at
  // all, and the test would prove nothing about the server.
  const auto old_client = [](int max_version) {
    return [max_version](asio::ssl::context& ctx) {
      SSL_CTX_set_security_level(ctx.native_handle(), 0);
      SSL_CTX_set_cipher_list(ctx.native_handle(), "DEFAULT:@SECLEVEL=0");
      SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_VERSION);
      SSL_CTX_set_max_proto_version(ctx.native_handle(), max_version);
    };
  };
  RawTlsClient tls11(server.port(), old_client(TLS1_1_VERSION));
  const auto ec = tls11.handshake();
  REQUIRE(ec);
  // The server's alert, not a local refusal to offer the version.
  CHECK_THAT(ec.message(), Contains("protocol version"));

  // Control: the same client allowed TLS 1.2 gets in.
  RawTlsClient tls12(server.port(), old_client(TLS1_2_VERSION));
  const auto ok = tls12.handshake();
  INFO(ok.message());
  CHECK_FALSE(ok);
}

TEST_CASE("TLS: a TCP client that never starts the handshake is closed by the deadline",
          "[e2e][tls]") {
  TestCerts certs;
  TestServer server(with_tls(certs, 300));
  RawClient silent(server.port());
  CHECK(silent.closed_by_server(5s));
}

TEST_CASE("TLS: the handshake deadline covers Hello, and close_notify is bounded", "[e2e][tls]") {
  TestCerts certs;
  TestServer server(with_tls(certs, 500));
  RawTlsClient c(server.port());
  REQUIRE_FALSE(c.handshake());
  // No Hello: the deadline's Error arrives over TLS, then the server's close_notify.
  const auto r = test::expect_frame(c.read(5s), "fatal Error");
  CHECK(test::error_code_of(r) == wire::ErrorCode::ProtocolError);
  CHECK(r.frame()->request_id() == 0);
  CHECK_FALSE(c.read(5s));
  CHECK(c.last_error() == asio::error::eof);  // a clean TLS close, not a truncation
  // This client never answers close_notify: the server closes TCP anyway.
  CHECK(c.tcp_closed_by_server(5s));
}

TEST_CASE("TLS: garbage instead of a ClientHello closes only that connection", "[e2e][tls]") {
  TestCerts certs;
  TestServer server(with_tls(certs));
  client::Client before(tls_options(server.port(), certs.ca_cert, unique_prefix("before")));
  REQUIRE(before.ping());

  for (const std::string& garbage : {std::string("GET / HTTP/1.1\r\nHost: im\r\n\r\n"),
                                    std::string("\x16\x03\x01\xff\xff") + std::string(64, '\x7f'),
                                    std::string(4096, '\0')}) {
    RawClient raw(server.port());
    raw.write_bytes(std::vector<std::uint8_t>(garbage.begin(), garbage.end()));
    CHECK(raw.closed_by_server(5s));
  }

  const auto still = before.ping();
  INFO((still ? "" : still.error().to_string()));
  CHECK(still);
  client::Client after(tls_options(server.port(), certs.ca_cert, unique_prefix("after")));
  CHECK(after.ping());
}

TEST_CASE("TLS: a connection above --max-connections is closed before any handshake, and "
          "admitted ones keep working",
          "[e2e][tls]") {
  TestCerts certs;
  TestServer server([&certs](server::Config& c) {
    with_tls(certs)(c);
    c.max_connections = 1;
  });
  client::Client first(tls_options(server.port(), certs.ca_cert, unique_prefix("first")));
  REQUIRE(first.ping());
  // The second connection is over the cap: the server closes the TCP
  // connection without a handshake (a TLS client cannot read a plain Error).
  RawTlsClient over(server.port());
  CHECK(over.tcp_closed_by_server(5s));
  client::Options o = tls_options(server.port(), certs.ca_cert, unique_prefix("second"));
  o.send_attempts = 1;
  o.connect_timeout = 2s;
  client::Client second(o);
  CHECK_FALSE(second.connect());
  // The admitted client is unaffected.
  const auto rtt = first.ping();
  INFO((rtt ? "" : rtt.error().to_string()));
  CHECK(rtt);
}
