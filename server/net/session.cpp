#include "server/net/session.hpp"

#include <cstdint>
#include <span>

#include <asio/post.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include "server/common/log.hpp"

namespace im::server {

Session::Session(asio::ip::tcp::socket socket, asio::ssl::context* tls, std::uint64_t id,
                 SessionHandler& handler, const SessionLimits& limits, NetStats& stats,
                 OnClose on_close)
    : transport_(std::move(socket), tls),
      executor_(transport_.get_executor()),
      id_(id),
      handler_(handler),
      limits_(limits),
      stats_(stats),
      on_close_(std::move(on_close)),
      watchdog_(executor_),
      phase_(tls != nullptr ? Phase::tls_handshake : Phase::hello) {}

Session::~Session() = default;

void Session::start() {
  std::error_code ec;
  transport_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  // Plain TCP reads with read_some after a readiness wait: it must not block.
  transport_.socket().non_blocking(true, ec);
  const auto now = Clock::now();
  last_activity_ = now;
  if (limits_.handshake_timeout.count() > 0) handshake_deadline_ = now + limits_.handshake_timeout;
  watchdog_at_ = check_deadlines(now);
  arm_watchdog();
  if (phase_ == Phase::tls_handshake) {
    // Inside the handshake deadline, which the watchdog enforces by closing.
    transport_.async_handshake(
        [self = shared_from_this()](const std::error_code& e) { self->on_tls_handshake(e); });
  } else {
    read_more();
  }
}

void Session::on_tls_handshake(const std::error_code& ec) {
  if (phase_ == Phase::closed) return;
  if (ec) {
    if (const auto n = stats_.tls_handshake_failures.note()) {
      logs::net().warn("{} TLS handshake failed: {}; closing ({} such since the last "
                               "line, {} in all)",
                               SessionTag{id_}, ec.message(), n, stats_.tls_handshake_failures.total());
    }
    return close();
  }
  phase_ = Phase::hello;
  // Something may have been queued meanwhile (a drain's close): it may go now.
  start_write();
  read_more();
}

void Session::open_session(std::string_view user) {
  if (phase_ != Phase::hello) return;  // once; a closed session stays closed
  phase_ = Phase::open;
  user_.assign(user);
  handler_.on_open(*this);
}

void Session::shutdown() {
  asio::post(executor_, [self = shared_from_this()] {
    if (self->read_state_ == ReadState::stopping || self->read_state_ == ReadState::done) {
      return self->maybe_close_drained();
    }
    std::error_code ec;
    // Stop receiving; responses still go out on the write half. A pending
    // read wakes up (end of stream) and finishes reading.
    self->transport_.socket().shutdown(asio::ip::tcp::socket::shutdown_receive, ec);
    // During the TLS handshake no read is outstanding either.
    if (self->phase_ == Phase::tls_handshake) return self->reading_done();
    self->stop_reading();
  });
}

void Session::stop_reading() {
  switch (read_state_) {
    case ReadState::reading: read_state_ = ReadState::stopping; break;  // its completion finishes
    case ReadState::held_back: reading_done(); break;  // no read outstanding
    case ReadState::stopping:
    case ReadState::done: break;
  }
}

void Session::respond(protocol::OutFrame frame) {
  asio::post(executor_, [self = shared_from_this(), f = std::move(frame)]() mutable {
    self->enqueue(std::move(f), true);
  });
}

void Session::fail(protocol::OutFrame frame) {
  if (failure_ == Failure::none) failure_ = Failure::failing;
  // Posted like respond(): the responses to the frames before the failing one
  // (posted already, as frames are handled in batches) go out first.
  ++fails_posted_;
  // Called while frames are handled (a read in progress) or by a deadline; a
  // session held back stops at once (counted above: it does not close yet).
  stop_reading();
  asio::post(executor_, [self = shared_from_this(), f = std::move(frame)]() mutable {
    --self->fails_posted_;
    self->close_after_flush_ = true;
    self->enqueue(std::move(f), false);
    // Closed once the Error is written, and at the latest after kCloseLinger:
    // a client that stopped reading cannot hold the session (requests still
    // pending keep the idle deadline from ever firing).
    if (self->close_by_ == Clock::time_point::max()) {
      self->close_by_ = Clock::now() + kCloseLinger;
      self->wake_watchdog_by(self->close_by_);
    }
  });
}

namespace {

/// The I/O thread's read buffer (plain TCP). Filled and fully used within one
/// handler: what is left of it is copied into the session before the handler
/// returns, so sessions on the same thread never see each other's bytes.
std::vector<std::uint8_t>& thread_read_buffer() {
  thread_local std::vector<std::uint8_t> buffer(Session::kReadBytes);
  return buffer;
}

/// FlatBuffers reads scalars of up to 8 bytes in place: a frame that arrived at
/// an odd offset of a read buffer is copied to an aligned one first.
constexpr std::uintptr_t kFrameAlignment = 8;

std::span<const std::uint8_t> aligned(std::span<const std::uint8_t> frame) {
  if (reinterpret_cast<std::uintptr_t>(frame.data()) % kFrameAlignment == 0) return frame;
  thread_local std::vector<std::uint8_t> copy;  // heap memory: 16-byte aligned
  copy.assign(frame.begin(), frame.end());
  return copy;
}

}  // namespace

void Session::read_more() {
  if (!reading() || phase_ == Phase::closed) return reading_done();
  if (transport_.is_tls()) {
    // An SSL stream may hold decrypted bytes already, so readiness of the
    // socket says nothing: read into the session's own buffer.
    if (tls_in_.size() != kTlsReadBytes) tls_in_.resize(kTlsReadBytes);
    transport_.async_read_some(
        asio::buffer(tls_in_), [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
          if (ec) return self->reading_done();  // end of stream, a reset, or closed
          if (self->take_bytes({self->tls_in_.data(), n}, Clock::now())) self->read_more();
        });
    return;
  }
  // Between frames nothing is read into and nothing is held: an idle
  // connection costs no buffer.
  transport_.socket().async_wait(asio::socket_base::wait_read,
                                 [self = shared_from_this()](const std::error_code& ec) {
                                   if (ec) return self->reading_done();
                                   self->read_ready();
                                 });
}

void Session::read_ready() {
  auto& buffer = thread_read_buffer();
  for (int i = 0; i < kReadsPerTurn; ++i) {
    if (!reading() || phase_ == Phase::closed) return reading_done();
    std::error_code ec;
    const std::size_t n = transport_.socket().read_some(asio::buffer(buffer), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;  // a spurious wake
    if (ec) return reading_done();  // end of stream, or a reset
    if (!take_bytes({buffer.data(), n}, Clock::now())) return;
    if (n < buffer.size()) break;  // drained: the next bytes come with the next wake
  }
  read_more();
}

bool Session::take_bytes(std::span<const std::uint8_t> data, Clock::time_point now) {
  std::size_t frames = 0;
  const bool direct = pending_empty();  // nothing kept: handle `data` in place
  if (!direct) pending_.insert(pending_.end(), data.begin(), data.end());
  const std::size_t used = handle_frames(
      direct ? data : std::span<const std::uint8_t>(pending_).subspan(pending_head_), frames);
  if (!reading()) {
    reading_done();
    return false;
  }
  // Keep what is left (an incomplete frame, or frames held back).
  if (direct) {
    pending_.assign(data.begin() + static_cast<std::ptrdiff_t>(used), data.end());
    pending_head_ = 0;
  } else {
    pending_head_ += used;
    // Held back, each response lets one frame through: moving the rest down
    // every time would copy the backlog per frame. Compact once half is used.
    if (pending_head_ == pending_.size() || 2 * pending_head_ > pending_.size()) {
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(pending_head_));
      pending_head_ = 0;
    }
  }
  if (frames > 0) last_activity_ = now;
  if (inflight_ >= limits_.max_inflight) {
    // Backpressure: nothing more is read until a response goes out. The
    // frames kept meanwhile arrived whole: no frame deadline runs for them.
    read_state_ = ReadState::held_back;
    frame_deadline_ = Clock::time_point::max();
    return false;
  }
  if (pending_empty()) {
    std::vector<std::uint8_t>().swap(pending_);  // an idle connection holds no buffer
    pending_head_ = 0;
    frame_deadline_ = Clock::time_point::max();
  } else if (frames > 0 || frame_deadline_ == Clock::time_point::max()) {
    // A frame has started: it must arrive whole within frame_timeout.
    if (limits_.frame_timeout.count() > 0) {
      frame_deadline_ = now + limits_.frame_timeout;
      wake_watchdog_by(frame_deadline_);
    }
  }
  return true;
}

std::size_t Session::handle_frames(std::span<const std::uint8_t> in, std::size_t& frames) {
  std::shared_ptr<Connection> self;
  std::size_t used = 0;
  while (reading() && inflight_ < limits_.max_inflight) {
    const std::uint32_t max =
        phase_ == Phase::open ? limits_.max_frame_bytes
                              : std::min(limits_.max_frame_bytes_before_hello, limits_.max_frame_bytes);
    const protocol::Decoded d = protocol::decode_frame(in.subspan(used), max);
    if (d.status == protocol::DecodeStatus::need_more) break;
    if (d.status == protocol::DecodeStatus::error) {
      // Refused on its length alone, before any of it is kept.
      logs::net().warn("{} {} ({} bytes, limit {}); closing", SessionTag{id_}, d.reason,
                               protocol::read_length_prefix(in.subspan(used)), max);
      fail(protocol::encode_error(0, d.error, d.reason));
      break;
    }
    used += d.consumed;
    ++frames;
    std::string why;
    const wire::Frame* frame = protocol::verify_frame(aligned(d.frame), limits_.verify, why);
    if (!frame) {
      logs::net().warn("{} bad frame: {}; closing", SessionTag{id_}, why);
      fail(protocol::encode_error(0, wire::ErrorCode::ProtocolError, why));
      break;
    }
    ++inflight_;
    if (!self) self = shared_from_this();
    handler_.on_frame(self, *frame);
  }
  return used;
}

void Session::resume_reading() {
  if (read_state_ != ReadState::held_back || phase_ == Phase::closed) return;
  read_state_ = ReadState::reading;
  if (take_bytes({}, Clock::now())) read_more();
}

void Session::reading_done() {
  // Never inside handle_frames (which reads from these buffers): only once it returned.
  std::vector<std::uint8_t>().swap(pending_);
  pending_head_ = 0;
  std::vector<std::uint8_t>().swap(tls_in_);
  if (read_state_ == ReadState::done) return;
  read_state_ = ReadState::done;
  // No request can follow (end of stream, a read error, a fatal frame): the
  // handler lets long polls answer now with what is there instead of holding
  // the session until their deadline for a client that has most likely gone.
  handler_.on_input_closed(*this);
  maybe_close_drained();
}

void Session::enqueue(protocol::OutFrame frame, bool is_response) {
  if (is_response && inflight_ > 0) {
    if (inflight_-- == limits_.max_inflight && read_state_ == ReadState::held_back) {
      // Not inline: enqueue may run inside a handler of a frame being read.
      asio::post(executor_, [self = shared_from_this()] { self->resume_reading(); });
    }
    // The client was waiting for us until now: its idle time starts here.
    if (inflight_ == 0) last_activity_ = Clock::now();
  }
  if (phase_ == Phase::closed) return;
  queued_bytes_ += frame.size();
  handler_.on_queued(frame);
  queue_.push_back(std::move(frame));
  if (queued_bytes_ > limits_.max_queued_bytes) {
    logs::net().warn("{} user={} not reading: {} bytes queued, disconnecting", SessionTag{id_},
                     user_, queued_bytes_);
    stats_.slow_client_resets.fetch_add(1, std::memory_order_relaxed);
    // Reset, not close: the kernel drops what it still holds for this client
    // at once instead of keeping it (megabytes) until the client reads.
    std::error_code ignored;
    transport_.socket().set_option(asio::socket_base::linger(true, 0), ignored);
    return close();
  }
  if (write_state_ == WriteState::idle) {
    // Posted, not started here: responses queued in the same turn of the
    // event loop go out together in one write.
    write_state_ = WriteState::posted;
    asio::post(executor_, [self = shared_from_this()] {
      if (self->write_state_ == WriteState::posted) self->write_state_ = WriteState::idle;
      self->start_write();
    });
  }
}

void Session::start_write() {
  // Nothing may be written before the TLS handshake completes.
  if (phase_ == Phase::closed || write_state_ == WriteState::writing ||
      phase_ == Phase::tls_handshake) {
    return;
  }
  if (queue_empty()) return maybe_close_drained();
  // Gather everything queued into one write.
  std::size_t bytes = 0;
  const std::size_t max_bytes = transport_.is_tls() ? kMaxTlsGather : kMaxWriteGather;
  while (!queue_empty() && write_buffers_.size() < 256 && bytes < max_bytes) {
    writing_.push_back(std::move(queue_[queue_head_++]));
    write_buffers_.emplace_back(writing_.back().data(), writing_.back().size());
    bytes += writing_.back().size();
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
    tls_out_.clear();
    for (const auto& b : write_buffers_) {
      const auto* p = static_cast<const std::uint8_t*>(b.data());
      tls_out_.insert(tls_out_.end(), p, p + b.size());
    }
    write_buffers_.assign(1, asio::buffer(tls_out_));
  }
  write_state_ = WriteState::writing;
  write_started_ = Clock::now();
  if (limits_.write_timeout.count() > 0) wake_watchdog_by(write_started_ + limits_.write_timeout);
  asio::async_write(transport_, write_buffers_,
                    [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
                      self->on_written(ec, n);
                    });
}

void Session::on_written(const std::error_code& ec, std::size_t bytes) {
  write_state_ = WriteState::idle;
  const std::size_t taken = bytes <= queued_bytes_ ? bytes : queued_bytes_;
  queued_bytes_ -= taken;
  handler_.on_unqueued(taken);
  writing_.clear();
  write_buffers_.clear();
  if (tls_out_.capacity() > 4 * kMaxTlsGather) std::vector<std::uint8_t>().swap(tls_out_);
  if (ec) return close();  // no close_notify after a failed write
  if (phase_ == Phase::closed) return;
  // The client read: reads waiting for room in its budget may go.
  handler_.on_written(*this);
  if (!queue_empty()) return start_write();
  // Idle again: a burst's buffers are not kept.
  if (writing_.capacity() > 16) {
    std::vector<protocol::OutFrame>().swap(writing_);
    std::vector<asio::const_buffer>().swap(write_buffers_);
  }
  maybe_close_drained();
}

void Session::arm_watchdog() {
  watchdog_.expires_at(watchdog_at_);
  watchdog_.async_wait([self = shared_from_this()](const std::error_code&) {
    if (self->phase_ == Phase::closed) return;
    const auto now = Clock::now();
    // Woken early (a nearer deadline was set): just wait again.
    if (now >= self->watchdog_at_) self->watchdog_at_ = self->check_deadlines(now);
    if (self->phase_ != Phase::closed) self->arm_watchdog();
  });
}

void Session::wake_watchdog_by(Clock::time_point at) {
  if (at >= watchdog_at_) return;  // it wakes earlier anyway and looks again
  watchdog_at_ = at;
  watchdog_.cancel();
}

Session::Clock::time_point Session::check_deadlines(Clock::time_point now) {
  if (failure_ == Failure::expired) {
    // The Error did not get out within kCloseLinger: the client is not reading.
    close();
    return Clock::time_point::max();
  }
  if (now >= close_by_) {
    close();  // failed, and its Error did not get out within kCloseLinger
    return Clock::time_point::max();
  }
  const auto linger = now + kCloseLinger;
  auto next = close_by_;
  if (limits_.handshake_timeout.count() > 0 && phase_ != Phase::open) {
    if (now >= handshake_deadline_) {
      expire(stats_.handshake_timeouts, spdlog::level::warn,
             fmt::format("handshake timeout: no successful {} within {} ms of connecting",
                         phase_ == Phase::tls_handshake ? "TLS handshake" : "Hello",
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
  if (write_state_ == WriteState::writing && limits_.write_timeout.count() > 0) {
    const auto at = write_started_ + limits_.write_timeout;
    if (now >= at) {
      if (const auto n = stats_.write_timeouts.note()) {
        logs::net().warn(
            "{} user={} write timeout: the client took no write of its {} queued bytes within "
            "{} ms; resetting ({} such since the last line, {} in all)",
            SessionTag{id_}, user_, queued_bytes_, limits_.write_timeout.count(), n,
            stats_.write_timeouts.total());
      }
      std::error_code ignored;
      transport_.socket().set_option(asio::socket_base::linger(true, 0), ignored);
      close();
      return Clock::time_point::max();
    }
    next = std::min(next, at);
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
  const bool failing = failure_ != Failure::none;
  failure_ = Failure::expired;
  if (const auto n = throttle.note()) {
    logs::net().log(level, "{} user={} {}; closing ({} such since the last line, {} in all)",
                    SessionTag{id_}, user_, message, n, throttle.total());
  }
  // Before the TLS handshake completes there is no channel for an Error.
  if (phase_ == Phase::tls_handshake) return close();
  if (failing) return;  // already failing: one Error is enough
  // fail() stops reading; a reader held back by max_inflight stops at once.
  fail(protocol::encode_error(0, wire::ErrorCode::ProtocolError, message));
}

void Session::maybe_close_drained() {
  if (phase_ == Phase::closed || fails_posted_ > 0) return;  // an Error is on its way to the queue
  // Once reading stopped, close when no request is pending and all is written.
  if (!reading() && read_state_ != ReadState::held_back && inflight_ == 0 && queue_empty()) {
    close_after_flush_ = true;
  }
  // After the last write; before a TLS handshake completes nothing is written.
  if (close_after_flush_ && write_state_ != WriteState::writing &&
      (queue_empty() || phase_ == Phase::tls_handshake)) {
    close(true);
  }
}

void Session::close(bool graceful) {
  if (phase_ == Phase::closed) return;
  phase_ = Phase::closed;
  // A read still outstanding completes (aborted) and finds reading done; the
  // handler's on_close covers what on_input_closed would have done.
  read_state_ = ReadState::done;
  // Reads waiting for room are dropped, running ones cancelled; long polls
  // let go of this session now, not at their deadline.
  handler_.on_close(*this);
  // What was queued for the client will never be written: freed now, not when
  // the last handler lets go of the session.
  handler_.on_unqueued(queued_bytes_);
  queued_bytes_ = 0;
  std::vector<protocol::OutFrame>().swap(queue_);
  queue_head_ = 0;
  if (graceful) {
    transport_.close_gracefully(kCloseLinger, shared_from_this());
  } else {
    transport_.close();
  }
  watchdog_.cancel();
  logs::net().info("{} closed user={}", SessionTag{id_}, user_);
  if (on_close_) on_close_(id_);
}

}  // namespace im::server
