#pragma once
// The dispatch table: one entry per client request type — its body type,
// whether it may come before Hello, whether it needs a live (unexpired)
// session, and its handler — and dispatch(), which applies the entry's checks
// in one place and calls the handler. Frames without a request id, without a
// body, or of a type only the server sends are answered here.
//
// Adding a request type: one entry in kRequestTypes (dispatch.cpp) and one
// handler file in server/service/handlers/ (docs/adding-a-request.md has the
// whole path, schema to fuzz seeds).

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "server/service/service_context.hpp"

namespace im::server {

struct RequestType {
  wire::Body body = wire::Body::NONE;
  std::string_view name;
  bool before_hello = false;  // may be sent before Hello
  bool live_session = false;  // needs an open session whose token has not expired
  void (*handle)(ServiceContext&, const Request&, const wire::Frame&) = nullptr;
};

/// Every request type a client may send, in schema order.
std::span<const RequestType> request_types();
/// The entry for `body`, or null for a type a client may not send.
const RequestType* find_request_type(wire::Body body);

/// Handles one verified request frame: answers it, or hands it to its handler.
void dispatch(ServiceContext& ctx, const std::shared_ptr<Connection>& conn, const wire::Frame& frame);

}  // namespace im::server
