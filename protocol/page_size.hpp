#pragma once
// Page sizes: how many bytes a PullResult or HistoryResult may take, counted
// before it is encoded.
//
// A page is cut where its next message would take it past a byte cap (the
// server uses its max_frame_bytes), so that no response is larger than the
// largest frame the server accepts, and so that the server can reserve a
// page's worst case before it reads a single row (see server/service/read_gate.hpp).
// The count over-estimates the encoded size: per message, its three strings and
// kRecordOverheadBytes for the table, its vtable, padding and the vector slot;
// per page, kPageOverheadBytes for the length prefix and the enclosing tables.
// A unit test checks the bound against the encoder.

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "protocol/message.hpp"
#include "protocol/validate.hpp"

namespace im::protocol {

inline constexpr std::size_t kPageOverheadBytes = 256;
inline constexpr std::size_t kRecordOverheadBytes = 128;

/// What one message adds to a page, at most.
inline std::size_t record_page_bytes(const MessageRecord& m) {
  return kRecordOverheadBytes + m.sender.size() + m.receiver.size() + m.body.size();
}

/// The most bytes a page of up to `limit` messages, none with a body above
/// `max_body_bytes`, can take when it is cut at `max_page_bytes` (0: no cap).
inline std::size_t worst_page_bytes(std::uint32_t limit, std::size_t max_body_bytes,
                                    std::size_t max_page_bytes) {
  const std::size_t per_message = kRecordOverheadBytes + 2 * kMaxUserIdBytes + max_body_bytes;
  const std::size_t uncapped = kPageOverheadBytes + std::size_t{limit} * per_message;
  // The first message is always taken, whatever the cap.
  return max_page_bytes == 0
             ? uncapped
             : std::min(uncapped, std::max(max_page_bytes, kPageOverheadBytes + per_message));
}

/// Fills a page up to a byte cap: take(m) says whether `m` still fits (the first
/// message always does) and counts it if so.
class PageFill {
 public:
  /// `max_bytes` 0: no cap.
  explicit PageFill(std::size_t max_bytes) : max_bytes_(max_bytes) {}
  bool take(const MessageRecord& m) {
    const std::size_t next = bytes_ + record_page_bytes(m);
    if (max_bytes_ != 0 && taken_ > 0 && next > max_bytes_) return false;
    bytes_ = next;
    ++taken_;
    return true;
  }
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t max_bytes_;
  std::size_t bytes_ = kPageOverheadBytes;
  std::size_t taken_ = 0;
};

}  // namespace im::protocol
