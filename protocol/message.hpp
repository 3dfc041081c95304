#pragma once
// Plain value types shared by the server, the client and the tools.

#include <cstdint>
#include <string>
#include <string_view>

namespace im::protocol {

inline constexpr std::uint32_t kProtocolVersion = 1;

/// One stored message as seen by a reader (a Message table on the wire).
struct MessageRecord {
  std::int64_t seq = 0;         // seq in the receiver's inbox
  std::int64_t message_id = 0;
  std::string sender;
  std::string receiver;
  std::string body;
  std::int64_t created_at_us = 0;
  std::uint64_t client_msg_id = 0;
};

/// What a durable send returns (a SendAck on the wire).
struct SendAckRecord {
  std::int64_t message_id = 0;
  std::int64_t created_at_us = 0;
  std::int64_t seq = 0;
  bool duplicate = false;
};

/// Limits a server announces in Welcome.
struct ServerLimits {
  std::uint32_t max_frame_bytes = 0;
  std::uint32_t max_body_bytes = 0;
  std::uint32_t max_pull_limit = 0;
  std::uint32_t max_wait_ms = 0;
  std::uint32_t idle_timeout_ms = 0;  // 0: no idle limit
};

/// Who a session is, as Welcome reports it.
struct SessionIdentity {
  std::string_view user;
  std::int64_t token_expires_at_us = 0;  // 0: no expiry (--auth none)
};

}  // namespace im::protocol
