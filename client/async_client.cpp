// AsyncClient: the public API over a Session on the client's own I/O thread.
//
// The parts: Connection (connection.hpp: connect, TLS, backoff and failover
// across endpoints, the read loop, the write queue), RequestTable
// (request_table.hpp: what is in flight by request id, callbacks, deadlines),
// Session (session.hpp: Hello/Welcome, keep-alive, requests onto the
// connection) and, here, the I/O thread and the public calls, which post
// into it.
//
// Lifetime, one rule for all of them:
//   Ownership is a tree: AsyncClient -> Impl (the I/O thread) -> Session ->
//   {Connection, RequestTable}. No asynchronous completion (a timer's, a
//   socket's, a posted function) owns a node of the tree or holds a bare
//   `this`: it holds a weak_ptr to the node it touches, and does nothing
//   once that is gone. Callbacks a node keeps for later (a request's, the
//   Connection's events) follow the same rule. What a completion or such a
//   callback may own is its operation's alone: the buffers being written,
//   the resolver, the TLS stream it runs on, a send's retry state.
//   So the io_context never keeps the client alive (there is no cycle
//   through it), and ~Impl takes it down in one order: close on the I/O
//   thread (all that is pending fails with Kind::closed), stop and join the
//   thread, run what is still queued, drop the tree (its sockets and timers
//   cancel what is in flight), then run those completions, which find
//   nothing to touch.
#include <algorithm>
#include <cstdint>
#include <random>
#include <thread>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "client/client.hpp"
#include "client/errors.hpp"
#include "client/session.hpp"
#include "protocol/frames.hpp"

namespace im::client {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<MessageRecord> to_records(
    const flatbuffers::Vector<flatbuffers::Offset<wire::Message>>* v) {
  std::vector<MessageRecord> out;
  if (!v) return out;
  out.reserve(v->size());
  for (const wire::Message* m : *v) out.push_back(protocol::to_record(*m));
  return out;
}

AuthGrant to_grant(const wire::Frame& f) {
  const auto* a = f.body_as_AuthResult();
  return AuthGrant{a->user() ? a->user()->str() : "", a->token() ? a->token()->str() : "",
                   a->expires_at_us()};
}

/// One request whose answer is `expected` (converted by `convert`) or an Error.
template <typename T, typename Convert>
void request(Session& session, const Session::MakeFrame& make, std::chrono::milliseconds timeout,
             wire::Body expected, Convert convert, std::function<void(Result<T>)> done) {
  auto cb = std::make_shared<std::function<void(Result<T>)>>(std::move(done));
  session.call(
      make, timeout,
      [cb, expected, convert](const wire::Frame& f) {
        if (f.body_type() == wire::Body::Error) return (*cb)(from_wire(*f.body_as_Error()));
        if (f.body_type() != expected) {
          return (*cb)(make_error(Error::Kind::protocol,
                                  std::string("unexpected response type ") + wire::EnumNameBody(f.body_type())));
        }
        (*cb)(convert(f));
      },
      [cb](const Error& e) { (*cb)(e); });
}

/// A send and its retries, every attempt with one client_msg_id. Owned by
/// what continues it: its request in the table, or the backoff wait between
/// two attempts (Session::after).
class SendAttempts : public std::enable_shared_from_this<SendAttempts> {
 public:
  SendAttempts(std::weak_ptr<Session> session, std::string receiver, std::string body,
               std::uint64_t client_msg_id, AsyncClient::Callback<SendAck> done)
      : session_(std::move(session)),
        receiver_(std::move(receiver)),
        body_(std::move(body)),
        client_msg_id_(client_msg_id),
        done_(std::move(done)) {}

  void attempt() {
    const auto session = session_.lock();
    if (!session) return done_(make_error(Error::Kind::closed, "client closed"));
    ++attempts_;
    const auto self = shared_from_this();
    session->call(
        // Made at once, inside call(): not a completion.
        [this](std::uint64_t id) { return protocol::encode_send(id, receiver_, client_msg_id_, body_); },
        session->options().request_timeout, [self](const wire::Frame& f) { self->answered(f); },
        [self](const Error& e) { self->failed(e); });
  }

