#pragma once
// Where the integration and e2e tiers find their throwaway services.
//
// scripts/lib/services.sh writes KEY=VALUE lines to a file; CTest passes its
// path in IM_TEST_ENV_FILE. A test that needs a service and cannot find it
// fails (it never skips).

#include <string>

namespace im::test {

/// Value of KEY from the services env file (or the process environment, which
/// wins). Throws std::runtime_error naming the key when it is missing.
std::string service_env(const std::string& key);

inline std::string pg_url() { return service_env("IM_TEST_PG_URL"); }
inline std::string redis_url() { return service_env("IM_TEST_REDIS_URL"); }

/// A short random id prefix, so tests sharing one database never collide.
std::string unique_prefix(const std::string& base);

}  // namespace im::test
