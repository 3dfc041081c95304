#include "protocol/frames.hpp"

#include <vector>

namespace im::protocol {
namespace {

namespace fb = flatbuffers;

fb::Offset<fb::String> str(fb::FlatBufferBuilder& b, std::string_view s) {
  return b.CreateString(s.data(), s.size());
}

template <typename T>
OutFrame finish(fb::FlatBufferBuilder& b, std::uint64_t request_id, fb::Offset<T> body) {
  const auto frame =
      wire::CreateFrame(b, request_id, wire::BodyTraits<T>::enum_value, body.Union());
  b.FinishSizePrefixed(frame, wire::FrameIdentifier());
  return b.Release();
}

fb::Offset<fb::Vector<fb::Offset<wire::Message>>> messages_vector(
    fb::FlatBufferBuilder& b, std::span<const MessageRecord> messages) {
  std::vector<fb::Offset<wire::Message>> offsets;
  offsets.reserve(messages.size());
  for (const MessageRecord& m : messages) {
    const auto sender = str(b, m.sender);
    const auto receiver = str(b, m.receiver);
    const auto body = str(b, m.body);
    offsets.push_back(wire::CreateMessage(b, m.seq, m.message_id, sender, receiver, body,
                                          m.created_at_us, m.client_msg_id));
  }
  return b.CreateVector(offsets);
}

std::size_t messages_size_hint(std::span<const MessageRecord> messages) {
  std::size_t n = 128;
  for (const MessageRecord& m : messages) {
    n += 64 + m.sender.size() + m.receiver.size() + m.body.size();
  }
  return n;
}

}  // namespace

OutFrame encode_hello(std::uint64_t request_id, std::string_view user, std::string_view token,
                      std::string_view client_name) {
  fb::FlatBufferBuilder b(128 + user.size() + token.size() + client_name.size());
  const auto u = str(b, user);
  const auto t = str(b, token);
  const auto c = str(b, client_name);
  return finish(b, request_id, wire::CreateHello(b, kProtocolVersion, u, t, c));
}

OutFrame encode_welcome(std::uint64_t request_id, std::string_view server_name,
                        std::uint64_t session_id, const ServerLimits& limits,
                        std::int64_t server_time_us, const SessionIdentity& identity) {
  fb::FlatBufferBuilder b(256 + identity.user.size());
  const auto name = str(b, server_name);
  const auto user = str(b, identity.user);
  return finish(b, request_id,
                wire::CreateWelcome(b, kProtocolVersion, name, session_id, limits.max_frame_bytes,
                                    limits.max_body_bytes, limits.max_pull_limit,
                                    limits.max_wait_ms, server_time_us, user,
                                    identity.token_expires_at_us, limits.idle_timeout_ms));
}

OutFrame encode_register(std::uint64_t request_id, std::string_view user,
                         std::string_view password) {
  fb::FlatBufferBuilder b(128 + user.size() + password.size());
  const auto u = str(b, user);
  const auto p = str(b, password);
  return finish(b, request_id, wire::CreateRegister(b, u, p));
}

OutFrame encode_login(std::uint64_t request_id, std::string_view user, std::string_view password) {
  fb::FlatBufferBuilder b(128 + user.size() + password.size());
  const auto u = str(b, user);
  const auto p = str(b, password);
  return finish(b, request_id, wire::CreateLogin(b, u, p));
}

OutFrame encode_auth_result(std::uint64_t request_id, std::string_view user,
                            std::string_view token, std::int64_t expires_at_us) {
  fb::FlatBufferBuilder b(128 + user.size() + token.size());
  const auto u = str(b, user);
  const auto t = str(b, token);
  return finish(b, request_id, wire::CreateAuthResult(b, u, t, expires_at_us));
}

OutFrame encode_send(std::uint64_t request_id, std::string_view receiver,
                     std::uint64_t client_msg_id, std::string_view body) {
  fb::FlatBufferBuilder b(128 + receiver.size() + body.size());
  const auto r = str(b, receiver);
  const auto m = str(b, body);
  return finish(b, request_id, wire::CreateSend(b, r, client_msg_id, m));
}

OutFrame encode_send_ack(std::uint64_t request_id, const SendAckRecord& ack) {
  fb::FlatBufferBuilder b(96);
  return finish(b, request_id,
                wire::CreateSendAck(b, ack.message_id, ack.created_at_us, ack.seq, ack.duplicate));
}

OutFrame encode_pull(std::uint64_t request_id, std::int64_t after_seq, std::uint32_t limit,
                     std::uint32_t wait_ms) {
  fb::FlatBufferBuilder b(64);
  return finish(b, request_id, wire::CreatePull(b, after_seq, limit, wait_ms));
}

OutFrame encode_pull_result(std::uint64_t request_id, std::span<const MessageRecord> messages,
                            std::int64_t next_after_seq, bool has_more) {
  fb::FlatBufferBuilder b(messages_size_hint(messages));
  const auto v = messages_vector(b, messages);
  return finish(b, request_id, wire::CreatePullResult(b, v, next_after_seq, has_more));
}

OutFrame encode_history(std::uint64_t request_id, std::string_view peer, std::int64_t cursor,
                        std::uint32_t limit, bool reverse) {
  fb::FlatBufferBuilder b(96 + peer.size());
  const auto p = str(b, peer);
  return finish(b, request_id, wire::CreateHistory(b, p, cursor, limit, reverse));
}

OutFrame encode_history_result(std::uint64_t request_id, std::span<const MessageRecord> messages,
                               std::int64_t next_cursor, bool has_more) {
  fb::FlatBufferBuilder b(messages_size_hint(messages));
  const auto v = messages_vector(b, messages);
  return finish(b, request_id, wire::CreateHistoryResult(b, v, next_cursor, has_more));
}

OutFrame encode_ping(std::uint64_t request_id, std::uint64_t nonce) {
  fb::FlatBufferBuilder b(64);
  return finish(b, request_id, wire::CreatePing(b, nonce));
}

OutFrame encode_pong(std::uint64_t request_id, std::uint64_t nonce, std::int64_t server_time_us) {
  fb::FlatBufferBuilder b(64);
  return finish(b, request_id, wire::CreatePong(b, nonce, server_time_us));
}

OutFrame encode_error(std::uint64_t request_id, wire::ErrorCode code, std::string_view message,
                      std::uint32_t retry_after_ms) {
  fb::FlatBufferBuilder b(96 + message.size());
  const auto m = str(b, message);
  return finish(b, request_id, wire::CreateError(b, code, m, retry_after_ms));
}

MessageRecord to_record(const wire::Message& m) {
  MessageRecord r;
  r.seq = m.seq();
  r.message_id = m.message_id();
  if (m.sender()) r.sender = m.sender()->str();
  if (m.receiver()) r.receiver = m.receiver()->str();
  if (m.body()) r.body = m.body()->str();
  r.created_at_us = m.created_at_us();
  r.client_msg_id = m.client_msg_id();
  return r;
}

const char* error_code_name(wire::ErrorCode code) {
  switch (code) {
    case wire::ErrorCode::Unknown: return "unknown";
    case wire::ErrorCode::BadRequest: return "bad_request";
    case wire::ErrorCode::Unauthenticated: return "unauthenticated";
    case wire::ErrorCode::Forbidden: return "forbidden";
    case wire::ErrorCode::NotFound: return "not_found";
    case wire::ErrorCode::TooLarge: return "too_large";
    case wire::ErrorCode::RateLimited: return "rate_limited";
    case wire::ErrorCode::Unavailable: return "unavailable";
    case wire::ErrorCode::Internal: return "internal";
    case wire::ErrorCode::ProtocolError: return "protocol_error";
    case wire::ErrorCode::Busy: return "busy";
    case wire::ErrorCode::AlreadyExists: return "already_exists";
  }
  return "unknown";
}

}  // namespace im::protocol
