#pragma once
// RequestTable: the requests in flight, by request id. Each has its frame
// (kept until it is handed over for writing), the two callbacks that end it
// (a response frame, or an Error) and a deadline. Ids are given out in
// order from 1; a response whose id is no longer in the table (it came after
// the deadline) is ignored. Every request ends exactly once: answered, failed
// or expired.
//
// When a deadline passes the request is still in the table: the table calls
// its Deadline hook, which decides (fail just this request, or the whole
// connection).
//
// Lifetime: the rule at the top of async_client.cpp; the deadline timers'
// handlers hold a weak_ptr to the table.
//
// Thread-safety: none; every call and every handler runs on the client's I/O
// thread.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "client/client.hpp"
#include "protocol/frames.hpp"

namespace im::client {

class RequestTable : public std::enable_shared_from_this<RequestTable> {
 public:
  using MakeFrame = std::function<protocol::OutFrame(std::uint64_t id)>;
  using OnFrame = std::function<void(const wire::Frame&)>;
  using OnError = std::function<void(const Error&)>;
  /// A request's deadline passed; `timeout` is the one it was given.
  using Deadline = std::function<void(std::uint64_t id, std::chrono::milliseconds timeout)>;

  static std::shared_ptr<RequestTable> create(asio::io_context& io, Deadline on_deadline);

  /// A new request, waiting for take_unsent() (the session may not be up yet).
  /// Returns its id.
  std::uint64_t add(const MakeFrame& make, std::chrono::milliseconds timeout, OnFrame on_frame,
                    OnError on_error);
  struct Added {
    std::uint64_t id;
    protocol::OutFrame frame;
  };
  /// A new request that is written at once, ahead of those waiting (Hello):
  /// counts as sent, and its frame is the caller's to write.
  Added add_sent(const MakeFrame& make, std::chrono::milliseconds timeout, OnFrame on_frame,
                 OnError on_error);

  /// Hands the frame of every request still waiting to `write`, oldest
  /// first, and counts them as sent.
  void take_unsent(const std::function<void(protocol::OutFrame)>& write);

  bool empty() const { return pending_.empty(); }
  /// In the table and handed over for writing.
  bool sent(std::uint64_t id) const;

  /// Ends the request the frame answers, with its on_frame. False if there is
  /// none (it was answered, failed or expired already).
  bool answer(const wire::Frame& f);
  /// Ends one request with on_error(e), if it is still in the table.
  void fail(std::uint64_t id, const Error& e);
  /// Ends every request with on_error(e). Requests added by the callbacks
  /// stay.
  void fail_all(const Error& e);

 private:
  struct Pending {
    protocol::OutFrame frame;  // kept until handed over for writing
    OnFrame on_frame;
    OnError on_error;
    std::unique_ptr<asio::steady_timer> timer;
    bool sent = false;
  };

  RequestTable(asio::io_context& io, Deadline on_deadline);
  Pending& insert(const MakeFrame& make, std::chrono::milliseconds timeout, OnFrame on_frame,
                  OnError on_error, std::uint64_t& id);
  void expired(std::uint64_t id, std::chrono::milliseconds timeout);

  asio::io_context& io_;
  const Deadline on_deadline_;
  std::uint64_t next_id_ = 0;
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::deque<std::uint64_t> unsent_;  // in order; ids that ended meanwhile are skipped
};

}  // namespace im::client
