#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <deque>
#include <random>
#include <span>
#include <thread>
#include <unordered_map>

#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/error.hpp>
#include <asio/ssl/host_name_verification.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "client/client.hpp"
#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"

namespace im::client {
namespace {

using Clock = std::chrono::steady_clock;

Error make_error(Error::Kind kind, std::string message) {
  Error e;
  e.kind = kind;
  e.message = std::move(message);
  return e;
}

Error from_wire(const wire::Error& e) {
  Error out;
  out.kind = Error::Kind::server;
  out.code = e.code();
  out.message = e.message() ? e.message()->str() : "";
  out.retry_after_ms = e.retry_after_ms();
  return out;
}

using TlsStream = asio::ssl::stream<asio::ip::tcp::socket>;

/// The client side's TLS settings, or null with `why` set.
std::unique_ptr<asio::ssl::context> make_tls_context(const Options& o, std::string& why) {
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression);
  ctx->set_verify_mode(asio::ssl::verify_peer);
  std::error_code ec;
  if (o.tls_ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) why = "TLS: cannot load the system's CA certificates: " + ec.message();
  } else if (std::FILE* f = std::fopen(o.tls_ca_file.c_str(), "rb"); !f) {
    why = "TLS CA file '" + o.tls_ca_file + "': cannot read: " + std::strerror(errno);
  } else {
    std::fclose(f);
    ctx->load_verify_file(o.tls_ca_file, ec);
    if (ec) why = "TLS CA file '" + o.tls_ca_file + "': no PEM certificates: " + ec.message();
  }
  if (!why.empty()) return nullptr;
  return ctx;
}

/// OpenSSL's reason for a failed handshake, with the certificate check's own
/// when that is what failed ("certificate verify failed: hostname mismatch").
std::string tls_failure(TlsStream& stream, const std::error_code& ec) {
  std::string why = ec.message();
  const long verify = SSL_get_verify_result(stream.native_handle());
  if (verify != X509_V_OK) why += std::string(": ") + X509_verify_cert_error_string(verify);
  return why;
}

std::vector<MessageRecord> to_records(
    const flatbuffers::Vector<flatbuffers::Offset<wire::Message>>* v) {
  std::vector<MessageRecord> out;
  if (!v) return out;
  out.reserve(v->size());
  for (const wire::Message* m : *v) out.push_back(protocol::to_record(*m));
  return out;
}

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

// All state lives on the I/O thread; public calls post into it.
struct AsyncClient::Impl : std::enable_shared_from_this<AsyncClient::Impl> {
  using OnFrame = std::function<void(const wire::Frame&)>;
  using OnError = std::function<void(const Error&)>;

  struct Pending {
    protocol::OutFrame frame;  // kept until written
    OnFrame on_frame;
    OnError on_error;
    std::unique_ptr<asio::steady_timer> timer;
    bool sent = false;
  };

  Options opt;
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::thread thread;
  asio::ip::tcp::socket socket{io};
  std::unique_ptr<asio::ssl::context> tls_ctx;  // made at the first TLS connect
  // The connection's TLS stream; it owns the socket (moved from `socket`).
  // Handlers hold it too: a stale completion may run after a reconnect.
  std::shared_ptr<TlsStream> tls;
  asio::steady_timer connect_timer{io};
  // Keep-alive: a Ping when nothing was written for a third of the server's
  // idle timeout and no request is pending (a pending one keeps it open).
  asio::steady_timer keepalive_timer{io};
  Clock::time_point last_write{};
  enum class State { idle, connecting, ready } state = State::idle;
  std::uint64_t generation = 0;  // bumped per connection, to ignore stale completions
  std::uint64_t next_id = 0;
  std::unordered_map<std::uint64_t, Pending> pending;
  std::deque<std::uint64_t> unsent;  // requests waiting for the session (Hello first)
  std::deque<protocol::OutFrame> write_queue;
  bool writing = false;
  std::vector<std::uint8_t> rbuf;
  std::size_t rbuf_used = 0;
  std::vector<std::uint8_t> aligned;  // a misaligned frame's copy, while it is dispatched
  Welcome welcome;
  std::vector<std::function<void(const Result<Welcome>&)>> on_welcome;
  std::chrono::milliseconds backoff{0};
  Clock::time_point next_connect_at{};
  std::size_t endpoint_index = 0;  // 0: {opt.host, opt.port}; i: opt.failover[i - 1]
  bool closed = false;

  explicit Impl(Options o) : opt(std::move(o)) {}

