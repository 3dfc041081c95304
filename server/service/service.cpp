#include "server/service/service.hpp"

#include <algorithm>
#include <chrono>

#include "server/service/dispatch.hpp"

namespace im::server {

std::int64_t wall_clock_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint32_t retry_hint_ms(StoreCode code) {
  return code == StoreCode::unavailable || code == StoreCode::busy ? 200 : 0;
}

std::uint32_t retry_hint_ms(const RateLimiter::Decision& decision) {
  return static_cast<std::uint32_t>(std::min<std::int64_t>(decision.retry_after.count(), 60000));
}

wire::ErrorCode to_error_code(StoreCode code) {
  switch (code) {
    case StoreCode::ok: return wire::ErrorCode::Unknown;
    case StoreCode::unavailable: return wire::ErrorCode::Unavailable;
    case StoreCode::busy: return wire::ErrorCode::Busy;
    case StoreCode::conflict: return wire::ErrorCode::BadRequest;
    case StoreCode::internal: return wire::ErrorCode::Internal;
  }
  return wire::ErrorCode::Internal;
}

Service::Service(ServiceLimits limits, MessageWriter& writer, MessageReader& reader,
                 Waiters& waiters, std::string server_name, ServiceAuth auth)
    : ctx_(limits, writer, reader, waiters, std::move(server_name), auth) {}

void Service::begin_shutdown() {
  ctx_.stopping.store(true);
  ctx_.waiters.notify_all();
}

void Service::on_frame(const std::shared_ptr<Connection>& conn, const wire::Frame& frame) {
  dispatch(ctx_, conn, frame);
}

void Service::on_open(Connection& conn) {
  conn.state().open = true;
  ServiceStats::add(ctx_.stats->sessions_open);
  ServiceStats::add(ctx_.stats->sessions_opened);
}

void Service::on_input_closed(Connection& conn) {
  // No request can follow: long polls answer now with what is there instead of
  // holding the connection until their deadline for a client that has most
  // likely gone (a running query answers instead of waiting: PullOperation).
  conn.state().end_waits();
}

void Service::on_close(Connection& conn) {
  // Reads waiting for room are dropped, running ones cancelled; then long
  // polls let go of the connection now, not at their deadline.
  ctx_.reads.drop(conn);
  conn.state().end_waits();
  if (conn.state().open) ctx_.stats->sessions_open.fetch_sub(1, std::memory_order_relaxed);
}

void Service::on_queued(const protocol::OutFrame& frame) {
  ctx_.responses.add(frame.size());
  // Our own encoding, so trusted: a look at the body type (and an Error's
  // code) costs a few loads, and counts every Error a client gets, wherever
  // it came from (a handler, a storage failure, a deadline).
  const auto* f = flatbuffers::GetSizePrefixedRoot<wire::Frame>(frame.data());
  if (f->body_type() == wire::Body::Error) {
    const auto code = static_cast<std::size_t>(f->body_as_Error()->code());
    if (code < kErrorCodes) ServiceStats::add(ctx_.stats->errors[code]);
  }
}

}  // namespace im::server
