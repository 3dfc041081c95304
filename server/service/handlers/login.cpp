// Login: checks a password account's credentials and answers AuthResult with
// a fresh token; an unknown user and a wrong password get the same answer.
#include "server/service/handlers/handlers.hpp"

namespace im::server::handlers {

void login(ServiceContext& ctx, const Request& req, const wire::Login& m) {
  account(ctx, req, AccountOp::authenticate, m.user(), m.password());
}

}  // namespace im::server::handlers
