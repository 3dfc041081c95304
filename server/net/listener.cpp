#include "server/net/listener.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace im::server {

Listener::Listener(std::vector<asio::io_context*> io_contexts,
                   const asio::ip::tcp::endpoint& endpoint, Service& service,
                   SessionLimits limits)
    : io_contexts_(std::move(io_contexts)),
      acceptor_(*io_contexts_.at(0)),
      service_(service),
      limits_(limits) {
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
  constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);
  for (;;) {
    asio::io_context& io = *io_contexts_[next_io_];
    next_io_ = (next_io_ + 1) % io_contexts_.size();
    auto [ec, socket] = co_await acceptor_.async_accept(io, use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      // EMFILE and friends: log, back off briefly, keep serving.
      spdlog::get("net")->warn("accept failed: {}", ec.message());
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    const std::uint64_t id = next_id_.fetch_add(1);
    std::error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec);
    spdlog::get("net")->info("[s{}] accepted from {}:{}", id, peer.address().to_string(), peer.port());
    auto session = std::make_shared<Session>(std::move(socket), id, service_, limits_,
                                             [this](std::uint64_t closed_id) {
                                               std::lock_guard lock(mu_);
                                               sessions_.erase(closed_id);
                                             });
    {
      std::lock_guard lock(mu_);
      sessions_.emplace(id, session);
    }
    session->start();
  }
}

}  // namespace im::server
