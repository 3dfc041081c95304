#pragma once
// The request handlers: one per client request type, each in its own file
// beside this one and opening with its contract. Each answers its Request
// exactly once (now, or later from a storage completion). Called by
// dispatch() (server/service/dispatch.cpp) on the connection's executor, after
// the checks the dispatch table asks for (a session, an unexpired token).

#include "server/service/service_context.hpp"

namespace im::server::handlers {

void ping(ServiceContext& ctx, const Request& req, const wire::Ping& m);
void hello(ServiceContext& ctx, const Request& req, const wire::Hello& m);
void register_account(ServiceContext& ctx, const Request& req, const wire::Register& m);
void login(ServiceContext& ctx, const Request& req, const wire::Login& m);
void send(ServiceContext& ctx, const Request& req, const wire::Send& m);
void pull(ServiceContext& ctx, const Request& req, const wire::Pull& m);
void history(ServiceContext& ctx, const Request& req, const wire::History& m);

/// Register and Login share their checks and their answer (account.cpp).
enum class AccountOp { create, authenticate };
void account(ServiceContext& ctx, const Request& req, AccountOp op,
             const flatbuffers::String* user, const flatbuffers::String* password);

}  // namespace im::server::handlers
