#include "server/net/session.hpp"

#include <array>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <spdlog/spdlog.h>

namespace im::server {
namespace {
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);
}  // namespace

Session::Session(asio::ip::tcp::socket socket, std::uint64_t id, Service& service,
                 const SessionLimits& limits, OnClose on_close)
    : socket_(std::move(socket)),
      executor_(socket_.get_executor()),
      id_(id),
      service_(service),
      limits_(limits),
      on_close_(std::move(on_close)),
      write_signal_(executor_),
      inflight_signal_(executor_) {
  write_signal_.expires_at(asio::steady_timer::time_point::max());
  inflight_signal_.expires_at(asio::steady_timer::time_point::max());
}

Session::~Session() = default;

void Session::start() {
  std::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
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
    self->socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ec);
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
  }
  if (closed_) return;
  queued_bytes_ += frame.size();
  queue_.push_back(std::move(frame));
  if (queued_bytes_ > limits_.max_queued_bytes) {
    spdlog::get("net")->warn("[s{}] user={} not reading: {} bytes queued, disconnecting", id_, user,
                             queued_bytes_);
    return close();
  }
  write_signal_.cancel_one();
}

asio::awaitable<void> Session::read_loop() {
  // The frame is read into one buffer, prefix included: FlatBuffers aligns
  // fields relative to the prefix, and the Verifier checks that alignment.
  constexpr std::size_t kPrefix = protocol::kLengthPrefixBytes;
  while (reading_ && !closed_) {
    buffer_.resize(kPrefix);
    auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(buffer_.data(), kPrefix), use_nothrow);
    if (ec || !reading_) break;
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
        co_await asio::async_read(socket_, asio::buffer(buffer_.data() + kPrefix, length), use_nothrow);
    if (ec || !reading_) break;
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
  maybe_close_drained();
}

asio::awaitable<void> Session::write_loop() {
  std::vector<asio::const_buffer> buffers;
  std::vector<protocol::OutFrame> writing;
  while (!closed_) {
    if (queue_.empty()) {
      maybe_close_drained();
      if (close_after_flush_ || closed_) break;
      write_signal_.expires_at(asio::steady_timer::time_point::max());
      co_await write_signal_.async_wait(use_nothrow);
      continue;
    }
    // Gather everything queued into one write (like Redis' reply batching).
    buffers.clear();
    writing.clear();
    while (!queue_.empty() && buffers.size() < 256) {
      writing.push_back(std::move(queue_.front()));
      queue_.pop_front();
      buffers.emplace_back(writing.back().data(), writing.back().size());
    }
    auto [ec, n] = co_await asio::async_write(socket_, buffers, use_nothrow);
    queued_bytes_ -= n <= queued_bytes_ ? n : queued_bytes_;
    if (ec) break;
  }
  close();
}

void Session::maybe_close_drained() {
  // Once reading stopped, close when no request is pending and all is written.
  if (!reading_ && !closed_ && inflight_ == 0 && queue_.empty()) {
    close_after_flush_ = true;
    write_signal_.cancel();  // wakes the writer, which sees the flag and closes
  }
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  closing = true;
  reading_ = false;
  std::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  write_signal_.cancel();
  inflight_signal_.cancel();
  spdlog::get("net")->info("[s{}] closed user={}", id_, user);
  if (on_close_) on_close_(id_);
}

}  // namespace im::server
