// Unit: configuration parsing and validation, PostgreSQL array literals,
// Redis URLs and the long-poll registry.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <cstdlib>

#include "server/app/config.hpp"
#include "tests/support/parse_args.hpp"
#include "server/service/waiters.hpp"
#include "server/storage/pg_array.hpp"
#include "server/storage/redis_seq.hpp"

using namespace im::server;

namespace {
ParseResult parse(std::vector<std::string> args, Config& c) {
  return im::test::parse_args(std::move(args), c);
}
}  // namespace

TEST_CASE("defaults validate and flags override", "[unit][config]") {
  Config c;
  REQUIRE(parse({"--listen", "0.0.0.0:9000", "--batch-max", "50", "--threads", "3"}, c).action ==
          ParseResult::Action::run);
  CHECK(c.listen_host == "0.0.0.0");
  CHECK(c.listen_port == 9000);
  CHECK(c.batch_max == 50);
  CHECK(c.threads == 3);
}

TEST_CASE("environment variables fill settings, and flags win over them", "[unit][config]") {
  ::setenv("IM_BATCH_DELAY_US", "777", 1);
  ::setenv("IM_BATCH_MAX", "12", 1);
  Config c;
  REQUIRE(parse({"--batch-max", "34"}, c).action == ParseResult::Action::run);
  CHECK(c.batch_delay_us == 777);
  CHECK(c.batch_max == 34);
  ::unsetenv("IM_BATCH_DELAY_US");
  ::unsetenv("IM_BATCH_MAX");
}

TEST_CASE("bad values exit non-zero", "[unit][config]") {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--listen", "nonsense"},
           {"--listen", "127.0.0.1:70000"},
           {"--batch-max", "0"},
           {"--batch-max", "abc"},
           {"--max-frame-bytes", "10"},
           {"--redis-url", "http://x"},
           {"--log-level", "loud"},
           {"--no-such-flag"}}) {
    Config c;
    const auto r = parse(args, c);
    INFO(args[0]);
    CHECK(r.action == ParseResult::Action::exit);
    CHECK(r.exit_code != 0);
  }
}

TEST_CASE("IPv6 listen addresses and password masking", "[unit][config]") {
  Config c;
  c.listen = "[::1]:7400";
  c.auth = "none";
  validate(c);
  CHECK(c.listen_host == "::1");
  CHECK(mask_url_password("postgresql://im:secret@db:5432/im") == "postgresql://im:***@db:5432/im");
  CHECK(mask_url_password("postgresql://im@db/im") == "postgresql://im@db/im");
  CHECK(describe(Config{}).find("secret") == std::string::npos);
}

TEST_CASE("PostgreSQL array literals quote every element", "[unit][storage]") {
  PgArray a;
  a.add("plain");
  a.add("with \"quotes\" and \\backslash\\");
  a.add("{braces}, commas");
  a.add("");
  CHECK(std::move(a).str() ==
        R"({"plain","with \"quotes\" and \\backslash\\","{braces}, commas",""})");
  PgArray n;
  n.add(std::int64_t{-5});
  n.add(std::int64_t{42});
  n.add_null();
  CHECK(std::move(n).str() == "{-5,42,NULL}");
  CHECK(PgArray{}.str() == "{}");
}

TEST_CASE("redis URLs", "[unit][storage]") {
  const auto a = parse_redis_url("redis://127.0.0.1:6380");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 6380);
  const auto b = parse_redis_url("redis://:pw@cache/2");
  CHECK(b.host == "cache");
  CHECK(b.port == 6379);
  CHECK(b.password == "pw");
  CHECK(b.db == 2);
  CHECK_THROWS_AS(parse_redis_url("http://x"), std::invalid_argument);
  CHECK_THROWS_AS(parse_redis_url("redis://host:notaport"), std::invalid_argument);
  CHECK_THROWS_AS(parse_redis_url("redis://:6379"), std::invalid_argument);
}

