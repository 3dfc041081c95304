#include "server/service/waiters.hpp"

namespace im::server {

namespace {
// Shared so that notify() can collect the callbacks to run outside the lock
// without copying (and allocating) each std::function.
using WakePtr = std::shared_ptr<const Waiters::Wake>;

struct Inbox {
  std::unordered_map<std::uint64_t, WakePtr> waits;
  std::uint64_t notified = 0;  // notifications naming this inbox while tracked
  std::size_t marks = 0;       // live marks on it
  bool unused() const { return waits.empty() && marks == 0; }
};
}  // namespace

struct Waiters::State {
  mutable std::mutex mu;
  std::uint64_t next_ticket = 1;
  std::unordered_map<std::string, Inbox> by_owner;

  void drop_if_unused(std::unordered_map<std::string, Inbox>::iterator it) {
    if (it->second.unused()) by_owner.erase(it);
  }
};

class InboxMark {
 public:
  InboxMark(std::shared_ptr<Waiters::State> state, std::string owner, std::int64_t seq,
            std::uint64_t notified)
      : state_(std::move(state)), owner_(std::move(owner)), seq_(seq), notified_(notified) {}
  InboxMark(const InboxMark&) = delete;
  InboxMark& operator=(const InboxMark&) = delete;
  ~InboxMark() {
    std::lock_guard lock(state_->mu);
    const auto it = state_->by_owner.find(owner_);
    if (it == state_->by_owner.end()) return;
    --it->second.marks;
    state_->drop_if_unused(it);
  }
  const std::string& owner() const { return owner_; }
  std::int64_t seq() const { return seq_; }
  std::uint64_t notified() const { return notified_; }

 private:
  std::shared_ptr<Waiters::State> state_;
  std::string owner_;
  std::int64_t seq_;
  std::uint64_t notified_;
};

Waiters::Waiters() : state_(std::make_shared<State>()) {}
Waiters::~Waiters() = default;

Waiters::Added Waiters::add(const std::string& owner, Wake wake) {
  auto ptr = std::make_shared<const Wake>(std::move(wake));
  std::lock_guard lock(state_->mu);
  const std::uint64_t ticket = state_->next_ticket++;
  Inbox& inbox = state_->by_owner[owner];
  inbox.waits.emplace(ticket, std::move(ptr));
  return {ticket, inbox.notified};
}

void Waiters::remove(const std::string& owner, std::uint64_t ticket) {
  remove(state_, owner, ticket);
}

void Waiters::remove(const std::weak_ptr<State>& handle, const std::string& owner,
                     std::uint64_t ticket) {
  const std::shared_ptr<State> state = handle.lock();
  if (!state) return;
  WakePtr dropped;  // destroyed outside the lock
  std::lock_guard lock(state->mu);
  const auto it = state->by_owner.find(owner);
  if (it == state->by_owner.end()) return;
  const auto w = it->second.waits.find(ticket);
  if (w == it->second.waits.end()) return;
  dropped = std::move(w->second);
  it->second.waits.erase(w);
  state->drop_if_unused(it);
}

std::uint64_t Waiters::notified(const std::string& owner) const {
  std::lock_guard lock(state_->mu);
  const auto it = state_->by_owner.find(owner);
  return it == state_->by_owner.end() ? 0 : it->second.notified;
}

std::shared_ptr<InboxMark> Waiters::mark(const std::string& owner, std::int64_t seq,
                                         std::uint64_t notified) {
  {
    std::lock_guard lock(state_->mu);
    const auto it = state_->by_owner.find(owner);
    // Untracked, the count may have restarted: nothing can be proved.
    if (it == state_->by_owner.end()) return nullptr;
    ++it->second.marks;
  }
  return std::make_shared<InboxMark>(state_, owner, seq, notified);
}

bool Waiters::quiet(const InboxMark* mark, const std::string& owner, std::int64_t after_seq,
                    std::uint64_t notified_now) {
  return mark && mark->owner() == owner && mark->seq() == after_seq &&
         mark->notified() == notified_now;
}

void Waiters::notify(const std::shared_ptr<const CommittedBatch>& batch) {
  std::vector<std::tuple<WakePtr, std::size_t, std::uint64_t>> wakes;
  {
    std::lock_guard lock(state_->mu);
    if (state_->by_owner.empty()) return;
    // The writer lists each inbox once per batch, so each waiter wakes once.
    for (std::size_t i = 0; i < batch->inboxes.size(); ++i) {
      const auto it = state_->by_owner.find(batch->inboxes[i].owner);
      if (it == state_->by_owner.end()) continue;
      const std::uint64_t n = ++it->second.notified;
      for (const auto& [ticket, wake] : it->second.waits) wakes.emplace_back(wake, i, n);
    }
  }
  for (const auto& [wake, inbox, n] : wakes) (*wake)(batch, inbox, n);
}

void Waiters::notify_all() {
  std::vector<std::pair<WakePtr, std::uint64_t>> wakes;
  {
    std::lock_guard lock(state_->mu);
    for (const auto& [owner, inbox] : state_->by_owner) {
      for (const auto& [ticket, wake] : inbox.waits) wakes.emplace_back(wake, inbox.notified);
    }
  }
  for (const auto& [wake, n] : wakes) (*wake)(nullptr, 0, n);
}

void Waiters::resync() {
  {
    std::lock_guard lock(state_->mu);
    for (auto& [owner, inbox] : state_->by_owner) ++inbox.notified;
  }
  notify_all();
}

std::size_t Waiters::size() const {
  std::lock_guard lock(state_->mu);
  std::size_t n = 0;
  for (const auto& [owner, inbox] : state_->by_owner) n += inbox.waits.size();
  return n;
}

std::size_t Waiters::tracked() const {
  std::lock_guard lock(state_->mu);
  return state_->by_owner.size();
}

}  // namespace im::server
