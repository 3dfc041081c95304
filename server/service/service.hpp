#pragma once
// Service: the request dispatcher. Maps each verified frame's body type to a
// handler (Hello, Send, Pull, History, Ping), checks fields on top of the
// Verifier, and answers through the Connection. Handlers see only the storage
// interfaces (MessageWriter, MessageReader) and the Waiters registry.
//
// Thread-safety: handle() runs on the connection's executor; completions from
// storage threads are posted back there. The Service itself is shared by all
// connections and holds no per-connection state.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "protocol/message.hpp"
#include "server/auth/token.hpp"
#include "server/service/connection.hpp"
#include "server/common/log_throttle.hpp"
#include "server/service/read_gate.hpp"
#include "server/service/rate_limiter.hpp"
#include "server/service/store.hpp"
#include "server/service/waiters.hpp"

namespace im::server {

struct ServiceLimits {
  std::uint32_t max_frame_bytes = 1u << 20;
  std::uint32_t max_body_bytes = 64 * 1024;
  std::uint32_t max_pull_limit = 1000;
  std::uint32_t default_pull_limit = 100;
  std::uint32_t max_wait_ms = 60000;
  /// A Pull or History page is cut before the message that would take it past
  /// this many bytes (protocol::PageFill), so no response exceeds the largest
  /// frame. 0: no cap.
  std::size_t max_page_bytes = 1u << 20;
  /// Reads (Pull, History queries) running at once per connection; more wait.
  std::size_t max_reads_per_connection = 8;
  /// Bytes of responses being built or queued, all connections together;
  /// beyond it reads are answered busy. 0: no ceiling.
  std::size_t max_response_bytes = 256u << 20;
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

/// Who may open a session, and password accounts.
struct ServiceAuth {
  /// The keys Hello tokens must be signed with. Null: --auth none, a
  /// development mode where Hello's user is taken on trust.
  const auth::KeyRing* keys = nullptr;
  /// Password accounts (Register, Login); null: not offered. Needs `keys` to
  /// sign the tokens it hands out.
  AccountStore* accounts = nullptr;
  bool registration_open = true;
  std::chrono::seconds login_token_ttl{86400};
  /// Register and Login attempts per user id: sustained per second, burst.
  double attempt_rate = 1.0;
  std::uint32_t attempt_burst = 10;
};

class Service {
 public:
  Service(ServiceLimits limits, MessageWriter& writer, MessageReader& reader, Waiters& waiters,
          std::string server_name, ServiceAuth auth);

  /// Handles one verified request frame.
  void handle(const std::shared_ptr<Connection>& conn, const wire::Frame& frame);

  /// The connection closed: its waiting reads are dropped, its running ones
  /// cancelled (call on its executor, before ending its long polls).
  void connection_closed(Connection& conn) { reads_.drop(conn); }

  /// Completes pending long polls now and makes new ones return at once.
  void begin_shutdown();
  bool shutting_down() const { return shutting_down_.load(std::memory_order_relaxed); }

  const ServiceLimits& limits() const { return limits_; }
  MessageReader& reader() { return reader_; }
  Waiters& waiters() { return waiters_; }
  ReadGate& read_gate() { return reads_; }
  ResponseBudget& response_budget() { return responses_; }

 private:
  void on_hello(const std::shared_ptr<Connection>& conn, std::uint64_t rid, const wire::Hello& m);
  void on_send(const std::shared_ptr<Connection>& conn, std::uint64_t rid, const wire::Send& m);
  void on_pull(const std::shared_ptr<Connection>& conn, std::uint64_t rid, const wire::Pull& m);
  void on_history(const std::shared_ptr<Connection>& conn, std::uint64_t rid,
                  const wire::History& m);
  /// Register (create = true) or Login: checks, then the account store, then a token.
  void on_account(const std::shared_ptr<Connection>& conn, std::uint64_t rid, bool create,
                  const flatbuffers::String* user, const flatbuffers::String* password);

  ServiceLimits limits_;
  MessageWriter& writer_;
  MessageReader& reader_;
  Waiters& waiters_;
  std::string server_name_;
  ServiceAuth auth_;
  RateLimiter send_limiter_;
  RateLimiter attempt_limiter_;
  LogThrottle rate_limited_log_;
  LogThrottle auth_failed_log_;
  std::atomic<bool> shutting_down_{false};
  ResponseBudget responses_;
  ReadGate reads_;
};

/// Maps a storage outcome to the wire error code clients see.
wire::ErrorCode to_error_code(StoreCode code);

}  // namespace im::server
