#include "client/connection.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>

#include <asio/connect.hpp>
#include <asio/ssl/error.hpp>
#include <asio/ssl/host_name_verification.hpp>
#include <asio/write.hpp>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "client/errors.hpp"
#include "protocol/frame_codec.hpp"

namespace im::client {
namespace {

// At most this many frames go into one gathered write.
constexpr std::size_t kMaxWriteBatch = 256;
// The read buffer grows (doubling) when less than this is free.
constexpr std::size_t kMinReadSpace = 16 * 1024;
constexpr std::size_t kInitialReadBuffer = 64 * 1024;
constexpr std::uint32_t kMaxFrameBytes = 64u << 20;

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
template <typename Stream>
std::string tls_failure(Stream& stream, const std::error_code& ec) {
  std::string why = ec.message();
  const long verify = SSL_get_verify_result(stream.native_handle());
  if (verify != X509_V_OK) why += std::string(": ") + X509_verify_cert_error_string(verify);
  return why;
}

std::string host_port(const Endpoint& ep) { return ep.host + ":" + std::to_string(ep.port); }

}  // namespace

std::shared_ptr<Connection> Connection::create(asio::io_context& io, Options options, Events events) {
  return std::shared_ptr<Connection>(new Connection(io, std::move(options), std::move(events)));
}

Connection::Connection(asio::io_context& io, Options options, Events events)
    : io_(io), opt_(std::move(options)), events_(std::move(events)), socket_(io), connect_timer_(io) {}

Endpoint Connection::current_endpoint() const {
  if (endpoint_index_ == 0) return {opt_.host, opt_.port};
  return opt_.failover[endpoint_index_ - 1];
}

// ---- connecting -------------------------------------------------------------

void Connection::open() {
  if (state_ != State::idle) return;
  state_ = State::connecting;
  if (Clock::now() < next_connect_at_) {
    connect_timer_.expires_at(next_connect_at_);
    connect_timer_.async_wait([weak = weak_from_this(), gen = generation_](const std::error_code& ec) {
      const auto self = weak.lock();
      if (!ec && self && self->connecting(gen)) self->connect();
    });
    return;
  }
  connect();
}

void Connection::connect() {
  const std::uint64_t gen = ++generation_;
  const Endpoint ep = current_endpoint();
  tls_.reset();  // the last connection's stream lives on only in its stale handlers
  if (opt_.tls && !tls_ctx_) {
    std::string why;
    tls_ctx_ = make_tls_context(opt_, why);
    if (!tls_ctx_) return fail(make_error(Error::Kind::connect_failed, why));
  }
  start_connect_timer(gen);
  auto resolver = std::make_shared<asio::ip::tcp::resolver>(io_);
  resolver->async_resolve(
      ep.host, std::to_string(ep.port),
      [weak = weak_from_this(), resolver, gen, ep](const std::error_code& ec,
                                                   asio::ip::tcp::resolver::results_type results) {
        const auto self = weak.lock();
        if (!self || !self->connecting(gen)) return;
        if (ec) return self->fail(make_error(Error::Kind::connect_failed, ep.host + ": " + ec.message()));
        self->on_resolved(gen, ep, std::move(results));
      });
}

void Connection::start_connect_timer(std::uint64_t gen) {
  connect_timer_.expires_after(opt_.connect_timeout);
  connect_timer_.async_wait([weak = weak_from_this(), gen](const std::error_code& ec) {
    const auto self = weak.lock();
    if (ec || !self || gen != self->generation_ || self->state_ == State::established) return;
    self->fail(make_error(Error::Kind::connect_failed,
                          "no connection within " + std::to_string(self->opt_.connect_timeout.count()) +
                              " ms"));
  });
}

void Connection::on_resolved(std::uint64_t gen, const Endpoint& ep,
                             asio::ip::tcp::resolver::results_type results) {
  asio::async_connect(socket_, results,
                      [weak = weak_from_this(), gen, ep](const std::error_code& ec,
                                                         const asio::ip::tcp::endpoint&) {
                        const auto self = weak.lock();
                        if (!self || !self->connecting(gen)) return;
                        if (ec) {
                          return self->fail(make_error(Error::Kind::connect_failed,
                                                       host_port(ep) + ": " + ec.message()));
                        }
                        if (self->opt_.tls) return self->start_tls(gen, ep);
                        self->on_transport_up(gen);
                      });
}

/// TLS handshake on the connected socket, inside the connect timeout; the
/// certificate chain and the name are verified.
void Connection::start_tls(std::uint64_t gen, const Endpoint& ep) {
  std::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  tls_ = std::make_shared<TlsStream>(std::move(socket_), *tls_ctx_);
  const std::string name = opt_.tls_server_name.empty() ? ep.host : opt_.tls_server_name;
  std::error_code not_address;
  asio::ip::make_address(name, not_address);
  if (not_address) SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str());  // SNI
  tls_->set_verify_mode(asio::ssl::verify_peer);
  tls_->set_verify_callback([name](bool preverified, asio::ssl::verify_context& vc) {
    if (asio::ssl::host_name_verification(name)(preverified, vc)) return true;
    // asio's check only says no: record why, for the error message.
    if (preverified) X509_STORE_CTX_set_error(vc.native_handle(), X509_V_ERR_HOSTNAME_MISMATCH);
    return false;
  });
  tls_->async_handshake(asio::ssl::stream_base::client,
                        [weak = weak_from_this(), gen, ep, stream = tls_](const std::error_code& ec) {
                          const auto self = weak.lock();
                          if (!self || !self->connecting(gen)) return;
                          if (ec) {
                            return self->fail(make_error(Error::Kind::connect_failed,
                                                         "TLS handshake with " + host_port(ep) +
                                                             " failed: " + tls_failure(*stream, ec)));
                          }
                          self->on_transport_up(gen);
                        });
}

