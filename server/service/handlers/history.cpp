// History: one page of the conversation between the caller and a peer, by
// cursor, either direction; the page's worst-case size is reserved in the
// ReadGate before PostgreSQL is asked.
#include <algorithm>

#include <asio/post.hpp>

#include "protocol/page_size.hpp"
#include "protocol/validate.hpp"
#include "server/service/handlers/handlers.hpp"

namespace im::server::handlers {

using wire::ErrorCode;

void history(ServiceContext& ctx, const Request& req, const wire::History& m) {
  const std::string_view peer = m.peer() ? m.peer()->string_view() : std::string_view{};
  if (!protocol::valid_user_id(peer)) return req.error(ErrorCode::BadRequest, "peer is not a valid user id");
  if (m.cursor() < 0) return req.error(ErrorCode::BadRequest, "cursor must be >= 0");
  const ServiceLimits& l = ctx.limits;
  HistoryQuery q;
  q.user = req.user();
  q.peer.assign(peer);
  q.cursor = m.cursor();
  q.reverse = m.reverse();
  q.limit = m.limit() == 0 ? l.default_pull_limit : std::min(m.limit(), l.max_pull_limit);
  q.max_bytes = l.max_page_bytes;
  q.cancelled = ctx.reads.cancel_token(*req.conn);
  // The page's worst case is reserved before PostgreSQL is asked (ReadGate).
  const std::size_t worst = protocol::worst_page_bytes(q.limit, l.max_body_bytes, l.max_page_bytes);
  auto start = [&ctx, conn = req.conn, rid = req.rid, worst, q = std::move(q)] {
    ctx.reader.history(q, [&ctx, conn, rid, worst](const StoreStatus& status, HistoryPage&& page) {
      asio::post(conn->executor(), [&ctx, conn, rid, worst, status,
                                    page = std::move(page)]() mutable {
        // The reservation goes as the answer is queued, then waiting reads may go.
        ctx.reads.release(*conn, worst);
        if (conn->closed()) {
          // Nobody would receive it: freed unencoded.
        } else if (!status.ok()) {
          conn->respond_now(protocol::encode_error(rid, to_error_code(status.code), status.message,
                                                   retry_hint_ms(status.code)));
        } else {
          conn->respond_now(protocol::encode_history_result(rid, page.messages, page.next_cursor,
                                                            page.has_more));
        }
        ctx.reads.pump(*conn);
      });
    });
  };
  ctx.reads.submit(*req.conn, worst, std::move(start), [conn = req.conn, rid = req.rid] {
    Request{conn, rid}.error(ErrorCode::Busy,
                             "the server's memory for responses is in use (--max-response-bytes); "
                             "retry later",
                             retry_hint_ms(StoreCode::busy));
  });
}

}  // namespace im::server::handlers
