// Pull: the caller's inbox after a cursor, up to a limit, waiting up to
// wait_ms for something new (a long poll; see PullOperation); never another
// user's inbox.
#include <algorithm>

#include "server/service/handlers/handlers.hpp"
#include "server/service/pull_operation.hpp"

namespace im::server::handlers {

void pull(ServiceContext& ctx, const Request& req, const wire::Pull& m) {
  if (m.after_seq() < 0) return req.error(wire::ErrorCode::BadRequest, "after_seq must be >= 0");
  const ServiceLimits& l = ctx.limits;
  PullQuery q;
  q.owner = req.user();
  q.after_seq = m.after_seq();
  q.limit = m.limit() == 0 ? l.default_pull_limit : std::min(m.limit(), l.max_pull_limit);
  const auto wait =
      std::chrono::milliseconds(ctx.shutting_down() ? 0 : std::min(m.wait_ms(), l.max_wait_ms));
  std::make_shared<PullOperation>(ctx, req.conn, req.rid, std::move(q), wait)->start();
}

}  // namespace im::server::handlers
