#pragma once
// NetStats: what the network layer refused or timed out, counted, each with a
// throttle so that a flood of refusals writes a log line a second, not one
// per connection.
//
// Thread-safety: every member is lock-free. Owned by the Listener and used by
// its sessions' handlers, which never run after the Listener is gone.

#include <atomic>
#include <cstdint>

#include "server/common/log_throttle.hpp"

namespace im::server {

struct NetStats {
  LogThrottle rejected_total;         // refused: --max-connections reached
  LogThrottle rejected_per_address;   // refused: --max-connections-per-ip reached
  LogThrottle handshake_timeouts;     // no successful Hello in time
  LogThrottle frame_timeouts;         // a started frame did not arrive whole in time
  LogThrottle idle_timeouts;          // no frame for too long
  LogThrottle write_timeouts;         // the client took no write for too long (not reading)
  LogThrottle tls_handshake_failures; // TLS handshake failed (not TLS, old version, bad record)
  LogThrottle accept_errors;          // accept() failed (EMFILE: out of descriptors, ...)
  std::atomic<std::uint64_t> slow_client_resets{0};  // reset: its queue passed max_queued_bytes
};

}  // namespace im::server
