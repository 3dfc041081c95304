// Ping: answered at once with Pong (the nonce and the server's clock), before
// Hello too; it keeps an idle connection open.
#include "server/service/handlers/handlers.hpp"

namespace im::server::handlers {

void ping(ServiceContext&, const Request& req, const wire::Ping& m) {
  req.reply(protocol::encode_pong(req.rid, m.nonce(), wall_clock_us()));
}

}  // namespace im::server::handlers