TEST_CASE("limit flags: defaults, flags, environment and bad values", "[unit][config]") {
  Config d;
  REQUIRE(parse({}, d).action == ParseResult::Action::run);
  CHECK(d.max_connections == 0);  // automatic, from the open-file limit
  CHECK(describe(d).find("max_connections=auto ") != std::string::npos);
  CHECK(d.max_connections_per_ip == 1000);
  CHECK(d.handshake_timeout_ms == 10000);
  CHECK(d.frame_timeout_ms == 10000);
  CHECK(d.idle_timeout_ms == 300000);
  CHECK(d.send_rate == 10000);
  CHECK(d.send_burst == 20000);

  ::setenv("IM_IDLE_TIMEOUT_MS", "1234", 1);
  ::setenv("IM_SEND_RATE", "2.5", 1);
  ::setenv("IM_MAX_CONNECTIONS_PER_IP", "7", 1);
  Config c;
  REQUIRE(parse({"--max-connections", "100", "--handshake-timeout-ms", "0", "--frame-timeout-ms",
                 "250", "--send-burst", "3", "--max-connections-per-ip", "9"},
                c)
              .action == ParseResult::Action::run);
  ::unsetenv("IM_IDLE_TIMEOUT_MS");
  ::unsetenv("IM_SEND_RATE");
  ::unsetenv("IM_MAX_CONNECTIONS_PER_IP");
  CHECK(c.max_connections == 100);
  CHECK(describe(c).find("max_connections=100 ") != std::string::npos);
  CHECK(c.max_connections_per_ip == 9);  // the flag wins
  CHECK(c.handshake_timeout_ms == 0);
  CHECK(c.frame_timeout_ms == 250);
  CHECK(c.idle_timeout_ms == 1234);
  CHECK(c.send_rate == 2.5);
  CHECK(c.send_burst == 3);
  CHECK(describe(c).find("idle_timeout_ms=1234") != std::string::npos);

  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--max-connections", "10000001"},
           {"--max-connections", "-1"},
           {"--max-connections-per-ip", "x"},
           {"--handshake-timeout-ms", "3600001"},
           {"--frame-timeout-ms", "-5"},
           {"--idle-timeout-ms", "86400001"},
           {"--send-rate", "-1"},
           {"--send-rate", "nan"},
           {"--send-rate", "inf"},
           {"--send-burst", "0"}}) {
    Config bad;
    const auto r = parse(args, bad);
    INFO(args[0] << " " << args[1]);
    CHECK(r.action == ParseResult::Action::exit);
    CHECK(r.exit_code != 0);
  }
}

TEST_CASE("auth flags: token mode needs keys, from a file or IM_AUTH_SECRET, never both",
          "[unit][config][auth]") {
  const std::string secret(40, 's');
  Config none;
  REQUIRE(parse({"--auth", "none"}, none).action == ParseResult::Action::run);
  CHECK(none.keys == nullptr);
  CHECK(describe(none).find("auth=none") != std::string::npos);

  Config missing;  // the default is token, and it has no keys
  CHECK(parse({"--auth", "token"}, missing).action == ParseResult::Action::exit);
  CHECK(parse({"--auth", "maybe"}, missing).exit_code == 2);

  const std::string file = "config_test_keys.txt";
  {
    std::ofstream out(file);
    out << "# new key first: it signs\nk2=" << secret << "\n\nk1=" << std::string(32, 'o') << "\n";
  }
  Config from_file;
  REQUIRE(parse({"--auth-secret-file", file, "--login-token-ttl", "30m", "--registration", "closed"},
                from_file)
              .action == ParseResult::Action::run);
  REQUIRE(from_file.keys != nullptr);
  CHECK(from_file.keys->keys().size() == 2);
  CHECK(from_file.keys->signing_key().id == "k2");
  CHECK(from_file.login_token_ttl_s == 1800);
  CHECK(from_file.registration == "closed");
  // The keys' secrets never reach the start-up line.
  CHECK(describe(from_file).find(secret) == std::string::npos);
  CHECK(describe(from_file).find("2 key(s), signing with 'k2'") != std::string::npos);

  ::setenv("IM_AUTH_SECRET", ("env1=" + secret).c_str(), 1);
  Config from_env;
  CHECK(parse({"--auth", "token"}, from_env).action == ParseResult::Action::run);
  REQUIRE(from_env.keys != nullptr);
  CHECK(from_env.keys->signing_key().id == "env1");
  Config both;
  CHECK(parse({"--auth-secret-file", file}, both).action == ParseResult::Action::exit);
  ::unsetenv("IM_AUTH_SECRET");

  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--auth-secret-file", "/nonexistent/keys"},
           {"--auth-secret-file", file, "--login-token-ttl", "0"},
           {"--auth-secret-file", file, "--login-token-ttl", "forever"},
           {"--auth-secret-file", file, "--registration", "maybe"},
           {"--auth-secret-file", file, "--auth-threads", "0"}}) {
    Config bad;
    INFO(args[1]);
    CHECK(parse(args, bad).action == ParseResult::Action::exit);
  }
  std::remove(file.c_str());
}
