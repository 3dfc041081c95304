#include "server/service/waiters.hpp"

namespace im::server {

std::uint64_t Waiters::add(const std::string& owner, Wake wake) {
  auto ptr = std::make_shared<const Wake>(std::move(wake));
  std::lock_guard lock(mu_);
  const std::uint64_t ticket = next_ticket_++;
  by_owner_[owner].emplace(ticket, std::move(ptr));
  return ticket;
}

void Waiters::remove(const std::string& owner, std::uint64_t ticket) {
  WakePtr dropped;  // destroyed outside the lock
  std::lock_guard lock(mu_);
  const auto it = by_owner_.find(owner);
  if (it == by_owner_.end()) return;
  const auto w = it->second.find(ticket);
  if (w == it->second.end()) return;
  dropped = std::move(w->second);
  it->second.erase(w);
  if (it->second.empty()) by_owner_.erase(it);
}

void Waiters::notify(const std::shared_ptr<const CommittedBatch>& batch) {
  std::vector<std::pair<WakePtr, std::size_t>> wakes;
  {
    std::lock_guard lock(mu_);
    if (by_owner_.empty()) return;
    // The writer lists each inbox once per batch, so each waiter wakes once.
    for (std::size_t i = 0; i < batch->inboxes.size(); ++i) {
      const auto it = by_owner_.find(batch->inboxes[i].owner);
      if (it == by_owner_.end()) continue;
      for (const auto& [ticket, wake] : it->second) wakes.emplace_back(wake, i);
    }
  }
  for (const auto& [wake, inbox] : wakes) (*wake)(batch, inbox);
}

void Waiters::notify_all() {
  std::vector<WakePtr> wakes;
  {
    std::lock_guard lock(mu_);
    for (const auto& [owner, m] : by_owner_) {
      for (const auto& [ticket, wake] : m) wakes.push_back(wake);
    }
  }
  for (const WakePtr& w : wakes) (*w)(nullptr, 0);
}

std::size_t Waiters::size() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [owner, m] : by_owner_) n += m.size();
  return n;
}

}  // namespace im::server
