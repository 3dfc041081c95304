#pragma once
// PgJobPool: a few threads, each with its own PostgreSQL connection, running
// jobs from one bounded queue. The reader pool (Pull, History) and the account
// store (Register, Login) are built on it.
//
// Each thread opens its connection on first use (then runs `prepare` on it) and
// again after it was lost, but not sooner than `reconnect_backoff` after a
// failed attempt: meanwhile jobs get no connection and the reason, at once,
// instead of each waiting for a connect timeout.
//
// Thread-safety: submit() from any thread; jobs run on the pool's threads.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/service/store.hpp"
#include "server/storage/pg_session.hpp"

namespace im::server {

struct PgJobPoolOptions {
  PgSessionOptions pg;
  std::string application_name;  // what PostgreSQL shows for these connections
  std::string thread_name = "im-pg";  // its threads are named <thread_name>-<n>
  std::size_t threads = 1;
  std::size_t queue_capacity = 64;
  std::chrono::milliseconds reconnect_backoff{250};
  /// Runs on each new connection (prepared statements); may throw.
  std::function<void(pqxx::connection&)> prepare;
};

class PgJobPool {
 public:
  /// `conn` is the thread's open connection, or null with `status` saying why.
  /// A job that finds the connection broken may close it (disconnect()): the
  /// thread opens a new one for the next job.
  using Job = std::function<void(pqxx::connection* conn, const StoreStatus& status)>;
  enum class Submitted { queued, full, stopped };

  explicit PgJobPool(PgJobPoolOptions options);
  ~PgJobPool();
  PgJobPool(const PgJobPool&) = delete;
  PgJobPool& operator=(const PgJobPool&) = delete;

  void start();
  /// Runs the queued jobs, then joins the threads.
  void stop();
  Submitted submit(Job job);

 private:
  void worker();

  const PgJobPoolOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace im::server
