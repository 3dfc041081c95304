#include "server/service/dispatch.hpp"

#include <array>

#include "server/service/handlers/handlers.hpp"

namespace im::server {
namespace {

using wire::ErrorCode;

/// Adapts a handler over one body type to the table's signature; the frame
/// was verified, so its body is there and of that type.
template <typename Body, void (*Handler)(ServiceContext&, const Request&, const Body&)>
void call(ServiceContext& ctx, const Request& req, const wire::Frame& frame) {
  Handler(ctx, req, *frame.body_as<Body>());
}

template <typename Body, void (*Handler)(ServiceContext&, const Request&, const Body&)>
constexpr RequestType entry(std::string_view name, bool before_hello, bool live_session) {
  return RequestType{wire::BodyTraits<Body>::enum_value, name, before_hello, live_session,
                     &call<Body, Handler>};
}

constexpr std::array kRequestTypes{
    //                                                          before Hello, live session
    entry<wire::Hello, handlers::hello>("Hello", true, false),
    entry<wire::Send, handlers::send>("Send", false, true),
    entry<wire::Pull, handlers::pull>("Pull", false, true),
    entry<wire::History, handlers::history>("History", false, true),
    entry<wire::Ping, handlers::ping>("Ping", true, false),
    entry<wire::Register, handlers::register_account>("Register", true, false),
    entry<wire::Login, handlers::login>("Login", true, false),
};

constexpr std::size_t kBodies = static_cast<std::size_t>(wire::Body::MAX) + 1;

/// kRequestTypes by body type, for a lookup without a search.
constexpr std::array<const RequestType*, kBodies> by_body() {
  std::array<const RequestType*, kBodies> index{};
  for (const RequestType& t : kRequestTypes) index[static_cast<std::size_t>(t.body)] = &t;
  return index;
}
constexpr auto kByBody = by_body();

}  // namespace

std::span<const RequestType> request_types() { return kRequestTypes; }

const RequestType* find_request_type(wire::Body body) {
  const auto i = static_cast<std::size_t>(body);
  return i < kBodies ? kByBody[i] : nullptr;
}

void dispatch(ServiceContext& ctx, const std::shared_ptr<Connection>& conn, const wire::Frame& frame) {
  const Request req{conn, frame.request_id()};
  if (const auto i = static_cast<std::size_t>(frame.body_type()); i < kBodyTypes) {
    ServiceStats::add(ctx.stats->requests[i]);
  }
  if (req.rid == 0) return req.error(ErrorCode::BadRequest, "request_id must be non-zero");
  const wire::Body body = frame.body_type();
  if (body == wire::Body::NONE) return req.error(ErrorCode::BadRequest, "frame has no body");
  const RequestType* type = find_request_type(body);
  if (type == nullptr) return req.error(ErrorCode::BadRequest, "not a request type a client may send");
  const SessionState& session = req.session();
  if (!type->before_hello && session.user.empty()) {
    return req.error(ErrorCode::Unauthenticated, "send Hello first");
  }
  if (type->live_session && session.auth_expires_us != 0 && wall_clock_us() >= session.auth_expires_us) {
    // The session lives only as long as its token: the client reconnects with a new one.
    return req.fail(ErrorCode::Unauthenticated,
                    "the session's token has expired; reconnect with a fresh token");
  }
  type->handle(ctx, req, frame);
}

}  // namespace im::server
