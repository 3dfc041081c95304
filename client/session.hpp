#pragma once
// Session: the im session over a Connection, with the RequestTable of what is
// in flight on it. A request is added to the table and written once the
// session is up: the connection is opened on demand, Hello goes first and
// the Welcome lets the waiting requests go (an anonymous session needs no
// Hello). A lost connection fails everything pending, retryable; the next
// request reconnects. Keep-alive: a Ping when nothing was written for a third
// of the server's idle timeout and no request is pending (a pending one keeps
// the connection open).
//
// Deadlines: a request that expires fails alone, unless there are failover
// endpoints and it was sent: then the whole connection is given up on, so
// that the retry goes to another server.
//
// Lifetime: the rule at the top of async_client.cpp. A Session owns its
// Connection and RequestTable; the callbacks it leaves with them, and its own
// handlers, hold a weak_ptr to it.
//
// Thread-safety: none; every call and every handler runs on the client's I/O
// thread (AsyncClient posts into it).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "client/client.hpp"
#include "client/connection.hpp"
#include "client/request_table.hpp"

namespace im::client {

class Session : public std::enable_shared_from_this<Session> {
 public:
  using MakeFrame = RequestTable::MakeFrame;
  using OnFrame = RequestTable::OnFrame;
  using OnError = RequestTable::OnError;

  static std::shared_ptr<Session> create(asio::io_context& io, Options options);

  const Options& options() const { return opt_; }
  asio::io_context& io() { return io_; }

  /// One request: its frame made at once with its id, ended by exactly one of the
  /// callbacks (a response frame, or an Error such as the deadline's).
  void call(const MakeFrame& make, std::chrono::milliseconds timeout, OnFrame on_frame, OnError on_error);
  /// The session's Welcome once it is up (now, if it is).
  void connect(std::function<void(const Result<Welcome>&)> done);
  /// Runs `then` after `wait` (a send's backoff between attempts), or at the
  /// final close, whichever comes first.
  void after(std::chrono::milliseconds wait, std::function<void()> then);
  /// Drops the connection and fails everything pending with Kind::closed. A
  /// later request reconnects, unless `final`: then each waiting after() runs
  /// at once (and its request fails, closed) and nothing is accepted again.
  void close(bool final);

 private:
  struct Wait {
    std::unique_ptr<asio::steady_timer> timer;
    std::function<void()> then;
  };

  Session(asio::io_context& io, Options options);
  void start();  // needs shared_from_this: after construction

  void open();
  void flush_unsent();
  void on_deadline(std::uint64_t id, std::chrono::milliseconds timeout);

  // The Connection's events.
  void on_opened();
  void on_frame(const wire::Frame& f);
  void on_connection_failed(const Error& e);

  void send_hello();
  void on_welcome(const wire::Frame& f);
  /// The session is up: the waiters get `welcome_`, the waiting requests go.
  void on_established();
  void answer_waiters(const Result<Welcome>& r);
  void schedule_keepalive(std::uint64_t gen, std::chrono::milliseconds every);
  void run_wait(std::uint64_t key);

  asio::io_context& io_;
  const Options opt_;
  std::shared_ptr<Connection> connection_;
  std::shared_ptr<RequestTable> requests_;
  std::uint64_t hello_id_ = 0;  // the current connection's Hello
  Welcome welcome_;
  std::vector<std::function<void(const Result<Welcome>&)>> waiters_;  // connect() before the Welcome
  asio::steady_timer keepalive_timer_;
  std::uint64_t next_wait_ = 0;
  std::unordered_map<std::uint64_t, Wait> waits_;
  // Set while close() fails what is pending (a request made from one of its
  // callbacks fails at once too), and for good after the final close.
  bool closed_ = false;
};

}  // namespace im::client
