#pragma once
// RedisCommitBus: tells long polls in every im-server process which inboxes a
// commit changed.
//
// notify() (called by the writer thread after each commit) hands the batch to
// the local Waiters at once and publishes its inboxes on the Redis channel
// "im:commits"; a subscriber thread wakes local waiters for commits made by
// other processes (by name only: those waiters query). Publishing runs on the
// bus's own thread: the writer only queues the names, so a slow Redis round
// trip never delays the next batch; names queued while a PUBLISH is in flight
// go out together in the next one. Messages carry the publishing process's instance id so a
// process ignores its own. Best effort: if Redis is down, remote long polls
// still answer by their deadline (and readers re-check while a gap is pending).
//
// Thread-safety: notify() from any thread (the writer); start()/stop() from
// the owner.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/common/log_throttle.hpp"
#include "server/service/store.hpp"
#include "server/storage/redis_seq.hpp"

struct redisContext;
struct redisReply;

namespace im::server {

class RedisCommitBus final : public CommitListener {
 public:
  RedisCommitBus(RedisEndpoint endpoint, CommitListener& local);
  ~RedisCommitBus() override;

  void start();
  void stop();

  void notify(const std::shared_ptr<const CommittedBatch>& batch) override;

  /// What the bus has done, for the stats snapshot.
  struct Stats {
    std::uint64_t remote_notifications = 0;  // commits announced by other processes
    std::uint64_t subscriptions = 0;         // SUBSCRIBEs that succeeded (1 at start)
    std::uint64_t subscriptions_lost = 0;    // a subscription that broke
    std::uint64_t resyncs = 0;               // local waiters told to query again
    std::uint64_t publish_failures = 0;      // PUBLISHes not sent (Redis down or broke)
  };
  Stats stats() const;

 private:
  void subscribe_loop();
  void publish_loop();
  void publish(const std::string& names);
  void handle_message(const redisReply* reply);
  redisContext* publisher();

  RedisEndpoint endpoint_;
  CommitListener& local_;
  std::string instance_;
  struct Free {
    void operator()(redisContext* c) const;
  };
  std::unique_ptr<redisContext, Free> pub_;
  std::chrono::steady_clock::time_point pub_retry_at_{};
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> remote_{0};
  std::atomic<std::uint64_t> subscriptions_{0};
  std::atomic<std::uint64_t> lost_{0};
  std::atomic<std::uint64_t> resyncs_{0};
  LogThrottle connect_failures_{std::chrono::seconds(10)};
  LogThrottle publish_failures_{std::chrono::seconds(10)};
  std::thread subscriber_;
  std::thread publisher_;
  std::mutex pub_mu_;
  std::condition_variable pub_cv_;
  std::string pub_pending_;  // " name name ...", guarded by pub_mu_
  bool pub_stopping_ = false;  // guarded by pub_mu_
};

}  // namespace im::server
