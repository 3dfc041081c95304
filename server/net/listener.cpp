#include "server/net/listener.hpp"

#include <array>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "protocol/frames.hpp"
#include "server/common/log.hpp"

namespace im::server {
namespace {
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);
}  // namespace

Listener::Listener(std::vector<asio::io_context*> io_contexts,
                   const asio::ip::tcp::endpoint& endpoint, SessionHandler& handler,
                   ListenerLimits limits, std::shared_ptr<asio::ssl::context> tls)
    : io_contexts_(std::move(io_contexts)),
      acceptor_(*io_contexts_.at(0)),
      handler_(handler),
      limits_(limits),
      tls_(std::move(tls)),
      limiter_(limits.max_connections, limits.max_connections_per_address) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  port_ = acceptor_.local_endpoint().port();
}

void Listener::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
}

void Listener::stop_accepting() {
  asio::post(acceptor_.get_executor(), [this] {
    std::error_code ec;
    acceptor_.close(ec);
  });
}

void Listener::shutdown_sessions() {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, weak] : sessions_) {
      if (auto s = weak.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->shutdown();
}

std::size_t Listener::session_count() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

asio::awaitable<void> Listener::accept_loop() {
  for (;;) {
    asio::io_context& io = *io_contexts_[next_io_];
    next_io_ = (next_io_ + 1) % io_contexts_.size();
    auto [ec, socket] = co_await acceptor_.async_accept(io, use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      // EMFILE and friends: log, back off briefly, keep serving.
      if (const auto n = stats_.accept_errors.note()) {
        logs::net().warn("accept failed: {} ({} failure(s) since the last line, {} in all)",
                                 ec.message(), n, stats_.accept_errors.total());
      }
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    std::error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec);
    if (peer_ec) continue;  // gone already (reset before we got to it): just close
    const auto admission = limiter_.try_admit(peer.address());
    if (admission != ConnectionLimiter::Admission::admitted) {
      refuse(std::move(socket), peer.address(), admission);
      continue;
    }
    const std::uint64_t id = next_id_.fetch_add(1);
    logs::net().info("{} accepted from {}:{}", SessionTag{id}, peer.address().to_string(), peer.port());
    auto session = std::make_shared<Session>(
        std::move(socket), tls_.get(), id, handler_, limits_.session, stats_,
        [this, address = peer.address()](std::uint64_t closed_id) {
          {
            std::lock_guard lock(mu_);
            sessions_.erase(closed_id);
          }
          limiter_.release(address);
        });
    {
      std::lock_guard lock(mu_);
      sessions_.emplace(id, session);
    }
    session->start();
  }
}

void Listener::refuse(asio::ip::tcp::socket socket, const asio::ip::address& peer,
                      ConnectionLimiter::Admission why) {
  const bool total = why == ConnectionLimiter::Admission::too_many_total;
  const std::string message =
      total ? fmt::format("too many connections: the server's limit of {} is reached; retry later",
                          limiter_.max_total())
            : fmt::format("too many connections from {}: at most {} per address",
                          peer.to_string(), limiter_.max_per_address());
  LogThrottle& throttle = total ? stats_.rejected_total : stats_.rejected_per_address;
  if (const auto n = throttle.note()) {
    logs::net().warn("refused a connection from {}: {} ({} refused so since the last line, "
                             "{} in all)",
                             peer.to_string(), message, n, throttle.total());
  }
  std::error_code ec;
  if (tls_) {
    // A TLS client cannot read a plain Error, and a handshake per refusal
    // would make a flood cost more: just close.
    socket.close(ec);
    return;
  }
  // The Error goes out without waiting: a new socket's empty send buffer takes
  // it whole. Then FIN, so the client reads the Error before end of stream.
  const auto frame = protocol::encode_error(0, wire::ErrorCode::Busy, message, 1000);
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(frame.data(), frame.size()), ec);
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  // Closing with unread input would send RST, which may destroy the Error
  // before the client reads it: read until the client closes, briefly.
  if (lingering_.fetch_add(1) >= kMaxLingering) {
    lingering_.fetch_sub(1);
    socket.close(ec);
    return;
  }
  auto ex = socket.get_executor();
  asio::co_spawn(ex, drain_and_close(std::move(socket)), asio::detached);
}

asio::awaitable<void> Listener::drain_and_close(asio::ip::tcp::socket socket) {
  // Shared with the timer's handler, which may run after this frame is gone.
  auto sock = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
  asio::steady_timer deadline(sock->get_executor(), kRejectLinger);
  deadline.async_wait([sock](const std::error_code& ec) {
    std::error_code ignored;
    if (!ec) sock->close(ignored);  // cancels the read below
  });
  std::array<std::uint8_t, 1024> sink;
  for (std::size_t drained = 0; drained < 64 * 1024;) {
    auto [ec, n] = co_await sock->async_read_some(asio::buffer(sink), use_nothrow);
    if (ec) break;
    drained += n;
  }
  deadline.cancel();
  std::error_code ignored;
  sock->close(ignored);
  lingering_.fetch_sub(1);
}

}  // namespace im::server
