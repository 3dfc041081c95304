#pragma once
// The input format of the dispatch fuzz target, and a builder for it (used by
// the seed generator and the unit tests).
//
// An input is a session script: one config byte, then operations.
//   config: bits 0-1  connections: 1 + (bits % 3)
//           bit 2     per-user send rate limit on (a burst of 2, no refill)
//           bit 3     small pull limits (max 2, default 1) instead of (50, 10)
//   op byte o, acting on connection ((o >> 3) & 3) % connections:
//     o & 7 in 0..3  DATA: a length byte L, then L + 1 bytes the client sends
//                    (a frame may span several DATA ops: split points)
//     4              RUN: run the event loop until it is idle
//     5              CLOSE: the client goes away (the connection stops reading)
//     6              FAULT: a byte f schedules storage failures: kind f & 3
//                    (submit busy, submit unavailable, commit unavailable,
//                    read unavailable) for the next 1 + ((f >> 2) & 3) operations
//     7              SHUTDOWN: the service begins shutting down
// A truncated operation at the end of the input is ignored.

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace im::fuzz {

enum class ScriptOp : std::uint8_t { data = 0, run = 4, close = 5, fault = 6, shutdown = 7 };
enum class FaultKind : std::uint8_t {
  submit_busy = 0,
  submit_unavailable = 1,
  commit_unavailable = 2,
  read_unavailable = 3
};

/// On a close op: the connection is reset (the server dropped it, e.g. its
/// write deadline passed), not half-closed by the client.
inline constexpr std::uint8_t kCloseReset = 1u << 5;

inline constexpr std::uint8_t kConfigRateLimit = 1u << 2;
inline constexpr std::uint8_t kConfigSmallPulls = 1u << 3;

/// Builds a script byte by byte.
class DispatchScript {
 public:
  /// `connections` is 1..3; `flags` are kConfig* bits.
  explicit DispatchScript(unsigned connections = 1, std::uint8_t flags = 0) {
    bytes_.push_back(static_cast<std::uint8_t>(((connections - 1) % 3) | flags));
  }
  /// What connection `conn` sends, in chunks of at most `chunk` bytes (1..256).
  DispatchScript& send(unsigned conn, std::span<const std::uint8_t> data, std::size_t chunk = 256) {
    chunk = std::clamp<std::size_t>(chunk, 1, 256);
    for (std::size_t at = 0; at < data.size(); at += chunk) {
      const std::size_t n = std::min(chunk, data.size() - at);
      op(ScriptOp::data, conn);
      bytes_.push_back(static_cast<std::uint8_t>(n - 1));
      bytes_.insert(bytes_.end(), data.begin() + static_cast<std::ptrdiff_t>(at),
                    data.begin() + static_cast<std::ptrdiff_t>(at + n));
    }
    return *this;
  }
  DispatchScript& run() { return op(ScriptOp::run, 0); }
  /// The client half-closes: what arrived whole is still answered.
  DispatchScript& close(unsigned conn) { return op(ScriptOp::close, conn); }
  /// The connection is gone: requests in flight may go unanswered.
  DispatchScript& reset(unsigned conn) {
    op(ScriptOp::close, conn);
    bytes_.back() |= kCloseReset;
    return *this;
  }
  DispatchScript& shutdown() { return op(ScriptOp::shutdown, 0); }
  /// Fails the next `count` (1..4) operations of `kind`.
  DispatchScript& fault(FaultKind kind, unsigned count) {
    op(ScriptOp::fault, 0);
    bytes_.push_back(static_cast<std::uint8_t>(static_cast<unsigned>(kind) | ((count - 1) & 3) << 2));
    return *this;
  }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  DispatchScript& op(ScriptOp o, unsigned conn) {
    bytes_.push_back(static_cast<std::uint8_t>(static_cast<unsigned>(o) | (conn & 3) << 3));
    return *this;
  }
  std::vector<std::uint8_t> bytes_;
};

}  // namespace im::fuzz
