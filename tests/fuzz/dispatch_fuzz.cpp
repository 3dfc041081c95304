// libFuzzer entry point for the request dispatch (built with IM_FUZZ=ON and clang).
#include "tests/fuzz/dispatch_harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  im::fuzz::dispatch_one_input(data, size);
  return 0;
}
