#include "server/storage/fault_points.hpp"

#ifdef IM_FAULT_INJECTION

#include <csignal>
#include <cstdlib>
#include <mutex>
#include <random>
#include <sstream>
#include <string>

#include "server/common/log.hpp"

namespace im::server::fault {
namespace {

constexpr const char* kNames[] = {"crash_after_seq_alloc", "crash_after_insert", "crash_after_commit",
                                  "ack_before_commit", "skip_idempotency"};
constexpr int kCount = 5;

struct Config {
  double probability[kCount] = {};
  std::string text;
};

const Config& config() {
  static const Config c = [] {
    Config out;
    const char* env = std::getenv("IM_FAULTS");
    if (!env) return out;
    out.text = env;
    std::stringstream ss(env);
    for (std::string item; std::getline(ss, item, ',');) {
      const auto colon = item.find(':');
      const std::string name = item.substr(0, colon);
      const double p = colon == std::string::npos ? 1.0 : std::stod(item.substr(colon + 1));
      bool known = false;
      for (int i = 0; i < kCount; ++i) {
        if (name == kNames[i]) {
          out.probability[i] = p;
          known = true;
        }
      }
      if (!known) {
        std::fprintf(stderr, "IM_FAULTS: unknown fault point '%s'\n", name.c_str());
        std::exit(2);
      }
    }
    return out;
  }();
  return c;
}

}  // namespace

bool fires(Point point) {
  const double p = config().probability[static_cast<int>(point)];
  if (p <= 0) return false;
  if (p >= 1) return true;
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  return std::uniform_real_distribution<double>(0, 1)(rng) < p;
}

bool enabled(Point point) { return config().probability[static_cast<int>(point)] > 0; }

void maybe_crash(Point point) {
  if (!fires(point)) return;
  logs::pg().critical("fault point {}: SIGKILL", kNames[static_cast<int>(point)]);
  logs::pg().flush();
  std::raise(SIGKILL);
}

const char* describe() { return config().text.c_str(); }

}  // namespace im::server::fault

#endif
