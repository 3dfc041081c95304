#pragma once
// Listener: accepts connections and hands each to a Session on one of the I/O
// threads (round robin), and keeps the registry of live sessions so shutdown
// can drain them.
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

#include "server/net/session.hpp"

namespace im::server {

class Listener {
 public:
  /// Binds `endpoint` (port 0 picks a free one) on io_contexts[0]; throws on failure.
  Listener(std::vector<asio::io_context*> io_contexts, const asio::ip::tcp::endpoint& endpoint,
           Service& service, SessionLimits limits);

  void start();
  /// Stops accepting.
  void stop_accepting();
  /// Asks every session to stop reading and close once its responses are out.
  void shutdown_sessions();

  std::uint16_t port() const { return port_; }
  std::size_t session_count() const;

 private:
  asio::awaitable<void> accept_loop();

  std::vector<asio::io_context*> io_contexts_;
  asio::ip::tcp::acceptor acceptor_;
  Service& service_;
  SessionLimits limits_;
  std::uint16_t port_ = 0;
  std::size_t next_io_ = 0;
  std::atomic<std::uint64_t> next_id_{1};
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, std::weak_ptr<Session>> sessions_;
};

}  // namespace im::server
