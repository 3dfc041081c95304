#include "server/net/session.hpp"

#include <array>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace im::server {
namespace {
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);
}  // namespace

Session::Session(asio::ip::tcp::socket socket, asio::ssl::context* tls, std::uint64_t id,
                 Service& service, const SessionLimits& limits, NetStats& stats, OnClose on_close)
    : transport_(std::move(socket), tls),
      executor_(transport_.get_executor()),
      id_(id),
      service_(service),
      limits_(limits),
      stats_(stats),
      on_close_(std::move(on_close)),
      write_signal_(executor_),
      inflight_signal_(executor_),
      watchdog_(executor_),
      tls_handshaking_(tls != nullptr) {
  write_signal_.expires_at(asio::steady_timer::time_point::max());
  inflight_signal_.expires_at(asio::steady_timer::time_point::max());
}

Session::~Session() = default;

void Session::start() {
  std::error_code ec;
  transport_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  const auto now = Clock::now();
  last_activity_ = now;
  if (limits_.handshake_timeout.count() > 0) handshake_deadline_ = now + limits_.handshake_timeout;
  watchdog_at_ = check_deadlines(now);
  arm_watchdog();  // before the loops start on the session's thread and may re-arm it
  auto self = shared_from_this();
  asio::co_spawn(executor_, [self] { return self->read_loop(); }, asio::detached);
  asio::co_spawn(executor_, [self] { return self->write_loop(); }, asio::detached);
}

void Session::shutdown() {
  asio::post(executor_, [self = shared_from_this()] {
    self->closing = true;
    if (!self->reading_) return self->maybe_close_drained();
    self->reading_ = false;
    std::error_code ec;
    // Stop receiving; responses still go out on the write half.
    self->transport_.socket().shutdown(asio::ip::tcp::socket::shutdown_receive, ec);
    self->inflight_signal_.cancel();
    self->maybe_close_drained();
  });
}

void Session::respond(protocol::OutFrame frame) {
  asio::post(executor_, [self = shared_from_this(), f = std::move(frame)]() mutable {
    self->enqueue(std::move(f), true);
  });
}

void Session::fail(protocol::OutFrame frame) {
  reading_ = false;
  close_after_flush_ = true;
  enqueue(std::move(frame), false);
}

void Session::enqueue(protocol::OutFrame frame, bool is_response) {
  if (is_response && inflight_ > 0) {
    if (inflight_-- == limits_.max_inflight) inflight_signal_.cancel();
    // The client was waiting for us until now: its idle time starts here.
    if (inflight_ == 0) last_activity_ = Clock::now();
  }
  if (closed_) return;
  queued_bytes_ += frame.size();
  queue_.push_back(std::move(frame));
  if (queued_bytes_ > limits_.max_queued_bytes) {
    spdlog::get("net")->warn("[s{}] user={} not reading: {} bytes queued, disconnecting", id_, user,
                             queued_bytes_);
    // Reset, not close: the kernel drops what it still holds for this client
    // at once instead of keeping it (megabytes) until the client reads.
    std::error_code ignored;
    transport_.socket().set_option(asio::socket_base::linger(true, 0), ignored);
    return close();
  }
  write_signal_.cancel_one();
}