  void start() {
    thread = std::thread([self = shared_from_this()] { self->io.run(); });
  }

  /// The TCP socket of the current connection.
  asio::ip::tcp::socket& lowest() { return tls ? tls->next_layer() : socket; }

  // ---- requests -----------------------------------------------------------
  void call(std::function<protocol::OutFrame(std::uint64_t)> make, std::chrono::milliseconds timeout,
            OnFrame on_frame, OnError on_error) {
    if (closed) return on_error(make_error(Error::Kind::closed, "client closed"));
    const std::uint64_t id = ++next_id;
    Pending& p = pending[id];
    p.frame = make(id);
    p.on_frame = std::move(on_frame);
    p.on_error = std::move(on_error);
    p.timer = std::make_unique<asio::steady_timer>(io, timeout);
    p.timer->async_wait([self = shared_from_this(), id, timeout](const std::error_code& ec) {
      if (ec) return;
      const Error e = make_error(Error::Kind::timeout,
                                 "no response in " + std::to_string(timeout.count()) + " ms");
      // With somewhere else to go, a server that leaves a request unanswered
      // is given up on: everything on the connection fails (retryable) and
      // the next request connects to the next endpoint.
      const auto it = self->pending.find(id);
      if (!self->opt.failover.empty() && it != self->pending.end() && it->second.sent) {
        return self->connection_failed(e);
      }
      self->fail_one(id, e);
    });
    unsent.push_back(id);
    if (state == State::ready) {
      flush_unsent();
    } else {
      ensure_connecting();
    }
  }

