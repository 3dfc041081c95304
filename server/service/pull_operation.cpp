#include "server/service/pull_operation.hpp"

#include <algorithm>
#include <utility>

#include <asio/post.hpp>

#include "protocol/frames.hpp"
#include "protocol/page_size.hpp"
#include "server/service/service_context.hpp"

namespace im::server {

PullOperation::PullOperation(ServiceContext& ctx, std::shared_ptr<Connection> conn,
                             std::uint64_t request_id, PullQuery query,
                             std::chrono::milliseconds wait)
    : ctx_(ctx),
      conn_(std::move(conn)),
      request_id_(request_id),
      query_(std::move(query)),
      deadline_(std::chrono::steady_clock::now() + wait),
      timer_(conn_->executor()) {}

PullOperation::~PullOperation() {
  // Let go without an answer: its query was waiting in the ReadGate when the
  // connection closed, and the gate dropped it (with the last reference). Its
  // registration must not outlive it. Through a handle: this may be freed
  // after the service (by a read pool stopped later).
  if (ticket_ && state_ != State::done) Waiters::remove(waiters_, query_.owner, ticket_);
}

void PullOperation::start() {
  if (deadline_ > std::chrono::steady_clock::now()) {
    // Register before the first query, so a commit between the query and the
    // wait cannot be missed.
    std::weak_ptr<PullOperation> weak = weak_from_this();
    auto ex = conn_->executor();
    // The connection ends this wait if it closes first.
    auto& waits = conn_->state().waits;
    std::erase_if(waits, [](const std::weak_ptr<PendingWait>& w) { return w.expired(); });
    waits.push_back(weak);
    const auto added = ctx_.waiters.add(
        query_.owner, [weak, ex](const std::shared_ptr<const CommittedBatch>& batch,
                                 std::size_t inbox, std::uint64_t notified) {
          asio::post(ex, [weak, batch, inbox, notified]() mutable {
            if (auto self = weak.lock()) self->on_wake(std::move(batch), inbox, notified);
          });
        });
    ticket_ = added.ticket;
    waiters_ = ctx_.waiters.handle();
    if (Waiters::quiet(conn_->state().inbox_mark.get(), query_.owner, query_.after_seq, added.notified)) {
      // The last answer left this cursor with nothing after it, and no commit
      // to the inbox was notified since: a query would find nothing. Any
      // commit from now on wakes this registration.
      ctx_.waiters.count_quiet_start();
      known_ = added.notified;
      state_ = State::waiting;
      return arm_timer(deadline_);
    }
  }
  query();
}

void PullOperation::query() {
  state_ = State::querying;
  woken_ = false;
  woken_batch_.reset();
  known_.reset();
  // The page's worst case is reserved before PostgreSQL is asked (ReadGate);
  // the query may wait here for the client to read what it was sent.
  const auto& limits = ctx_.limits;
  const std::size_t worst =
      protocol::worst_page_bytes(query_.limit, limits.max_body_bytes, limits.max_page_bytes);
  auto self = shared_from_this();
  ctx_.reads.submit(
      *conn_, worst, [self, worst] { self->send_query(worst); },
      [self] {
        self->on_result({StoreCode::busy, "the server's memory for responses is in use "
                                          "(--max-response-bytes); retry later"},
                        PullPage{});
      });
}

void PullOperation::send_query(std::size_t reserved) {
  reserved_ = reserved;
  // Read while registered: the inbox stays tracked, so the count is comparable.
  if (ticket_) query_notified_ = ctx_.waiters.notified(query_.owner);
  query_.max_bytes = ctx_.limits.max_page_bytes;
  if (!query_.cancelled) query_.cancelled = ctx_.reads.cancel_token(*conn_);
  auto self = shared_from_this();
  ctx_.reader.pull(query_, [self](const StoreStatus& status, PullPage&& page) {
    auto ex = self->conn_->executor();
    asio::post(ex, [self, status, page = std::move(page)]() mutable {
      self->on_result(status, std::move(page));
    });
  });
}

bool PullOperation::may_wait() const {
  return std::chrono::steady_clock::now() < deadline_ && !ctx_.shutting_down() &&
         !conn_->closing();
}

void PullOperation::on_result(const StoreStatus& status, PullPage&& page) {
  // The reservation goes back once the answer (if any) is queued, so that
  // nothing else starts in between: then the connection's waiting reads may go.
  struct Release {
    PullOperation& op;
    std::size_t bytes;
    ~Release() {
      if (bytes == 0) return;
      op.ctx_.reads.release(*op.conn_, bytes);
      op.ctx_.reads.pump(*op.conn_);
    }
  } release{*this, std::exchange(reserved_, 0)};
  if (state_ == State::done) return;
  if (conn_->closed()) {
    // Nobody would receive it: the page is freed unencoded.
    state_ = State::done;
    if (ticket_) ctx_.waiters.remove(query_.owner, ticket_);
    timer_.cancel();
    return;
  }
  if (!status.ok()) {
    state_ = State::done;
    if (ticket_) ctx_.waiters.remove(query_.owner, ticket_);
    conn_->state().inbox_mark.reset();
    timer_.cancel();
    conn_->respond(protocol::encode_error(request_id_, to_error_code(status.code), status.message,
                                          status.code == StoreCode::ok ? 0 : 200));
    return;
  }
  const bool nothing = page.messages.empty() && page.next_after_seq == query_.after_seq;
  // The page holds everything committed past the cursor as of the query's count.
  std::optional<std::uint64_t> complete;
  if (ticket_ && !page.has_more && !page.gap_pending) complete = query_notified_;
  if (nothing && woken_batch_) {
    // A commit to this inbox landed while the query ran and the query did not
    // see it; its run starts right after the cursor, so it is the answer
    // (complete if it was the only notification since the query was sent).
    const auto batch = std::move(woken_batch_);
    std::optional<std::uint64_t> after_batch;
    if (complete && woken_notified_ == *complete + 1) after_batch = woken_notified_;
    if (answer_from(batch, woken_inbox_, after_batch)) return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (page.messages.empty() && !nothing && may_wait()) {
    // Only tombstones past the cursor (seqs of failed writes, or seqs left
    // unused beside another process's allocation):
    // a long poll is not answered with nothing. Its cursor moves past them and
    // it waits on for a message (the answer at the deadline carries the moved
    // cursor).
    query_.after_seq = page.next_after_seq;
    if (page.has_more || woken_) return query();
    state_ = State::waiting;
    known_ = complete;
    return arm_timer(page.gap_pending
                         ? std::min(deadline_, now + std::chrono::milliseconds(
                                                         ctx_.limits.gap_recheck_ms))
                         : deadline_);
  }
  if (!nothing || !may_wait()) {
    return finish(page.messages, page.next_after_seq, page.has_more, false, complete);
  }
  if (woken_) return query();
  state_ = State::waiting;
  known_ = complete;
  auto at = deadline_;
  if (page.gap_pending) {
    at = std::min(at, now + std::chrono::milliseconds(ctx_.limits.gap_recheck_ms));
  }
  arm_timer(at);
}

void PullOperation::on_wake(std::shared_ptr<const CommittedBatch> batch, std::size_t inbox,
                            std::uint64_t notified) {
  if (state_ != State::done) woken_any_ = true;
  if (state_ == State::querying) {
    // The cursor cannot move while querying, so a batch that matches now
    // still matches when the result arrives; keep the first one.
    if (!woken_batch_ && batch && batch->inboxes[inbox].first_seq == query_.after_seq + 1) {
      woken_batch_ = std::move(batch);
      woken_inbox_ = inbox;
      woken_notified_ = notified;
    }
    woken_ = true;
  } else if (state_ == State::waiting) {
    // Complete when this is the first notification since the inbox was known
    // empty past the cursor (wakes are posted, and may arrive out of order).
    std::optional<std::uint64_t> complete;
    if (known_ && notified == *known_ + 1) complete = notified;
    if (batch && answer_from(batch, inbox, complete)) return;
    ++timer_generation_;
    timer_.cancel();
    query();
  }
  // done: answered already (by a query, an earlier batch or the deadline).
}

bool PullOperation::answer_from(const std::shared_ptr<const CommittedBatch>& batch,
                                std::size_t inbox, std::optional<std::uint64_t> complete) {
  const auto page = page_from_commit(*batch, batch->inboxes[inbox], query_.after_seq, query_.limit,
                                     ctx_.limits.max_page_bytes);
  if (!page) return false;
  if (page->has_more) complete.reset();  // the rest of the run is past the answer
  if (page->messages.empty() && may_wait()) {
    // The commit wrote only tombstones to this inbox (a key a concurrent
    // writer stored first, or unused seqs tombstoned at once): past them,
    // wait on for a message, as on_result does.
    query_.after_seq = page->next_after_seq;
    known_ = complete;
    if (state_ != State::waiting) {
      state_ = State::waiting;
      arm_timer(deadline_);
    }
    return true;
  }
  // The batch is committed, and its run starts at the cursor: exactly what a
  // query would return first. finish() encodes before `batch` can go away.
  finish(page->messages, page->next_after_seq, page->has_more, true, complete);
  return true;
}

void PullOperation::end_wait() {
  if (state_ == State::waiting) return finish({}, query_.after_seq, false, false, std::nullopt);
  if (state_ == State::querying && conn_->closed()) {
    // Its query waits in the ReadGate (dropped with the connection) or runs
    // (on_result frees the page): either way it is over.
    state_ = State::done;
    if (ticket_) ctx_.waiters.remove(query_.owner, ticket_);
    ++timer_generation_;
    timer_.cancel();
  }
  // Otherwise a query in flight finishes by itself: on_result sees conn_->closing().
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

void PullOperation::finish(std::span<const protocol::MessageRecord> messages,
                           std::int64_t next_after_seq, bool has_more, bool from_commit,
                           std::optional<std::uint64_t> complete) {
  state_ = State::done;
  if (ticket_) {
    // Marked before the registration goes, while the inbox is still tracked.
    conn_->state().inbox_mark =
        complete ? ctx_.waiters.mark(query_.owner, next_after_seq, *complete) : nullptr;
    ctx_.waiters.remove(query_.owner, ticket_);
    // Only long polls count: an immediate answer is not a wake.
    if (woken_any_) ctx_.waiters.count_answer(from_commit);
  }
  ++timer_generation_;
  timer_.cancel();
  if (!conn_->closed()) {
    conn_->respond_now(protocol::encode_pull_result(request_id_, messages, next_after_seq, has_more));
  }
  woken_batch_.reset();  // after encoding: `messages` may point into it
}

}  // namespace im::server
