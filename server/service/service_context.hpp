#pragma once
// ServiceContext: what every request handler may use — the limits, the
// storage interfaces, the long-poll registry, the rate limiters, the response
// budget and the read gate — and Request, the one request a handler answers.
// The Service owns one ServiceContext; handlers (server/service/handlers/) are
// free functions over it, so adding a request type touches no class.
//
// Thread-safety: the context is shared by all connections: its members are
// thread-safe (or read-only) except where noted. A Request is used on its
// connection's executor.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "protocol/frames.hpp"
#include "auth/token.hpp"
#include "server/common/log_throttle.hpp"
#include "server/service/connection.hpp"
#include "server/service/rate_limiter.hpp"
#include "server/service/read_gate.hpp"
#include "server/service/service_stats.hpp"
#include "server/service/store.hpp"
#include "server/service/waiters.hpp"

namespace im::server {

// Neutral where Config sets the field: build it with service_limits(Config)
// (server/app/config.hpp), which holds the defaults.
struct ServiceLimits {
  std::uint32_t max_frame_bytes = 0;
  std::uint32_t max_body_bytes = 0;
  std::uint32_t max_pull_limit = 0;
  std::uint32_t default_pull_limit = 0;
  std::uint32_t max_wait_ms = 0;
  /// A Pull or History page is cut before the message that would take it past
  /// this many bytes (protocol::PageFill), so no response exceeds the largest
  /// frame. 0: no cap.
  std::size_t max_page_bytes = 0;
  /// Reads (Pull, History queries) running at once per connection; more wait.
  std::size_t max_reads_per_connection = 0;
  /// Bytes of responses being built or queued, all connections together;
  /// beyond it reads are answered busy. 0: no ceiling.
  std::size_t max_response_bytes = 0;
  /// Announced in Welcome (the session enforces it).
  std::uint32_t idle_timeout_ms = 0;
  /// While a gap is pending (another process has not committed yet), a long
  /// poll looks again this often.
  std::uint32_t gap_recheck_ms = 10;
  /// Per-user send rate limit (token bucket): messages a second, sustained
  /// (0: unlimited), and the burst allowed on top. Over it, a Send is
  /// answered RateLimited with retry_after_ms and not stored.
  double send_rate = 0;
  std::uint32_t send_burst = 1;
};

/// Who may open a session, and password accounts. From service_auth(Config).
struct ServiceAuth {
  /// The keys Hello tokens must be signed with. Null: --auth none, a
  /// development mode where Hello's user is taken on trust.
  const auth::KeyRing* keys = nullptr;
  /// Password accounts (Register, Login); null: not offered. Needs `keys` to
  /// sign the tokens it hands out.
  AccountStore* accounts = nullptr;
  bool registration_open = false;
  std::chrono::seconds login_token_ttl{0};
  /// Register and Login attempts per user id: sustained per second, burst.
  double attempt_rate = 1.0;
  std::uint32_t attempt_burst = 10;
};

struct ServiceContext {
  ServiceContext(ServiceLimits limits_in, MessageWriter& writer_in, MessageReader& reader_in,
                 Waiters& waiters_in, std::string server_name_in, ServiceAuth auth_in)
      : limits(limits_in),
        writer(writer_in),
        reader(reader_in),
        waiters(waiters_in),
        server_name(std::move(server_name_in)),
        auth(auth_in),
        send_limiter(RateLimiter::Options{limits_in.send_rate, limits_in.send_burst}),
        attempt_limiter(RateLimiter::Options{auth_in.attempt_rate, auth_in.attempt_burst}),
        responses(limits_in.max_response_bytes),
        reads(limits_in.max_reads_per_connection, responses) {}

  bool shutting_down() const { return stopping.load(std::memory_order_relaxed); }

  const ServiceLimits limits;
  MessageWriter& writer;
  MessageReader& reader;
  Waiters& waiters;
  const std::string server_name;
  const ServiceAuth auth;
  RateLimiter send_limiter;     // Send, per user
  RateLimiter attempt_limiter;  // Register and Login, per user id
  LogThrottle rate_limited_log;
  LogThrottle auth_failed_log;
  std::atomic<bool> stopping{false};  // a drain began: long polls answer at once
  ResponseBudget responses;
  ReadGate reads;
  /// Shared with storage completions, which may run after the last request.
  const std::shared_ptr<ServiceStats> stats = std::make_shared<ServiceStats>();
};

/// Microseconds since the Unix epoch (the wire's clock).
std::int64_t wall_clock_us();
/// The retry_after_ms a storage outcome suggests (200 for unavailable or busy).
std::uint32_t retry_hint_ms(StoreCode code);
/// The retry_after_ms of a rate-limit refusal: the bucket's refill time, at most a minute.
std::uint32_t retry_hint_ms(const RateLimiter::Decision& decision);
/// Maps a storage outcome to the wire error code clients see.
wire::ErrorCode to_error_code(StoreCode code);

/// One request being handled: its connection and request id, and the ways to
/// answer it. Every request gets exactly one answer (reply, error or fail).
struct Request {
  const std::shared_ptr<Connection>& conn;
  std::uint64_t rid;

  SessionState& session() const { return conn->state(); }
  const std::string& user() const { return conn->state().user; }
  void reply(protocol::OutFrame frame) const { conn->respond(std::move(frame)); }
  void error(wire::ErrorCode code, std::string_view message, std::uint32_t retry_after_ms = 0) const {
    conn->respond(protocol::encode_error(rid, code, message, retry_after_ms));
  }
  /// Answers a storage failure with its code, message and retry hint.
  void error(const StoreStatus& status) const {
    error(to_error_code(status.code), status.message, retry_hint_ms(status.code));
  }
  /// Answers with an Error, then closes the connection (authentication failures).
  void fail(wire::ErrorCode code, std::string_view message) const {
    conn->fail(protocol::encode_error(rid, code, message));
  }
};

}  // namespace im::server
