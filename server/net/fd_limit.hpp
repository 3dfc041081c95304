#pragma once
// The process's open-file limit (RLIMIT_NOFILE), which caps how many
// connections can exist at once: every connection is one descriptor.

#include <cstdint>

namespace im::server {

struct FdLimit {
  std::uint64_t soft = 0;  // what accept() runs into (EMFILE)
  std::uint64_t hard = 0;  // how far an unprivileged process may raise `soft`
  bool raised = false;     // raise_fd_limit() changed `soft`
};

/// Raises the soft open-file limit to the hard limit (or, with an unlimited
/// hard limit, to the kernel's nr_open) and returns the limits in force
/// afterwards. Call once at start-up, from any thread. Never throws; if the
/// kernel refuses, the limit is left as it was.
FdLimit raise_fd_limit();

}  // namespace im::server
