// Unit: replays the committed fuzz corpora (seeds and every crash ever found)
// through the fuzz harnesses, so regressions are caught by every build, with or
// without libFuzzer.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/fuzz/dispatch_harness.hpp"
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

TEST_CASE("dispatch corpus replays with every invariant holding", "[unit][fuzz]") {
  // A broken invariant aborts the process (that is how libFuzzer sees it), so
  // this test fails by crashing, with the reason on stderr.
  const std::filesystem::path dir = std::filesystem::path(IM_FUZZ_CORPUS_DIR) / "dispatch";
  std::size_t ok_seeds = 0, bad_seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                          std::istreambuf_iterator<char>());
    const im::fuzz::DispatchStats s = im::fuzz::dispatch_one_input(bytes.data(), bytes.size());
    const std::string name = entry.path().filename().string();
    INFO(name << ": " << s.requests << " requests, " << s.responses << " responses, " << s.errors
              << " errors, " << s.failures << " failed connections");
    if (name.rfind("seed-ok-", 0) == 0) {
      // A valid session: every request answered, none refused.
      CHECK(s.requests >= 1);
      CHECK(s.responses == s.requests);
      CHECK(s.errors == 0);
      CHECK(s.failures == 0);
      ++ok_seeds;
    } else if (name.rfind("seed-bad-", 0) == 0) {
      CHECK(s.errors + s.failures >= 1);
      ++bad_seeds;
    }
  }
  CHECK(ok_seeds >= 10);
  CHECK(bad_seeds >= 10);
}
