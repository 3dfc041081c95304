#pragma once
// A receiver name that ShardedWriter routes to a chosen lane, for tests that
// need inboxes in particular lanes.

#include <catch2/catch.hpp>

#include <cstddef>
#include <string>

#include "server/storage/sharded_writer.hpp"

namespace im::test {

/// `base` + "-N" for the first N whose writer_lane is `lane` of `lanes`.
inline std::string receiver_in_lane(const std::string& base, std::size_t lane, std::size_t lanes) {
  for (int i = 0; i < 10000; ++i) {
    std::string r = base + "-" + std::to_string(i);
    if (server::writer_lane(r, lanes) == lane) return r;
  }
  FAIL("no receiver name for lane " << lane << " of " << lanes);
  return {};
}

}  // namespace im::test
