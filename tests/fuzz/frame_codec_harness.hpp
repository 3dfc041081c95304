#pragma once
// The frame codec fuzz harness, shared by the libFuzzer target (clang,
// IM_FUZZ=ON) and the corpus replay unit test (any compiler).
//
// Input layout: the first byte picks a chunk-size seed; the rest is a byte
// stream fed to the decoder in pseudo-random chunks, as a socket would. Every
// complete frame is verified, and every field of a verified frame is read.

#include <cstddef>
#include <cstdint>

namespace im::fuzz {

/// Never crashes, leaks or reads out of bounds for any input (that is the
/// property the fuzzer checks). Returns the number of frames that verified.
std::size_t frame_codec_one_input(const std::uint8_t* data, std::size_t size);

}  // namespace im::fuzz
