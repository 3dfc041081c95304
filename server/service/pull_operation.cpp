#include "server/service/pull_operation.hpp"

#include <asio/post.hpp>

#include "protocol/frames.hpp"
#include "server/service/service.hpp"

namespace im::server {

PullOperation::PullOperation(Service& service, std::shared_ptr<Connection> conn,
                             std::uint64_t request_id, PullQuery query,
                             std::chrono::milliseconds wait)
    : service_(service),
      conn_(std::move(conn)),
      request_id_(request_id),
      query_(std::move(query)),
      deadline_(std::chrono::steady_clock::now() + wait),
      timer_(conn_->executor()) {}

void PullOperation::start() {
  if (deadline_ > std::chrono::steady_clock::now()) {
    // Register before the first query, so a commit between the query and the
    // wait cannot be missed.
    std::weak_ptr<PullOperation> weak = weak_from_this();
    auto ex = conn_->executor();
    ticket_ = service_.waiters().add(query_.owner, [weak, ex] {
      asio::post(ex, [weak] {
        if (auto self = weak.lock()) self->on_wake();
      });
    });
  }
  query();
}

void PullOperation::query() {
  state_ = State::querying;
  woken_ = false;
  auto self = shared_from_this();
  service_.reader().pull(query_, [self](const StoreStatus& status, PullPage&& page) {
    auto ex = self->conn_->executor();
    asio::post(ex, [self, status, page = std::move(page)]() mutable {
      self->on_result(status, std::move(page));
    });
  });
}

void PullOperation::on_result(const StoreStatus& status, PullPage&& page) {
  if (state_ == State::done) return;
  if (!status.ok()) {
    state_ = State::done;
    if (ticket_) service_.waiters().remove(query_.owner, ticket_);
    timer_.cancel();
    conn_->respond(protocol::encode_error(request_id_, to_error_code(status.code), status.message,
                                          status.code == StoreCode::ok ? 0 : 200));
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (!page.messages.empty() || page.next_after_seq != query_.after_seq || now >= deadline_ ||
      service_.shutting_down() || conn_->closing) {
    return finish(std::move(page));
  }
  if (woken_) return query();
  state_ = State::waiting;
  auto at = deadline_;
  if (page.gap_pending) {
    at = std::min(at, now + std::chrono::milliseconds(service_.limits().gap_recheck_ms));
  }
  arm_timer(at);
}

void PullOperation::on_wake() {
  if (state_ == State::querying) {
    woken_ = true;
  } else if (state_ == State::waiting) {
    ++timer_generation_;
    timer_.cancel();
    query();
  }
}

void PullOperation::arm_timer(std::chrono::steady_clock::time_point at) {
  const std::uint64_t generation = ++timer_generation_;
  timer_.expires_at(at);
  auto self = shared_from_this();
  timer_.async_wait([self, generation](const std::error_code&) {
    if (self->state_ != State::waiting || generation != self->timer_generation_) return;
    self->query();  // at the deadline this answers with whatever is there
  });
}

void PullOperation::finish(PullPage&& page) {
  state_ = State::done;
  if (ticket_) service_.waiters().remove(query_.owner, ticket_);
  ++timer_generation_;
  timer_.cancel();
  conn_->respond(protocol::encode_pull_result(request_id_, page.messages, page.next_after_seq,
                                              page.has_more));
}

}  // namespace im::server