void Connection::on_transport_up(std::uint64_t gen) {
  std::error_code ignored;
  lowest().set_option(asio::ip::tcp::no_delay(true), ignored);
  rbuf_.assign(kInitialReadBuffer, 0);
  rbuf_used_ = 0;
  state_ = State::open;
  start_read(gen);
  events_.opened();
}

void Connection::established() {
  if (state_ != State::open) return;
  state_ = State::established;
  connect_timer_.cancel();
  backoff_ = std::chrono::milliseconds(0);
  last_write_ = Clock::now();
}

// ---- dropping ---------------------------------------------------------------

void Connection::drop() {
  ++generation_;
  state_ = State::idle;
  std::error_code ignored;
  lowest().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  lowest().close(ignored);
  connect_timer_.cancel();
  write_queue_.clear();
  writing_ = false;
}

void Connection::fail(const Error& e) {
  // Already down: a failure reported while the owner fails its requests
  // (each may report the connection failed) changes nothing more.
  if (state_ == State::idle) return;
  drop();
  backoff_ = std::min(opt_.backoff_max, backoff_.count() == 0 ? opt_.backoff_initial : backoff_ * 2);
  next_connect_at_ = Clock::now() + backoff_;
  endpoint_index_ = (endpoint_index_ + 1) % (1 + opt_.failover.size());
  events_.failed(e);
}

void Connection::close() {
  if (state_ != State::idle) drop();
}

// ---- writing ----------------------------------------------------------------

void Connection::enqueue(protocol::OutFrame frame) { write_queue_.push_back(std::move(frame)); }

void Connection::flush() { start_write(); }

