#include "client/session.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "client/errors.hpp"

namespace im::client {

std::shared_ptr<Session> Session::create(asio::io_context& io, Options options) {
  std::shared_ptr<Session> s(new Session(io, std::move(options)));
  s->start();
  return s;
}

Session::Session(asio::io_context& io, Options options)
    : io_(io), opt_(std::move(options)), keepalive_timer_(io) {}

void Session::start() {
  const std::weak_ptr<Session> weak = weak_from_this();
  Connection::Events events;
  events.opened = [weak] {
    if (const auto self = weak.lock()) self->on_opened();
  };
  events.frame = [weak](const wire::Frame& f) {
    if (const auto self = weak.lock()) self->on_frame(f);
  };
  events.failed = [weak](const Error& e) {
    if (const auto self = weak.lock()) self->on_connection_failed(e);
  };
  connection_ = Connection::create(io_, opt_, std::move(events));
  requests_ = RequestTable::create(io_, [weak](std::uint64_t id, std::chrono::milliseconds timeout) {
    if (const auto self = weak.lock()) self->on_deadline(id, timeout);
  });
}

// ---- requests ---------------------------------------------------------------

void Session::call(const MakeFrame& make, std::chrono::milliseconds timeout, OnFrame on_frame,
                   OnError on_error) {
  if (closed_) return on_error(make_error(Error::Kind::closed, "client closed"));
  requests_->add(make, timeout, std::move(on_frame), std::move(on_error));
  if (connection_->state() == Connection::State::established) {
    flush_unsent();
  } else {
    open();
  }
}

void Session::connect(std::function<void(const Result<Welcome>&)> done) {
  if (closed_) return done(make_error(Error::Kind::closed, "client closed"));
  if (connection_->state() == Connection::State::established) return done(welcome_);
  waiters_.push_back(std::move(done));
  open();
}

void Session::open() {
  if (!closed_) connection_->open();
}

void Session::flush_unsent() {
  Connection& c = *connection_;
  requests_->take_unsent([&c](protocol::OutFrame f) { c.enqueue(std::move(f)); });
  c.flush();
}

void Session::on_deadline(std::uint64_t id, std::chrono::milliseconds timeout) {
  if (id == hello_id_) return requests_->fail(id, make_error(Error::Kind::timeout, "no Welcome"));
  const Error e =
      make_error(Error::Kind::timeout, "no response in " + std::to_string(timeout.count()) + " ms");
  // With somewhere else to go, a server that leaves a request unanswered is
  // given up on: everything on the connection fails (retryable) and the next
  // request connects to the next endpoint.
  if (!opt_.failover.empty() && requests_->sent(id)) connection_->fail(e);
  requests_->fail(id, e);  // if the connection's failure has not ended it already
}

void Session::after(std::chrono::milliseconds wait, std::function<void()> then) {
  if (closed_) return then();
  const std::uint64_t key = ++next_wait_;
  Wait& w = waits_[key];
  w.timer = std::make_unique<asio::steady_timer>(io_, wait);
  w.then = std::move(then);
  w.timer->async_wait([weak = weak_from_this(), key](const std::error_code& ec) {
    const auto self = weak.lock();
    if (!ec && self) self->run_wait(key);
  });
}

void Session::run_wait(std::uint64_t key) {
  const auto it = waits_.find(key);
  if (it == waits_.end()) return;
  const std::function<void()> then = std::move(it->second.then);
  waits_.erase(it);
  then();
}

void Session::close(bool final) {
  if (closed_) return;
  closed_ = true;
  keepalive_timer_.cancel();
  connection_->close();
  const Error e = make_error(Error::Kind::closed, "client closed");
  requests_->fail_all(e);
  answer_waiters(e);
  if (final) {
    auto waits = std::move(waits_);
    waits_.clear();
    for (auto& [key, w] : waits) {
      w.timer->cancel();
      w.then();
    }
  }
  closed_ = final;
}

// ---- the connection's events ------------------------------------------------

void Session::on_opened() {
  if (!opt_.anonymous) return send_hello();
  // Register/Login only: the connection is usable at once.
  connection_->established();
  welcome_ = Welcome{};
  on_established();
}

void Session::on_frame(const wire::Frame& f) {
  if (f.request_id() == 0) {
    // A notification. An Error here means the server is closing on us.
    if (f.body_type() == wire::Body::Error) {
      connection_->fail(
          make_error(Error::Kind::protocol, "server: " + from_wire(*f.body_as_Error()).to_string()));
    }
    return;  // unknown notifications are ignored (forward compatibility)
  }
  requests_->answer(f);  // no longer there: answered after its deadline
}

void Session::on_connection_failed(const Error& e) {
  keepalive_timer_.cancel();
  requests_->fail_all(e);
  answer_waiters(e);
}

// ---- Hello and Welcome ------------------------------------------------------

void Session::send_hello() {
  const std::weak_ptr<Session> weak = weak_from_this();
  const std::string token = opt_.token_source ? opt_.token_source() : opt_.token;
  auto hello = requests_->add_sent(
      [&](std::uint64_t id) { return protocol::encode_hello(id, opt_.user, token, opt_.client_name); },
      opt_.request_timeout,
      [weak](const wire::Frame& f) {
        if (const auto self = weak.lock()) self->on_welcome(f);
      },
      [weak](const Error& e) {
        if (const auto self = weak.lock()) self->connection_->fail(e);
      });
  hello_id_ = hello.id;
  // The write queue of a new connection is empty: Hello goes first, ahead of
  // every request waiting in the table.
  connection_->enqueue(std::move(hello.frame));
  connection_->flush();
}

void Session::on_welcome(const wire::Frame& f) {
  if (f.body_type() == wire::Body::Error) return connection_->fail(from_wire(*f.body_as_Error()));
  if (f.body_type() != wire::Body::Welcome) {
    return connection_->fail(make_error(Error::Kind::protocol, "expected Welcome"));
  }
  const auto* w = f.body_as_Welcome();
  welcome_.server_name = w->server_name() ? w->server_name()->str() : "";
  welcome_.session_id = w->session_id();
  welcome_.limits = {w->max_frame_bytes(), w->max_body_bytes(), w->max_pull_limit(), w->max_wait_ms(),
                     w->idle_timeout_ms()};
  welcome_.user = w->user() ? w->user()->str() : opt_.user;
  welcome_.token_expires_at_us = w->token_expires_at_us();
  connection_->established();
  on_established();
  if (welcome_.limits.idle_timeout_ms > 0) {
    schedule_keepalive(connection_->generation(),
                       std::chrono::milliseconds(std::max<std::uint32_t>(welcome_.limits.idle_timeout_ms / 3, 1)));
  }
}

void Session::on_established() {
  answer_waiters(welcome_);
  flush_unsent();
}

void Session::answer_waiters(const Result<Welcome>& r) {
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& w : waiters) w(r);
}

void Session::schedule_keepalive(std::uint64_t gen, std::chrono::milliseconds every) {
  keepalive_timer_.expires_after(every);
  keepalive_timer_.async_wait([weak = weak_from_this(), gen, every](const std::error_code& ec) {
    const auto self = weak.lock();
    if (ec || !self) return;
    const Connection& c = *self->connection_;
    if (gen != c.generation() || c.state() != Connection::State::established) return;
    if (self->requests_->empty() && Connection::Clock::now() - c.last_write() >= every) {
      // The answer does not matter; a lost connection shows up on its own.
      self->call([](std::uint64_t id) { return protocol::encode_ping(id, id); }, self->opt_.request_timeout,
                 [](const wire::Frame&) {}, [](const Error&) {});
    }
    self->schedule_keepalive(gen, every);
  });
}

}  // namespace im::client
