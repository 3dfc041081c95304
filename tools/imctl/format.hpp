#pragma once
// Output formats of imctl: human-readable columns, or JSON Lines.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "client/client.hpp"

namespace im::imctl {

/// Microseconds since the epoch as RFC 3339 UTC: 2026-11-24T03:04:05.123456Z.
std::string rfc3339(std::int64_t us);

/// One message as a JSON object: seq, message_id, from, to, body, created_at,
/// client_msg_id.
nlohmann::json message_json(const client::MessageRecord& m);

/// One message as a line of columns: seq, time, from -> to, body.
std::string message_line(const client::MessageRecord& m);

}  // namespace im::imctl
