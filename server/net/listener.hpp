#pragma once
// Listener: accepts connections and hands each to a Session on one of the I/O
// threads (round robin), and keeps the registry of live sessions so shutdown
// can drain them.
//
// Connection caps: a connection above max_connections in total, or above
// max_connections_per_address from its source address, gets one
// Error{busy} (request id 0) and is closed; open connections are unaffected.
// Refusals and session timeouts are counted in stats() and logged at most once
// a second. With TLS (a context given), every session starts with the TLS
// handshake, and a refused connection is closed without the Error (it could
// not read one before a handshake).
//
// Thread-safety: start()/stop() from the owning thread; the session registry is
// locked because sessions close on their own threads.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "server/net/connection_limiter.hpp"
#include "server/net/net_stats.hpp"
#include "server/net/session.hpp"

namespace im::server {

// From listener_limits(Config, open-file limit) (server/app/config.hpp).
struct ListenerLimits {
  SessionLimits session;
  std::size_t max_connections = 0;
  std::size_t max_connections_per_address = 0;  // 0: no per-address cap
};

class Listener {
 public:
  /// A refused connection has this long to read its Error and close before
  /// the server closes it; at most kMaxLingering such wait at once (more are
  /// closed at once after their Error).
  static constexpr std::chrono::milliseconds kRejectLinger{2000};
  static constexpr int kMaxLingering = 256;

  /// Binds `endpoint` (port 0 picks a free one) on io_contexts[0]; throws on
  /// failure. `tls` null: plain TCP.
  Listener(std::vector<asio::io_context*> io_contexts, const asio::ip::tcp::endpoint& endpoint,
           SessionHandler& handler, ListenerLimits limits,
           std::shared_ptr<asio::ssl::context> tls = nullptr);

  void start();
  /// Stops accepting.
  void stop_accepting();
  /// Asks every session to stop reading and close once its responses are out.
  void shutdown_sessions();

  std::uint16_t port() const { return port_; }
  std::size_t session_count() const;
  const NetStats& stats() const { return stats_; }
  /// Connections accepted and admitted since start (refused ones not included).
  std::uint64_t accepted() const { return next_id_.load() - 1; }

 private:
  asio::awaitable<void> accept_loop();
  /// Sends `socket` one Error{busy} saying which cap it hit, then closes it.
  void refuse(asio::ip::tcp::socket socket, const asio::ip::address& peer,
              ConnectionLimiter::Admission why);
  asio::awaitable<void> drain_and_close(asio::ip::tcp::socket socket);

  std::vector<asio::io_context*> io_contexts_;
  asio::ip::tcp::acceptor acceptor_;
  SessionHandler& handler_;
  ListenerLimits limits_;
  std::shared_ptr<asio::ssl::context> tls_;
  ConnectionLimiter limiter_;
  NetStats stats_;
  std::atomic<int> lingering_{0};
  std::uint16_t port_ = 0;
  std::size_t next_io_ = 0;
  std::atomic<std::uint64_t> next_id_{1};
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, std::weak_ptr<Session>> sessions_;
};

}  // namespace im::server
