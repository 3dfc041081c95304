#include "server/net/transport.hpp"

#include <asio/post.hpp>

namespace im::server {

Transport::Transport(Socket socket, asio::ssl::context* tls) : socket_(socket.get_executor()) {
  if (tls) {
    tls_ = std::make_unique<asio::ssl::stream<Socket>>(std::move(socket), *tls);
  } else {
    socket_ = std::move(socket);
  }
}

void Transport::async_handshake(std::function<void(const std::error_code&)> handler) {
  if (!tls_) {
    asio::post(socket_.get_executor(), [h = std::move(handler)] { h(std::error_code{}); });
    return;
  }
  tls_->async_handshake(asio::ssl::stream_base::server,
                        [this, h = std::move(handler)](const std::error_code& ec) {
                          handshake_done_ = !ec;
                          h(ec);
                        });
}

void Transport::close() {
  Socket& s = socket();
  std::error_code ec;
  s.shutdown(Socket::shutdown_both, ec);
  s.close(ec);
  if (close_deadline_) close_deadline_->cancel();
}

void Transport::close_gracefully(std::chrono::milliseconds deadline, std::shared_ptr<void> owner) {
  if (!tls_ || !handshake_done_ || !socket().is_open()) return close();
  // A peer that never answers close_notify (or never reads) must not hold the
  // connection open: the deadline closes it regardless.
  close_deadline_ = std::make_unique<asio::steady_timer>(socket_.get_executor(), deadline);
  close_deadline_->async_wait([this, owner](const std::error_code& ec) {
    if (!ec) close();
  });
  tls_->async_shutdown([this, owner](const std::error_code&) { close(); });
}

}  // namespace im::server
