#pragma once
// Frame encoders: build one size-prefixed Frame each. Used by the server (for
// responses) and the client (for requests). Pure; safe from any thread.

#include <cstdint>
#include <span>
#include <string_view>

#include <flatbuffers/flatbuffers.h>

#include "im/protocol/im_generated.h"
#include "protocol/message.hpp"

namespace im::protocol {

/// An encoded frame, length prefix included, ready to write to a socket.
using OutFrame = flatbuffers::DetachedBuffer;

OutFrame encode_hello(std::uint64_t request_id, std::string_view user, std::string_view token,
                      std::string_view client_name);
OutFrame encode_welcome(std::uint64_t request_id, std::string_view server_name,
                        std::uint64_t session_id, const ServerLimits& limits,
                        std::int64_t server_time_us, const SessionIdentity& identity = {});
OutFrame encode_send(std::uint64_t request_id, std::string_view receiver,
                     std::uint64_t client_msg_id, std::string_view body);
OutFrame encode_send_ack(std::uint64_t request_id, const SendAckRecord& ack);
OutFrame encode_pull(std::uint64_t request_id, std::int64_t after_seq, std::uint32_t limit,
                     std::uint32_t wait_ms);
OutFrame encode_pull_result(std::uint64_t request_id, std::span<const MessageRecord> messages,
                            std::int64_t next_after_seq, bool has_more);
OutFrame encode_history(std::uint64_t request_id, std::string_view peer, std::int64_t cursor,
                        std::uint32_t limit, bool reverse);
OutFrame encode_history_result(std::uint64_t request_id, std::span<const MessageRecord> messages,
                               std::int64_t next_cursor, bool has_more);
OutFrame encode_register(std::uint64_t request_id, std::string_view user,
                         std::string_view password);
OutFrame encode_login(std::uint64_t request_id, std::string_view user, std::string_view password);
OutFrame encode_auth_result(std::uint64_t request_id, std::string_view user,
                            std::string_view token, std::int64_t expires_at_us);
OutFrame encode_ping(std::uint64_t request_id, std::uint64_t nonce);
OutFrame encode_pong(std::uint64_t request_id, std::uint64_t nonce, std::int64_t server_time_us);
OutFrame encode_error(std::uint64_t request_id, wire::ErrorCode code, std::string_view message,
                      std::uint32_t retry_after_ms = 0);

/// Reads a Message table into a record (the table must have passed verify_frame).
MessageRecord to_record(const wire::Message& m);

/// The stable lower-case name of an error code, e.g. "bad_request".
const char* error_code_name(wire::ErrorCode code);

}  // namespace im::protocol
