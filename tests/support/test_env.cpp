#include "tests/support/test_env.hpp"

#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>

namespace im::test {

std::string service_env(const std::string& key) {
  if (const char* v = std::getenv(key.c_str()); v && *v) return v;
  const char* file = std::getenv("IM_TEST_ENV_FILE");
  if (!file || !*file) {
    throw std::runtime_error("IM_TEST_ENV_FILE is not set: run this test through ctest "
                             "(the services fixture starts PostgreSQL and Redis)");
  }
  std::ifstream in(file);
  if (!in) throw std::runtime_error(std::string("cannot read services env file ") + file);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos && line.compare(0, eq, key) == 0 && eq == key.size()) {
      return line.substr(eq + 1);
    }
  }
  throw std::runtime_error("services env file " + std::string(file) + " has no " + key);
}

std::string unique_prefix(const std::string& base) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string out = base + "-";
  for (int i = 0; i < 8; ++i) out += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return out;
}

}  // namespace im::test
