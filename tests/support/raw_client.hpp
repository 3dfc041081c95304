#pragma once
// RawClient: a blocking test client speaking frames directly over a socket,
// for tests that need exact control of the bytes (bad input, pipelining). Not
// the product client library (client/), which the e2e tests use otherwise.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"

namespace im::test {

/// One received frame, with its bytes kept alive. Read its body through
/// tests/support/expect_frame.hpp (body_of<T>), which checks the type first.
struct Received {
  std::vector<std::uint8_t> bytes;  // the whole frame, length prefix included
  const wire::Frame* frame() const { return flatbuffers::GetSizePrefixedRoot<wire::Frame>(bytes.data()); }
  /// For failure messages: the body type and request id, and an Error's code
  /// and message, e.g. "Error{too_large: body is 1001 bytes; ...} (request id 4)".
  std::string describe() const;
};

class RawClient {
 public:
  explicit RawClient(std::uint16_t port, const std::string& host = "127.0.0.1");

  void write(const protocol::OutFrame& frame);
  void write_bytes(const std::vector<std::uint8_t>& bytes);

  /// Reads one verified frame, or nullopt when the server closed the
  /// connection or nothing arrived within `timeout`. Throws on a bad frame.
  std::optional<Received> read(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// True if the server closes the connection within `timeout` (reading and
  /// discarding whatever frames arrive first).
  bool closed_by_server(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  /// Hello as `user`; requires a Welcome back.
  void hello(const std::string& user);

  /// Send and wait for its response (SendAck or Error).
  Received send(const std::string& to, std::uint64_t client_msg_id, const std::string& body);
  Received pull(std::int64_t after, std::uint32_t limit, std::uint32_t wait_ms = 0);

  std::uint64_t next_id() { return ++request_id_; }

 private:
  /// Appends what arrives to buffer_: bytes read, 0 at the deadline, -1 when
  /// the server closed or reset the connection.
  int receive_some(std::chrono::steady_clock::time_point deadline);
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  std::vector<std::uint8_t> buffer_;
  std::uint64_t request_id_ = 0;
};

}  // namespace im::test
