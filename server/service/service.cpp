#include "server/service/service.hpp"

#include <algorithm>
#include <chrono>

#include <asio/post.hpp>
#include <fmt/format.h>

#include "protocol/page_size.hpp"
#include "protocol/validate.hpp"
#include "server/auth/password.hpp"
#include "server/common/log.hpp"
#include "server/service/pull_operation.hpp"

namespace im::server {
namespace {

using protocol::encode_error;
using wire::ErrorCode;

std::int64_t wall_clock_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint32_t retry_hint_ms(StoreCode code) {
  return code == StoreCode::unavailable || code == StoreCode::busy ? 200 : 0;
}

/// The retry_after_ms of a rate-limit refusal: the bucket's refill time, at most a minute.
std::uint32_t retry_hint_ms(const RateLimiter::Decision& decision) {
  return static_cast<std::uint32_t>(std::min<std::int64_t>(decision.retry_after.count(), 60000));
}

}  // namespace

wire::ErrorCode to_error_code(StoreCode code) {
  switch (code) {
    case StoreCode::ok: return ErrorCode::Unknown;
    case StoreCode::unavailable: return ErrorCode::Unavailable;
    case StoreCode::busy: return ErrorCode::Busy;
    case StoreCode::conflict: return ErrorCode::BadRequest;
    case StoreCode::internal: return ErrorCode::Internal;
  }
  return ErrorCode::Internal;
}

Service::Service(ServiceLimits limits, MessageWriter& writer, MessageReader& reader,
                 Waiters& waiters, std::string server_name, ServiceAuth auth)
    : limits_(limits),
      writer_(writer),
      reader_(reader),
      waiters_(waiters),
      server_name_(std::move(server_name)),
      auth_(auth),
      send_limiter_(RateLimiter::Options{limits.send_rate, limits.send_burst}),
      attempt_limiter_(RateLimiter::Options{auth.attempt_rate, auth.attempt_burst}),
      responses_(limits.max_response_bytes),
      reads_(limits.max_reads_per_connection, responses_) {}

void Service::begin_shutdown() {
  shutting_down_.store(true);
  waiters_.notify_all();
}

void Service::handle(const std::shared_ptr<Connection>& conn, const wire::Frame& frame) {
  const std::uint64_t rid = frame.request_id();
  if (rid == 0) {
    return conn->respond(encode_error(0, ErrorCode::BadRequest, "request_id must be non-zero"));
  }
  const auto type = frame.body_type();
  if (type == wire::Body::Ping) {
    const auto* ping = frame.body_as_Ping();
    return conn->respond(protocol::encode_pong(rid, ping->nonce(), wall_clock_us()));
  }
  if (type == wire::Body::Hello) return on_hello(conn, rid, *frame.body_as_Hello());
  if (type == wire::Body::Register) {
    const auto* m = frame.body_as_Register();
    return on_account(conn, rid, true, m->user(), m->password());
  }
  if (type == wire::Body::Login) {
    const auto* m = frame.body_as_Login();
    return on_account(conn, rid, false, m->user(), m->password());
  }
  if (type == wire::Body::NONE) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest, "frame has no body"));
  }
  if (type != wire::Body::Send && type != wire::Body::Pull && type != wire::Body::History) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest,
                                      "not a request type a client may send"));
  }
  if (conn->user.empty()) {
    return conn->respond(encode_error(rid, ErrorCode::Unauthenticated, "send Hello first"));
  }
  if (conn->auth_expires_us != 0 && wall_clock_us() >= conn->auth_expires_us) {
    // The session lives only as long as its token: the client reconnects with a new one.
    return conn->fail(encode_error(rid, ErrorCode::Unauthenticated,
                                   "the session's token has expired; reconnect with a fresh token"));
  }
  switch (type) {
    case wire::Body::Send: return on_send(conn, rid, *frame.body_as_Send());
    case wire::Body::Pull: return on_pull(conn, rid, *frame.body_as_Pull());
    case wire::Body::History: return on_history(conn, rid, *frame.body_as_History());
    default: break;
  }
}

