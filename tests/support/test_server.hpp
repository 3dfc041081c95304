#pragma once
// TestServer: a whole im-server in-process on 127.0.0.1 port 0, over the
// throwaway PostgreSQL and Redis of the services fixture. Header-only so that
// only executables linking im_server_core include it.

#include <functional>
#include <memory>

#include "server/app/config.hpp"
#include "server/app/server.hpp"
#include "tests/support/test_env.hpp"

namespace im::test {

inline server::Config test_config() {
  server::Config c;
  c.listen = "127.0.0.1:0";
  c.pg_url = pg_url();
  c.redis_url = redis_url();
  c.threads = 2;
  c.pg_pool = 2;
  c.log_level = getenv("IM_TEST_LOG_LEVEL") ? getenv("IM_TEST_LOG_LEVEL") : "warn";
  // Tests about other things speak as any user; tests/e2e/auth_test.cpp runs
  // servers that check tokens.
  c.auth = "none";
  return c;
}

class TestServer {
 public:
  explicit TestServer(const std::function<void(server::Config&)>& tweak = {}) {
    server::Config c = test_config();
    if (tweak) tweak(c);
    server_ = std::make_unique<server::Server>(c);
    server_->start();
  }
  std::uint16_t port() const { return server_->port(); }
  server::Server& get() { return *server_; }
  void stop() { server_->stop(); }

 private:
  std::unique_ptr<server::Server> server_;
};

}  // namespace im::test
