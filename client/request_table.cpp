#include "client/request_table.hpp"

#include <utility>

namespace im::client {

std::shared_ptr<RequestTable> RequestTable::create(asio::io_context& io, Deadline on_deadline) {
  return std::shared_ptr<RequestTable>(new RequestTable(io, std::move(on_deadline)));
}

RequestTable::RequestTable(asio::io_context& io, Deadline on_deadline)
    : io_(io), on_deadline_(std::move(on_deadline)) {}

RequestTable::Pending& RequestTable::insert(const MakeFrame& make, std::chrono::milliseconds timeout,
                                            OnFrame on_frame, OnError on_error, std::uint64_t& id) {
  id = ++next_id_;
  Pending& p = pending_[id];
  p.frame = make(id);
  p.on_frame = std::move(on_frame);
  p.on_error = std::move(on_error);
  p.timer = std::make_unique<asio::steady_timer>(io_, timeout);
  p.timer->async_wait([weak = weak_from_this(), id, timeout](const std::error_code& ec) {
    const auto self = weak.lock();
    if (!ec && self) self->expired(id, timeout);
  });
  return p;
}

std::uint64_t RequestTable::add(const MakeFrame& make, std::chrono::milliseconds timeout,
                                OnFrame on_frame, OnError on_error) {
  std::uint64_t id = 0;
  insert(make, timeout, std::move(on_frame), std::move(on_error), id);
  unsent_.push_back(id);
  return id;
}

RequestTable::Added RequestTable::add_sent(const MakeFrame& make, std::chrono::milliseconds timeout,
                                           OnFrame on_frame, OnError on_error) {
  std::uint64_t id = 0;
  Pending& p = insert(make, timeout, std::move(on_frame), std::move(on_error), id);
  p.sent = true;
  return {id, std::move(p.frame)};
}

void RequestTable::take_unsent(const std::function<void(protocol::OutFrame)>& write) {
  while (!unsent_.empty()) {
    const std::uint64_t id = unsent_.front();
    unsent_.pop_front();
    const auto it = pending_.find(id);
    if (it == pending_.end()) continue;  // ended while it waited
    it->second.sent = true;
    write(std::move(it->second.frame));
  }
}

bool RequestTable::sent(std::uint64_t id) const {
  const auto it = pending_.find(id);
  return it != pending_.end() && it->second.sent;
}

void RequestTable::expired(std::uint64_t id, std::chrono::milliseconds timeout) {
  // Answered after the timer went off but before this ran: nothing to expire.
  if (pending_.count(id) == 0) return;
  on_deadline_(id, timeout);
}

bool RequestTable::answer(const wire::Frame& f) {
  const auto it = pending_.find(f.request_id());
  if (it == pending_.end()) return false;
  Pending p = std::move(it->second);
  pending_.erase(it);
  p.timer->cancel();
  p.on_frame(f);
  return true;
}

void RequestTable::fail(std::uint64_t id, const Error& e) {
  const auto it = pending_.find(id);
  if (it == pending_.end()) return;
  OnError cb = std::move(it->second.on_error);
  it->second.timer->cancel();
  pending_.erase(it);
  cb(e);
}

void RequestTable::fail_all(const Error& e) {
  auto all = std::move(pending_);
  pending_.clear();
  unsent_.clear();
  for (auto& [id, p] : all) {
    p.timer->cancel();
    p.on_error(e);
  }
}

}  // namespace im::client
