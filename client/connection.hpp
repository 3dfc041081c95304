#pragma once
// Connection: the client's transport to the server, one connection after
// another. It connects (resolve, TCP, then the TLS handshake with the
// server's certificate verified), reads frames and hands each over, and
// writes a queue of frames in gathered batches. After a failure the next
// connection goes to the next endpoint in turn ({host, port}, then
// Options::failover) and not before a backoff that doubles up to
// backoff_max; the session's establishment (Welcome) ends the backoff.
//
// It knows nothing of requests or of the protocol's session: what a frame
// means is the Events' business. One Connection object lives as long as the
// client; `generation()` tells its connections apart.
//
// The connect timeout spans everything up to established(): resolve, TCP,
// TLS and the session's greeting (Hello/Welcome).
//
// Lifetime: the rule at the top of async_client.cpp. Handlers hold a weak_ptr
// to the Connection; an in-flight TLS operation also holds its stream, so a
// stale completion (after a reconnect) finds the stream it ran on.
//
// Thread-safety: none; every call and every handler runs on the client's I/O
// thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>

#include "client/client.hpp"
#include "protocol/frames.hpp"

namespace im::client {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Clock = std::chrono::steady_clock;

  enum class State {
    idle,         // no connection; open() makes one
    connecting,   // waiting out the backoff, resolving, connecting, TLS handshake
    open,         // the transport is up: the session's greeting may be written
    established,  // the session is up (established() was called)
  };

  /// What the owner is told. Each is called from a handler of this object's;
  /// none after close().
  struct Events {
    std::function<void()> opened;                   // the transport is up
    std::function<void(const wire::Frame&)> frame;  // each verified frame, in order
    std::function<void(const Error&)> failed;       // connecting failed or the connection was lost
  };

  static std::shared_ptr<Connection> create(asio::io_context& io, Options options, Events events);

  State state() const { return state_; }
  /// Changes with every connection made and every one dropped: a handler that
  /// saw another generation is stale.
  std::uint64_t generation() const { return generation_; }
  /// When a write last completed (the keep-alive's idle clock).
  Clock::time_point last_write() const { return last_write_; }

  /// From idle: connects to the current endpoint once the backoff has passed.
  /// Otherwise nothing.
  void open();
  /// The session is up: the connect timeout and the backoff end, and the idle
  /// clock starts.
  void established();
  /// Queues a frame, written once the transport is up; flush() starts writing.
  void enqueue(protocol::OutFrame frame);
  void flush();
  /// Drops the connection, if any, as failed: the backoff grows, the next
  /// connection goes to the next endpoint, and Events::failed gets `e`.
  void fail(const Error& e);
  /// Drops the connection, if any, without failure and without telling: the
  /// backoff and the endpoint stay.
  void close();

 private:
  using TlsStream = asio::ssl::stream<asio::ip::tcp::socket>;

  Connection(asio::io_context& io, Options options, Events events);

  /// The TCP socket of the current connection.
  asio::ip::tcp::socket& lowest() { return tls_ ? tls_->next_layer() : socket_; }
  Endpoint current_endpoint() const;
  /// True if a handler of connection `gen` (still connecting) is current.
  bool connecting(std::uint64_t gen) const { return gen == generation_ && state_ == State::connecting; }

  void connect();
  void start_connect_timer(std::uint64_t gen);
  void on_resolved(std::uint64_t gen, const Endpoint& ep, asio::ip::tcp::resolver::results_type results);
  void start_tls(std::uint64_t gen, const Endpoint& ep);
  void on_transport_up(std::uint64_t gen);
  /// Ends the current connection (if any): later completions of its
  /// operations are stale, what was queued for it is dropped.
  void drop();

  void start_write();
  void on_written(const std::error_code& ec);
  void start_read(std::uint64_t gen);
  void on_read(std::uint64_t gen, const std::error_code& ec, std::size_t n);
  /// Hands over every complete frame in the read buffer; false if the
  /// connection was dropped meanwhile (by a bad frame or by the owner).
  bool drain_frames();

  asio::io_context& io_;
  const Options opt_;
  const Events events_;
  asio::ip::tcp::socket socket_;
  std::unique_ptr<asio::ssl::context> tls_ctx_;  // made at the first TLS connect
  // The connection's TLS stream; it owns the socket (moved from `socket_`).
  std::shared_ptr<TlsStream> tls_;
  asio::steady_timer connect_timer_;
  State state_ = State::idle;
  std::uint64_t generation_ = 0;
  std::chrono::milliseconds backoff_{0};
  Clock::time_point next_connect_at_{};
  std::size_t endpoint_index_ = 0;  // 0: {opt_.host, opt_.port}; i: opt_.failover[i - 1]
  std::deque<protocol::OutFrame> write_queue_;
  bool writing_ = false;
  Clock::time_point last_write_{};
  std::vector<std::uint8_t> rbuf_;
  std::size_t rbuf_used_ = 0;
  std::vector<std::uint8_t> aligned_;  // a misaligned frame's copy, while it is handed over
};

}  // namespace im::client