 private:
  void answered(const wire::Frame& f) {
    if (f.body_type() == wire::Body::SendAck) {
      const auto* a = f.body_as_SendAck();
      return done_(SendAck{a->message_id(), a->created_at_us(), a->seq(), a->duplicate(), client_msg_id_,
                           attempts_});
    }
    if (f.body_type() == wire::Body::Error) return failed(from_wire(*f.body_as_Error()));
    done_(make_error(Error::Kind::protocol, "unexpected response to Send"));
  }

  void failed(const Error& e) {
    const auto session = session_.lock();
    if (!session) return done_(e);
    const Options& o = session->options();
    if (!e.retryable() || attempts_ >= o.send_attempts) return done_(e);
    backoff_ = std::min(o.backoff_max, backoff_.count() == 0 ? o.backoff_initial : backoff_ * 2);
    const auto wait = std::max(backoff_, std::chrono::milliseconds(e.retry_after_ms));
    session->after(wait, [self = shared_from_this()] { self->attempt(); });
  }

  const std::weak_ptr<Session> session_;
  const std::string receiver_;
  const std::string body_;
  const std::uint64_t client_msg_id_;
  const AsyncClient::Callback<SendAck> done_;
  int attempts_ = 0;
  std::chrono::milliseconds backoff_{0};
};

}  // namespace

bool Error::retryable() const {
  switch (kind) {
    case Kind::timeout:
    case Kind::disconnected:
    case Kind::connect_failed: return true;
    case Kind::server:
      return code == wire::ErrorCode::Unavailable || code == wire::ErrorCode::Busy ||
             code == wire::ErrorCode::RateLimited;
    case Kind::protocol:
    case Kind::closed: return false;
  }
  return false;
}

std::string Error::to_string() const {
  switch (kind) {
    case Kind::server: return std::string(protocol::error_code_name(code)) + ": " + message;
    case Kind::timeout: return "timeout: " + message;
    case Kind::disconnected: return "disconnected: " + message;
    case Kind::connect_failed: return "connect failed: " + message;
    case Kind::protocol: return "protocol error: " + message;
    case Kind::closed: return "closed: " + message;
  }
  return message;
}

std::uint64_t new_client_msg_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}() ^
                                          static_cast<std::uint64_t>(Clock::now().time_since_epoch().count())};
  std::uint64_t id = 0;
  while (id == 0) id = rng();
  return id;
}

// The I/O thread and the Session it runs (the tree's root below AsyncClient).
struct AsyncClient::Impl {
 public:
  explicit Impl(Options options)
      : work_(asio::make_work_guard(io_)),
        session_(Session::create(io_, std::move(options))),
        thread_([&io = io_] { io.run(); }) {}  // joined in ~Impl, before io_ goes

