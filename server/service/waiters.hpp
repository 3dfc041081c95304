#pragma once
// Waiters: the long-poll registry. A pull that found nothing registers a wake
// callback for its inbox; the group-commit writer calls notify() after each
// commit with the inboxes it wrote, and the matching pulls run again.
//
// Thread-safety: all members may be called from any thread. Wake callbacks are
// invoked outside the lock and must only post work (never block).

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/service/store.hpp"

namespace im::server {

class Waiters final : public CommitListener {
 public:
  using Wake = std::function<void()>;

  /// Registers `wake` for `owner`'s inbox; returns a ticket for remove().
  std::uint64_t add(const std::string& owner, Wake wake);
  void remove(const std::string& owner, std::uint64_t ticket);

  void notify(const std::vector<std::string>& receivers) override;
  /// Wakes every waiter (shutdown).
  void notify_all();

  std::size_t size() const;

 private:
  mutable std::mutex mu_;
  std::uint64_t next_ticket_ = 1;
  std::unordered_map<std::string, std::unordered_map<std::uint64_t, Wake>> by_owner_;
};

}  // namespace im::server
