#include "server/app/server.hpp"

#include <chrono>
#include <stdexcept>

#include <pqxx/pqxx>

#include "server/common/log.hpp"
#include "server/common/thread_name.hpp"
#include "server/net/fd_limit.hpp"
#include "server/net/listener.hpp"
#include "server/net/tls_context.hpp"
#include "server/service/service.hpp"
#include "server/service/waiters.hpp"
#include "server/storage/fault_points.hpp"
#include "server/storage/pg_account_store.hpp"
#include "server/storage/pg_reader_pool.hpp"
#include "server/storage/redis_commit_bus.hpp"
#include "server/storage/schema.hpp"
#include "server/storage/sharded_writer.hpp"

namespace im::server {

Server::Server(Config config) : config_(std::move(config)) {
  validate(config_);
  logs::set_level(config_.log_level);
}

Server::~Server() { stop(); }

std::uint16_t Server::port() const { return listener_ ? listener_->port() : 0; }

std::size_t Server::long_polls() const { return waiters_ ? waiters_->size() : 0; }

std::size_t Server::sessions() const { return listener_ ? listener_->session_count() : 0; }

void Server::start() {
  auto& log = logs::app();
  log.info("starting: {}", describe(config_));
  if (*fault::describe()) log.warn("TEST-ONLY fault points enabled: {}", fault::describe());

  // Migrate first: a server that cannot reach its database should say so now.
  // Retried briefly so that `docker compose up` and scripts may start us first.
  for (int attempt = 1;; ++attempt) {
    try {
      pqxx::connection conn(config_.pg_url);
      const int applied = migrate(conn);
      log.info("schema at version {} ({} migration(s) applied now)", latest_schema_version(),
                applied);
      break;
    } catch (const std::exception& e) {
      if (attempt >= 20) {
        throw std::runtime_error(std::string("cannot prepare the database: ") + e.what());
      }
      log.warn("database not ready ({}); retrying", e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }

  waiters_ = std::make_unique<Waiters>();
  // Every component's options come from Config through the functions beside
  // validate() (config.cpp), which is where the defaults live.
  const GroupCommitOptions wopt = writer_options(config_);
  // Commits wake long polls here at once and, through Redis, in every other
  // im-server process sharing this database.
  bus_ = std::make_unique<RedisCommitBus>(wopt.redis, *waiters_);
  writer_ = std::make_unique<ShardedWriter>(wopt, config_.pg_writers, *bus_);

  reader_ = std::make_unique<PgReaderPool>(reader_options(config_));

  ServiceAuth auth = service_auth(config_);
  if (config_.keys) {
    accounts_ = std::make_unique<PgAccountStore>(account_options(config_));
    auth.accounts = accounts_.get();
  } else {
    log.warn("--auth none: Hello's user is taken on trust, anyone can act as anyone; "
              "for development only");
  }
  service_ = std::make_unique<Service>(service_limits(config_), *writer_, *reader_, *waiters_,
                                       config_.server_name, auth);

  std::vector<asio::io_context*> contexts;
  for (unsigned i = 0; i < config_.threads; ++i) {
    io_.push_back(std::make_unique<asio::io_context>(1));
    work_.push_back(asio::make_work_guard(*io_.back()));
    contexts.push_back(io_.back().get());
  }
  // Every connection is a descriptor: make room first, since the default cap
  // (--max-connections 0) is what the limit leaves after our own descriptors.
  const FdLimit fds = raise_fd_limit();
  const std::uint64_t reserved = reserved_descriptors(config_);
  const ListenerLimits nlimits = listener_limits(config_, fds.soft);
  log.info("open-file limit {} (hard {}{})", fds.soft, fds.hard, fds.raised ? ", raised" : "");
  if (config_.max_connections == 0) {
    log.info("connection cap {} (automatic: the open-file limit minus {} descriptors kept for "
             "PostgreSQL, Redis, the listener and the threads)",
             nlimits.max_connections, reserved);
  } else {
    log.info("connection cap {} (--max-connections)", nlimits.max_connections);
  }
  // An explicit cap may not fit; the automatic one fits by construction
  // unless the limit leaves no room at all.
  if (fds.soft < nlimits.max_connections + reserved) {
    const std::string cap = config_.max_connections == 0
                                ? std::string("the connection cap")
                                : "--max-connections " + std::to_string(config_.max_connections);
    log.warn("{} needs about {} open files but the limit is {}: accept fails (EMFILE) beyond "
             "about {} connections; raise the hard limit (ulimit -Hn, LimitNOFILE=)",
             cap, nlimits.max_connections + reserved, fds.soft,
             fds.soft > reserved ? fds.soft - reserved : 0);
  }
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(config_.listen_host),
                                         config_.listen_port);
  std::shared_ptr<asio::ssl::context> tls;
  if (!config_.tls_cert.empty()) {
    tls = make_server_tls_context(config_.tls_cert, config_.tls_key);
    log.info("TLS on: TLS 1.2 and later only, certificate {}, key {}", config_.tls_cert,
              config_.tls_key);
  } else {
    log.info("TLS off: plain TCP (enable with --tls-cert and --tls-key)");
  }
  listener_ = std::make_unique<Listener>(contexts, endpoint, *service_, nlimits, std::move(tls));

  bus_->start();
  writer_->start();
  reader_->start();
  if (accounts_) accounts_->start();
  for (std::size_t i = 0; i < io_.size(); ++i) {
    io_threads_.emplace_back([ctx = io_[i].get(), i] {
      name_this_thread("im-io-" + std::to_string(i));
      ctx->run();
    });
  }
  listener_->start();
  running_ = true;
  log.info("listening on {}:{}", config_.listen_host, listener_->port());
}

void Server::stop() {
  if (!running_) return;
  running_ = false;
  auto& log = logs::app();
  log.info("shutting down: draining in-flight requests");
  listener_->stop_accepting();
  service_->begin_shutdown();
  listener_->shutdown_sessions();
  // Commit and ack everything already queued; later sends are refused.
  writer_->stop();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.drain_timeout_ms);
  while (listener_->session_count() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (const auto left = listener_->session_count(); left > 0) {
    log.warn("{} connection(s) still open after the drain timeout; closing", left);
  }
  reader_->stop();
  if (accounts_) accounts_->stop();
  bus_->stop();
  work_.clear();
  for (auto& io : io_) io->stop();
  for (auto& t : io_threads_) t.join();
  io_threads_.clear();
  // The last lines: every counter, while the listener's are still there.
  for (const std::string& line : format_stats(stats())) log.info("{}", line);
  listener_.reset();
  log.info("stopped");
}

ServerStats Server::stats() const {
  ServerStats s;
  if (listener_) {
    const NetStats& n = listener_->stats();
    auto& c = s.connections;
    c.open = listener_->session_count();
    c.accepted = listener_->accepted();
    c.refused_max_connections = n.rejected_total.total();
    c.refused_per_address = n.rejected_per_address.total();
    c.handshake_timeouts = n.handshake_timeouts.total();
    c.frame_timeouts = n.frame_timeouts.total();
    c.idle_timeouts = n.idle_timeouts.total();
    c.write_timeouts = n.write_timeouts.total();
    c.slow_client_resets = n.slow_client_resets.load(std::memory_order_relaxed);
    c.tls_handshake_failures = n.tls_handshake_failures.total();
    c.accept_errors = n.accept_errors.total();
  }
  if (service_) {
    s.service = service_->context().stats->snapshot();
    auto& gate = service_->read_gate();
    s.reads.waited = gate.waited();
    s.reads.dropped = gate.dropped();
    s.reads.busy_refusals = gate.budget().refusals();
    s.reads.response_bytes_peak = gate.budget().peak();
    s.reads.response_bytes_capacity = gate.budget().capacity();
  }
  if (reader_) {
    s.reads.cancelled = reader_->reads_cancelled();
    s.reads.tombstones_filled = reader_->gaps_filled();
  }
  if (writer_) s.writer = writer_->stats();
  if (waiters_) {
    s.long_polls.waiting = waiters_->size();
    s.long_polls.answered_from_commit = waiters_->answered_from_commit();
    s.long_polls.answered_by_query = waiters_->answered_from_query();
    s.long_polls.quiet_starts = waiters_->quiet_starts();
  }
  if (bus_) s.bus = bus_->stats();
  return s;
}

}  // namespace im::server
