#pragma once
// Session: one client connection.
//
// A reader coroutine reads length-prefixed frames (the length is checked before
// the payload is allocated; a smaller limit applies before Hello), verifies
// each one and hands it to the Service; requests are pipelined, up to
// max_inflight at a time. A writer coroutine drains the outgoing queue,
// gathering every queued frame into one write. The queue is bounded in bytes:
// a client that does not read is disconnected instead of growing memory.
// A frame that cannot be parsed or verified gets one Error and the connection
// closes; nothing else is affected.
//
// Thread-safety: all state lives on the session's executor (one I/O thread);
// respond() and shutdown() may be called from any thread.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "protocol/frame_codec.hpp"
#include "server/service/connection.hpp"
#include "server/service/service.hpp"

namespace im::server {

struct SessionLimits {
  std::uint32_t max_frame_bytes = protocol::kDefaultMaxFrameBytes;
  std::uint32_t max_frame_bytes_before_hello = 4096;
  std::size_t max_queued_bytes = 16u << 20;
  std::size_t max_inflight = 1024;
  protocol::VerifyLimits verify{};
};

class Session final : public Connection, public std::enable_shared_from_this<Session> {
 public:
  using OnClose = std::function<void(std::uint64_t id)>;

  Session(asio::ip::tcp::socket socket, std::uint64_t id, Service& service,
          const SessionLimits& limits, OnClose on_close);
  ~Session() override;

  void start();
  /// Stops reading new requests; closes once every pending response is written.
  void shutdown();

  void respond(protocol::OutFrame frame) override;
  void fail(protocol::OutFrame frame) override;
  asio::any_io_executor executor() override { return executor_; }
  std::uint64_t id() const override { return id_; }

 private:
  asio::awaitable<void> read_loop();
  asio::awaitable<void> write_loop();
  void enqueue(protocol::OutFrame frame, bool is_response);
  void close();
  void maybe_close_drained();

  asio::ip::tcp::socket socket_;
  asio::any_io_executor executor_;
  const std::uint64_t id_;
  Service& service_;
  const SessionLimits limits_;
  OnClose on_close_;

  std::vector<std::uint8_t> buffer_;  // the frame being read, prefix included
  std::deque<protocol::OutFrame> queue_;
  std::size_t queued_bytes_ = 0;
  asio::steady_timer write_signal_;
  asio::steady_timer inflight_signal_;
  std::size_t inflight_ = 0;
  bool reading_ = true;
  bool closed_ = false;
  bool close_after_flush_ = false;
};

}  // namespace im::server
