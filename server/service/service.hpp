#pragma once
// Service: serves sessions. It owns the ServiceContext every request handler
// uses, routes each verified frame through the dispatch table (dispatch.hpp)
// to its handler (handlers/), and follows each connection's life as its
// SessionHandler: long polls end when a connection stops taking requests, its
// reads are dropped when it closes, and response bytes count against the
// server-wide budget.
//
// Thread-safety: the SessionHandler calls come on each connection's executor;
// completions from storage threads are posted back there. The Service is
// shared by all connections and holds no per-connection state (that is the
// connection's SessionState).

#include <cstddef>
#include <memory>
#include <string>

#include "server/service/connection.hpp"
#include "server/service/service_context.hpp"
#include "server/service/session_handler.hpp"

namespace im::server {

class Service final : public SessionHandler {
 public:
  Service(ServiceLimits limits, MessageWriter& writer, MessageReader& reader, Waiters& waiters,
          std::string server_name, ServiceAuth auth);

  // SessionHandler
  void on_frame(const std::shared_ptr<Connection>& conn, const wire::Frame& frame) override;
  void on_open(Connection& conn) override;
  void on_input_closed(Connection& conn) override;
  void on_close(Connection& conn) override;
  void on_queued(const protocol::OutFrame& frame) override;
  void on_unqueued(std::size_t bytes) override { ctx_.responses.release(bytes); }
  void on_written(Connection& conn) override { ctx_.reads.pump(conn); }

  /// Completes pending long polls now and makes new ones return at once.
  void begin_shutdown();

  ServiceContext& context() { return ctx_; }
  ReadGate& read_gate() { return ctx_.reads; }

 private:
  ServiceContext ctx_;
};

}  // namespace im::server
