// Unit: PgJobPool's queue bound, stop, and reconnect back-off, without a
// database (the URL points at a loopback port nothing listens on, so every
// connection attempt is refused at once).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <pthread.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "server/storage/pg_job_pool.hpp"

using namespace im::server;
using namespace std::chrono_literals;

namespace {

/// A PostgreSQL URL on a loopback port that refuses connections.
std::string refused_url() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = a.local_endpoint().port();
  a.close();  // nothing listens there now
  return "postgresql://im@127.0.0.1:" + std::to_string(port) + "/im?connect_timeout=2";
}

struct Outcomes {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<StoreStatus> seen;
  std::vector<bool> had_connection;
  void add(pqxx::connection* conn, const StoreStatus& s) {
    std::lock_guard lock(mu);
    seen.push_back(s);
    had_connection.push_back(conn != nullptr);
    cv.notify_all();
  }
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return seen.size() >= n; });
  }
};

}  // namespace

TEST_CASE("pg job pool: a refused connection is reported, then backed off", "[unit][pool]") {
  std::atomic<int> prepared{0};
  PgJobPool pool(PgJobPoolOptions{.pg = {.url = refused_url()},
                                  .application_name = "im-test",
                                  .threads = 1,
                                  .queue_capacity = 8,
                                  .reconnect_backoff = std::chrono::hours(1),
                                  .prepare = [&](pqxx::connection&) { ++prepared; }});
  pool.start();
  Outcomes out;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(pool.submit([&](pqxx::connection* c, const StoreStatus& s) { out.add(c, s); }) ==
            PgJobPool::Submitted::queued);
  }
  REQUIRE(out.wait_for(3));
  pool.stop();
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK_FALSE(out.had_connection[i]);
    CHECK(out.seen[i].code == StoreCode::unavailable);
  }
  // The first job tried and got the driver's reason; within the back-off the
  // others were told at once, without another attempt.
  CHECK(out.seen[0].message != "database unavailable; retry later");
  CHECK(out.seen[1].message == "database unavailable; retry later");
  CHECK(out.seen[2].message == "database unavailable; retry later");
  CHECK(prepared == 0);
}

TEST_CASE("pg job pool: the queue is bounded, and a stopped pool takes nothing", "[unit][pool]") {
  PgJobPool pool(PgJobPoolOptions{.pg = {.url = refused_url()},
                                  .application_name = "im-test",
                                  .threads = 1,
                                  .queue_capacity = 2,
                                  .reconnect_backoff = 250ms,
                                  .prepare = {}});
  // Not started: nothing is taken off the queue.
  Outcomes out;
  auto job = [&](pqxx::connection* c, const StoreStatus& s) { out.add(c, s); };
  CHECK(pool.submit(job) == PgJobPool::Submitted::queued);
  CHECK(pool.submit(job) == PgJobPool::Submitted::queued);
  CHECK(pool.submit(job) == PgJobPool::Submitted::full);
  // Started and stopped: the queued jobs run before the threads end.
  pool.start();
  pool.stop();
  CHECK(out.seen.size() == 2);
  CHECK(pool.submit(job) == PgJobPool::Submitted::stopped);
}

TEST_CASE("pg job pool: its threads carry the pool's name, for top -H and perf", "[unit][pool]") {
  PgJobPool pool(PgJobPoolOptions{.pg = {.url = refused_url()},
                                  .application_name = "im-test",
                                  .thread_name = "im-unit",
                                  .threads = 1,
                                  .queue_capacity = 8,
                                  .reconnect_backoff = std::chrono::hours(1),
                                  .prepare = {}});
  pool.start();
  std::mutex mu;
  std::condition_variable cv;
  std::string name;
  REQUIRE(pool.submit([&](pqxx::connection*, const StoreStatus&) {
            char buf[16] = {};
            pthread_getname_np(pthread_self(), buf, sizeof buf);
            std::lock_guard lock(mu);
            name = buf;
            cv.notify_all();
          }) == PgJobPool::Submitted::queued);
  std::unique_lock lock(mu);
  REQUIRE(cv.wait_for(lock, 10s, [&] { return !name.empty(); }));
  CHECK(name == "im-unit-0");
  lock.unlock();
  pool.stop();
}
