#pragma once
// Config: every im-server setting, with defaults, filled from command-line
// flags and then the matching IM_* environment variables (a flag wins), and
// validated once at start-up.
//
// One source for every setting: the defaults live here and nowhere else. The
// option structs the components take are derived from a Config by the
// functions below (service_limits(), listener_limits(), writer_options(), ...,
// in config.cpp beside validate()). Those structs' own initializers for the
// fields derived here are neutral (0, off, empty) rather than a second
// default that could drift from this one; a component built without going
// through Config shows it at once (a writer with no queue, a session that
// takes no frame). What has no setting here (statement timeouts, pool queue
// sizes, ...) keeps its one default in its component's struct. Tests that
// build a component start from e.g. service_limits(Config{}) and override what
// they test.

#include <cstdint>
#include <memory>
#include <string>

#include "auth/token.hpp"
#include "protocol/frame_codec.hpp"

namespace im::server {

struct ServiceLimits;
struct ServiceAuth;
struct SessionLimits;
struct ListenerLimits;
struct GroupCommitOptions;
struct ReaderPoolOptions;
struct AccountStoreOptions;

/// The largest --max-connections, and the most the automatic cap picks.
inline constexpr std::uint32_t kMaxConnectionsCeiling = 10000000;

struct Config {
  std::string listen = "127.0.0.1:7400";
  std::string pg_url = "postgresql://im@127.0.0.1:5432/im";
  std::string redis_url = "redis://127.0.0.1:6379";
  unsigned threads = 0;  // 0: one per hardware thread
  std::uint32_t batch_max = 1024;
  std::uint32_t batch_delay_us = 200;
  std::uint32_t pg_writers = 1;
  std::uint32_t queue_capacity = 65536;
  std::uint32_t max_frame_bytes = protocol::kDefaultMaxFrameBytes;
  std::uint32_t max_body_bytes = 64 * 1024;
  std::uint32_t max_pull_limit = 1000;
  std::uint32_t max_wait_ms = 60000;
  std::uint32_t gap_fill_ms = 2000;
  std::uint32_t pg_pool = 4;
  std::uint32_t drain_timeout_ms = 10000;
  // Connection limits and deadlines (0 turns a deadline or the per-address cap off).
  // max_connections 0: automatic, whatever the open-file limit leaves after
  // the process's own descriptors (listener_limits()), so that a default start
  // fits whatever limit the machine has.
  std::uint32_t max_connections = 0;
  std::uint32_t max_connections_per_ip = 1000;
  std::uint32_t handshake_timeout_ms = 10000;
  std::uint32_t frame_timeout_ms = 10000;
  std::uint32_t idle_timeout_ms = 300000;
  std::uint32_t write_timeout_ms = 60000;
  // Memory for reads: per connection, reads at once; in all, bytes of
  // responses being built or queued (see server/service/read_gate.hpp).
  std::uint32_t max_reads_per_connection = 8;
  std::uint64_t max_response_bytes = 256u << 20;
  // Per-user send rate limit (token bucket): messages/s sustained (0: off) and burst.
  double send_rate = 10000;
  std::uint32_t send_burst = 20000;
  // Authentication: "token" (Hello must carry a token signed with one of the
  // keys) or "none" (development: Hello's user is trusted).
  std::string auth = "token";
  std::string auth_secret_file;  // key file: KEY_ID=SECRET per line
  std::string auth_secret;       // the same entries, from IM_AUTH_SECRET only (never argv)
  std::string registration = "open";  // open | closed (password accounts)
  std::string login_token_ttl = "24h";
  std::uint32_t auth_threads = 1;  // Argon2id hashing threads (64 MiB each while hashing)
  // TLS on the listener: both files (PEM) or neither (plain TCP).
  std::string tls_cert;  // certificate chain, the server's certificate first
  std::string tls_key;   // its private key, unencrypted
  std::string log_level = "info";
  std::string port_file;
  std::string server_name = "im-server";
  bool check_config = false;

  // Filled by validate():
  std::string listen_host;
  std::uint16_t listen_port = 0;
  std::shared_ptr<const auth::KeyRing> keys;  // null under --auth none
  std::int64_t login_token_ttl_s = 0;
};

/// Outcome of parsing the command line.
struct ParseResult {
  enum class Action { run, exit } action = Action::run;
  int exit_code = 0;  // when action == exit (--help: 0, a bad value: 2)
};

/// Parses argv and the environment into `config`, validates it, and prints
/// --help or a clear error itself. Never throws.
ParseResult parse_config(int argc, char** argv, Config& config);

/// Checks ranges and formats (and that the TLS files load and match) and fills
/// the derived fields; throws std::invalid_argument with a message naming the
/// setting.
void validate(Config& config);

// Derived settings: what each component takes, from a validated Config (or
// Config{} in tests, where fields validate() fills are unused).

/// The service's limits; the default page size is 100 messages or
/// --max-pull-limit if smaller, and a page's bytes are capped at a frame.
ServiceLimits service_limits(const Config& config);
/// Keys, registration and token lifetime; `accounts` is left to the caller,
/// which owns the account store.
ServiceAuth service_auth(const Config& config);
SessionLimits session_limits(const Config& config);
/// `open_file_limit`: the soft RLIMIT_NOFILE in force (after raise_fd_limit());
/// it sets the connection cap when --max-connections is 0.
ListenerLimits listener_limits(const Config& config, std::uint64_t open_file_limit);
/// One writer lane's options (ShardedWriter takes --pg-writers lanes of them).
GroupCommitOptions writer_options(const Config& config);
ReaderPoolOptions reader_options(const Config& config);
AccountStoreOptions account_options(const Config& config);

/// Descriptors the process keeps open besides its connections.
std::uint64_t reserved_descriptors(const Config& config);
/// The cap --max-connections 0 picks: the open files left after `reserved`,
/// at least 1, at most kMaxConnectionsCeiling.
std::uint64_t auto_max_connections(std::uint64_t open_file_limit, std::uint64_t reserved);

/// One line with the effective configuration, secrets (passwords) masked.
std::string describe(const Config& config);

/// "postgresql://im:secret@h/db" -> "postgresql://im:***@h/db".
std::string mask_url_password(const std::string& url);

}  // namespace im::server
