#include "server/service/read_gate.hpp"

#include <utility>

namespace im::server {

bool ResponseBudget::try_reserve(std::size_t bytes) {
  std::size_t used = used_.load(std::memory_order_relaxed);
  do {
    if (capacity_ != 0 && (bytes > capacity_ || used > capacity_ - bytes)) {
      refusals_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  note_peak(used + bytes);
  return true;
}

void ResponseBudget::add(std::size_t bytes) {
  note_peak(used_.fetch_add(bytes, std::memory_order_relaxed) + bytes);
}

void ResponseBudget::release(std::size_t bytes) {
  used_.fetch_sub(bytes, std::memory_order_relaxed);
}

void ResponseBudget::note_peak(std::size_t used) {
  std::size_t peak = peak_.load(std::memory_order_relaxed);
  while (used > peak && !peak_.compare_exchange_weak(peak, used, std::memory_order_relaxed)) {
  }
}

bool ReadGate::fits(const Connection& conn, std::size_t worst) const {
  const auto& r = conn.state().reads;
  if (r.running >= max_reads_) return false;
  const std::size_t held = r.reserved + conn.queued_bytes();
  // Alone on an idle connection a read always goes, whatever its size.
  if (r.running == 0 && held == 0) return true;
  const std::size_t budget = conn.outgoing_budget();
  return held <= budget && worst <= budget - held;
}

void ReadGate::submit(Connection& conn, std::size_t worst, std::function<void()> start,
                      std::function<void()> refuse) {
  if (conn.closed()) return;
  auto& r = conn.state().reads;
  if (r.waiting_empty() && fits(conn, worst)) {
    if (!budget_.try_reserve(worst)) return refuse();
    ++r.running;
    r.reserved += worst;
    return start();
  }
  waited_.fetch_add(1, std::memory_order_relaxed);
  r.waiting.push_back({worst, std::move(start), std::move(refuse)});
}

void ReadGate::release(Connection& conn, std::size_t worst) {
  auto& r = conn.state().reads;
  --r.running;
  r.reserved -= worst;
  budget_.release(worst);
}

void ReadGate::pump(Connection& conn) {
  auto& r = conn.state().reads;
  while (!conn.closed() && !r.waiting_empty() && fits(conn, r.waiting[r.head].worst)) {
    SessionState::WaitingRead next = std::move(r.waiting[r.head++]);
    if (r.waiting_empty()) {
      r.waiting.clear();
      r.head = 0;
    }
    if (!budget_.try_reserve(next.worst)) {
      next.refuse();
      continue;
    }
    ++r.running;
    r.reserved += next.worst;
    next.start();
  }
}

void ReadGate::drop(Connection& conn) {
  if (auto& gone = conn.state().gone) gone->store(true, std::memory_order_relaxed);
  auto& r = conn.state().reads;
  dropped_.fetch_add(r.waiting.size() - r.head, std::memory_order_relaxed);
  // The closures hold the connection: letting them go breaks the cycle.
  std::vector<SessionState::WaitingRead>().swap(r.waiting);
  r.head = 0;
}

ReadCancel ReadGate::cancel_token(Connection& conn) {
  auto& gone = conn.state().gone;
  if (!gone) gone = std::make_shared<std::atomic<bool>>(conn.closed());
  return gone;
}

}  // namespace im::server
