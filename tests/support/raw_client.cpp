#include "tests/support/raw_client.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

namespace im::test {

std::string Received::describe() const {
  const wire::Frame* f = frame();
  const char* name = wire::EnumNameBody(f->body_type());
  std::string out = name && *name ? name : "body type " + std::to_string(static_cast<int>(f->body_type()));
  if (const wire::Error* e = f->body_as_Error()) {
    out += std::string("{") + protocol::error_code_name(e->code()) + ": " +
           (e->message() ? e->message()->str() : std::string()) + "}";
  }
  return out + " (request id " + std::to_string(f->request_id()) + ")";
}

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
    // Wait for data with a deadline: poll, then recv. (SO_RCVTIMEO does not
    // work here: asio's blocking read_some waits in poll(-1) on its own.)
    const int n = receive_some(deadline);
    if (n <= 0) return std::nullopt;  // closed, failed, or the deadline passed
  }
}

bool RawClient::closed_by_server(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const int n = receive_some(deadline);
    if (n < 0) return true;    // closed or reset
    if (n == 0) return false;  // still open at the deadline
    buffer_.clear();           // frames before the close are discarded
  }
}

int RawClient::receive_some(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return 0;
    ::pollfd p{socket_.native_handle(), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) return -1;
    if (ready <= 0) continue;
    std::uint8_t chunk[65536];
    const ssize_t n = ::recv(socket_.native_handle(), chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.insert(buffer_.end(), chunk, chunk + n);
      return static_cast<int>(n);
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    return -1;  // 0: orderly close; < 0: reset or error
  }
}

void RawClient::hello(const std::string& user) {
  write(protocol::encode_hello(next_id(), user, "", "raw-test"));
  auto r = read();
  if (!r) throw std::runtime_error("hello as " + user + ": no response");
  if (r->frame()->body_type() != wire::Body::Welcome) {
    throw std::runtime_error("hello as " + user + " was not welcomed: got " + r->describe());
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
