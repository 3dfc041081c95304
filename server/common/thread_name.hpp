#pragma once
// Names the calling thread as `top -H`, `perf` and debuggers show it
// ("im-io-0", "im-writer", ...). Linux keeps at most 15 characters.

#include <pthread.h>

#include <string>

namespace im::server {

inline void name_this_thread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace im::server
