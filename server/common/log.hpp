#pragma once
// Logging: one spdlog logger per component, created once and cached, so a log
// line costs no registry lookup (spdlog::get locks a mutex and looks up a
// string); and SessionTag, the prefix of every line about one connection.
//
//   logs::net().warn("{} bad frame: {}; closing", SessionTag{id}, why);
//   -> 2026-12-03T14:02:11.042 warn  [net] [s42] bad frame: ...; closing
//
// Thread-safety: the loggers are made on first use (a function-local static);
// spdlog loggers are thread-safe. set_level() may be called from any thread.

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <spdlog/logger.h>

namespace im::server::logs {

enum class Component : std::uint8_t { app, net, svc, auth, pg, redis };
inline constexpr std::size_t kComponents = 6;

/// The component's name in log lines ("net").
std::string_view name(Component c);
/// The component's logger: to stderr, "%Y-%m-%dT%H:%M:%S.%e level [name] message".
spdlog::logger& get(Component c);

inline spdlog::logger& app() { return get(Component::app); }      // start, stop, signals
inline spdlog::logger& net() { return get(Component::net); }      // accept, sessions, deadlines
inline spdlog::logger& svc() { return get(Component::svc); }      // requests
inline spdlog::logger& auth() { return get(Component::auth); }    // Hello, Register, Login
inline spdlog::logger& pg() { return get(Component::pg); }        // PostgreSQL
inline spdlog::logger& redis() { return get(Component::redis); }  // seqs, the commit bus

/// Sets every component's level: "trace", "debug", "info", "warn", "error",
/// "critical" or "off".
void set_level(std::string_view level);

}  // namespace im::server::logs

namespace im::server {

/// Writes "[s<id>]": the prefix that ties log lines to one connection.
struct SessionTag {
  std::uint64_t id = 0;
};

}  // namespace im::server

template <>
struct fmt::formatter<im::server::SessionTag> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const im::server::SessionTag& tag, FormatContext& ctx) const {
    return fmt::format_to(ctx.out(), "[s{}]", tag.id);
  }
};
