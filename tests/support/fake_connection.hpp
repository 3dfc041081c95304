#pragma once
// FakeConnection: an im::server::Connection without a socket, for tests and
// fuzzing that drive the Service directly. Like net::Session, respond() posts
// to the connection's executor; frames "written" are kept in order for the
// test to take and inspect. fail() records its frame and marks the connection
// closing, as a session does once it stops reading. Given a SessionHandler (the
// Service), it reports its life as a session does: on_open from
// open_session(), on_close from close().
//
// Thread-safety: respond() may be called from any thread; everything else on
// the executor's thread.

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/post.hpp>

#include "server/service/connection.hpp"
#include "server/service/session_handler.hpp"

namespace im::test {

class FakeConnection final : public server::Connection,
                             public std::enable_shared_from_this<FakeConnection> {
 public:
  struct Written {
    protocol::OutFrame frame;
    bool from_fail = false;  // written by fail(): the connection closes after it
  };

  FakeConnection(asio::any_io_executor executor, std::uint64_t id,
                 server::SessionHandler* handler = nullptr)
      : executor_(std::move(executor)), id_(id), handler_(handler) {}

  void respond(protocol::OutFrame frame) override {
    asio::post(executor_, [self = shared_from_this(), f = std::move(frame)]() mutable {
      self->written_.push_back({std::move(f), false});
    });
  }
  void fail(protocol::OutFrame frame) override {
    written_.push_back({std::move(frame), true});
    failed_ = true;
    closing_ = true;
  }
  void open_session(std::string_view) override {
    if (opened_ || closed_) return;
    opened_ = true;
    if (handler_) handler_->on_open(*this);
  }
  asio::any_io_executor executor() override { return executor_; }
  std::uint64_t id() const override { return id_; }
  bool closing() const override { return closing_ || closed_; }
  bool closed() const override { return closed_; }

  /// The client went away: no request follows, then the connection is gone.
  void close() {
    if (closed_) return;
    closing_ = true;
    closed_ = true;
    if (handler_) handler_->on_close(*this);
  }
  /// No request can follow (a session that stopped reading); responses still go out.
  void stop_reading() { closing_ = true; }

  /// The frames written since the last call, in order.
  std::vector<Written> take_written() { return std::exchange(written_, {}); }
  bool failed() const { return failed_; }

 private:
  asio::any_io_executor executor_;
  std::uint64_t id_;
  server::SessionHandler* handler_;
  std::vector<Written> written_;
  bool failed_ = false;
  bool opened_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace im::test
