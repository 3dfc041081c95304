// Register: creates a password account (if this server offers them and
// registration is open) and answers AuthResult with a token for it.
#include "server/service/handlers/handlers.hpp"

namespace im::server::handlers {

void register_account(ServiceContext& ctx, const Request& req, const wire::Register& m) {
  account(ctx, req, AccountOp::create, m.user(), m.password());
}

}  // namespace im::server::handlers
