#include "protocol/frame_codec.hpp"

#include <algorithm>
#include <limits>

#include <flatbuffers/flatbuffers.h>

namespace im::protocol {

VerifyLimits response_verify_limits(std::uint32_t max_messages) {
  // Frame + body table + one table per message, with room to spare. Computed
  // in 64 bits and saturated: in 32 bits a large request wrapped to a tiny limit.
  const std::uint64_t tables = 16 + 2 * std::uint64_t{max_messages};
  const auto cap = std::uint64_t{std::numeric_limits<std::uint32_t>::max()};
  return VerifyLimits{.max_depth = 8,
                      .max_tables = static_cast<std::uint32_t>(std::min(tables, cap))};
}

std::uint32_t read_length_prefix(std::span<const std::uint8_t> header) {
  return static_cast<std::uint32_t>(header[0]) | (static_cast<std::uint32_t>(header[1]) << 8) |
         (static_cast<std::uint32_t>(header[2]) << 16) |
         (static_cast<std::uint32_t>(header[3]) << 24);
}

const char* check_frame_length(std::uint32_t length, std::uint32_t max_frame_bytes,
                               wire::ErrorCode& code) {
  if (length == 0) {
    code = wire::ErrorCode::ProtocolError;
    return "zero-length frame";
  }
  if (length > max_frame_bytes) {
    code = wire::ErrorCode::TooLarge;
    return "frame length above the server's max_frame_bytes";
  }
  return nullptr;
}

Decoded decode_frame(std::span<const std::uint8_t> input, std::uint32_t max_frame_bytes) {
  Decoded out;
  if (input.size() < kLengthPrefixBytes) return out;  // need_more
  const std::uint32_t length = read_length_prefix(input.first(kLengthPrefixBytes));
  if (const char* reason = check_frame_length(length, max_frame_bytes, out.error)) {
    out.status = DecodeStatus::error;
    out.reason = reason;
    return out;
  }
  if (input.size() - kLengthPrefixBytes < length) return out;  // need_more
  out.status = DecodeStatus::frame;
  out.frame = input.first(kLengthPrefixBytes + length);
  out.consumed = kLengthPrefixBytes + length;
  return out;
}

const wire::Frame* verify_frame(std::span<const std::uint8_t> frame, const VerifyLimits& limits,
                                std::string& why) {
  constexpr std::size_t kMinimum =
      kLengthPrefixBytes + sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength;
  if (frame.size() < kMinimum) {
    why = "frame too short to hold a FlatBuffers root";
    return nullptr;
  }
  if (read_length_prefix(frame.first(kLengthPrefixBytes)) != frame.size() - kLengthPrefixBytes) {
    why = "length prefix does not match the frame size";
    return nullptr;
  }
  if (!flatbuffers::BufferHasIdentifier(frame.data(), wire::FrameIdentifier(), true)) {
    why = "wrong file identifier (expected \"IMP1\")";
    return nullptr;
  }
  flatbuffers::Verifier verifier(frame.data(), frame.size(), limits.max_depth, limits.max_tables);
  if (!verifier.VerifySizePrefixedBuffer<wire::Frame>(wire::FrameIdentifier())) {
    why = "frame failed FlatBuffers verification";
    return nullptr;
  }
  const wire::Frame* root = flatbuffers::GetSizePrefixedRoot<wire::Frame>(frame.data());
  // The Verifier accepts a union whose type is set but whose table is absent;
  // readers dereference body_as_X() once the type matches, so refuse it here.
  if (root->body_type() != wire::Body::NONE && root->body() == nullptr) {
    why = "frame has a body type but no body";
    return nullptr;
  }
  return root;
}

}  // namespace im::protocol
