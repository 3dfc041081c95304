// libFuzzer entry point for the frame codec (built with IM_FUZZ=ON and clang).
#include "tests/fuzz/frame_codec_harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  im::fuzz::frame_codec_one_input(data, size);
  return 0;
}
