#include "server/storage/redis_seq.hpp"

#include <charconv>
#include <stdexcept>

#include <hiredis/hiredis.h>

namespace im::server {
namespace {

constexpr const char* kSeqKeyPrefix = "im:seq:";

// Raise a counter to a floor atomically; a Lua script runs as one command.
constexpr const char* kRaiseFloorScript =
    "local c = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "local f = tonumber(ARGV[1]) "
    "if c < f then redis.call('SET', KEYS[1], ARGV[1]) return f end "
    "return c";

// Lower a counter from ARGV[1] to ARGV[2] only if it still reads ARGV[1].
constexpr const char* kGiveBackScript =
    "if tonumber(redis.call('GET', KEYS[1]) or '0') == tonumber(ARGV[1]) then "
    "redis.call('SET', KEYS[1], ARGV[2]) return 1 end "
    "return 0";

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

int parse_int(const std::string& s, const std::string& what) {
  int v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    throw std::invalid_argument("invalid " + what + " '" + s + "' in redis URL");
  }
  return v;
}

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

}  // namespace

RedisEndpoint parse_redis_url(const std::string& url) {
  constexpr std::string_view kScheme = "redis://";
  if (url.rfind(kScheme, 0) != 0) {
    throw std::invalid_argument("redis URL must start with redis:// (got '" + url + "')");
  }
  RedisEndpoint ep;
  std::string rest = url.substr(kScheme.size());
  if (const auto slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    if (!db.empty()) ep.db = parse_int(db, "database number");
    rest.resize(slash);
  }
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    std::string auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (const auto colon = auth.find(':'); colon != std::string::npos) auth = auth.substr(colon + 1);
    ep.password = auth;
  }
  if (const auto colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    ep.port = parse_int(rest.substr(colon + 1), "port");
    rest.resize(colon);
  }
  if (rest.empty()) throw std::invalid_argument("redis URL has no host: '" + url + "'");
  if (ep.port <= 0 || ep.port > 65535) throw std::invalid_argument("redis URL port out of range");
  ep.host = rest;
  return ep;
}

void RedisSeqAllocator::Free::operator()(redisContext* c) const { redisFree(c); }

RedisSeqAllocator::RedisSeqAllocator(RedisEndpoint endpoint, std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), timeout_(timeout) {}

RedisSeqAllocator::~RedisSeqAllocator() = default;

void RedisSeqAllocator::reset() { ctx_.reset(); }

redisContext* RedisSeqAllocator::context() {
  if (ctx_) return ctx_.get();
  const timeval tv = to_timeval(timeout_);
  std::unique_ptr<redisContext, Free> c(
      redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port, tv));
  if (!c) throw RedisError("redis: cannot allocate a context");
  if (c->err) throw RedisError(std::string("redis: connect: ") + c->errstr);
  if (redisSetTimeout(c.get(), tv) != REDIS_OK) throw RedisError("redis: cannot set timeout");
  auto simple = [&](Reply r) {
    if (!r) throw RedisError(std::string("redis: ") + c->errstr);
    if (r->type == REDIS_REPLY_ERROR) throw RedisError(std::string("redis: ") + r->str);
  };
  if (!endpoint_.password.empty()) {
    simple(Reply(static_cast<redisReply*>(
        redisCommand(c.get(), "AUTH %b", endpoint_.password.data(), endpoint_.password.size()))));
  }
  if (endpoint_.db != 0) {
    simple(Reply(static_cast<redisReply*>(redisCommand(c.get(), "SELECT %d", endpoint_.db))));
  }
  ctx_ = std::move(c);
  return ctx_.get();
}

void RedisSeqAllocator::fail(const std::string& why) {
  reset();
  throw RedisError(why);
}

template <class Take>
void RedisSeqAllocator::read_replies(redisContext* c, std::size_t count, Take take) {
  // Read every reply even after an error so the connection stays in sync.
  for (std::size_t i = 0; i < count; ++i) {
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK) fail(std::string("redis: ") + c->errstr);
    const Reply r(static_cast<redisReply*>(raw));
    take(i, *r);
  }
}

void RedisSeqAllocator::allocate(std::span<const std::string> owners,
                                 std::span<const std::int64_t> counts,
                                 std::vector<std::int64_t>& last) {
  redisContext* c = context();
  last.clear();
  last.reserve(owners.size());
  std::string key;
  for (std::size_t i = 0; i < owners.size(); ++i) {
    key.assign(kSeqKeyPrefix).append(owners[i]);
    if (redisAppendCommand(c, "INCRBY %b %lld", key.data(), key.size(),
                           static_cast<long long>(counts[i])) != REDIS_OK) {
      fail("redis: cannot queue INCRBY");
    }
  }
  std::string error;
  read_replies(c, owners.size(), [&](std::size_t, const redisReply& r) {
    if (r.type == REDIS_REPLY_INTEGER) {
      last.push_back(r.integer);
    } else {
      if (error.empty()) error = r.type == REDIS_REPLY_ERROR ? r.str : "unexpected reply type";
      last.push_back(0);
    }
  });
  if (!error.empty()) throw RedisError("redis: INCRBY: " + error);
}

void RedisSeqAllocator::raise_floor(const std::string& owner, std::int64_t floor) {
  redisContext* c = context();
  const std::string key = kSeqKeyPrefix + owner;
  const std::string arg = std::to_string(floor);
  Reply r(static_cast<redisReply*>(redisCommand(c, "EVAL %s 1 %b %b", kRaiseFloorScript,
                                                key.data(), key.size(), arg.data(), arg.size())));
  if (!r) fail(std::string("redis: ") + c->errstr);
  if (r->type == REDIS_REPLY_ERROR) throw RedisError(std::string("redis: EVAL: ") + r->str);
}

void RedisSeqAllocator::give_back(std::span<const std::string> owners,
                                  std::span<const std::int64_t> from,
                                  std::span<const std::int64_t> to, std::vector<bool>& given) {
  redisContext* c = context();
  given.assign(owners.size(), false);
  std::string key;
  for (std::size_t i = 0; i < owners.size(); ++i) {
    key.assign(kSeqKeyPrefix).append(owners[i]);
    const std::string a = std::to_string(from[i]), b = std::to_string(to[i]);
    if (redisAppendCommand(c, "EVAL %s 1 %b %b %b", kGiveBackScript, key.data(), key.size(),
                           a.data(), a.size(), b.data(), b.size()) != REDIS_OK) {
      fail("redis: cannot queue EVAL");
    }
  }
  read_replies(c, owners.size(), [&](std::size_t i, const redisReply& r) {
    given[i] = r.type == REDIS_REPLY_INTEGER && r.integer == 1;
  });
}

}  // namespace im::server