void Service::on_hello(const std::shared_ptr<Connection>& conn, std::uint64_t rid,
                       const wire::Hello& m) {
  if (!conn->user.empty()) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest, "Hello was already sent"));
  }
  if (m.protocol_version() != protocol::kProtocolVersion) {
    return conn->respond(encode_error(
        rid, ErrorCode::BadRequest,
        "unsupported protocol_version " + std::to_string(m.protocol_version()) + " (server speaks 1)"));
  }
  const std::string_view user = m.user() ? m.user()->string_view() : std::string_view{};
  const std::string_view token = m.token() ? m.token()->string_view() : std::string_view{};
  // A malformed user id is a malformed request, not an authentication failure:
  // it is refused before the token is looked at, and the connection stays open.
  // Under --auth none the id is required; with tokens it may be left empty.
  if ((auth_.keys == nullptr || !user.empty()) && !protocol::valid_user_id(user)) {
    return conn->respond(encode_error(
        rid, ErrorCode::BadRequest, "user must be 1-64 bytes of letters, digits, '.', '_', '-'"));
  }
  if (auth_.keys == nullptr) {
    // --auth none: the user is whoever Hello says (development only).
    conn->user.assign(user);
  } else {
    // An authentication failure closes the connection: guessing costs a
    // connection (and its handshake) per try.
    if (token.empty()) {
      return conn->fail(encode_error(rid, ErrorCode::Unauthenticated,
                                     "this server requires a token in Hello (from Login, or "
                                     "`imctl token issue`)"));
    }
    const auto check = auth::verify_token(*auth_.keys, token, wall_clock_us() / 1000000);
    if (check.status != auth::TokenCheck::Status::ok) {
      if (const auto n = auth_failed_log_.note()) {
        logs::auth().warn("{} hello refused: {} ({} refusal(s) since the last such line)",
                                 SessionTag{conn->id()}, check.message(), n);
      }
      return conn->fail(encode_error(rid, ErrorCode::Unauthenticated, check.message()));
    }
    // A well-formed id that is not the token's user: the token is genuine but
    // used for someone else, so this is refused like a bad token (closed).
    if (!user.empty() && user != check.user) {
      return conn->fail(encode_error(rid, ErrorCode::Forbidden,
                                     "Hello's user differs from the token's user; a token "
                                     "opens a session only for the user it names"));
    }
    conn->user = check.user;
    conn->auth_expires_us = check.expires_at_s * 1000000;
  }
  logs::auth().info("{} hello user={} client={}", SessionTag{conn->id()}, conn->user,
                           m.client_name() ? m.client_name()->str() : "");
  const protocol::ServerLimits limits{limits_.max_frame_bytes, limits_.max_body_bytes,
                                      limits_.max_pull_limit, limits_.max_wait_ms,
                                      limits_.idle_timeout_ms};
  conn->respond(protocol::encode_welcome(rid, server_name_, conn->id(), limits, wall_clock_us(),
                                         {conn->user, conn->auth_expires_us}));
}

