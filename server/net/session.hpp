#pragma once
// Session: one client connection.
//
// Reading (plain TCP): the session waits until the socket is readable while
// holding no buffer, then reads whatever has arrived into its I/O thread's
// buffer and handles every whole frame in it: one recv for many pipelined
// frames, and an idle connection owns no read memory. Only an incomplete frame
// (or frames held back, below) is kept, in a buffer of the session's that is
// freed once empty. Each frame's length is checked as soon as its prefix is
// seen, before anything is kept for it (a smaller limit applies before Hello);
// each frame is verified and handed to the SessionHandler (the Service).
// Requests are pipelined, up to max_inflight at a time; beyond that the rest is
// held back, unread, until a response goes out. With TLS the session reads into its own buffer.
//
// Writing: responses are queued and written by one gathered write per turn of
// the event loop (like Redis' reply batching). The queue is bounded in bytes:
// a client that does not read is disconnected instead of growing memory.
// A frame that cannot be parsed or verified gets one Error and the connection
// closes; nothing else is affected.
//
// No coroutine frames and no signalling timers: an idle session is this object,
// one pending readiness wait and the watchdog's timer.
//
// Deadlines (each off when 0), watched by one timer per session:
//  - handshake: a successful Hello within handshake_timeout of accept;
//  - frame: once a frame's first byte has arrived, the whole frame within
//    frame_timeout (slowloris);
//  - idle: some frame within idle_timeout of the previous one, counted only
//    while no request of the client is pending (a long poll is not idle);
//  - write: a write (at most kMaxWriteGather bytes, or one frame) completes
//    within write_timeout: a client that stops reading while responses are
//    queued for it is reset (there is no channel left for an Error), and what
//    was queued and reserved for it is freed.
// On expiry the client gets one Error{protocol_error} (request id 0) and the
// connection closes once it is written, or after kCloseLinger at the latest.
//
// States. The session's phase: TLS handshake (with TLS) → Hello (until the
// handler opens the session) → open → closed. Reading, independently: reading
// (a read is outstanding or frames are being handled) → held back (at
// max_inflight, no read outstanding) → reading again; or → stopping (asked to
// stop while a read is outstanding: its completion finishes) → done. Writing:
// idle → posted (a write is posted for the end of this turn) → writing.
// The handler hears on_open when the phase becomes open, on_input_closed when
// reading is done (unless the connection closed first) and on_close exactly
// once, when the phase becomes closed.
//
// TLS (when the Listener has a context): the TLS handshake comes first, inside
// the handshake deadline; a connection whose TLS handshake fails or expires is
// closed without an Error (there is no channel to send one on). Closing after
// the last write sends close_notify, bounded by kCloseLinger.
//
// Thread-safety: all state lives on the session's executor (one I/O thread);
// respond() and shutdown() may be called from any thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <spdlog/common.h>

#include "protocol/frame_codec.hpp"
#include "server/net/net_stats.hpp"
#include "server/net/transport.hpp"
#include "server/common/log_throttle.hpp"
#include "server/service/connection.hpp"
#include "server/service/session_handler.hpp"

namespace im::server {

// Neutral where Config sets the field: build it with session_limits(Config)
// (server/app/config.hpp), which holds the defaults.
struct SessionLimits {
  std::uint32_t max_frame_bytes = 0;
  std::uint32_t max_frame_bytes_before_hello = 4096;
  std::size_t max_queued_bytes = 16u << 20;
  std::size_t max_inflight = 1024;
  protocol::VerifyLimits verify{};
  std::chrono::milliseconds handshake_timeout{0};  // 0: none
  std::chrono::milliseconds frame_timeout{0};      // 0: none
  std::chrono::milliseconds idle_timeout{0};       // 0: none
  std::chrono::milliseconds write_timeout{0};      // 0: none
};

class Session final : public Connection, public std::enable_shared_from_this<Session> {
 public:
  using OnClose = std::function<void(std::uint64_t id)>;

  using Clock = std::chrono::steady_clock;
  /// After a deadline expired, how long the Error may take to be written
  /// before the connection is closed anyway.
  static constexpr std::chrono::milliseconds kCloseLinger{1000};
  /// TLS: most bytes gathered into one write (a few records' worth).
  static constexpr std::size_t kMaxTlsGather = 64 * 1024;
  /// Most bytes gathered into one write on plain TCP (at least one frame), so
  /// that the write deadline measures a client's reading pace.
  static constexpr std::size_t kMaxWriteGather = 1u << 20;
  /// Plain TCP: bytes read at a time, into the I/O thread's buffer.
  static constexpr std::size_t kReadBytes = 64 * 1024;
  /// TLS: bytes read at a time, into the session's buffer (one TLS record).
  static constexpr std::size_t kTlsReadBytes = 16 * 1024;
  /// Plain TCP: full reads in a row before others get a turn.
  static constexpr int kReadsPerTurn = 4;

  /// `handler` and `stats` must outlive every handler of the session; so must
  /// `tls` (null: plain TCP).
  Session(asio::ip::tcp::socket socket, asio::ssl::context* tls, std::uint64_t id,
          SessionHandler& handler, const SessionLimits& limits, NetStats& stats,
          OnClose on_close);
  ~Session() override;

  void start();
  /// Stops reading new requests; closes once every pending response is written.
  void shutdown();

