#pragma once
// Frame codec: pure functions that find, size-check and verify frames in bytes.
//
// Wire framing (see protocol/README.md): a 4-byte little-endian length N, then
// N bytes whose root is im.wire.Frame with file identifier "IMP1". This is the
// layout FlatBufferBuilder::FinishSizePrefixed writes.
//
// Thread-safety: every function here is pure and may be called from any thread.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "im/protocol/im_generated.h"

namespace im::protocol {

inline constexpr std::size_t kLengthPrefixBytes = 4;
inline constexpr std::uint32_t kDefaultMaxFrameBytes = 1u << 20;  // 1 MiB

/// Limits for the FlatBuffers Verifier. Tight values reject deeply nested or
/// table-bomb frames before any field is read.
struct VerifyLimits {
  std::uint32_t max_depth = 8;
  std::uint32_t max_tables = 64;
};

/// Limits a client should use for server responses: a PullResult carries up to
/// `max_messages` Message tables.
VerifyLimits response_verify_limits(std::uint32_t max_messages);

enum class DecodeStatus { need_more, frame, error };

/// Outcome of looking for one frame at the start of a byte stream.
struct Decoded {
  DecodeStatus status = DecodeStatus::need_more;
  /// The whole frame, length prefix included (what verify_frame takes); valid
  /// while the input is. The prefix is kept because FlatBuffers aligns the
  /// buffer as a whole: fields are aligned relative to the prefix's first byte.
  std::span<const std::uint8_t> frame;
  /// Bytes to drop from the input once the frame is handled (prefix + payload).
  std::size_t consumed = 0;
  /// When status == error: why, for the Error frame sent before closing.
  wire::ErrorCode error = wire::ErrorCode::Unknown;
  const char* reason = "";
};

/// Reads the 4-byte little-endian length at the start of `header`, which must
/// hold at least kLengthPrefixBytes bytes.
std::uint32_t read_length_prefix(std::span<const std::uint8_t> header);

/// Checks a frame length taken from the wire before anything is allocated for
/// it. Returns nullptr if acceptable, else a reason (the code is TooLarge for an
/// oversized length and ProtocolError for zero).
const char* check_frame_length(std::uint32_t length, std::uint32_t max_frame_bytes,
                               wire::ErrorCode& code);

/// Finds the first frame in `input`: need_more if it is incomplete, error if
/// its length is zero or above `max_frame_bytes`, else the frame.
/// Does not verify it; call verify_frame on Decoded::frame next.
Decoded decode_frame(std::span<const std::uint8_t> input, std::uint32_t max_frame_bytes);

/// Runs the FlatBuffers Verifier (with `limits`) and the file identifier check
/// over one whole size-prefixed frame (4-byte length + payload, the length
/// matching the span). Returns the root Frame, or nullptr with `why` filled
/// in. No field of an unverified buffer is ever read. A returned frame whose
/// body_type() is not NONE always has a body, so body_as_X() is non-null for
/// its type (an unknown type from a newer schema is returned for the caller
/// to ignore). For aligned reads keep the frame at an 8-byte aligned address
/// (any heap allocation is).
const wire::Frame* verify_frame(std::span<const std::uint8_t> frame, const VerifyLimits& limits,
                                std::string& why);

}  // namespace im::protocol