asio::awaitable<void> Session::read_loop() {
  // The frame is read into one buffer, prefix included: FlatBuffers aligns
  // fields relative to the prefix, and the Verifier checks that alignment.
  constexpr std::size_t kPrefix = protocol::kLengthPrefixBytes;
  if (tls_handshaking_) {
    // Inside the handshake deadline, which the watchdog enforces by closing.
    const std::error_code ec = co_await transport_.handshake();
    if (closed_) co_return;
    if (ec) {
      if (const auto n = stats_.tls_handshake_failures.note()) {
        spdlog::get("net")->warn("[s{}] TLS handshake failed: {}; closing ({} such since the last "
                                 "line, {} in all)",
                                 id_, ec.message(), n, stats_.tls_handshake_failures.total());
      }
      co_return close();
    }
    tls_handshaking_ = false;
    // Something may have been queued meanwhile (a drain's close): the writer may go now.
    write_signal_.cancel_one();
  }
  while (reading_ && !closed_) {
    buffer_.resize(kPrefix);
    // Between frames until the first byte comes; then the frame deadline runs.
    auto [ec, n] =
        co_await transport_.async_read_some(asio::buffer(buffer_.data(), kPrefix), use_nothrow);
    if (ec || !reading_) break;
    if (limits_.frame_timeout.count() > 0) {
      frame_deadline_ = Clock::now() + limits_.frame_timeout;
      wake_watchdog_by(frame_deadline_);
    }
    if (n < kPrefix) {
      std::tie(ec, n) = co_await asio::async_read(
          transport_, asio::buffer(buffer_.data() + n, kPrefix - n), use_nothrow);
      if (ec || !reading_) break;
    }
    const std::uint32_t length = protocol::read_length_prefix({buffer_.data(), kPrefix});
    const std::uint32_t max =
        user.empty() ? std::min(limits_.max_frame_bytes_before_hello, limits_.max_frame_bytes)
                     : limits_.max_frame_bytes;
    wire::ErrorCode code{};
    if (const char* reason = protocol::check_frame_length(length, max, code)) {
      spdlog::get("net")->warn("[s{}] {} ({} bytes, limit {}); closing", id_, reason, length, max);
      fail(protocol::encode_error(0, code, reason));
      break;
    }
    buffer_.resize(kPrefix + length);  // allocated only after the length was checked
    std::tie(ec, n) =
        co_await asio::async_read(transport_, asio::buffer(buffer_.data() + kPrefix, length), use_nothrow);
    if (ec || !reading_) break;
    frame_deadline_ = Clock::time_point::max();
    last_activity_ = Clock::now();
    std::string why;
    const wire::Frame* frame = protocol::verify_frame(buffer_, limits_.verify, why);
    if (!frame) {
      spdlog::get("net")->warn("[s{}] bad frame: {}; closing", id_, why);
      fail(protocol::encode_error(0, wire::ErrorCode::ProtocolError, why));
      break;
    }
    ++inflight_;
    service_.handle(shared_from_this(), *frame);
    if (inflight_ >= limits_.max_inflight && reading_) {
      // Backpressure: stop reading until a response goes out.
      inflight_signal_.expires_at(asio::steady_timer::time_point::max());
      co_await inflight_signal_.async_wait(use_nothrow);
    }
  }
  reading_ = false;
  // No request can follow (end of stream, a read error, a fatal frame): long
  // polls answer now with what is there instead of holding the session until
  // their deadline for a client that has most likely gone.
  end_waits();
  maybe_close_drained();
}

asio::awaitable<void> Session::write_loop() {
  std::vector<asio::const_buffer> buffers;
  std::vector<protocol::OutFrame> writing;
  std::vector<std::uint8_t> tls_out;  // TLS only: the gathered frames in one buffer
  bool write_failed = false;
  while (!closed_) {
    // Nothing may be written before the TLS handshake completes.
    if (queue_empty() || tls_handshaking_) {
      maybe_close_drained();
      if (close_after_flush_ || closed_) break;
      write_signal_.expires_at(asio::steady_timer::time_point::max());
      co_await write_signal_.async_wait(use_nothrow);
      continue;
    }
    // Gather everything queued into one write (like Redis' reply batching).
    buffers.clear();
    writing.clear();
    std::size_t bytes = 0;
    while (!queue_empty() && buffers.size() < 256 && bytes < kMaxTlsGather) {
      writing.push_back(std::move(queue_[queue_head_++]));
      buffers.emplace_back(writing.back().data(), writing.back().size());
      // Plain TCP takes any number of bytes in one writev: only TLS is capped.
      if (transport_.is_tls()) bytes += writing.back().size();
    }
    if (queue_empty()) {
      queue_.clear();
      queue_head_ = 0;
      // A burst's capacity is not kept by a connection that goes idle.
      if (queue_.capacity() > 256) queue_.shrink_to_fit();
    } else if (queue_head_ >= 64 && 2 * queue_head_ >= queue_.size()) {
      // Under steady pipelining the queue may never empty: drop the written
      // (moved-from) front so that it does not grow without bound.
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(queue_head_));
      queue_head_ = 0;
    }
    if (transport_.is_tls()) {
      // An SSL stream encrypts one buffer per record: small frames share
      // records when they arrive as one buffer (one copy; TLS copies anyway).
      tls_out.clear();
      for (const auto& b : buffers) {
        const auto* p = static_cast<const std::uint8_t*>(b.data());
        tls_out.insert(tls_out.end(), p, p + b.size());
      }
      buffers.assign(1, asio::buffer(tls_out));
    }
    auto [ec, n] = co_await asio::async_write(transport_, buffers, use_nothrow);
    queued_bytes_ -= n <= queued_bytes_ ? n : queued_bytes_;
    if (tls_out.capacity() > 4 * kMaxTlsGather) std::vector<std::uint8_t>().swap(tls_out);
    if (ec) {
      write_failed = true;
      break;
    }
  }
  // After the last write (not after a failed one), TLS may say close_notify.
  close(!write_failed);
}

