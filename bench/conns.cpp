// im-bench-conns: opens many connections to one im-server, says Hello on each,
// and holds them idle. Connections are spread over loopback source addresses
// (127.0.0.2, 127.0.0.3, ...) so that their number is not capped by one
// address's ephemeral port range. Prints one JSON line once every connection
// is established (or failed), then holds them for --hold seconds or until
// stdin closes. One thread, no per-connection threads: one process can hold as
// many connections as its file-descriptor limit allows.
#include <sys/resource.h>

#include <array>
#include <chrono>
#include <iostream>
#include <memory>
#include <thread>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"
#include "auth/token.hpp"

using namespace im;

namespace {

struct Holder {
  asio::io_context io{1};
  asio::ip::tcp::endpoint server;
  std::vector<asio::ip::address> sources;
  std::string prefix;
  /// The deployment's keys (IM_AUTH_SECRET), when the server checks tokens.
  std::shared_ptr<const auth::KeyRing> keys = auth::KeyRing::from_file_or_env("");
  std::size_t total = 0, started = 0, held = 0, failed = 0, in_progress = 0;
  std::size_t window = 256;  // connects in flight at once
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> sockets;
  std::string first_error;

  struct Conn {
    asio::ip::tcp::socket* socket;
    protocol::OutFrame hello;
    std::array<std::uint8_t, 4> prefix{};
    std::vector<std::uint8_t> frame;
  };

  void fill_window() {
    while (started < total && in_progress < window) start_one(started++);
  }

  void done_one(bool ok, const std::string& why) {
    --in_progress;
    if (ok) {
      ++held;
    } else {
      ++failed;
      if (first_error.empty()) first_error = why;
    }
    fill_window();
  }

  void start_one(std::size_t i) {
    ++in_progress;
    sockets.push_back(std::make_unique<asio::ip::tcp::socket>(io));
    auto c = std::make_shared<Conn>();
    c->socket = sockets.back().get();
    std::error_code ec;
    c->socket->open(asio::ip::tcp::v4(), ec);
    if (!ec) c->socket->bind({sources[i % sources.size()], 0}, ec);
    if (ec) return done_one(false, "open/bind: " + ec.message());
    const std::string user = prefix + "-" + std::to_string(i);
    const std::string token =
        keys ? auth::issue_token(keys->signing_key(), user, auth::unix_now_s() + 3600) : "";
    c->hello = protocol::encode_hello(1, user, token, "im-bench-conns/0.1");
    c->socket->async_connect(server, [this, c](const std::error_code& e) {
      if (e) return done_one(false, "connect: " + e.message());
      asio::async_write(*c->socket, asio::buffer(c->hello.data(), c->hello.size()),
                        [this, c](const std::error_code& e2, std::size_t) {
                          if (e2) return done_one(false, "write: " + e2.message());
                          read_welcome(c);
                        });
    });
  }

  void read_welcome(const std::shared_ptr<Conn>& c) {
    asio::async_read(*c->socket, asio::buffer(c->prefix), [this, c](const std::error_code& e, std::size_t) {
      if (e) return done_one(false, "read: " + e.message());
      const std::uint32_t len = protocol::read_length_prefix(c->prefix);
      if (len > (1u << 20)) return done_one(false, "oversized answer");
      c->frame.assign(c->prefix.begin(), c->prefix.end());
      c->frame.resize(4 + len);
      asio::async_read(*c->socket, asio::buffer(c->frame.data() + 4, len),
                       [this, c](const std::error_code& e2, std::size_t) {
                         if (e2) return done_one(false, "read: " + e2.message());
                         std::string why;
                         const wire::Frame* f = protocol::verify_frame(c->frame, {}, why);
                         if (!f || f->body_type() != wire::Body::Welcome) {
                           return done_one(false, f && f->body_type() == wire::Body::Error && f->body_as_Error()->message()
                                                      ? "refused: " + f->body_as_Error()->message()->str()
                                                      : "no Welcome " + why);
                         }
                         done_one(true, "");
                       });
    });
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"im-bench-conns: hold many idle, hello'd connections to an im-server"};
  std::string host = "127.0.0.1";
  std::uint16_t port = 7400;
  std::size_t count = 1000;
  int addresses = 8;
  double hold_s = 60;
  Holder h;
  h.prefix = "hold";
  app.add_option("--host", host, "server address")->capture_default_str();
  app.add_option("--port", port, "server port")->capture_default_str();
  app.add_option("--count", count, "connections to open")->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--source-addresses", addresses, "spread over 127.0.0.2 ... 127.0.0.(1+N)")
      ->capture_default_str()->check(CLI::Range(1, 250));
  app.add_option("--hold", hold_s, "seconds to hold them (stdin closing ends it earlier)")->capture_default_str();
  app.add_option("--user-prefix", h.prefix, "user ids are PREFIX-i")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // One descriptor per connection: take what the hard limit allows.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  std::error_code ec;
  h.server = {asio::ip::make_address(host, ec), port};
  if (ec) {
    std::cerr << "im-bench-conns: bad --host " << host << "\n";
    return 2;
  }
  for (int i = 0; i < addresses; ++i) {
    h.sources.push_back(asio::ip::make_address_v4(0x7F000002u + static_cast<unsigned>(i)));
  }
  h.total = count;
  h.sockets.reserve(count);
  const auto start = std::chrono::steady_clock::now();
  h.fill_window();
  while (h.held + h.failed < h.total) h.io.run_one();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << nlohmann::json{{"requested", count},   {"held", h.held},       {"failed", h.failed},
                              {"seconds", seconds},   {"fd_limit", lim.rlim_cur},
                              {"first_error", h.first_error}}
                   .dump()
            << std::endl;
  // Hold: until --hold passes or stdin is closed (bench/run closes it).
  std::thread stdin_watch([] {
    std::string line;
    while (std::getline(std::cin, line)) {
    }
  });
  stdin_watch.detach();
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long>(hold_s * 1000));
  while (std::chrono::steady_clock::now() < until && std::cin.good()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return h.failed == 0 ? 0 : 1;
}