void Connection::start_write() {
  if (writing_ || write_queue_.empty()) return;
  if (state_ == State::idle || state_ == State::connecting) return;
  writing_ = true;
  auto batch = std::make_shared<std::vector<protocol::OutFrame>>();
  std::vector<asio::const_buffer> buffers;
  while (!write_queue_.empty() && batch->size() < kMaxWriteBatch) {
    batch->push_back(std::move(write_queue_.front()));
    write_queue_.pop_front();
    buffers.emplace_back(batch->back().data(), batch->back().size());
  }
  std::shared_ptr<std::vector<std::uint8_t>> flat;
  if (tls_) {
    // An SSL stream makes a record of each buffer: give it one.
    flat = std::make_shared<std::vector<std::uint8_t>>();
    for (const auto& f : *batch) flat->insert(flat->end(), f.data(), f.data() + f.size());
  }
  auto done = [weak = weak_from_this(), batch, flat, stream = tls_, gen = generation_](
                  const std::error_code& ec, std::size_t) {
    const auto self = weak.lock();
    if (!self || gen != self->generation_) return;
    self->on_written(ec);
  };
  if (tls_) {
    asio::async_write(*tls_, asio::buffer(*flat), std::move(done));
  } else {
    asio::async_write(socket_, buffers, std::move(done));
  }
}

void Connection::on_written(const std::error_code& ec) {
  writing_ = false;
  if (ec) return fail(make_error(Error::Kind::disconnected, "write: " + ec.message()));
  last_write_ = Clock::now();
  start_write();
}

// ---- reading ----------------------------------------------------------------

void Connection::start_read(std::uint64_t gen) {
  if (rbuf_.size() - rbuf_used_ < kMinReadSpace) rbuf_.resize(rbuf_.size() * 2);
  auto done = [weak = weak_from_this(), gen, stream = tls_](const std::error_code& ec, std::size_t n) {
    const auto self = weak.lock();
    if (!self || gen != self->generation_) return;
    self->on_read(gen, ec, n);
  };
  const auto buffer = asio::buffer(rbuf_.data() + rbuf_used_, rbuf_.size() - rbuf_used_);
  if (tls_) {
    tls_->async_read_some(buffer, std::move(done));
  } else {
    socket_.async_read_some(buffer, std::move(done));
  }
}

void Connection::on_read(std::uint64_t gen, const std::error_code& ec, std::size_t n) {
  if (ec) {
    const bool ended = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
    return fail(make_error(Error::Kind::disconnected, ended ? "server closed the connection" : ec.message()));
  }
  rbuf_used_ += n;
  if (!drain_frames()) return;
  start_read(gen);
}

bool Connection::drain_frames() {
  std::size_t offset = 0;
  const std::uint64_t gen = generation_;
  while (true) {
    const std::span<const std::uint8_t> avail(rbuf_.data() + offset, rbuf_used_ - offset);
    const protocol::Decoded d = protocol::decode_frame(avail, kMaxFrameBytes);
    if (d.status == protocol::DecodeStatus::need_more) break;
    if (d.status == protocol::DecodeStatus::error) {
      fail(make_error(Error::Kind::protocol, d.reason));
      return false;
    }
    // FlatBuffers fields are aligned relative to the frame's first byte: a
    // frame at an odd offset of rbuf_ is copied to an aligned buffer first
    // (the server's frames keep their successors aligned, so rarely). rbuf_
    // is not resized or reassigned while frames are handed over.
    std::span<const std::uint8_t> frame = d.frame;
    if (reinterpret_cast<std::uintptr_t>(frame.data()) % 8 != 0) {
      aligned_.assign(frame.begin(), frame.end());
      frame = aligned_;
    }
    offset += d.consumed;
    std::string why;
    const wire::Frame* f = protocol::verify_frame(frame, protocol::response_verify_limits(100000), why);
    if (!f) {
      fail(make_error(Error::Kind::protocol, "bad frame from server: " + why));
      return false;
    }
    events_.frame(*f);
    if (gen != generation_) return false;  // the owner dropped the connection
  }
  std::memmove(rbuf_.data(), rbuf_.data() + offset, rbuf_used_ - offset);
  rbuf_used_ -= offset;
  return true;
}

}  // namespace im::client
