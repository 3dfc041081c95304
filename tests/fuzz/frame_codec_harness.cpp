#include "tests/fuzz/frame_codec_harness.hpp"

#include <span>
#include <string>
#include <vector>

#include "protocol/frame_codec.hpp"
#include "protocol/frames.hpp"
#include "protocol/validate.hpp"

namespace im::fuzz {
namespace {

// Touches every field so that a bad offset would be caught by ASan.
std::size_t read_all(const wire::Frame& f) {
  std::size_t sum = f.request_id();
  auto str = [&](const flatbuffers::String* s) {
    if (s) {
      sum += s->size();
      sum += protocol::valid_text(s->string_view()) ? 1u : 0u;
      sum += protocol::valid_user_id(s->string_view()) ? 1u : 0u;
    }
  };
  auto messages = [&](const flatbuffers::Vector<flatbuffers::Offset<wire::Message>>* v) {
    if (!v) return;
    for (const wire::Message* m : *v) {
      const protocol::MessageRecord r = protocol::to_record(*m);
      sum += r.body.size() + r.sender.size() + static_cast<std::size_t>(r.seq);
    }
  };
  switch (f.body_type()) {
    case wire::Body::Hello: str(f.body_as_Hello()->user()); str(f.body_as_Hello()->token()); break;
    case wire::Body::Welcome: str(f.body_as_Welcome()->server_name()); break;
    case wire::Body::Send: str(f.body_as_Send()->receiver()); str(f.body_as_Send()->body()); break;
    case wire::Body::SendAck: sum += static_cast<std::size_t>(f.body_as_SendAck()->seq()); break;
    case wire::Body::Pull: sum += f.body_as_Pull()->limit(); break;
    case wire::Body::PullResult: messages(f.body_as_PullResult()->messages()); break;
    case wire::Body::History: str(f.body_as_History()->peer()); break;
    case wire::Body::HistoryResult: messages(f.body_as_HistoryResult()->messages()); break;
    case wire::Body::Ping: sum += f.body_as_Ping()->nonce(); break;
    case wire::Body::Pong: sum += f.body_as_Pong()->nonce(); break;
    case wire::Body::Error:
      str(f.body_as_Error()->message());
      sum += static_cast<unsigned char>(protocol::error_code_name(f.body_as_Error()->code())[0]);
      break;
    default: break;
  }
  return sum;
}

}  // namespace

std::size_t frame_codec_one_input(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::uint32_t rng = data[0] * 2654435761u + 1;
  const std::span<const std::uint8_t> input(data + 1, size - 1);
  std::vector<std::uint8_t> buffer;
  std::size_t offset = 0, verified = 0;
  volatile std::size_t sink = 0;
  while (offset < input.size()) {
    rng = rng * 1664525u + 1013904223u;
    const std::size_t chunk = 1 + (rng >> 24) % 64;
    const std::size_t n = std::min(chunk, input.size() - offset);
    buffer.insert(buffer.end(), input.begin() + static_cast<std::ptrdiff_t>(offset),
                  input.begin() + static_cast<std::ptrdiff_t>(offset + n));
    offset += n;
    for (;;) {
      const protocol::Decoded d = protocol::decode_frame(buffer, 1u << 16);
      if (d.status == protocol::DecodeStatus::need_more) break;
      if (d.status == protocol::DecodeStatus::error) return verified;  // the server closes here
      // Copy into its own allocation, as the server reads each frame.
      const std::vector<std::uint8_t> frame(d.frame.begin(), d.frame.end());
      std::string why;
      if (const wire::Frame* f = protocol::verify_frame(frame, protocol::VerifyLimits{}, why)) {
        sink = sink + read_all(*f);
        ++verified;
      }
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(d.consumed));
    }
  }
  return verified;
}

}  // namespace im::fuzz