void Service::on_send(const std::shared_ptr<Connection>& conn, std::uint64_t rid,
                      const wire::Send& m) {
  const std::string_view receiver = m.receiver() ? m.receiver()->string_view() : std::string_view{};
  if (!protocol::valid_user_id(receiver)) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest, "receiver is not a valid user id"));
  }
  if (m.client_msg_id() == 0) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest, "client_msg_id must be non-zero"));
  }
  const std::string_view body = m.body() ? m.body()->string_view() : std::string_view{};
  if (body.size() > limits_.max_body_bytes) {
    return conn->respond(encode_error(
        rid, ErrorCode::TooLarge,
        "body is " + std::to_string(body.size()) + " bytes; max_body_bytes is " +
            std::to_string(limits_.max_body_bytes)));
  }
  if (!protocol::valid_text(body)) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest,
                                      "body must be valid UTF-8 without NUL bytes"));
  }
  if (send_limiter_.enabled()) {
    const auto decision = send_limiter_.acquire(conn->user, std::chrono::steady_clock::now());
    if (!decision.allowed) {
      const std::uint32_t retry_ms = retry_hint_ms(decision);
      if (const auto n = rate_limited_log_.note()) {
        logs::svc().warn("{} user={} over the send rate limit ({}/s, burst {}): {} send(s) "
                                 "refused since the last such line, {} in all",
                                 SessionTag{conn->id()}, conn->user, limits_.send_rate, limits_.send_burst, n,
                                 rate_limited_log_.total());
      }
      return conn->respond(encode_error(
          rid, ErrorCode::RateLimited,
          fmt::format("send rate limit: at most {} messages/s per user with bursts of {}; retry "
                      "after {} ms",
                      limits_.send_rate, limits_.send_burst, retry_ms),
          retry_ms));
    }
  }
  SendCommand cmd;
  cmd.sender = conn->user;
  cmd.receiver.assign(receiver);
  cmd.body.assign(body);
  cmd.client_msg_id = m.client_msg_id();
  cmd.received_at_us = wall_clock_us();
  cmd.done = [conn, rid](const StoreStatus& status, const protocol::SendAckRecord& ack) {
    if (status.ok()) {
      conn->respond(protocol::encode_send_ack(rid, ack));
    } else {
      conn->respond(encode_error(rid, to_error_code(status.code), status.message,
                                 retry_hint_ms(status.code)));
    }
  };
  const StoreStatus queued = writer_.submit(cmd);
  if (!queued.ok()) {
    conn->respond(encode_error(rid, to_error_code(queued.code), queued.message,
                               retry_hint_ms(queued.code)));
  }
}

void Service::on_pull(const std::shared_ptr<Connection>& conn, std::uint64_t rid,
                      const wire::Pull& m) {
  if (m.after_seq() < 0) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest, "after_seq must be >= 0"));
  }
  PullQuery q;
  q.owner = conn->user;
  q.after_seq = m.after_seq();
  q.limit = m.limit() == 0 ? limits_.default_pull_limit : std::min(m.limit(), limits_.max_pull_limit);
  const auto wait = std::chrono::milliseconds(
      shutting_down() ? 0 : std::min(m.wait_ms(), limits_.max_wait_ms));
  std::make_shared<PullOperation>(*this, conn, rid, std::move(q), wait)->start();
}

void Service::on_history(const std::shared_ptr<Connection>& conn, std::uint64_t rid,
                         const wire::History& m) {
  const std::string_view peer = m.peer() ? m.peer()->string_view() : std::string_view{};
  if (!protocol::valid_user_id(peer)) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest, "peer is not a valid user id"));
  }
  if (m.cursor() < 0) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest, "cursor must be >= 0"));
  }
  HistoryQuery q;
  q.user = conn->user;
  q.peer.assign(peer);
  q.cursor = m.cursor();
  q.reverse = m.reverse();
  q.limit = m.limit() == 0 ? limits_.default_pull_limit : std::min(m.limit(), limits_.max_pull_limit);
  q.max_bytes = limits_.max_page_bytes;
  q.cancelled = reads_.cancel_token(*conn);
  // The page's worst case is reserved before PostgreSQL is asked (ReadGate).
  const std::size_t worst =
      protocol::worst_page_bytes(q.limit, limits_.max_body_bytes, limits_.max_page_bytes);
  auto start = [this, conn, rid, worst, q = std::move(q)] {
    reader_.history(q, [this, conn, rid, worst](const StoreStatus& status, HistoryPage&& page) {
      asio::post(conn->executor(), [this, conn, rid, worst, status,
                                    page = std::move(page)]() mutable {
        // The reservation goes as the answer is queued, then waiting reads may go.
        reads_.release(*conn, worst);
        if (conn->closed) {
          // Nobody would receive it: freed unencoded.
        } else if (!status.ok()) {
          conn->respond_now(encode_error(rid, to_error_code(status.code), status.message,
                                         retry_hint_ms(status.code)));
        } else {
          conn->respond_now(protocol::encode_history_result(rid, page.messages, page.next_cursor,
                                                            page.has_more));
        }
        reads_.pump(*conn);
      });
    });
  };
  reads_.submit(*conn, worst, std::move(start), [conn, rid] {
    conn->respond(encode_error(rid, ErrorCode::Busy,
                               "the server's memory for responses is in use "
                               "(--max-response-bytes); retry later",
                               retry_hint_ms(StoreCode::busy)));
  });
}

