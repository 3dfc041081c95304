#include "server/net/connection_limiter.hpp"

namespace im::server {

ConnectionLimiter::ConnectionLimiter(std::size_t max_total, std::size_t max_per_address)
    : max_total_(max_total), max_per_address_(max_per_address) {}

asio::ip::address ConnectionLimiter::normalize(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  }
  return a;
}

ConnectionLimiter::Admission ConnectionLimiter::try_admit(const asio::ip::address& peer) {
  const auto key = normalize(peer);
  std::lock_guard lock(mu_);
  if (total_ >= max_total_) return Admission::too_many_total;
  std::size_t& mine = per_address_[key];
  if (max_per_address_ > 0 && mine >= max_per_address_) return Admission::too_many_from_address;
  ++mine;
  ++total_;
  return Admission::admitted;
}

void ConnectionLimiter::release(const asio::ip::address& peer) {
  const auto key = normalize(peer);
  std::lock_guard lock(mu_);
  if (total_ > 0) --total_;
  const auto it = per_address_.find(key);
  if (it == per_address_.end()) return;
  if (--it->second == 0) per_address_.erase(it);
}

std::size_t ConnectionLimiter::total() const {
  std::lock_guard lock(mu_);
  return total_;
}

std::size_t ConnectionLimiter::from(const asio::ip::address& peer) const {
  const auto key = normalize(peer);
  std::lock_guard lock(mu_);
  const auto it = per_address_.find(key);
  return it == per_address_.end() ? 0 : it->second;
}

}  // namespace im::server