  ~Impl() {
    // Posted behind whatever came before, then ends run() (a stop() from
    // here could end it before the close ran).
    post([](Session& s) {
      s.close(/*final=*/true);
      s.io().stop();
    });
    work_.reset();
    if (thread_.joinable()) thread_.join();
    // What the close left queued runs with the tree still there: a request
    // posted meanwhile (by a callback) fails with Kind::closed.
    io_.restart();
    io_.poll();
    // Dropping the tree cancels what is still in flight; those completions
    // run now, find nothing to touch and free what they own.
    session_.reset();
    io_.restart();
    io_.poll();
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  /// Immutable: readable from any thread.
  const Options& options() const { return session_->options(); }

  /// Runs `fn(session)` on the I/O thread.
  template <typename Fn>
  void post(Fn fn) {
    asio::post(io_, [weak = std::weak_ptr<Session>(session_), fn = std::move(fn)]() mutable {
      if (const auto session = weak.lock()) fn(*session);
    });
  }

 private:
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::shared_ptr<Session> session_;
  std::thread thread_;
};

AsyncClient::AsyncClient(Options options) : impl_(std::make_shared<Impl>(std::move(options))) {}

// ~Impl closes: whatever is pending fails with Kind::closed.
AsyncClient::~AsyncClient() = default;

const Options& AsyncClient::options() const { return impl_->options(); }

void AsyncClient::close() {
  impl_->post([](Session& s) { s.close(/*final=*/false); });
}

void AsyncClient::connect(Callback<Welcome> done) {
  impl_->post([done = std::move(done)](Session& s) mutable {
    s.connect([done = std::move(done)](const Result<Welcome>& r) { done(r); });
  });
}

void AsyncClient::send(std::string receiver, std::string body, std::uint64_t client_msg_id,
                       Callback<SendAck> done) {
  if (client_msg_id == 0) client_msg_id = new_client_msg_id();
  impl_->post([receiver = std::move(receiver), body = std::move(body), client_msg_id,
               done = std::move(done)](Session& s) mutable {
    std::make_shared<SendAttempts>(s.weak_from_this(), std::move(receiver), std::move(body), client_msg_id,
                                   std::move(done))
        ->attempt();
  });
}

void AsyncClient::pull(std::int64_t after_seq, std::uint32_t limit, std::uint32_t wait_ms,
                       Callback<PullPage> done) {
  impl_->post([after_seq, limit, wait_ms, done = std::move(done)](Session& s) mutable {
    request<PullPage>(
        s, [=](std::uint64_t id) { return protocol::encode_pull(id, after_seq, limit, wait_ms); },
        s.options().request_timeout + std::chrono::milliseconds(wait_ms), wire::Body::PullResult,
        [](const wire::Frame& f) {
          const auto* p = f.body_as_PullResult();
          return PullPage{to_records(p->messages()), p->next_after_seq(), p->has_more()};
        },
        std::move(done));
  });
}

void AsyncClient::history(std::string peer, std::int64_t cursor, std::uint32_t limit, bool reverse,
                          Callback<HistoryPage> done) {
  impl_->post([peer = std::move(peer), cursor, limit, reverse, done = std::move(done)](Session& s) mutable {
    request<HistoryPage>(
        s, [&](std::uint64_t id) { return protocol::encode_history(id, peer, cursor, limit, reverse); },
        s.options().request_timeout, wire::Body::HistoryResult,
        [](const wire::Frame& f) {
          const auto* h = f.body_as_HistoryResult();
          return HistoryPage{to_records(h->messages()), h->next_cursor(), h->has_more()};
        },
        std::move(done));
  });
}

void AsyncClient::ping(Callback<std::chrono::microseconds> done) {
  impl_->post([done = std::move(done)](Session& s) mutable {
    const auto start = Clock::now();
    request<std::chrono::microseconds>(
        s, [](std::uint64_t id) { return protocol::encode_ping(id, id); }, s.options().request_timeout,
        wire::Body::Pong,
        [start](const wire::Frame&) {
          return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
        },
        std::move(done));
  });
}

void AsyncClient::register_account(std::string user, std::string password, Callback<AuthGrant> done) {
  impl_->post([user = std::move(user), password = std::move(password),
               done = std::move(done)](Session& s) mutable {
    request<AuthGrant>(
        s, [&](std::uint64_t id) { return protocol::encode_register(id, user, password); },
        s.options().request_timeout, wire::Body::AuthResult, to_grant, std::move(done));
  });
}

void AsyncClient::login(std::string user, std::string password, Callback<AuthGrant> done) {
  impl_->post([user = std::move(user), password = std::move(password),
               done = std::move(done)](Session& s) mutable {
    request<AuthGrant>(
        s, [&](std::uint64_t id) { return protocol::encode_login(id, user, password); },
        s.options().request_timeout, wire::Body::AuthResult, to_grant, std::move(done));
  });
}

}  // namespace im::client