void Service::on_account(const std::shared_ptr<Connection>& conn, std::uint64_t rid, bool create,
                         const flatbuffers::String* user_field,
                         const flatbuffers::String* password_field) {
  const char* what = create ? "registration" : "password login";
  if (auth_.keys == nullptr || auth_.accounts == nullptr) {
    return conn->respond(encode_error(rid, ErrorCode::Forbidden,
                                      fmt::format("{} is not offered by this server", what)));
  }
  if (create && !auth_.registration_open) {
    return conn->respond(
        encode_error(rid, ErrorCode::Forbidden, "registration is closed on this server"));
  }
  const std::string_view user = user_field ? user_field->string_view() : std::string_view{};
  if (!protocol::valid_user_id(user)) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest,
                                      "user must be 1-64 bytes of letters, digits, '.', '_', '-'"));
  }
  const std::string_view password =
      password_field ? password_field->string_view() : std::string_view{};
  if (create) {
    if (auto problem = auth::password_problem(password); !problem.empty()) {
      return conn->respond(encode_error(rid, ErrorCode::BadRequest, problem));
    }
  } else if (password.empty() || password.size() > auth::kMaxPasswordBytes) {
    return conn->respond(encode_error(rid, ErrorCode::BadRequest, "password must be 1-1024 bytes"));
  }
  // Guessing passwords for one user id is slowed per user id, whatever the
  // number of connections it comes from.
  const auto decision = attempt_limiter_.acquire(user, std::chrono::steady_clock::now());
  if (!decision.allowed) {
    const std::uint32_t retry_ms = retry_hint_ms(decision);
    return conn->respond(encode_error(
        rid, ErrorCode::RateLimited,
        fmt::format("too many {} attempts for this user id; retry after {} ms", what, retry_ms),
        retry_ms));
  }
  const auto keys = auth_.keys;
  const auto ttl = auth_.login_token_ttl;
  auto done = [conn, rid, create, keys, ttl, user = std::string(user)](const StoreStatus& status,
                                                                      AccountOutcome outcome) {
    if (!status.ok()) {
      return conn->respond(encode_error(rid, to_error_code(status.code), status.message,
                                        retry_hint_ms(status.code)));
    }
    if (outcome == AccountOutcome::exists) {
      return conn->respond(
          encode_error(rid, ErrorCode::AlreadyExists, "user id '" + user + "' is taken"));
    }
    if (outcome == AccountOutcome::bad_credentials) {
      logs::auth().info("{} login refused for user={}", SessionTag{conn->id()}, user);
      return conn->respond(
          encode_error(rid, ErrorCode::Unauthenticated, "unknown user or wrong password"));
    }
    const std::int64_t expires_s = wall_clock_us() / 1000000 + ttl.count();
    const std::string token = auth::issue_token(keys->signing_key(), user, expires_s);
    logs::auth().info("{} {} user={}", SessionTag{conn->id()}, create ? "registered" : "logged in",
                             user);
    conn->respond(protocol::encode_auth_result(rid, user, token, expires_s * 1000000));
  };
  const StoreStatus queued = create ? auth_.accounts->create(std::string(user),
                                                             std::string(password), std::move(done))
                                    : auth_.accounts->authenticate(
                                          std::string(user), std::string(password), std::move(done));
  if (!queued.ok()) {
    conn->respond(encode_error(rid, to_error_code(queued.code), queued.message,
                               retry_hint_ms(queued.code)));
  }
}

}  // namespace im::server
