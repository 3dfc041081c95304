// Register and Login: the checks and the answer they share — offered at all,
// a valid user id, a password within bounds, attempts per user id rate-limited
// — then the account store, then a token signed with the deployment's key.
#include <fmt/format.h>

#include "protocol/validate.hpp"
#include "auth/password.hpp"
#include "server/common/log.hpp"
#include "server/service/handlers/handlers.hpp"

namespace im::server::handlers {

using wire::ErrorCode;

void account(ServiceContext& ctx, const Request& req, AccountOp op,
             const flatbuffers::String* user_field, const flatbuffers::String* password_field) {
  const bool create = op == AccountOp::create;
  const char* what = create ? "registration" : "password login";
  if (ctx.auth.keys == nullptr || ctx.auth.accounts == nullptr) {
    return req.error(ErrorCode::Forbidden, fmt::format("{} is not offered by this server", what));
  }
  if (create && !ctx.auth.registration_open) {
    return req.error(ErrorCode::Forbidden, "registration is closed on this server");
  }
  const std::string_view user = user_field ? user_field->string_view() : std::string_view{};
  if (!protocol::valid_user_id(user)) {
    return req.error(ErrorCode::BadRequest,
                     "user must be 1-64 bytes of letters, digits, '.', '_', '-'");
  }
  const std::string_view password =
      password_field ? password_field->string_view() : std::string_view{};
  if (create) {
    if (auto problem = auth::password_problem(password); !problem.empty()) {
      return req.error(ErrorCode::BadRequest, problem);
    }
  } else if (password.empty() || password.size() > auth::kMaxPasswordBytes) {
    return req.error(ErrorCode::BadRequest, "password must be 1-1024 bytes");
  }
  // Guessing passwords for one user id is slowed per user id, whatever the
  // number of connections it comes from.
  const auto decision = ctx.attempt_limiter.acquire(user, std::chrono::steady_clock::now());
  if (!decision.allowed) {
    const std::uint32_t retry_ms = retry_hint_ms(decision);
    return req.error(
        ErrorCode::RateLimited,
        fmt::format("too many {} attempts for this user id; retry after {} ms", what, retry_ms),
        retry_ms);
  }
  auto done = [conn = req.conn, rid = req.rid, create, keys = ctx.auth.keys,
               ttl = ctx.auth.login_token_ttl,
               user = std::string(user)](const StoreStatus& status, AccountOutcome outcome) {
    const Request answer{conn, rid};
    if (!status.ok()) return answer.error(status);
    if (outcome == AccountOutcome::exists) {
      return answer.error(ErrorCode::AlreadyExists, "user id '" + user + "' is taken");
    }
    if (outcome == AccountOutcome::bad_credentials) {
      logs::auth().info("{} login refused for user={}", SessionTag{conn->id()}, user);
      return answer.error(ErrorCode::Unauthenticated, "unknown user or wrong password");
    }
    const std::int64_t expires_s = wall_clock_us() / 1000000 + ttl.count();
    const std::string token = auth::issue_token(keys->signing_key(), user, expires_s);
    logs::auth().info("{} {} user={}", SessionTag{conn->id()}, create ? "registered" : "logged in",
                      user);
    answer.reply(protocol::encode_auth_result(rid, user, token, expires_s * 1000000));
  };
  AccountStore& accounts = *ctx.auth.accounts;
  const StoreStatus queued =
      create ? accounts.create(std::string(user), std::string(password), std::move(done))
             : accounts.authenticate(std::string(user), std::string(password), std::move(done));
  if (!queued.ok()) req.error(queued);
}

}  // namespace im::server::handlers
