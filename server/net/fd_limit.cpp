#include "server/net/fd_limit.hpp"

#include <sys/resource.h>

#include <fstream>

namespace im::server {

FdLimit raise_fd_limit() {
  FdLimit out;
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return out;
  out.soft = lim.rlim_cur;
  out.hard = lim.rlim_max;
  rlim_t target = lim.rlim_max;
  if (target == RLIM_INFINITY) {
    // RLIMIT_NOFILE may not exceed fs.nr_open even when the hard limit says unlimited.
    std::uint64_t nr_open = 1u << 20;
    std::ifstream("/proc/sys/fs/nr_open") >> nr_open;
    target = static_cast<rlim_t>(nr_open);
  }
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < target) {
    rlimit raised = lim;
    raised.rlim_cur = target;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      out.soft = target;
      out.raised = true;
    }
  }
  return out;
}

}  // namespace im::server
