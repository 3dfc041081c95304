#pragma once
// PullOperation: one Pull request, including its long poll.
//
// Runs a query; if nothing is deliverable and the request may wait, it stays
// registered in Waiters and runs again when the writer commits to this inbox
// (or, while a gap from another writer is pending, every gap_recheck_ms), and
// answers empty at the deadline. Every step runs on the connection's executor,
// so the operation's state needs no lock.

#include <chrono>
#include <cstdint>
#include <memory>

#include <asio/steady_timer.hpp>

#include "server/service/connection.hpp"
#include "server/service/store.hpp"

namespace im::server {

class Service;

class PullOperation : public std::enable_shared_from_this<PullOperation> {
 public:
  PullOperation(Service& service, std::shared_ptr<Connection> conn, std::uint64_t request_id,
                PullQuery query, std::chrono::milliseconds wait);
  void start();

 private:
  enum class State { querying, waiting, done };
  void query();
  void on_result(const StoreStatus& status, PullPage&& page);
  void on_wake();
  void arm_timer(std::chrono::steady_clock::time_point at);
  void finish(PullPage&& page);

  Service& service_;
  std::shared_ptr<Connection> conn_;
  std::uint64_t request_id_;
  PullQuery query_;
  std::chrono::steady_clock::time_point deadline_;
  asio::steady_timer timer_;
  State state_ = State::querying;
  bool woken_ = false;  // a commit arrived while a query was running
  std::uint64_t ticket_ = 0;
  std::uint64_t timer_generation_ = 0;
};

}  // namespace im::server
