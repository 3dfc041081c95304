#pragma once
// Transport: the byte stream under a Session, a TCP socket or TLS over one.
//
// It is an AsyncReadStream and AsyncWriteStream, so asio::async_read and
// asio::async_write work on it. Plain TCP (the default) costs one branch per
// read_some/write_some over using the socket directly: no copy, no allocation,
// and no TLS state is created. With TLS, handshake() must complete before the
// first read or write; at most one read and one write may be pending at a time
// (as with asio::ssl::stream).
//
// Closing: close() closes the socket at once (pending operations complete
// with operation_aborted). close_gracefully() sends TLS close_notify and waits
// for the peer's, but never longer than its deadline; then it closes.
//
// Thread-safety: none; use it on its socket's executor only.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <system_error>
#include <utility>

#include <asio/async_result.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>

namespace im::server {

class Transport {
 public:
  using Socket = asio::ip::tcp::socket;
  using executor_type = Socket::executor_type;

  /// Plain TCP when `tls` is null; else the server side of TLS with that
  /// context, which must outlive the Transport.
  Transport(Socket socket, asio::ssl::context* tls);
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  bool is_tls() const { return tls_ != nullptr; }
  /// The TCP socket (for options, shutdown of one direction, the peer address).
  Socket& socket() { return tls_ ? tls_->next_layer() : socket_; }
  executor_type get_executor() { return socket_.get_executor(); }

  /// TLS: performs the server side of the handshake, then calls `handler`
  /// with its outcome, whose error carries OpenSSL's reason ("wrong version
  /// number", ...). Plain TCP: calls it (posted) with success.
  void async_handshake(std::function<void(const std::error_code&)> handler);

  template <typename MutableBufferSequence, typename Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [this](auto handler, const MutableBufferSequence& b) {
          if (tls_) {
            tls_->async_read_some(b, std::move(handler));
          } else {
            socket_.async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  template <typename ConstBufferSequence, typename Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [this](auto handler, const ConstBufferSequence& b) {
          if (tls_) {
            tls_->async_write_some(b, std::move(handler));
          } else {
            socket_.async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  /// Closes the socket now. Idempotent.
  void close();
  /// TLS after a completed handshake: sends close_notify, then closes once
  /// the peer answers or `deadline` passes, whichever is first. Otherwise
  /// close(). Call only while no write is pending; `owner` keeps whatever owns
  /// this Transport alive until it has closed.
  void close_gracefully(std::chrono::milliseconds deadline, std::shared_ptr<void> owner);

 private:
  // With TLS the stream owns the socket and socket_ stays empty.
  Socket socket_;
  std::unique_ptr<asio::ssl::stream<Socket>> tls_;
  std::unique_ptr<asio::steady_timer> close_deadline_;  // only during close_gracefully()
  bool handshake_done_ = false;
};

}  // namespace im::server
