// Unit: the options each component takes are derived from Config (issue 14,
// point 5), the one place the defaults live. Every Config field a component
// uses is set here to a value unlike both its default and the component
// struct's neutral value, so a field the derivation forgot to copy fails.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>

#include "server/app/config.hpp"
#include "server/net/listener.hpp"
#include "server/net/session.hpp"
#include "server/service/service.hpp"
#include "server/storage/group_commit_writer.hpp"
#include "server/storage/pg_account_store.hpp"
#include "server/storage/pg_reader_pool.hpp"

using namespace im::server;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// Every field differs from Config{}'s.
Config changed() {
  Config c;
  c.pg_url = "postgresql://other@db:5433/x";
  c.redis_url = "redis://:pw@cache:6390/3";
  c.threads = 3;
  c.batch_max = 77;
  c.batch_delay_us = 333;
  c.pg_writers = 2;
  c.queue_capacity = 999;
  c.max_frame_bytes = 200000;
  c.max_body_bytes = 5000;
  c.max_pull_limit = 7;
  c.max_wait_ms = 4321;
  c.gap_fill_ms = 1234;
  c.pg_pool = 5;
  c.max_connections = 4242;
  c.max_connections_per_ip = 17;
  c.handshake_timeout_ms = 1111;
  c.frame_timeout_ms = 2222;
  c.idle_timeout_ms = 3333;
  c.write_timeout_ms = 4444;
  c.max_reads_per_connection = 3;
  c.max_response_bytes = 123456789;
  c.send_rate = 12.5;
  c.send_burst = 9;
  c.registration = "closed";
  c.login_token_ttl_s = 900;  // what validate() makes of --login-token-ttl 15m
  c.auth_threads = 4;
  return c;
}

}  // namespace

TEST_CASE("service_limits carries every Config field it derives", "[unit][config]") {
  const Config c = changed();
  const ServiceLimits l = service_limits(c);
  CHECK(l.max_frame_bytes == 200000);
  CHECK(l.max_body_bytes == 5000);
  CHECK(l.max_pull_limit == 7);
  CHECK(l.default_pull_limit == 7);  // 100, unless --max-pull-limit is smaller
  CHECK(l.max_wait_ms == 4321);
  CHECK(l.max_page_bytes == 200000);  // a page never exceeds a frame
  CHECK(l.max_reads_per_connection == 3);
  CHECK(l.max_response_bytes == 123456789);
  CHECK(l.idle_timeout_ms == 3333);
  CHECK(l.send_rate == 12.5);
  CHECK(l.send_burst == 9);

  const Config d;
  const ServiceLimits dl = service_limits(d);
  CHECK(dl.max_frame_bytes == d.max_frame_bytes);
  CHECK(dl.max_frame_bytes == im::protocol::kDefaultMaxFrameBytes);
  CHECK(dl.default_pull_limit == 100);
  CHECK(dl.max_response_bytes == d.max_response_bytes);
  CHECK(dl.send_burst == d.send_burst);
}

TEST_CASE("service_auth carries the keys, registration and token lifetime", "[unit][config]") {
  Config c = changed();
  c.keys = std::make_shared<const im::auth::KeyRing>(
      im::auth::KeyRing::parse("k1=" + std::string(32, 'k'), "test"));
  const ServiceAuth a = service_auth(c);
  CHECK(a.keys == c.keys.get());
  CHECK_FALSE(a.registration_open);
  CHECK(a.login_token_ttl == seconds(900));
  CHECK(a.accounts == nullptr);  // the server sets its own store
  CHECK(service_auth(Config{}).registration_open);
}

