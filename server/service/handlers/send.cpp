// Send: checks the receiver, the client_msg_id, the body and the sender's rate
// limit, then hands the message to the group-commit writer; SendAck only once
// it is durable (an Error, stating why, otherwise).
#include <fmt/format.h>

#include "protocol/validate.hpp"
#include "server/common/log.hpp"
#include "server/service/handlers/handlers.hpp"

namespace im::server::handlers {

using wire::ErrorCode;

namespace {

/// Answers a Send with an Error, counted by code.
void refuse(ServiceStats& stats, const Request& req, ErrorCode code, std::string_view message,
            std::uint32_t retry_after_ms = 0) {
  ServiceStats::add(stats.sends_failed[static_cast<std::size_t>(code)]);
  req.error(code, message, retry_after_ms);
}

}  // namespace

void send(ServiceContext& ctx, const Request& req, const wire::Send& m) {
  ServiceStats& stats = *ctx.stats;
  const std::string_view receiver = m.receiver() ? m.receiver()->string_view() : std::string_view{};
  if (!protocol::valid_user_id(receiver)) {
    return refuse(stats, req, ErrorCode::BadRequest, "receiver is not a valid user id");
  }
  if (m.client_msg_id() == 0) return refuse(stats, req, ErrorCode::BadRequest, "client_msg_id must be non-zero");
  const std::string_view body = m.body() ? m.body()->string_view() : std::string_view{};
  const std::uint32_t max_body = ctx.limits.max_body_bytes;
  if (body.size() > max_body) {
    return refuse(stats, req, ErrorCode::TooLarge, "body is " + std::to_string(body.size()) +
                                              " bytes; max_body_bytes is " + std::to_string(max_body));
  }
  if (!protocol::valid_text(body)) {
    return refuse(stats, req, ErrorCode::BadRequest, "body must be valid UTF-8 without NUL bytes");
  }
  if (ctx.send_limiter.enabled()) {
    const auto decision = ctx.send_limiter.acquire(req.user(), std::chrono::steady_clock::now());
    if (!decision.allowed) {
      const std::uint32_t retry_ms = retry_hint_ms(decision);
      const ServiceLimits& l = ctx.limits;
      if (const auto n = ctx.rate_limited_log.note()) {
        logs::svc().warn("{} user={} over the send rate limit ({}/s, burst {}): {} send(s) "
                         "refused since the last such line, {} in all",
                         SessionTag{req.conn->id()}, req.user(), l.send_rate, l.send_burst, n,
                         ctx.rate_limited_log.total());
      }
      return refuse(stats, req, ErrorCode::RateLimited,
                       fmt::format("send rate limit: at most {} messages/s per user with bursts of "
                                   "{}; retry after {} ms",
                                   l.send_rate, l.send_burst, retry_ms),
                       retry_ms);
    }
  }
  SendCommand cmd;
  cmd.sender = req.user();
  cmd.receiver.assign(receiver);
  cmd.body.assign(body);
  cmd.client_msg_id = m.client_msg_id();
  cmd.received_at_us = wall_clock_us();
  cmd.done = [conn = req.conn, rid = req.rid, stats = ctx.stats,
              arrived = std::chrono::steady_clock::now()](const StoreStatus& status,
                                                          const protocol::SendAckRecord& ack) {
    const Request answer{conn, rid};
    if (status.ok()) {
      ServiceStats::add(stats->sends_acked);
      const auto waited = std::chrono::steady_clock::now() - arrived;
      stats->send_ack_us.record(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(waited).count()));
      return answer.reply(protocol::encode_send_ack(rid, ack));
    }
    refuse(*stats, answer, to_error_code(status.code), status.message, retry_hint_ms(status.code));
  };
  if (const StoreStatus queued = ctx.writer.submit(cmd); !queued.ok()) {
    refuse(stats, req, to_error_code(queued.code), queued.message, retry_hint_ms(queued.code));
  }
}

}  // namespace im::server::handlers
