#pragma once
// libimclient: the C++ client library for im.
//
//   im::client::Client c({.host = "127.0.0.1", .port = 7400, .user = "alice"});
//   auto ack = c.send("bob", "hi");               // blocks until durable
//   if (!ack) std::cerr << ack.error().to_string();
//   auto page = c.pull(/*after_seq=*/0, /*limit=*/100, /*wait_ms=*/30000);
//
// Two layers:
// - AsyncClient: the core. One connection on its own I/O thread; requests are
//   pipelined (any number in flight, matched to responses by request id), each
//   with a timeout; the connection is opened lazily, Hello is sent first, and
//   after a loss it reconnects with capped backoff on the next request.
//   Callbacks run on the client's I/O thread and must not block.
//   With Options::tls the connection is TLS, the server verified before Hello.
// - Client: a blocking wrapper; each call waits for its result.
//
// Sends are safe to retry: every send carries a client_msg_id (generated when
// 0 is passed), and AsyncClient::send retries on timeouts, lost connections and
// Unavailable/Busy with the SAME id, so the server stores it at most once and a
// retry returns the first ack (duplicate = true).
//
// Thread-safety: AsyncClient and Client may be used from any number of threads.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "protocol/message.hpp"
#include "im/protocol/im_generated.h"

namespace im::client {

using protocol::MessageRecord;

struct Endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7400;
};

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7400;
  /// Other processes of the same deployment. After a connection fails or is
  /// lost, the next one goes to the next endpoint in turn ({host, port} first).
  /// With failover endpoints, a request that times out also drops the
  /// connection, so a retry leaves a server that stopped answering.
  std::vector<Endpoint> failover;
  std::string user;
  /// Authentication token (im1:...), from Login/Register, `imctl token issue`
  /// or the deployment's identity service. With a token, `user` may be empty
  /// (the token names the user) or must be the token's user.
  std::string token;
  /// No Hello: a connection only for Register and Login (which need no
  /// session). Other requests on it get Unauthenticated.
  bool anonymous = false;
  /// When set, called for the token at every (re)connect instead of `token`:
  /// lets a long-lived client present a fresh token after the old one expired.
  std::function<std::string()> token_source;
  std::string client_name = "libimclient/0.1";
  std::chrono::milliseconds connect_timeout{3000};
  /// Per request; a Pull waits wait_ms on top of this.
  std::chrono::milliseconds request_timeout{5000};
  /// Attempts for one send (the first try included), all with one client_msg_id.
  int send_attempts = 5;
  std::chrono::milliseconds backoff_initial{50};
  std::chrono::milliseconds backoff_max{2000};
  /// TLS (1.2 and later). The server's certificate chain and name are always
  /// verified; a failure is Error::Kind::connect_failed with OpenSSL's reason.
  bool tls = false;
  /// PEM file of the CA certificates to trust; empty: the system's default.
  std::string tls_ca_file;
  /// The name (DNS name or IP address) the certificate must carry; empty: the
  /// host connected to (each failover endpoint's own).
  std::string tls_server_name;
};

/// What went wrong. `kind` says where; for server errors `code` is the wire code.
struct Error {
  enum class Kind { server, timeout, disconnected, connect_failed, protocol, closed };
  Kind kind = Kind::server;
  wire::ErrorCode code = wire::ErrorCode::Unknown;
  std::string message;
  std::uint32_t retry_after_ms = 0;

  /// True when the same request may succeed later: timeouts, lost connections
  /// and the server's Unavailable, Busy and RateLimited.
  bool retryable() const;
  /// "unavailable: database connection lost", "timeout: no response in 5000 ms", ...
  std::string to_string() const;
};

/// A value or an Error.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct SendAck {
  std::int64_t message_id = 0;
  std::int64_t created_at_us = 0;
  std::int64_t seq = 0;       // in the receiver's inbox
  bool duplicate = false;     // the server already had this client_msg_id
  std::uint64_t client_msg_id = 0;
  int attempts = 1;           // how many tries it took
};

struct PullPage {
  std::vector<MessageRecord> messages;  // strictly increasing seq
  std::int64_t next_after_seq = 0;      // pass to the next pull
  bool has_more = false;
};

struct HistoryPage {
  std::vector<MessageRecord> messages;  // in the requested direction
  std::int64_t next_cursor = 0;
  bool has_more = false;
};

struct Welcome {
  std::string server_name;
  std::uint64_t session_id = 0;
  protocol::ServerLimits limits;
  std::string user;                     // who the server says the session is
  std::int64_t token_expires_at_us = 0;  // 0: never
};

/// A token handed out by Register or Login.
struct AuthGrant {
  std::string user;
  std::string token;
  std::int64_t expires_at_us = 0;
};

/// Parses "HOST:PORT[,HOST:PORT...]" (an IPv6 host in brackets: "[::1]:7400").
/// Error::Kind::protocol with a one-line message when malformed.
Result<std::vector<Endpoint>> parse_servers(const std::string& list);

/// A random non-zero client_msg_id.
std::uint64_t new_client_msg_id();

class AsyncClient {
 public:
  explicit AsyncClient(Options options);
  ~AsyncClient();  // fails whatever is pending with Kind::closed
  AsyncClient(const AsyncClient&) = delete;
  AsyncClient& operator=(const AsyncClient&) = delete;

  template <typename T>
  using Callback = std::function<void(Result<T>)>;

  /// Stores `body` for `receiver`; retried with one client_msg_id (0: generate).
  void send(std::string receiver, std::string body, std::uint64_t client_msg_id,
            Callback<SendAck> done);
  void pull(std::int64_t after_seq, std::uint32_t limit, std::uint32_t wait_ms,
            Callback<PullPage> done);
  void history(std::string peer, std::int64_t cursor, std::uint32_t limit, bool reverse,
               Callback<HistoryPage> done);
  /// Round-trip time of a Ping.
  void ping(Callback<std::chrono::microseconds> done);
  /// Creates a password account and returns a token for it (use an
  /// anonymous client, or any session). Not retried: the caller decides.
  void register_account(std::string user, std::string password, Callback<AuthGrant> done);
  /// Exchanges a password for a token.
  void login(std::string user, std::string password, Callback<AuthGrant> done);
  /// Opens the connection now (otherwise the first request does).
  void connect(Callback<Welcome> done);
  /// Closes the connection; pending requests fail with Kind::closed.
  void close();

  const Options& options() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

class Client {
 public:
  explicit Client(Options options) : async_(std::move(options)) {}

  Result<Welcome> connect();
  Result<SendAck> send(const std::string& receiver, const std::string& body,
                       std::uint64_t client_msg_id = 0);
  Result<PullPage> pull(std::int64_t after_seq, std::uint32_t limit = 0, std::uint32_t wait_ms = 0);
  Result<HistoryPage> history(const std::string& peer, std::int64_t cursor, std::uint32_t limit,
                              bool reverse);
  Result<std::chrono::microseconds> ping();
  Result<AuthGrant> register_account(const std::string& user, const std::string& password);
  Result<AuthGrant> login(const std::string& user, const std::string& password);
  void close() { async_.close(); }

  AsyncClient& async() { return async_; }

 private:
  AsyncClient async_;
};

}  // namespace im::client