  void respond(protocol::OutFrame frame) override;
  void respond_now(protocol::OutFrame frame) override { enqueue(std::move(frame), true); }
  std::size_t queued_bytes() const override { return queued_bytes_; }
  std::size_t outgoing_budget() const override { return limits_.max_queued_bytes; }
  void fail(protocol::OutFrame frame) override;
  void open_session(std::string_view user) override;
  asio::any_io_executor executor() override { return executor_; }
  std::uint64_t id() const override { return id_; }
  bool closing() const override {
    return read_state_ == ReadState::stopping || read_state_ == ReadState::done ||
           phase_ == Phase::closed;
  }
  bool closed() const override { return phase_ == Phase::closed; }

 private:
  void on_tls_handshake(const std::error_code& ec);
  /// Waits for bytes (plain TCP: readiness, no buffer held; TLS: a read).
  void read_more();
  /// Plain TCP, readable: reads into the I/O thread's buffer and handles it.
  void read_ready();
  /// Handles `data` after what is pending; returns whether to read on
  /// (false: reading stopped, or held back by max_inflight).
  bool take_bytes(std::span<const std::uint8_t> data, Clock::time_point now);
  /// Handles the whole frames at the front of `in`; returns the bytes used.
  std::size_t handle_frames(std::span<const std::uint8_t> in, std::size_t& frames);
  /// After a response freed a pipelining slot: handles what was held back.
  void resume_reading();
  /// Stops reading: at once when no read is outstanding, else when it completes.
  void stop_reading();
  /// No request can follow: tells the handler, closes once all is answered.
  void reading_done();
  void enqueue(protocol::OutFrame frame, bool is_response);
  /// Writes everything queued in one gathered write (if none is in progress).
  void start_write();
  void on_written(const std::error_code& ec, std::size_t bytes);
  /// Waits for watchdog_at_, checks the deadlines, waits again (one wait at a time).
  void arm_watchdog();
  /// Makes the watchdog wake by `at` (earlier wakes are harmless).
  void wake_watchdog_by(Clock::time_point at);
  /// Fails the connection for any deadline passed at `now`; returns when to look next.
  Clock::time_point check_deadlines(Clock::time_point now);
  /// Sends one Error{protocol_error} with `message` and closes after it; logs
  /// through `throttle` at `level`.
  void expire(LogThrottle& throttle, spdlog::level::level_enum level, const std::string& message);
  /// Closes now; `graceful` (only when no write is pending) lets TLS send close_notify first.
  void close(bool graceful = false);
  /// Once reading stopped and nothing is pending or queued, closes (after the last write).
  void maybe_close_drained();

  enum class Phase : std::uint8_t { tls_handshake, hello, open, closed };
  enum class ReadState : std::uint8_t { reading, held_back, stopping, done };
  enum class WriteState : std::uint8_t { idle, posted, writing };
  /// none → failing (fail(): one Error is on its way) → expired (a deadline
  /// passed: the next watchdog wake closes, Error written or not).
  enum class Failure : std::uint8_t { none, failing, expired };
  bool reading() const { return read_state_ == ReadState::reading; }

  Transport transport_;
  asio::any_io_executor executor_;
  const std::uint64_t id_;
  SessionHandler& handler_;
  const SessionLimits limits_;
  NetStats& stats_;
  OnClose on_close_;

  // Received bytes not handled yet: an incomplete frame, or frames held back by
  // max_inflight. Empty, and unallocated, between frames.
  std::vector<std::uint8_t> pending_;
  std::size_t pending_head_ = 0;  // pending_[pending_head_ ...] is not handled yet
  bool pending_empty() const { return pending_head_ == pending_.size(); }
  std::vector<std::uint8_t> tls_in_;  // TLS only: the read buffer
  // Frames waiting for the writer: queue_[queue_head_ ...]. A vector, not a
  // deque: an empty one holds no memory (a deque allocates ~600 bytes up front,
  // per idle connection).
  std::vector<protocol::OutFrame> queue_;
  std::size_t queue_head_ = 0;
  bool queue_empty() const { return queue_head_ == queue_.size(); }
  std::size_t queued_bytes_ = 0;
  // The write in progress: its frames (kept alive until written) and buffers.
  std::vector<protocol::OutFrame> writing_;
  std::vector<asio::const_buffer> write_buffers_;
  std::vector<std::uint8_t> tls_out_;  // TLS only: the gathered frames in one buffer
  std::size_t inflight_ = 0;
  asio::steady_timer watchdog_;
  Clock::time_point watchdog_at_ = Clock::time_point::max();  // when the watchdog wakes
  Clock::time_point handshake_deadline_ = Clock::time_point::max();
  Clock::time_point frame_deadline_ = Clock::time_point::max();  // max: no frame in progress
  Clock::time_point write_started_;  // when the write in progress began
  Clock::time_point close_by_ = Clock::time_point::max();  // after fail(): closed by then
  Clock::time_point last_activity_;  // last frame received, or last response to a pending request
  std::string user_;  // for log lines: set when the session opens
  Phase phase_;
  ReadState read_state_ = ReadState::reading;
  WriteState write_state_ = WriteState::idle;
  Failure failure_ = Failure::none;
  std::uint32_t fails_posted_ = 0;  // fail()s not yet queued
  bool close_after_flush_ = false;  // close once everything queued is written
};

}  // namespace im::server
