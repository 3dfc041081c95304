// im-server: parses the configuration, runs the Server until SIGINT/SIGTERM.
#include <csignal>
#include <fstream>
#include <iostream>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include "server/app/config.hpp"
#include "server/app/server.hpp"
#include "server/common/log.hpp"

int main(int argc, char** argv) {
  im::server::Config config;
  const auto parsed = im::server::parse_config(argc, argv, config);
  if (parsed.action == im::server::ParseResult::Action::exit) return parsed.exit_code;
  if (config.check_config) {
    std::cout << "configuration ok: " << im::server::describe(config) << "\n";
    return 0;
  }
  try {
    // Block the signals before any thread starts so only signal_set sees them.
    asio::io_context signals_io(1);
    asio::signal_set signals(signals_io, SIGINT, SIGTERM);
    im::server::Server server(config);
    server.start();
    if (!config.port_file.empty()) {
      std::ofstream(config.port_file) << server.port() << "\n";
    }
    signals.async_wait([](const std::error_code&, int signo) {
      im::server::logs::app().info("received signal {}", signo);
    });
    signals_io.run();
    server.stop();
    return 0;
  } catch (const std::exception& e) {
    im::server::logs::app().error("{}", e.what());
    std::cerr << "im-server: fatal: " << e.what() << "\n";
    return 1;
  }
}