// A plain handler rather than a third coroutine: it costs a connection about
// a kilobyte less.
void Session::arm_watchdog() {
  watchdog_.expires_at(watchdog_at_);
  watchdog_.async_wait([self = shared_from_this()](const std::error_code&) {
    if (self->closed_) return;
    const auto now = Clock::now();
    // Woken early (a nearer deadline was set): just wait again.
    if (now >= self->watchdog_at_) self->watchdog_at_ = self->check_deadlines(now);
    if (!self->closed_) self->arm_watchdog();
  });
}

void Session::wake_watchdog_by(Clock::time_point at) {
  if (at >= watchdog_at_) return;  // it wakes earlier anyway and looks again
  watchdog_at_ = at;
  watchdog_.cancel();
}

Session::Clock::time_point Session::check_deadlines(Clock::time_point now) {
  if (expired_) {
    // The Error did not get out within kCloseLinger: the client is not reading.
    close();
    return Clock::time_point::max();
  }
  const auto linger = now + kCloseLinger;
  auto next = Clock::time_point::max();
  if (limits_.handshake_timeout.count() > 0 && user.empty()) {
    if (now >= handshake_deadline_) {
      expire(stats_.handshake_timeouts, spdlog::level::warn,
             fmt::format("handshake timeout: no successful {} within {} ms of connecting",
                         tls_handshaking_ ? "TLS handshake" : "Hello",
                         limits_.handshake_timeout.count()));
      return linger;
    }
    next = std::min(next, handshake_deadline_);
  }
  if (frame_deadline_ != Clock::time_point::max()) {
    if (now >= frame_deadline_) {
      expire(stats_.frame_timeouts, spdlog::level::warn,
             fmt::format("frame timeout: a frame started but did not arrive whole within {} ms",
                         limits_.frame_timeout.count()));
      return linger;
    }
    next = std::min(next, frame_deadline_);
  }
  if (limits_.idle_timeout.count() > 0) {
    if (inflight_ > 0) {
      // Not idle while a request (e.g. a long poll) is pending; look again
      // later. Waking no later than now + idle_timeout keeps every future idle
      // deadline at or after the wake-up, so idleness never needs a re-arm.
      next = std::min(next, now + limits_.idle_timeout);
    } else {
      const auto at = last_activity_ + limits_.idle_timeout;
      if (now >= at) {
        expire(stats_.idle_timeouts, spdlog::level::info,
               fmt::format("idle timeout: no request for {} ms; send Ping to keep a connection open",
                           limits_.idle_timeout.count()));
        return linger;
      }
      next = std::min(next, at);
    }
  }
  return next;
}

void Session::expire(LogThrottle& throttle, spdlog::level::level_enum level,
                     const std::string& message) {
  expired_ = true;
  if (const auto n = throttle.note()) {
    spdlog::get("net")->log(level, "[s{}] user={} {}; closing ({} such since the last line, {} in all)",
                            id_, user, message, n, throttle.total());
  }
  // Before the TLS handshake completes there is no channel for an Error.
  if (tls_handshaking_) return close();
  if (close_after_flush_) return;  // already failing: one Error is enough
  fail(protocol::encode_error(0, wire::ErrorCode::ProtocolError, message));
  inflight_signal_.cancel();  // a reader held back by max_inflight stops too
}

void Session::maybe_close_drained() {
  // Once reading stopped, close when no request is pending and all is written.
  if (!reading_ && !closed_ && inflight_ == 0 && queue_empty()) {
    close_after_flush_ = true;
    write_signal_.cancel();  // wakes the writer, which sees the flag and closes
  }
}

void Session::close(bool graceful) {
  if (closed_) return;
  closed_ = true;
  closing = true;
  reading_ = false;
  end_waits();  // long polls let go of this session now, not at their deadline
  if (graceful) {
    transport_.close_gracefully(kCloseLinger, shared_from_this());
  } else {
    transport_.close();
  }
  write_signal_.cancel();
  inflight_signal_.cancel();
  watchdog_.cancel();
  spdlog::get("net")->info("[s{}] closed user={}", id_, user);
  if (on_close_) on_close_(id_);
}

}  // namespace im::server