TEST_CASE("session and listener limits carry every Config field they derive", "[unit][config]") {
  const Config c = changed();
  const SessionLimits s = session_limits(c);
  CHECK(s.max_frame_bytes == 200000);
  CHECK(s.handshake_timeout == milliseconds(1111));
  CHECK(s.frame_timeout == milliseconds(2222));
  CHECK(s.idle_timeout == milliseconds(3333));
  CHECK(s.write_timeout == milliseconds(4444));

  const ListenerLimits l = listener_limits(c, 1u << 20);
  CHECK(l.max_connections == 4242);  // explicit: whatever the open-file limit
  CHECK(listener_limits(c, 100).max_connections == 4242);
  CHECK(l.max_connections_per_address == 17);
  CHECK(l.session.max_frame_bytes == 200000);
  CHECK(l.session.handshake_timeout == milliseconds(1111));
  CHECK(l.session.frame_timeout == milliseconds(2222));
  CHECK(l.session.idle_timeout == milliseconds(3333));
  CHECK(l.session.write_timeout == milliseconds(4444));

  const Config d;
  CHECK(session_limits(d).handshake_timeout == milliseconds(d.handshake_timeout_ms));
  CHECK(session_limits(d).write_timeout == milliseconds(d.write_timeout_ms));
  CHECK(listener_limits(d, 1u << 20).max_connections_per_address == d.max_connections_per_ip);
}

TEST_CASE("writer, reader and account options carry every Config field they derive",
          "[unit][config]") {
  const Config c = changed();
  const GroupCommitOptions w = writer_options(c);
  CHECK(w.pg.url == c.pg_url);
  CHECK(w.redis.host == "cache");
  CHECK(w.redis.port == 6390);
  CHECK(w.redis.password == "pw");
  CHECK(w.redis.db == 3);
  CHECK(w.batch_max == 77);
  CHECK(w.batch_delay == microseconds(333));
  CHECK(w.queue_capacity == 999);

  const ReaderPoolOptions r = reader_options(c);
  CHECK(r.pg.url == c.pg_url);
  CHECK(r.threads == 5);
  CHECK(r.gap_fill == milliseconds(1234));

  const AccountStoreOptions a = account_options(c);
  CHECK(a.pg.url == c.pg_url);
  CHECK(a.threads == 4);

  const Config d;
  CHECK(writer_options(d).batch_max == d.batch_max);
  CHECK(writer_options(d).queue_capacity == d.queue_capacity);
  CHECK(reader_options(d).threads == d.pg_pool);
  CHECK(account_options(d).threads == d.auth_threads);
}

TEST_CASE("automatic connection cap (--max-connections 0): the open-file limit minus the process's own descriptors",
          "[unit][config]") {
  CHECK(auto_max_connections(20000, 100) == 19900);
  CHECK(auto_max_connections(1024, 80) == 944);
  // No room left: one connection (and the server warns), never zero or a wrap-around.
  CHECK(auto_max_connections(100, 100) == 1);
  CHECK(auto_max_connections(50, 100) == 1);
  CHECK(auto_max_connections(0, 0) == 1);
  // An unlimited RLIMIT_NOFILE is capped like an explicit value.
  CHECK(auto_max_connections(std::numeric_limits<std::uint64_t>::max(), 100) ==
        kMaxConnectionsCeiling);

  Config c;
  c.threads = 2;
  c.pg_pool = 4;
  c.pg_writers = 1;
  // A margin of 64, two per PostgreSQL connection of the pool and the lanes, one per I/O thread.
  CHECK(reserved_descriptors(c) == 64 + 2 * (4 + 1) + 2);
  c.pg_pool = 10;
  c.pg_writers = 3;
  c.threads = 8;
  const std::uint64_t reserved = reserved_descriptors(c);
  CHECK(reserved == 64 + 2 * (10 + 3) + 8);
  REQUIRE(c.max_connections == 0);  // the default is automatic
  for (const std::uint64_t limit : {1024ull, 20000ull, 1048576ull}) {
    const auto cap = listener_limits(c, limit).max_connections;
    CHECK(cap == limit - reserved);
    // What Server::start checks before warning: the default cap always fits.
    CHECK(cap + reserved <= limit);
  }
}
