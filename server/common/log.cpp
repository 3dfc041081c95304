#include "server/common/log.hpp"

#include <array>
#include <memory>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace im::server::logs {
namespace {

constexpr std::array<std::string_view, kComponents> kNames{"app", "net", "svc", "auth", "pg", "redis"};

struct Loggers {
  std::array<std::shared_ptr<spdlog::logger>, kComponents> all;

  Loggers() {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    for (std::size_t i = 0; i < kComponents; ++i) {
      auto logger = std::make_shared<spdlog::logger>(std::string(kNames[i]), sink);
      logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
      all[i] = logger;
    }
  }
};

Loggers& loggers() {
  static Loggers instance;
  return instance;
}

}  // namespace

std::string_view name(Component c) { return kNames[static_cast<std::size_t>(c)]; }

spdlog::logger& get(Component c) { return *loggers().all[static_cast<std::size_t>(c)]; }

void set_level(std::string_view level) {
  const auto lvl = spdlog::level::from_str(std::string(level));
  for (auto& logger : loggers().all) logger->set_level(lvl);
}

}  // namespace im::server::logs
