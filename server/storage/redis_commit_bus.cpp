#include "server/storage/redis_commit_bus.hpp"

#include <poll.h>

#include <cerrno>
#include <random>
#include <sstream>

#include <hiredis/hiredis.h>

#include "server/common/log.hpp"
#include "server/common/thread_name.hpp"

namespace im::server {
namespace {

constexpr const char* kChannel = "im:commits";

redisContext* connect(const RedisEndpoint& ep, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  redisContext* c = redisConnectWithTimeout(ep.host.c_str(), ep.port, tv);
  if (!c) return nullptr;
  if (c->err) {
    redisFree(c);
    return nullptr;
  }
  redisSetTimeout(c, tv);
  if (!ep.password.empty()) {
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "AUTH %b", ep.password.data(), ep.password.size()));
    const bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
    if (!ok) {
      redisFree(c);
      return nullptr;
    }
  }
  return c;
}

}  // namespace

void RedisCommitBus::Free::operator()(redisContext* c) const { redisFree(c); }

RedisCommitBus::RedisCommitBus(RedisEndpoint endpoint, CommitListener& local)
    : endpoint_(std::move(endpoint)), local_(local) {
  std::random_device rd;
  instance_ = std::to_string((static_cast<std::uint64_t>(rd()) << 32) | rd());
}

RedisCommitBus::~RedisCommitBus() { stop(); }

void RedisCommitBus::start() {
  subscriber_ = std::thread([this] {
    name_this_thread("im-redis-sub");
    subscribe_loop();
  });
  publisher_ = std::thread([this] {
    name_this_thread("im-redis-pub");
    publish_loop();
  });
}

void RedisCommitBus::stop() {
  {
    std::lock_guard lock(pub_mu_);
    pub_stopping_ = true;
  }
  pub_cv_.notify_one();
  if (publisher_.joinable()) publisher_.join();  // publishes what is queued first
  stopping_.store(true);
  if (subscriber_.joinable()) subscriber_.join();
}

redisContext* RedisCommitBus::publisher() {
  if (pub_) return pub_.get();
  const auto now = std::chrono::steady_clock::now();
  if (now < pub_retry_at_) return nullptr;
  pub_.reset(connect(endpoint_, std::chrono::milliseconds(500)));
  if (!pub_) pub_retry_at_ = now + std::chrono::seconds(1);
  return pub_.get();
}

void RedisCommitBus::notify(const std::shared_ptr<const CommittedBatch>& batch) {
  local_.notify(batch);
  bool wake = false;
  {
    std::lock_guard lock(pub_mu_);
    if (pub_stopping_) return;  // the writer stops first; nothing is dropped
    // Bounded: if Redis stalls, names beyond this wait for the next round
    // trip's deadline-driven re-polls on the other processes (best effort).
    constexpr std::size_t kMaxPending = 1 << 20;
    if (pub_pending_.size() < kMaxPending) {
      wake = pub_pending_.empty();
      for (const CommittedBatch::Inbox& box : batch->inboxes) pub_pending_.append(" ").append(box.owner);
    }
  }
  if (wake) pub_cv_.notify_one();
}

void RedisCommitBus::publish_loop() {
  std::string names;
  for (;;) {
    {
      std::unique_lock lock(pub_mu_);
      pub_cv_.wait(lock, [&] { return pub_stopping_ || !pub_pending_.empty(); });
      if (pub_pending_.empty()) return;  // stopping, nothing left
      names.swap(pub_pending_);
      pub_pending_.clear();
    }
    publish(names);
  }
}

void RedisCommitBus::publish(const std::string& names) {
  redisContext* c = publisher();
  redisReply* reply = nullptr;
  if (c) {
    std::string message = instance_;
    message.append(names);
    reply = static_cast<redisReply*>(
        redisCommand(c, "PUBLISH %s %b", kChannel, message.data(), message.size()));
    if (!reply) pub_.reset();
  }
  if (!reply) {
    if (const auto n = publish_failures_.note()) {
      logs::redis().warn("commit bus: {} announcement(s) not published ({} in all): {}; other "
                         "processes' long polls answer by their deadline meanwhile",
                         n, publish_failures_.total(), c ? "Redis connection broke" : "no connection to Redis");
    }
    return;
  }
  freeReplyObject(reply);
}

RedisCommitBus::Stats RedisCommitBus::stats() const {
  return Stats{remote_.load(), subscriptions_.load(), lost_.load(), resyncs_.load(),
               publish_failures_.total()};
}

void RedisCommitBus::subscribe_loop() {
  while (!stopping_.load()) {
    std::unique_ptr<redisContext, Free> c(connect(endpoint_, std::chrono::milliseconds(500)));
    auto* r = c ? static_cast<redisReply*>(redisCommand(c.get(), "SUBSCRIBE %s", kChannel)) : nullptr;
    if (!r) {
      if (const auto n = connect_failures_.note()) {
        logs::redis().warn("commit bus: cannot subscribe to {} at {}:{} ({} attempt(s) since the last "
                           "such line); retrying", kChannel, endpoint_.host, endpoint_.port, n);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    freeReplyObject(r);
    const bool again = subscriptions_.fetch_add(1) > 0;
    // Commits announced while there was no subscription (broken, or not made
    // yet at start-up) are lost: every long poll queries again, and no quiet
    // mark may vouch for that time.
    local_.resync();
    resyncs_.fetch_add(1);
    if (again) {
      logs::redis().info("commit bus: subscribed to {} again; local long polls resynced (they query "
                         "once)", kChannel);
    } else {
      logs::redis().info("commit bus: subscribed to {} at {}:{}", kChannel, endpoint_.host,
                         endpoint_.port);
    }
    // Wait for data with poll() so the loop notices stop(); then parse every
    // complete reply hiredis has buffered.
    const char* lost = nullptr;
    while (!lost && !stopping_.load()) {
      pollfd pfd{c->fd, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, 200);
      if (ready < 0 && errno != EINTR) {
        lost = "poll failed";
        break;
      }
      if (ready <= 0) continue;
      if (redisBufferRead(c.get()) != REDIS_OK) {
        lost = "connection closed";
        break;
      }
      for (;;) {
        void* raw = nullptr;
        if (redisGetReplyFromReader(c.get(), &raw) != REDIS_OK) {
          lost = "bad reply";
          break;
        }
        if (!raw) break;
        std::unique_ptr<redisReply, void (*)(void*)> reply(static_cast<redisReply*>(raw),
                                                           freeReplyObject);
        handle_message(reply.get());
      }
    }
    if (lost) {
      lost_.fetch_add(1);
      logs::redis().warn("commit bus: subscription to {} lost ({}{}{}); resubscribing", kChannel, lost,
                         c->errstr[0] ? ": " : "", c->errstr);
    }
  }
}

void RedisCommitBus::handle_message(const redisReply* reply) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
  const redisReply* payload = reply->element[2];
  if (payload->type != REDIS_REPLY_STRING) return;
  std::istringstream in(std::string(payload->str, payload->len));
  std::string origin;
  in >> origin;
  if (origin == instance_) return;
  std::vector<std::string> receivers;
  for (std::string r; in >> r;) receivers.push_back(std::move(r));
  if (!receivers.empty()) {
    remote_.fetch_add(1);
    local_.notify(CommittedBatch::names_only(std::move(receivers)));
  }
}

}  // namespace im::server
