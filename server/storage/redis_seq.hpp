#pragma once
// RedisSeqAllocator: hands out per-receiver inbox seqs from Redis counters
// (key "im:seq:<user>"), one pipelined round trip per batch.
//
// Redis is the fast path, not the authority: the writer checks every range it
// gets against PostgreSQL and raises a counter that is behind (Redis restarted
// empty, flushed, evicted or failed over) with raise_floor.
//
// Thread-safety: none; owned and used by the writer thread only. Throws
// RedisError on any failure; the connection is then re-opened on next use.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

struct redisContext;

namespace im::server {

struct RedisError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// redis://[:password@]host[:port][/db]
struct RedisEndpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string password;
};

/// Parses a redis:// URL; throws std::invalid_argument with a clear message.
RedisEndpoint parse_redis_url(const std::string& url);

class RedisSeqAllocator {
 public:
  RedisSeqAllocator(RedisEndpoint endpoint, std::chrono::milliseconds timeout);
  ~RedisSeqAllocator();
  RedisSeqAllocator(const RedisSeqAllocator&) = delete;
  RedisSeqAllocator& operator=(const RedisSeqAllocator&) = delete;

  /// INCRBY counts[i] on owners[i]'s counter for every i, pipelined; `last`
  /// receives each counter's new value (the range is last-count+1 .. last).
  void allocate(std::span<const std::string> owners, std::span<const std::int64_t> counts,
                std::vector<std::int64_t>& last);

  /// Sets owner's counter to at least `floor` (atomically, never lowers it).
  void raise_floor(const std::string& owner, std::int64_t floor);

  /// Returns the unused top of a range: sets owners[i]'s counter to to[i] if it
  /// still equals from[i] (nobody allocated after us), atomically, pipelined.
  /// given[i] says whether it did; a range not given back must be tombstoned.
  void give_back(std::span<const std::string> owners, std::span<const std::int64_t> from,
                 std::span<const std::int64_t> to, std::vector<bool>& given);

  /// Drops the connection (e.g. after a timeout left it in an unknown state).
  void reset();

 private:
  redisContext* context();
  /// Drops the connection (its state is unknown) and throws RedisError(why).
  [[noreturn]] void fail(const std::string& why);
  /// Reads the replies to `count` pipelined commands, in order, as
  /// take(i, reply); fail()s if the connection breaks.
  template <class Take>
  void read_replies(redisContext* c, std::size_t count, Take take);

  RedisEndpoint endpoint_;
  std::chrono::milliseconds timeout_;
  struct Free {
    void operator()(redisContext* c) const;
  };
  std::unique_ptr<redisContext, Free> ctx_;
};

}  // namespace im::server
