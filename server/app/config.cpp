#include "server/app/config.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <iostream>
#include <stdexcept>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "server/net/listener.hpp"
#include "server/net/session.hpp"
#include "server/net/tls_context.hpp"
#include "server/service/service.hpp"
#include "server/storage/group_commit_writer.hpp"
#include "server/storage/pg_account_store.hpp"
#include "server/storage/pg_reader_pool.hpp"
#include "server/storage/redis_seq.hpp"

namespace im::server {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// A Pull or History without a limit gets this many messages (or
// --max-pull-limit, if smaller); not a setting of its own.
constexpr std::uint32_t kDefaultPullLimit = 100;

PgSessionOptions pg_session(const Config& c) {
  PgSessionOptions pg;
  pg.url = c.pg_url;
  return pg;
}

}  // namespace

std::string mask_url_password(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const auto at = url.find('@', scheme + 3);
  if (at == std::string::npos) return url;
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

void validate(Config& c) {
  // HOST:PORT, with [v6]:PORT for IPv6.
  const auto colon = c.listen.rfind(':');
  require(colon != std::string::npos && colon + 1 < c.listen.size(),
          "--listen must be HOST:PORT (got '" + c.listen + "')");
  std::string host = c.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  require(!host.empty(), "--listen must name a host (got '" + c.listen + "')");
  const std::string port = c.listen.substr(colon + 1);
  unsigned value = 0;
  const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  require(ec == std::errc() && p == port.data() + port.size() && value <= 65535,
          "--listen port must be 0-65535 (got '" + port + "')");
  c.listen_host = host;
  c.listen_port = static_cast<std::uint16_t>(value);

  require(c.pg_url.rfind("postgresql://", 0) == 0 || c.pg_url.rfind("postgres://", 0) == 0 ||
              c.pg_url.find('=') != std::string::npos,
          "--pg-url must be a postgresql:// URL or a libpq key=value string");
  require(c.redis_url.rfind("redis://", 0) == 0, "--redis-url must be a redis:// URL");
  if (c.threads == 0) c.threads = std::max(1u, std::thread::hardware_concurrency());
  require(c.threads <= 256, "--threads must be 1-256");
  require(c.batch_max >= 1 && c.batch_max <= 100000, "--batch-max must be 1-100000");
  require(c.batch_delay_us <= 1000000, "--batch-delay-us must be at most 1000000");
  require(c.queue_capacity >= c.batch_max, "--queue-capacity must be at least --batch-max");
  require(c.max_frame_bytes >= 1024 && c.max_frame_bytes <= (64u << 20),
          "--max-frame-bytes must be 1024-67108864");
  require(c.max_body_bytes >= 1 && c.max_body_bytes + 1024 <= c.max_frame_bytes,
          "--max-body-bytes must be at least 1 and leave 1 KiB of the frame for headers");
  require(c.max_pull_limit >= 1 && c.max_pull_limit <= 10000, "--max-pull-limit must be 1-10000");
  require(c.max_wait_ms <= 600000, "--max-wait-ms must be at most 600000");
  require(c.gap_fill_ms >= 10, "--gap-fill-ms must be at least 10");
  require(c.pg_pool >= 1 && c.pg_pool <= 256, "--pg-pool must be 1-256");
  require(c.pg_writers >= 1 && c.pg_writers <= 16, "--pg-writers must be 1-16");
  require(c.max_connections <= kMaxConnectionsCeiling,
          "--max-connections must be 0-" + std::to_string(kMaxConnectionsCeiling) +
              " (0: automatic, from the open-file limit)");
  require(c.max_connections_per_ip <= 10000000,
          "--max-connections-per-ip must be 0-10000000 (0: no per-address cap)");
  require(c.handshake_timeout_ms <= 3600000, "--handshake-timeout-ms must be 0-3600000");
  require(c.frame_timeout_ms <= 3600000, "--frame-timeout-ms must be 0-3600000");
  require(c.idle_timeout_ms <= 86400000, "--idle-timeout-ms must be 0-86400000");
  require(c.write_timeout_ms <= 3600000, "--write-timeout-ms must be 0-3600000");
  require(c.max_reads_per_connection >= 1 && c.max_reads_per_connection <= 1024,
          "--max-reads-per-connection must be 1-1024");
  require(c.max_response_bytes == 0 || c.max_response_bytes >= 2ull * c.max_frame_bytes,
          "--max-response-bytes must be 0 (no ceiling) or at least twice --max-frame-bytes");
  require(std::isfinite(c.send_rate) && c.send_rate >= 0 && c.send_rate <= 10000000,
          "--send-rate must be 0-10000000 messages/s (0: unlimited)");
  require(c.send_burst >= 1 && c.send_burst <= 10000000, "--send-burst must be 1-10000000");
  require(c.auth == "token" || c.auth == "none", "--auth must be token or none");
  if (c.auth == "token") {
    require(!c.auth_secret_file.empty() || !c.auth_secret.empty(),
            "--auth token needs signing keys: --auth-secret-file FILE or IM_AUTH_SECRET "
            "(KEY_ID=SECRET, e.g. k1=$(openssl rand -hex 32)); --auth none only for development");
    require(c.auth_secret_file.empty() || c.auth_secret.empty(),
            "give the keys either in --auth-secret-file or in IM_AUTH_SECRET, not both");
    c.keys = std::make_shared<const auth::KeyRing>(
        c.auth_secret_file.empty() ? auth::KeyRing::parse(c.auth_secret, "IM_AUTH_SECRET")
                                   : auth::KeyRing::load_file(c.auth_secret_file));
  } else {
    c.keys.reset();
  }
  require(c.registration == "open" || c.registration == "closed",
          "--registration must be open or closed");
  const auto ttl = auth::parse_duration_s(c.login_token_ttl);
  require(ttl.has_value(), "--login-token-ttl must be a duration such as 900s, 30m, 24h or 7d");
  c.login_token_ttl_s = *ttl;
  require(c.auth_threads >= 1 && c.auth_threads <= 64, "--auth-threads must be 1-64");
  static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  require(std::find(std::begin(kLevels), std::end(kLevels), c.log_level) != std::end(kLevels),
          "--log-level must be one of trace, debug, info, warn, error, critical, off");
  require(c.tls_cert.empty() == c.tls_key.empty(),
          "--tls-cert and --tls-key must be given together (TLS) or not at all (plain TCP)");
  if (!c.tls_cert.empty()) make_server_tls_context(c.tls_cert, c.tls_key);  // throws naming the file
}

ServiceLimits service_limits(const Config& c) {
  ServiceLimits l;
  l.max_frame_bytes = c.max_frame_bytes;
  l.max_body_bytes = c.max_body_bytes;
  l.max_pull_limit = c.max_pull_limit;
  l.default_pull_limit = std::min(kDefaultPullLimit, c.max_pull_limit);
  l.max_wait_ms = c.max_wait_ms;
  // No page bigger than the largest frame, so every response can be sent.
  l.max_page_bytes = c.max_frame_bytes;
  l.max_reads_per_connection = c.max_reads_per_connection;
  l.max_response_bytes = static_cast<std::size_t>(c.max_response_bytes);
  l.idle_timeout_ms = c.idle_timeout_ms;  // announced in Welcome
  l.send_rate = c.send_rate;
  l.send_burst = c.send_burst;
  return l;
}

ServiceAuth service_auth(const Config& c) {
  ServiceAuth a;
  a.keys = c.keys.get();
  a.registration_open = c.registration == "open";
  a.login_token_ttl = std::chrono::seconds(c.login_token_ttl_s);
  return a;
}

SessionLimits session_limits(const Config& c) {
  SessionLimits l;
  l.max_frame_bytes = c.max_frame_bytes;
  l.handshake_timeout = std::chrono::milliseconds(c.handshake_timeout_ms);
  l.frame_timeout = std::chrono::milliseconds(c.frame_timeout_ms);
  l.idle_timeout = std::chrono::milliseconds(c.idle_timeout_ms);
  l.write_timeout = std::chrono::milliseconds(c.write_timeout_ms);
  return l;
}

ListenerLimits listener_limits(const Config& c, std::uint64_t open_file_limit) {
  ListenerLimits l;
  l.session = session_limits(c);
  l.max_connections = c.max_connections != 0
                          ? c.max_connections
                          : static_cast<std::size_t>(
                                auto_max_connections(open_file_limit, reserved_descriptors(c)));
  l.max_connections_per_address = c.max_connections_per_ip;
  return l;
}

GroupCommitOptions writer_options(const Config& c) {
  GroupCommitOptions w;
  w.pg = pg_session(c);
  w.redis = parse_redis_url(c.redis_url);
  w.batch_max = c.batch_max;
  w.batch_delay = std::chrono::microseconds(c.batch_delay_us);
  w.queue_capacity = c.queue_capacity;
  return w;
}

ReaderPoolOptions reader_options(const Config& c) {
  ReaderPoolOptions r;
  r.pg = pg_session(c);
  r.threads = c.pg_pool;
  r.gap_fill = std::chrono::milliseconds(c.gap_fill_ms);
  return r;
}

AccountStoreOptions account_options(const Config& c) {
  AccountStoreOptions a;
  a.pg = pg_session(c);
  a.threads = c.auth_threads;
  return a;
}

std::uint64_t reserved_descriptors(const Config& c) {
  // Besides its connections the process holds: two descriptors per PostgreSQL
  // connection of the read pool and of the writer lanes (a lane holds a Redis
  // connection too; a reconnect briefly holds the old and the new socket), one
  // per I/O thread (its epoll), and a margin of 64 for the listener, the
  // commit bus, the password-hashing pool, the migration connection, log
  // files and libraries.
  return 64 + 2ull * (c.pg_pool + c.pg_writers) + c.threads;
}

std::uint64_t auto_max_connections(std::uint64_t open_file_limit, std::uint64_t reserved) {
  // At least one even when the limit leaves no room (the server warns then);
  // at most the ceiling of an explicit value, so that an unlimited
  // RLIMIT_NOFILE does not make the cap meaningless.
  if (open_file_limit <= reserved) return 1;
  return std::min<std::uint64_t>(open_file_limit - reserved, kMaxConnectionsCeiling);
}

std::string describe(const Config& c) {
  return fmt::format(
      "listen={} pg_url={} redis_url={} threads={} batch_max={} batch_delay_us={} pg_writers={} "
      "queue_capacity={} max_frame_bytes={} max_body_bytes={} max_pull_limit={} max_wait_ms={} "
      "gap_fill_ms={} pg_pool={} drain_timeout_ms={} max_connections={} max_connections_per_ip={} "
      "handshake_timeout_ms={} frame_timeout_ms={} idle_timeout_ms={} write_timeout_ms={} "
      "max_reads_per_connection={} max_response_bytes={} send_rate={} send_burst={} "
      "auth={}{} registration={} login_token_ttl={} auth_threads={} log_level={}",
      c.listen, mask_url_password(c.pg_url), mask_url_password(c.redis_url), c.threads,
      c.batch_max, c.batch_delay_us, c.pg_writers, c.queue_capacity, c.max_frame_bytes, c.max_body_bytes,
      c.max_pull_limit, c.max_wait_ms, c.gap_fill_ms, c.pg_pool, c.drain_timeout_ms,
      c.max_connections == 0 ? std::string("auto") : std::to_string(c.max_connections),
      c.max_connections_per_ip, c.handshake_timeout_ms, c.frame_timeout_ms,
      c.idle_timeout_ms, c.write_timeout_ms, c.max_reads_per_connection, c.max_response_bytes,
      c.send_rate, c.send_burst, c.auth,
      c.keys ? fmt::format(" ({} key(s), signing with '{}')", c.keys->keys().size(),
                           c.keys->signing_key().id)
             : std::string(),
      c.registration, c.login_token_ttl, c.auth_threads, c.log_level);
}

ParseResult parse_config(int argc, char** argv, Config& c) {
  CLI::App app{"im-server: durable instant-messaging server (TCP, FlatBuffers frames)"};
  app.set_version_flag("--version", "im-server 0.1.0");
  auto opt = [&](const char* flag, auto& value, const char* env, const char* help) {
    return app.add_option(flag, value, help)->envname(env)->capture_default_str();
  };
  opt("--listen", c.listen, "IM_LISTEN", "address to listen on, HOST:PORT (port 0: any free port)");
  opt("--pg-url", c.pg_url, "IM_PG_URL", "PostgreSQL connection URL");
  opt("--redis-url", c.redis_url, "IM_REDIS_URL", "Redis URL, redis://[:password@]host:port[/db]");
  opt("--threads", c.threads, "IM_THREADS", "I/O threads (0: one per hardware thread)");
  opt("--batch-max", c.batch_max, "IM_BATCH_MAX", "group commit: most sends per transaction");
  opt("--batch-delay-us", c.batch_delay_us, "IM_BATCH_DELAY_US",
      "group commit: longest wait for a batch to fill, after its first send (µs)");
  opt("--queue-capacity", c.queue_capacity, "IM_QUEUE_CAPACITY",
      "sends waiting for the writer before new ones get 'busy'");
  opt("--max-frame-bytes", c.max_frame_bytes, "IM_MAX_FRAME_BYTES", "largest frame accepted");
  opt("--max-body-bytes", c.max_body_bytes, "IM_MAX_BODY_BYTES", "largest message body accepted");
  opt("--max-pull-limit", c.max_pull_limit, "IM_MAX_PULL_LIMIT", "most messages per pull or history page");
  opt("--max-wait-ms", c.max_wait_ms, "IM_MAX_WAIT_MS", "longest long-poll wait");
  opt("--gap-fill-ms", c.gap_fill_ms, "IM_GAP_FILL_MS",
      "a missing inbox seq older than this is filled with a tombstone");
  opt("--pg-pool", c.pg_pool, "IM_PG_POOL", "PostgreSQL connections (threads) for reads");
  opt("--pg-writers", c.pg_writers, "IM_PG_WRITERS",
      "group commit: writer lanes (a thread and a PostgreSQL connection each); a receiver's "
      "inbox is always written by the same lane");
  opt("--drain-timeout-ms", c.drain_timeout_ms, "IM_DRAIN_TIMEOUT_MS",
      "on SIGINT/SIGTERM, longest wait for in-flight requests");
  opt("--max-connections", c.max_connections, "IM_MAX_CONNECTIONS",
      "open connections at most; above it a new connection gets Error{busy} and is closed. "
      "The open-file limit is raised to its hard limit at start-up; 0: automatic, that limit "
      "minus the descriptors the server keeps for itself (logged at start-up)");
  opt("--max-connections-per-ip", c.max_connections_per_ip, "IM_MAX_CONNECTIONS_PER_IP",
      "open connections per source address at most (0: no cap; behind a proxy every client "
      "shares its address); above it a new connection gets Error{busy} and is closed");
  opt("--handshake-timeout-ms", c.handshake_timeout_ms, "IM_HANDSHAKE_TIMEOUT_MS",
      "a connection without a successful Hello this long after accept gets "
      "Error{protocol_error} and is closed (0: no deadline)");
  opt("--frame-timeout-ms", c.frame_timeout_ms, "IM_FRAME_TIMEOUT_MS",
      "once a frame's first byte has arrived, the whole frame must arrive within this "
      "(slowloris); else Error{protocol_error} and close (0: no deadline)");
  opt("--idle-timeout-ms", c.idle_timeout_ms, "IM_IDLE_TIMEOUT_MS",
      "a connection that sends no frame this long while no request of it is pending gets "
      "Error{protocol_error} and is closed; clients keep alive with Ping (0: never)");
  opt("--write-timeout-ms", c.write_timeout_ms, "IM_WRITE_TIMEOUT_MS",
      "a connection whose client takes none of its queued responses (a write of at most 1 MiB "
      "or one frame) this long is reset (0: never)");
  opt("--max-reads-per-connection", c.max_reads_per_connection, "IM_MAX_READS_PER_CONNECTION",
      "Pull/History queries running at once per connection; more wait, as do reads whose "
      "worst-case page does not fit beside the connection's queued responses (16 MiB)");
  opt("--max-response-bytes", c.max_response_bytes, "IM_MAX_RESPONSE_BYTES",
      "bytes of responses being built (worst case) or queued, all connections together; beyond "
      "it a Pull or History gets Error{busy} with retry_after_ms (0: no ceiling)");
  opt("--send-rate", c.send_rate, "IM_SEND_RATE",
      "per-user send rate limit, messages/s sustained (token bucket; 0: unlimited); over it a "
      "Send gets Error{rate_limited} with retry_after_ms and is not stored");
  opt("--send-burst", c.send_burst, "IM_SEND_BURST",
      "per-user send burst: the bucket size, i.e. how many sends a user who has been quiet "
      "may make back to back before --send-rate applies");
  opt("--auth", c.auth, "IM_AUTH",
      "token: Hello must carry a token signed with one of the keys; none: Hello's user is "
      "trusted (development only; logs a warning)");
  opt("--auth-secret-file", c.auth_secret_file, "IM_AUTH_SECRET_FILE",
      "signing keys, one KEY_ID=SECRET per line (secret >= 32 bytes); the first signs new "
      "tokens, all verify (rotation: list the new key first, drop the old one once its tokens "
      "expired). Or put the same entries in the IM_AUTH_SECRET environment variable");
  opt("--registration", c.registration, "IM_REGISTRATION",
      "open: anyone may Register a password account; closed: Register is refused");
  opt("--login-token-ttl", c.login_token_ttl, "IM_LOGIN_TOKEN_TTL",
      "lifetime of tokens handed out by Register and Login (900s, 30m, 24h, 7d)");
  opt("--auth-threads", c.auth_threads, "IM_AUTH_THREADS",
      "threads hashing passwords (Argon2id, 64 MiB each while hashing): the cap on what "
      "Register and Login can cost");
  opt("--tls-cert", c.tls_cert, "IM_TLS_CERT",
      "TLS: certificate chain file (PEM, the server's certificate first); with --tls-key the "
      "listener speaks only TLS 1.2+ (default: plain TCP)");
  opt("--tls-key", c.tls_key, "IM_TLS_KEY", "TLS: the certificate's private key file (PEM, unencrypted)");
  opt("--log-level", c.log_level, "IM_LOG_LEVEL", "trace, debug, info, warn, error, critical, off");
  opt("--port-file", c.port_file, "IM_PORT_FILE", "write the bound port to this file once listening");
  opt("--server-name", c.server_name, "IM_SERVER_NAME", "name sent to clients in Welcome");
  app.add_flag("--check-config", c.check_config,
               "validate the configuration, print it and exit (connects to nothing)");
  if (const char* secret = std::getenv("IM_AUTH_SECRET")) c.auth_secret = secret;
  try {
    app.parse(argc, argv);
    validate(c);
  } catch (const CLI::ParseError& e) {
    return {ParseResult::Action::exit, app.exit(e)};
  } catch (const std::invalid_argument& e) {
    std::cerr << "im-server: invalid configuration: " << e.what() << "\n";
    return {ParseResult::Action::exit, 2};
  }
  return {};
}

}  // namespace im::server
