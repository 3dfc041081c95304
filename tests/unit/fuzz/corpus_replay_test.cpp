// Unit: replays the committed fuzz corpus (seeds and every crash ever found)
// through the fuzz harness, so regressions are caught by every build, with or
// without libFuzzer.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/fuzz/frame_codec_harness.hpp"

TEST_CASE("frame codec corpus replays without crashing, and seeds verify", "[unit][fuzz]") {
  const std::filesystem::path dir = std::filesystem::path(IM_FUZZ_CORPUS_DIR) / "frame_codec";
  std::size_t files = 0, verified = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                          std::istreambuf_iterator<char>());
    const std::size_t n = im::fuzz::frame_codec_one_input(bytes.data(), bytes.size());
    if (entry.path().filename().string().rfind("seed-", 0) == 0) {
      INFO(entry.path());
      CHECK(n >= 1);  // a seed is a valid frame stream: the harness must accept it
    }
    verified += n;
    ++files;
  }
  CHECK(files >= 10);
  CHECK(verified >= 10);
}