  /// One request whose answer is `expected` (converted by `convert`) or an Error.
  template <typename T, typename Convert>
  void request(std::function<protocol::OutFrame(std::uint64_t)> make, std::chrono::milliseconds timeout,
               wire::Body expected, Convert convert, std::function<void(Result<T>)> done) {
    auto cb = std::make_shared<std::function<void(Result<T>)>>(std::move(done));
    call(std::move(make), timeout,
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

  void fail_one(std::uint64_t id, const Error& e) {
    auto it = pending.find(id);
    if (it == pending.end()) return;
    OnError cb = std::move(it->second.on_error);
    it->second.timer->cancel();
    pending.erase(it);
    cb(e);
  }

  void fail_all(const Error& e) {
    auto all = std::move(pending);
    pending.clear();
    unsent.clear();
    for (auto& [id, p] : all) {
      p.timer->cancel();
      p.on_error(e);
    }
    auto welcomes = std::move(on_welcome);
    on_welcome.clear();
    for (auto& w : welcomes) w(e);
  }

  void flush_unsent() {
    while (!unsent.empty()) {
      const std::uint64_t id = unsent.front();
      unsent.pop_front();
      auto it = pending.find(id);
      if (it == pending.end()) continue;  // timed out while waiting
      it->second.sent = true;
      write_queue.push_back(std::move(it->second.frame));
    }
    start_write();
  }

  // ---- connection ---------------------------------------------------------
  void ensure_connecting() {
    if (state != State::idle || closed) return;
    state = State::connecting;
    const auto now = Clock::now();
    if (now < next_connect_at) {
      connect_timer.expires_at(next_connect_at);
      connect_timer.async_wait([self = shared_from_this()](const std::error_code& ec) {
        if (!ec) self->do_connect();
      });
      return;
    }
    do_connect();
  }

  Endpoint current_endpoint() const {
    if (endpoint_index == 0) return {opt.host, opt.port};
    return opt.failover[endpoint_index - 1];
  }

  void do_connect() {
    const std::uint64_t gen = ++generation;
    const Endpoint ep = current_endpoint();
    tls.reset();  // the last connection's stream lives on only in its stale handlers
    if (opt.tls && !tls_ctx) {
      std::string why;
      tls_ctx = make_tls_context(opt, why);
      if (!tls_ctx) return connection_failed(make_error(Error::Kind::connect_failed, why));
    }
    auto resolver = std::make_shared<asio::ip::tcp::resolver>(io);
    connect_timer.expires_after(opt.connect_timeout);
    connect_timer.async_wait([self = shared_from_this(), gen](const std::error_code& ec) {
      if (ec || gen != self->generation || self->state != State::connecting) return;
      self->connection_failed(make_error(Error::Kind::connect_failed,
                                         "no connection within " +
                                             std::to_string(self->opt.connect_timeout.count()) + " ms"));
    });
    resolver->async_resolve(
        ep.host, std::to_string(ep.port),
        [self = shared_from_this(), resolver, gen, ep](const std::error_code& ec,
                                                   asio::ip::tcp::resolver::results_type results) {
          if (gen != self->generation || self->state != State::connecting) return;
          if (ec) {
            return self->connection_failed(
                make_error(Error::Kind::connect_failed, ep.host + ": " + ec.message()));
          }
          asio::async_connect(self->socket, results,
                              [self, gen, ep](const std::error_code& ec2, const asio::ip::tcp::endpoint&) {
                                if (gen != self->generation || self->state != State::connecting) return;
                                if (ec2) {
                                  return self->connection_failed(make_error(
                                      Error::Kind::connect_failed,
                                      ep.host + ":" + std::to_string(ep.port) + ": " +
                                          ec2.message()));
                                }
                                if (self->opt.tls) return self->start_tls(gen, ep);
                                self->on_connected(gen);
                              });
        });
  }

  /// TLS handshake on the connected socket, inside the connect timeout; the
  /// certificate chain and the name are verified.
  void start_tls(std::uint64_t gen, const Endpoint& ep) {
    std::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    tls = std::make_shared<TlsStream>(std::move(socket), *tls_ctx);
    const std::string name = opt.tls_server_name.empty() ? ep.host : opt.tls_server_name;
    std::error_code not_address;
    asio::ip::make_address(name, not_address);
    if (not_address) SSL_set_tlsext_host_name(tls->native_handle(), name.c_str());  // SNI
    tls->set_verify_mode(asio::ssl::verify_peer);
    tls->set_verify_callback([name](bool preverified, asio::ssl::verify_context& vc) {
      if (asio::ssl::host_name_verification(name)(preverified, vc)) return true;
      // asio's check only says no: record why, for the error message.
      if (preverified) X509_STORE_CTX_set_error(vc.native_handle(), X509_V_ERR_HOSTNAME_MISMATCH);
      return false;
    });
    tls->async_handshake(
        asio::ssl::stream_base::client,
        [self = shared_from_this(), gen, ep, stream = tls](const std::error_code& ec) {
          if (gen != self->generation || self->state != State::connecting) return;
          if (ec) {
            return self->connection_failed(make_error(
                Error::Kind::connect_failed, "TLS handshake with " + ep.host + ":" +
                                                 std::to_string(ep.port) + " failed: " +
                                                 tls_failure(*stream, ec)));
          }
          self->on_connected(gen);
        });
  }

  void on_connected(std::uint64_t gen) {
    std::error_code ignored;
    lowest().set_option(asio::ip::tcp::no_delay(true), ignored);
    rbuf.assign(64 * 1024, 0);
    rbuf_used = 0;
    start_read(gen);
    if (opt.anonymous) {
      // Register/Login only: the connection is usable at once.
      connect_timer.cancel();
      state = State::ready;
      backoff = std::chrono::milliseconds(0);
      welcome = Welcome{};
      auto welcomes = std::move(on_welcome);
      on_welcome.clear();
      for (auto& cb : welcomes) cb(welcome);
      flush_unsent();
      return;
    }
    // Hello goes first, ahead of every queued request.
    const std::uint64_t id = ++next_id;
    Pending& p = pending[id];
    p.sent = true;
    p.timer = std::make_unique<asio::steady_timer>(io, opt.request_timeout);
    p.timer->async_wait([self = shared_from_this(), id](const std::error_code& ec) {
      if (!ec) self->fail_one(id, make_error(Error::Kind::timeout, "no Welcome"));
    });
    p.on_frame = [this](const wire::Frame& f) {
      if (f.body_type() == wire::Body::Error) return connection_failed(from_wire(*f.body_as_Error()));
      if (f.body_type() != wire::Body::Welcome) {
        return connection_failed(make_error(Error::Kind::protocol, "expected Welcome"));
      }
      const auto* w = f.body_as_Welcome();
      welcome.server_name = w->server_name() ? w->server_name()->str() : "";
      welcome.session_id = w->session_id();
      welcome.limits = {w->max_frame_bytes(), w->max_body_bytes(), w->max_pull_limit(),
                        w->max_wait_ms(), w->idle_timeout_ms()};
      welcome.user = w->user() ? w->user()->str() : opt.user;
      welcome.token_expires_at_us = w->token_expires_at_us();
      connect_timer.cancel();
      state = State::ready;
      backoff = std::chrono::milliseconds(0);
      auto welcomes = std::move(on_welcome);
      on_welcome.clear();
      for (auto& cb : welcomes) cb(welcome);
      flush_unsent();
      last_write = Clock::now();
      if (welcome.limits.idle_timeout_ms > 0) {
        schedule_keepalive(generation, std::chrono::milliseconds(
                                           std::max<std::uint32_t>(welcome.limits.idle_timeout_ms / 3, 1)));
      }
    };
    p.on_error = [this](const Error& e) { connection_failed(e); };
    const std::string token = opt.token_source ? opt.token_source() : opt.token;
    write_queue.push_front(protocol::encode_hello(id, opt.user, token, opt.client_name));
    start_write();
  }

  void schedule_keepalive(std::uint64_t gen, std::chrono::milliseconds every) {
    keepalive_timer.expires_after(every);
    keepalive_timer.async_wait([self = shared_from_this(), gen, every](const std::error_code& ec) {
      if (ec || gen != self->generation || self->state != State::ready) return;
      if (self->pending.empty() && Clock::now() - self->last_write >= every) {
        // The answer does not matter; a lost connection shows up on its own.
        self->call([](std::uint64_t id) { return protocol::encode_ping(id, id); },
                   self->opt.request_timeout, [](const wire::Frame&) {}, [](const Error&) {});
      }
      self->schedule_keepalive(gen, every);
    });
  }

  /// Drops the connection; everything pending fails with `e`. The next
  /// request reconnects, not before the backoff has passed.
  void connection_failed(const Error& e) {
    if (state == State::idle && pending.empty()) return;
    ++generation;
    state = State::idle;
    std::error_code ignored;
    lowest().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    lowest().close(ignored);
    connect_timer.cancel();
    keepalive_timer.cancel();
    write_queue.clear();
    writing = false;
    backoff = std::min(opt.backoff_max, backoff.count() == 0 ? opt.backoff_initial : backoff * 2);
    next_connect_at = Clock::now() + backoff;
    endpoint_index = (endpoint_index + 1) % (1 + opt.failover.size());
    fail_all(e);
  }

  void start_write() {
    if (writing || write_queue.empty() || state == State::idle) return;
    if (state == State::connecting && !lowest().is_open()) return;
    writing = true;
    auto batch = std::make_shared<std::vector<protocol::OutFrame>>();
    std::vector<asio::const_buffer> buffers;
    while (!write_queue.empty() && batch->size() < 256) {
      batch->push_back(std::move(write_queue.front()));
      write_queue.pop_front();
      buffers.emplace_back(batch->back().data(), batch->back().size());
    }
    std::shared_ptr<std::vector<std::uint8_t>> flat;
    if (tls) {
      // An SSL stream makes a record of each buffer: give it one.
      flat = std::make_shared<std::vector<std::uint8_t>>();
      for (const auto& f : *batch) flat->insert(flat->end(), f.data(), f.data() + f.size());
    }
    auto done = [self = shared_from_this(), batch, flat, stream = tls, gen = generation](
                    const std::error_code& ec, std::size_t) {
      if (gen != self->generation) return;
      self->writing = false;
      if (ec) {
        return self->connection_failed(
            make_error(Error::Kind::disconnected, "write: " + ec.message()));
      }
      self->last_write = Clock::now();
      self->start_write();
    };
    if (tls) {
      asio::async_write(*tls, asio::buffer(*flat), std::move(done));
    } else {
      asio::async_write(socket, buffers, std::move(done));
    }
  }

  void start_read(std::uint64_t gen) {
    if (rbuf.size() - rbuf_used < 16 * 1024) rbuf.resize(rbuf.size() * 2);
    auto done = [self = shared_from_this(), gen, stream = tls](const std::error_code& ec,
                                                               std::size_t n) {
      if (gen != self->generation) return;
      if (ec) {
        const bool ended = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
        return self->connection_failed(make_error(
            Error::Kind::disconnected, ended ? "server closed the connection" : ec.message()));
      }
      self->rbuf_used += n;
      if (!self->drain_frames()) return;
      self->start_read(gen);
    };
    const auto buffer = asio::buffer(rbuf.data() + rbuf_used, rbuf.size() - rbuf_used);
    if (tls) {
      tls->async_read_some(buffer, std::move(done));
    } else {
      socket.async_read_some(buffer, std::move(done));
    }
  }

  /// Handles every complete frame in rbuf; false if the connection failed.
  bool drain_frames() {
    std::size_t offset = 0;
    const std::uint64_t gen = generation;
    bool ok = true;
    while (ok) {
      const std::span<const std::uint8_t> avail(rbuf.data() + offset, rbuf_used - offset);
      const protocol::Decoded d = protocol::decode_frame(avail, 64u << 20);
      if (d.status == protocol::DecodeStatus::need_more) break;
      if (d.status == protocol::DecodeStatus::error) {
        connection_failed(make_error(Error::Kind::protocol, d.reason));
        return false;
      }
      // FlatBuffers fields are aligned relative to the frame's first byte: a
      // frame at an odd offset of rbuf is copied to an aligned buffer first
      // (the server's frames keep their successors aligned, so rarely). rbuf
      // is not resized or reassigned while frames are dispatched.
      std::span<const std::uint8_t> frame = d.frame;
      if (reinterpret_cast<std::uintptr_t>(frame.data()) % 8 != 0) {
        aligned.assign(frame.begin(), frame.end());
        frame = aligned;
      }
      offset += d.consumed;
      std::string why;
      const wire::Frame* f = protocol::verify_frame(frame, protocol::response_verify_limits(100000), why);
      if (!f) {
        connection_failed(make_error(Error::Kind::protocol, "bad frame from server: " + why));
        return false;
      }
      dispatch(*f);
      ok = gen == generation;  // a handler may have dropped the connection
    }
    if (!ok) return false;
    std::memmove(rbuf.data(), rbuf.data() + offset, rbuf_used - offset);
    rbuf_used -= offset;
    return true;
  }

  void dispatch(const wire::Frame& f) {
    const std::uint64_t id = f.request_id();
    if (id == 0) {
      // A notification. An Error here means the server is closing on us.
      if (f.body_type() == wire::Body::Error) {
        connection_failed(make_error(Error::Kind::protocol,
                                     "server: " + from_wire(*f.body_as_Error()).to_string()));
      }
      return;  // unknown notifications are ignored (forward compatibility)
    }
    auto it = pending.find(id);
    if (it == pending.end()) return;  // answered after its timeout
    Pending p = std::move(it->second);
    pending.erase(it);
    p.timer->cancel();
    p.on_frame(f);
  }

  void shutdown() {
    if (closed) return;
    closed = true;
    ++generation;
    state = State::idle;
    std::error_code ignored;
    lowest().close(ignored);
    connect_timer.cancel();
    keepalive_timer.cancel();
    fail_all(make_error(Error::Kind::closed, "client closed"));
  }
};

AsyncClient::AsyncClient(Options options) : impl_(std::make_shared<Impl>(std::move(options))) {
  impl_->start();
}

AsyncClient::~AsyncClient() {
  asio::post(impl_->io, [impl = impl_] { impl->shutdown(); });
  impl_->work.reset();
  asio::post(impl_->io, [impl = impl_] { impl->io.stop(); });
  if (impl_->thread.joinable()) impl_->thread.join();
  // Completions of what shutdown() cancelled (timers, the socket's reads) may
  // still be queued behind stop(); each holds the Impl. Run them here so that
  // none keeps it alive (a cycle through the io_context it owns).
  impl_->io.restart();
  impl_->io.poll();
}

const Options& AsyncClient::options() const { return impl_->opt; }

void AsyncClient::close() {
  asio::post(impl_->io, [impl = impl_] {
    impl->shutdown();
    impl->closed = false;  // a later request may reconnect
  });
}

void AsyncClient::connect(Callback<Welcome> done) {
  asio::post(impl_->io, [impl = impl_, done = std::move(done)]() mutable {
    if (impl->state == Impl::State::ready) return done(impl->welcome);
    impl->on_welcome.push_back([done](const Result<Welcome>& r) { done(r); });
    impl->ensure_connecting();
  });
}

void AsyncClient::send(std::string receiver, std::string body, std::uint64_t client_msg_id,
                       Callback<SendAck> done) {
  if (client_msg_id == 0) client_msg_id = new_client_msg_id();
  struct Attempt : std::enable_shared_from_this<Attempt> {
    std::shared_ptr<Impl> impl;
    std::string receiver, body;
    std::uint64_t cmid;
    Callback<SendAck> done;
    int attempt = 0;
    std::chrono::milliseconds backoff{0};
    std::unique_ptr<asio::steady_timer> timer;

    void run() {
      ++attempt;
      auto self = shared_from_this();
      impl->call(
          [self](std::uint64_t id) { return protocol::encode_send(id, self->receiver, self->cmid, self->body); },
          impl->opt.request_timeout,
          [self](const wire::Frame& f) {
            if (f.body_type() == wire::Body::SendAck) {
              const auto* a = f.body_as_SendAck();
              return self->done(SendAck{a->message_id(), a->created_at_us(), a->seq(), a->duplicate(),
                                        self->cmid, self->attempt});
            }
            if (f.body_type() == wire::Body::Error) return self->failed(from_wire(*f.body_as_Error()));
            self->done(make_error(Error::Kind::protocol, "unexpected response to Send"));
          },
          [self](const Error& e) { self->failed(e); });
    }
    void failed(const Error& e) {
      if (!e.retryable() || attempt >= impl->opt.send_attempts) return done(e);
      backoff = std::min(impl->opt.backoff_max,
                         backoff.count() == 0 ? impl->opt.backoff_initial : backoff * 2);
      const auto wait = std::max(backoff, std::chrono::milliseconds(e.retry_after_ms));
      timer = std::make_unique<asio::steady_timer>(impl->io, wait);
      timer->async_wait([self = shared_from_this()](const std::error_code&) { self->run(); });
    }
  };
  asio::post(impl_->io, [impl = impl_, receiver = std::move(receiver), body = std::move(body),
                         client_msg_id, done = std::move(done)]() mutable {
    auto a = std::make_shared<Attempt>();
    a->impl = impl;
    a->receiver = std::move(receiver);
    a->body = std::move(body);
    a->cmid = client_msg_id;
    a->done = std::move(done);
    a->run();
  });
}

void AsyncClient::pull(std::int64_t after_seq, std::uint32_t limit, std::uint32_t wait_ms,
                       Callback<PullPage> done) {
  asio::post(impl_->io, [impl = impl_, after_seq, limit, wait_ms, done = std::move(done)]() mutable {
    impl->request<PullPage>(
        [=](std::uint64_t id) { return protocol::encode_pull(id, after_seq, limit, wait_ms); },
        impl->opt.request_timeout + std::chrono::milliseconds(wait_ms), wire::Body::PullResult,
        [](const wire::Frame& f) {
          const auto* p = f.body_as_PullResult();
          return PullPage{to_records(p->messages()), p->next_after_seq(), p->has_more()};
        },
        std::move(done));
  });
}

void AsyncClient::history(std::string peer, std::int64_t cursor, std::uint32_t limit, bool reverse,
                          Callback<HistoryPage> done) {
  asio::post(impl_->io, [impl = impl_, peer = std::move(peer), cursor, limit, reverse,
                         done = std::move(done)]() mutable {
    impl->request<HistoryPage>(
        [=](std::uint64_t id) { return protocol::encode_history(id, peer, cursor, limit, reverse); },
        impl->opt.request_timeout, wire::Body::HistoryResult,
        [](const wire::Frame& f) {
          const auto* h = f.body_as_HistoryResult();
          return HistoryPage{to_records(h->messages()), h->next_cursor(), h->has_more()};
        },
        std::move(done));
  });
}

void AsyncClient::ping(Callback<std::chrono::microseconds> done) {
  asio::post(impl_->io, [impl = impl_, done = std::move(done)]() mutable {
    const auto start = Clock::now();
    impl->request<std::chrono::microseconds>(
        [](std::uint64_t id) { return protocol::encode_ping(id, id); }, impl->opt.request_timeout,
        wire::Body::Pong,
        [start](const wire::Frame&) {
          return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
        },
        std::move(done));
  });
}

namespace {

AuthGrant to_grant(const wire::Frame& f) {
  const auto* a = f.body_as_AuthResult();
  return AuthGrant{a->user() ? a->user()->str() : "", a->token() ? a->token()->str() : "",
                   a->expires_at_us()};
}

}  // namespace

void AsyncClient::register_account(std::string user, std::string password,
                                   Callback<AuthGrant> done) {
  asio::post(impl_->io, [impl = impl_, user = std::move(user), password = std::move(password),
                         done = std::move(done)]() mutable {
    impl->request<AuthGrant>(
        [=](std::uint64_t id) { return protocol::encode_register(id, user, password); },
        impl->opt.request_timeout, wire::Body::AuthResult, to_grant, std::move(done));
  });
}

void AsyncClient::login(std::string user, std::string password, Callback<AuthGrant> done) {
  asio::post(impl_->io, [impl = impl_, user = std::move(user), password = std::move(password),
                         done = std::move(done)]() mutable {
    impl->request<AuthGrant>(
        [=](std::uint64_t id) { return protocol::encode_login(id, user, password); },
        impl->opt.request_timeout, wire::Body::AuthResult, to_grant, std::move(done));
  });
}

}  // namespace im::client
