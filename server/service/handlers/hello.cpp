// Hello: opens the session — checks the protocol version, the user id and the
// token (refused tokens close the connection), then answers Welcome with the
// server's limits; once per connection.
#include "protocol/validate.hpp"
#include "server/common/log.hpp"
#include "server/service/handlers/handlers.hpp"

namespace im::server::handlers {

using wire::ErrorCode;

void hello(ServiceContext& ctx, const Request& req, const wire::Hello& m) {
  SessionState& session = req.session();
  if (!session.user.empty()) return req.error(ErrorCode::BadRequest, "Hello was already sent");
  if (m.protocol_version() != protocol::kProtocolVersion) {
    return req.error(ErrorCode::BadRequest, "unsupported protocol_version " +
                                                std::to_string(m.protocol_version()) +
                                                " (server speaks 1)");
  }
  const std::string_view user = m.user() ? m.user()->string_view() : std::string_view{};
  const std::string_view token = m.token() ? m.token()->string_view() : std::string_view{};
  // A malformed user id is a malformed request, not an authentication failure:
  // it is refused before the token is looked at, and the connection stays open.
  // Under --auth none the id is required; with tokens it may be left empty.
  if ((ctx.auth.keys == nullptr || !user.empty()) && !protocol::valid_user_id(user)) {
    return req.error(ErrorCode::BadRequest,
                     "user must be 1-64 bytes of letters, digits, '.', '_', '-'");
  }
  if (ctx.auth.keys == nullptr) {
    // --auth none: the user is whoever Hello says (development only).
    session.user.assign(user);
  } else {
    // An authentication failure closes the connection: guessing costs a
    // connection (and its handshake) per try.
    if (token.empty()) {
      return req.fail(ErrorCode::Unauthenticated,
                      "this server requires a token in Hello (from Login, or `imctl token issue`)");
    }
    const auto check = auth::verify_token(*ctx.auth.keys, token, wall_clock_us() / 1000000);
    if (check.status != auth::TokenCheck::Status::ok) {
      if (const auto n = ctx.auth_failed_log.note()) {
        logs::auth().warn("{} hello refused: {} ({} refusal(s) since the last such line)",
                          SessionTag{req.conn->id()}, check.message(), n);
      }
      return req.fail(ErrorCode::Unauthenticated, check.message());
    }
    // A well-formed id that is not the token's user: the token is genuine but
    // used for someone else, so this is refused like a bad token (closed).
    if (!user.empty() && user != check.user) {
      return req.fail(ErrorCode::Forbidden,
                      "Hello's user differs from the token's user; a token opens a session only "
                      "for the user it names");
    }
    session.user = check.user;
    session.auth_expires_us = check.expires_at_s * 1000000;
  }
  logs::auth().info("{} hello user={} client={}", SessionTag{req.conn->id()}, session.user,
                    m.client_name() ? m.client_name()->str() : "");
  const ServiceLimits& l = ctx.limits;
  const protocol::ServerLimits limits{l.max_frame_bytes, l.max_body_bytes, l.max_pull_limit,
                                      l.max_wait_ms, l.idle_timeout_ms};
  req.reply(protocol::encode_welcome(req.rid, ctx.server_name, req.conn->id(), limits,
                                     wall_clock_us(), {session.user, session.auth_expires_us}));
  req.conn->open_session(session.user);
}

}  // namespace im::server::handlers
