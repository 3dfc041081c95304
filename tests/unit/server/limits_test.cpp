// Unit: the pieces behind the connection and send limits — the per-user token
// bucket (driven by an injected clock), the connection caps and the log
// throttle. Their flags are tested with the others in config_test.cpp.
#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "server/net/connection_limiter.hpp"
#include "server/net/fd_limit.hpp"
#include "server/common/log_throttle.hpp"
#include "server/service/rate_limiter.hpp"

using namespace im::server;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

RateLimiter::Options bucket(double rate, std::uint32_t burst) {
  RateLimiter::Options o;
  o.rate = rate;
  o.burst = burst;
  return o;
}

int allowed_in_a_row(RateLimiter& limiter, const std::string& key, Clock::time_point now) {
  int n = 0;
  while (limiter.acquire(key, now).allowed && n < 1000000) ++n;
  return n;
}

}  // namespace

TEST_CASE("rate limiter: a burst, then one token per 1/rate seconds", "[unit][limits]") {
  RateLimiter limiter(bucket(10, 5));  // 10/s: a token every 100 ms
  const Clock::time_point t0{};
  CHECK(allowed_in_a_row(limiter, "alice", t0) == 5);

  const auto refused = limiter.acquire("alice", t0);
  CHECK_FALSE(refused.allowed);
  CHECK(refused.retry_after == 100ms);

  // 50 ms later half a token has come back: still refused, 50 ms to go.
  const auto half = limiter.acquire("alice", t0 + 50ms);
  CHECK_FALSE(half.allowed);
  CHECK(half.retry_after == 50ms);
  CHECK(limiter.acquire("alice", t0 + 100ms).allowed);
  CHECK_FALSE(limiter.acquire("alice", t0 + 100ms).allowed);

  // Sustained: over 10 s at most rate * 10 s (+ what was left) get through.
  int sent = 0;
  for (int ms = 101; ms <= 10100; ++ms) {
    if (limiter.acquire("alice", t0 + std::chrono::milliseconds(ms)).allowed) ++sent;
  }
  CHECK(sent == 100);
}

TEST_CASE("rate limiter: the bucket never holds more than the burst", "[unit][limits]") {
  RateLimiter limiter(bucket(1000, 3));
  const Clock::time_point t0{};
  CHECK(allowed_in_a_row(limiter, "u", t0) == 3);
  // An hour idle refills to the burst, not to an hour's worth of tokens.
  CHECK(allowed_in_a_row(limiter, "u", t0 + 1h) == 3);
}

TEST_CASE("rate limiter: users have separate buckets", "[unit][limits]") {
  RateLimiter limiter(bucket(1, 2));
  const Clock::time_point t0{};
  CHECK(allowed_in_a_row(limiter, "alice", t0) == 2);
  CHECK(allowed_in_a_row(limiter, "bob", t0) == 2);
  CHECK_FALSE(limiter.acquire("alice", t0).allowed);
  CHECK(limiter.acquire("alice", t0 + 1s).allowed);
}

TEST_CASE("rate limiter: rate 0 is unlimited and keeps no state", "[unit][limits]") {
  RateLimiter limiter(bucket(0, 1));
  CHECK_FALSE(limiter.enabled());
  for (int i = 0; i < 10000; ++i) REQUIRE(limiter.acquire("alice", Clock::time_point{}).allowed);
  CHECK(limiter.size() == 0);
}

TEST_CASE("rate limiter: a slow rate gives a long retry hint", "[unit][limits]") {
  RateLimiter limiter(bucket(0.5, 1));  // one send every 2 s
  const Clock::time_point t0{};
  CHECK(limiter.acquire("u", t0).allowed);
  const auto d = limiter.acquire("u", t0);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == 2000ms);
  CHECK_FALSE(limiter.acquire("u", t0 + 1999ms).allowed);
  CHECK(limiter.acquire("u", t0 + 2000ms).allowed);
}

TEST_CASE("rate limiter: a clock that goes backwards adds nothing", "[unit][limits]") {
  RateLimiter limiter(bucket(10, 1));
  const Clock::time_point t0 = Clock::time_point{} + 1h;
  CHECK(limiter.acquire("u", t0).allowed);
  CHECK_FALSE(limiter.acquire("u", t0 - 10min).allowed);
  CHECK(limiter.acquire("u", t0 + 100ms).allowed);
}

