#pragma once
// The request-dispatch fuzz harness, shared by the libFuzzer target (clang,
// IM_FUZZ=ON) and the corpus replay unit test (any compiler).
//
// Each input is a session script (dispatch_script.hpp) played against a fresh
// im::server::Service over an in-memory store (tests/support/memory_store.hpp),
// the real Waiters, and one to three FakeConnections on one io_context. Bytes a
// client sends go through the real frame decoder and verify_frame as
// server/net/session.cpp does; each verified frame goes to Service::handle.
//
// Invariants checked (a violation prints why and aborts, which libFuzzer
// reports as a crash): every request gets exactly one response of its type or
// an Error, with the same request id; every frame the server writes verifies
// and holds only UTF-8 text; identity changes only through one successful
// Hello; answers match the store (acks, pulls after the cursor and in seq
// order, history pages in order and in the conversation); long polls end, and
// none sleeps through a commit to its inbox; the store stays consistent; no
// waiter or pending send is left behind. The event loop never sleeps: pending
// long polls are ended at the end of the script by beginning shutdown.

#include <cstddef>
#include <cstdint>

#include "server/service/service.hpp"

namespace im::fuzz {

struct DispatchStats {
  std::size_t requests = 0;   // frames handed to Service::handle
  std::size_t responses = 0;  // frames the service answered with
  std::size_t errors = 0;     // of which Error frames
  std::size_t failures = 0;   // connections closed by fail(): a framing error, or the service
};

/// The limits the Service runs with for a given config byte.
server::ServiceLimits dispatch_service_limits(std::uint8_t config);

/// Largest frame the harness accepts before and after Hello (as SessionLimits).
inline constexpr std::uint32_t kDispatchMaxFrameBytes = 4096;
inline constexpr std::uint32_t kDispatchMaxFrameBytesBeforeHello = 512;

/// Plays one script; aborts on a broken invariant.
DispatchStats dispatch_one_input(const std::uint8_t* data, std::size_t size);

}  // namespace im::fuzz
