#include "server/storage/pg_job_pool.hpp"

#include "server/common/thread_name.hpp"

namespace im::server {

PgJobPool::PgJobPool(PgJobPoolOptions options) : options_(std::move(options)) {}

PgJobPool::~PgJobPool() { stop(); }

void PgJobPool::start() {
  for (std::size_t i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this, i] {
      name_this_thread(options_.thread_name + "-" + std::to_string(i));
      worker();
    });
  }
}

void PgJobPool::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

PgJobPool::Submitted PgJobPool::submit(Job job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Submitted::stopped;
    if (jobs_.size() >= options_.queue_capacity) return Submitted::full;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return Submitted::queued;
}

void PgJobPool::worker() {
  std::unique_ptr<pqxx::connection> conn;
  auto retry_at = std::chrono::steady_clock::time_point{};
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    StoreStatus status;
    if (!conn || !conn->is_open()) {
      conn.reset();
      if (std::chrono::steady_clock::now() < retry_at) {
        status = {StoreCode::unavailable, "database unavailable; retry later"};
      } else {
        try {
          conn = open_pg_session(options_.pg, options_.application_name.c_str());
          if (options_.prepare) options_.prepare(*conn);
        } catch (...) {
          status = classify_pg_exception(std::current_exception());
          conn.reset();
          retry_at = std::chrono::steady_clock::now() + options_.reconnect_backoff;
        }
      }
    }
    job(status.ok() ? conn.get() : nullptr, status);
    if (conn && !conn->is_open()) conn.reset();
  }
}

}  // namespace im::server