TEST_CASE("rate limiter: idle buckets are evicted, so memory stays bounded", "[unit][limits]") {
  auto o = bucket(100, 10);  // refills from empty in 100 ms
  o.sweep_interval = 1s;
  RateLimiter limiter(o);
  Clock::time_point now{};
  // 100 000 distinct users, 5 000 a second for 20 s: only about the last
  // sweep interval's worth (plus the refill time) may be held at any time.
  std::size_t most = 0;
  for (int i = 0; i < 100000; ++i) {
    now += 200us;
    REQUIRE(limiter.acquire("user" + std::to_string(i), now).allowed);
    most = std::max(most, limiter.size());
  }
  CHECK(most <= 16 * 1024 + 5000 + 500);
  CHECK(most < 100000 / 4);
  // A user who keeps sending keeps their (empty) bucket across sweeps.
  RateLimiter busy(o);
  Clock::time_point t{};
  CHECK(allowed_in_a_row(busy, "busy", t) == 10);
  for (int i = 0; i < 3000; ++i) {
    t += 1ms;
    busy.acquire("other" + std::to_string(i), t);
  }
  // 3 s later its bucket has refilled: it was swept or is full; either way a burst.
  CHECK(allowed_in_a_row(busy, "busy", t) == 10);
  CHECK_FALSE(busy.acquire("busy", t).allowed);
}

TEST_CASE("rate limiter: past max_keys new users pass untracked", "[unit][limits]") {
  auto o = bucket(1, 1);
  o.max_keys = 16 * 4;  // 4 per shard
  o.sweep_interval = 1h;
  RateLimiter limiter(o);
  const Clock::time_point t0{};
  for (int i = 0; i < 1000; ++i) REQUIRE(limiter.acquire("u" + std::to_string(i), t0).allowed);
  CHECK(limiter.size() <= 64);
  CHECK(limiter.untracked() >= 1000 - 64);
}

TEST_CASE("rate limiter: concurrent users on many threads stay within the rate", "[unit][limits]") {
  RateLimiter limiter(bucket(1, 100));  // time does not move: exactly the burst each
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        if (limiter.acquire(t % 2 ? "alice" : "bob", Clock::time_point{}).allowed) ++allowed;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(allowed == 200);
}

TEST_CASE("connection limiter: total and per-address caps", "[unit][limits]") {
  ConnectionLimiter limiter(5, 2);
  const auto a = asio::ip::make_address("10.0.0.1");
  const auto b = asio::ip::make_address("10.0.0.2");
  const auto a_mapped = asio::ip::make_address("::ffff:10.0.0.1");
  using A = ConnectionLimiter::Admission;
  CHECK(limiter.try_admit(a) == A::admitted);
  CHECK(limiter.try_admit(a_mapped) == A::admitted);  // the same address, as IPv6
  CHECK(limiter.try_admit(a) == A::too_many_from_address);
  CHECK(limiter.from(a) == 2);
  CHECK(limiter.try_admit(b) == A::admitted);
  CHECK(limiter.try_admit(b) == A::admitted);
  CHECK(limiter.try_admit(asio::ip::make_address("10.0.0.3")) == A::admitted);
  CHECK(limiter.total() == 5);
  CHECK(limiter.try_admit(asio::ip::make_address("10.0.0.4")) == A::too_many_total);
  limiter.release(a);
  CHECK(limiter.from(a) == 1);
  CHECK(limiter.try_admit(asio::ip::make_address("10.0.0.4")) == A::admitted);
  limiter.release(a_mapped);
  CHECK(limiter.from(a) == 0);
  CHECK(limiter.total() == 4);

  ConnectionLimiter no_per_address(3, 0);
  for (int i = 0; i < 3; ++i) CHECK(no_per_address.try_admit(a) == A::admitted);
  CHECK(no_per_address.try_admit(a) == A::too_many_total);
}

TEST_CASE("fd limit: the soft limit is raised to the hard limit", "[unit][limits]") {
  const FdLimit l = raise_fd_limit();
  rlimit now{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &now) == 0);
  CHECK(now.rlim_cur == l.soft);
  if (now.rlim_max != RLIM_INFINITY) CHECK(now.rlim_cur == now.rlim_max);
  CHECK(raise_fd_limit().soft == l.soft);  // idempotent
}

TEST_CASE("log throttle: one line per interval, counting what it held back", "[unit][limits]") {
  LogThrottle throttle(1s);
  const Clock::time_point t0 = Clock::time_point{} + 1h;
  CHECK(throttle.note(t0) == 1);
  for (int i = 0; i < 99; ++i) CHECK(throttle.note(t0 + 10ms) == 0);
  CHECK(throttle.note(t0 + 1s) == 100);
  CHECK(throttle.note(t0 + 1500ms) == 0);
  CHECK(throttle.note(t0 + 2s) == 2);
  CHECK(throttle.total() == 103);
}
