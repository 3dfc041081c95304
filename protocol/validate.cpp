#include "protocol/validate.hpp"

#include <cstdint>

namespace im::protocol {

bool valid_user_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxUserIdBytes) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const std::uint8_t c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    std::size_t extra;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07u;
    } else {
      return false;  // continuation byte or 0xF8.. lead byte
    }
    if (static_cast<std::size_t>(end - p) <= extra) return false;
    for (std::size_t i = 1; i <= extra; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    static constexpr std::uint32_t kMinForLength[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[extra]) return false;             // overlong
    if (cp > 0x10FFFF) return false;                         // beyond Unicode
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;          // UTF-16 surrogate
    p += extra + 1;
  }
  return true;
}

bool valid_text(std::string_view text) {
  return text.find('\0') == std::string_view::npos && valid_utf8(text);
}

}  // namespace im::protocol
