#include "server/service/waiters.hpp"

namespace im::server {

std::uint64_t Waiters::add(const std::string& owner, Wake wake) {
  std::lock_guard lock(mu_);
  const std::uint64_t ticket = next_ticket_++;
  by_owner_[owner].emplace(ticket, std::move(wake));
  return ticket;
}

void Waiters::remove(const std::string& owner, std::uint64_t ticket) {
  std::lock_guard lock(mu_);
  const auto it = by_owner_.find(owner);
  if (it == by_owner_.end()) return;
  it->second.erase(ticket);
  if (it->second.empty()) by_owner_.erase(it);
}

void Waiters::notify(const std::vector<std::string>& receivers) {
  std::vector<Wake> wakes;
  {
    std::lock_guard lock(mu_);
    if (by_owner_.empty()) return;
    for (const std::string& r : receivers) {
      const auto it = by_owner_.find(r);
      if (it == by_owner_.end()) continue;
      for (const auto& [ticket, wake] : it->second) wakes.push_back(wake);
    }
  }
  for (const Wake& w : wakes) w();
}

void Waiters::notify_all() {
  std::vector<Wake> wakes;
  {
    std::lock_guard lock(mu_);
    for (const auto& [owner, m] : by_owner_) {
      for (const auto& [ticket, wake] : m) wakes.push_back(wake);
    }
  }
  for (const Wake& w : wakes) w();
}

std::size_t Waiters::size() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [owner, m] : by_owner_) n += m.size();
  return n;
}

}  // namespace im::server
