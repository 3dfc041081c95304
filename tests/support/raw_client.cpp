#include "tests/support/raw_client.hpp"

#include <stdexcept>

#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

namespace im::test {

RawClient::RawClient(std::uint16_t port, const std::string& host) : socket_(io_) {
  socket_.connect(asio::ip::tcp::endpoint(asio::ip::make_address(host), port));
  socket_.set_option(asio::ip::tcp::no_delay(true));
}

void RawClient::write(const protocol::OutFrame& frame) {
  asio::write(socket_, asio::buffer(frame.data(), frame.size()));
}

void RawClient::write_bytes(const std::vector<std::uint8_t>& bytes) {
  asio::write(socket_, asio::buffer(bytes));
}

std::optional<Received> RawClient::read(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto d = protocol::decode_frame(buffer_, 64u << 20);
    if (d.status == protocol::DecodeStatus::error) throw std::runtime_error(d.reason);
    if (d.status == protocol::DecodeStatus::frame) {
      Received r{std::vector<std::uint8_t>(d.frame.begin(), d.frame.end())};
      buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(d.consumed));
      std::string why;
      if (!protocol::verify_frame(r.bytes, protocol::response_verify_limits(100000), why)) {
        throw std::runtime_error("server sent a bad frame: " + why);
      }
      return r;
    }
    // Wait for data with a deadline, without async machinery: poll + read_some.
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return std::nullopt;
    socket_.non_blocking(false);
    ::timeval tv{};
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count();
    tv.tv_sec = ms / 1000;
    tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::uint8_t chunk[65536];
    std::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(chunk), ec);
    if (ec == asio::error::eof || ec == asio::error::connection_reset) return std::nullopt;
    if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
    if (ec) return std::nullopt;
    buffer_.insert(buffer_.end(), chunk, chunk + n);
  }
}

bool RawClient::closed_by_server(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::uint8_t chunk[4096];
    std::error_code ec;
    ::timeval tv{0, 100000};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    socket_.read_some(asio::buffer(chunk), ec);
    if (ec == asio::error::eof || ec == asio::error::connection_reset) return true;
  }
  return false;
}

void RawClient::hello(const std::string& user) {
  write(protocol::encode_hello(next_id(), user, "", "raw-test"));
  auto r = read();
  if (!r || r->frame()->body_type() != wire::Body::Welcome) {
    throw std::runtime_error("hello as " + user + " was not welcomed");
  }
}

Received RawClient::send(const std::string& to, std::uint64_t client_msg_id,
                         const std::string& body) {
  write(protocol::encode_send(next_id(), to, client_msg_id, body));
  auto r = read();
  if (!r) throw std::runtime_error("no response to send");
  return std::move(*r);
}

Received RawClient::pull(std::int64_t after, std::uint32_t limit, std::uint32_t wait_ms) {
  write(protocol::encode_pull(next_id(), after, limit, wait_ms));
  auto r = read(std::chrono::milliseconds(wait_ms) + std::chrono::seconds(10));
  if (!r) throw std::runtime_error("no response to pull");
  return std::move(*r);
}

}  // namespace im::test
