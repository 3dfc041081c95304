#pragma once
// FakeConnection: an im::server::Connection without a socket, for tests and
// fuzzing that drive the Service directly. Like net::Session, respond() posts
// to the connection's executor; frames "written" are kept in order for the
// test to take and inspect. fail() records its frame and marks the connection
// closing, as a session does once it stops reading.
//
// Thread-safety: respond() may be called from any thread; everything else on
// the executor's thread.

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/post.hpp>

#include "server/service/connection.hpp"

namespace im::test {

class FakeConnection final : public server::Connection,
                             public std::enable_shared_from_this<FakeConnection> {
 public:
  struct Written {
    protocol::OutFrame frame;
    bool from_fail = false;  // written by fail(): the connection closes after it
  };

  FakeConnection(asio::any_io_executor executor, std::uint64_t id)
      : executor_(std::move(executor)), id_(id) {}

  void respond(protocol::OutFrame frame) override {
    asio::post(executor_, [self = shared_from_this(), f = std::move(frame)]() mutable {
      self->written_.push_back({std::move(f), false});
    });
  }
  void fail(protocol::OutFrame frame) override {
    written_.push_back({std::move(frame), true});
    failed_ = true;
    closing = true;
  }
  asio::any_io_executor executor() override { return executor_; }
  std::uint64_t id() const override { return id_; }

  /// The frames written since the last call, in order.
  std::vector<Written> take_written() { return std::exchange(written_, {}); }
  bool failed() const { return failed_; }

 private:
  asio::any_io_executor executor_;
  std::uint64_t id_;
  std::vector<Written> written_;
  bool failed_ = false;
};

}  // namespace im::test
