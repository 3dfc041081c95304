#pragma once
// Server: wires configuration to the parts and runs them. Used by main() and
// by the end-to-end tests, which run a whole server in-process on port 0.
//
// start() connects to PostgreSQL (migrating the schema), starts the writer,
// the reader pool and the I/O threads, and begins accepting. stop() drains:
// stop accepting, stop reading requests, commit and ack every queued send,
// answer pending long polls, close connections, join threads.
//
// Thread-safety: start()/stop() from one thread.

#include <asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "server/app/config.hpp"
#include "server/app/stats.hpp"

namespace im::server {

class ShardedWriter;
class PgReaderPool;
class PgAccountStore;
class Waiters;
class RedisCommitBus;
class Service;
class Listener;

class Server {
 public:
  explicit Server(Config config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Throws std::runtime_error when a backend cannot be reached or the port
  /// cannot be bound.
  void start();
  void stop();

  std::uint16_t port() const;
  const Config& config() const { return config_; }
  ShardedWriter& writer() { return *writer_; }
  PgReaderPool& reader() { return *reader_; }
  Service& service() { return *service_; }
  /// Long polls waiting now (for tests and diagnostics).
  std::size_t long_polls() const;
  /// Open connections now (for tests and diagnostics).
  std::size_t sessions() const;
  /// Every counter and gauge, gathered now (any thread, while started; the
  /// connection counters read zero once stop() has run).
  ServerStats stats() const;

 private:
  Config config_;
  std::unique_ptr<Waiters> waiters_;
  std::unique_ptr<RedisCommitBus> bus_;
  std::unique_ptr<ShardedWriter> writer_;
  std::unique_ptr<PgReaderPool> reader_;
  std::unique_ptr<PgAccountStore> accounts_;
  std::unique_ptr<Service> service_;
  std::vector<std::unique_ptr<asio::io_context>> io_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> io_threads_;
  std::unique_ptr<Listener> listener_;
  bool running_ = false;
};

}  // namespace im::server
