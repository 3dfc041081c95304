#pragma once
// parse_args: runs im-server's command-line parsing on `args` as the unit tests
// of settings need it. Tests about other settings run --auth none unless they
// name an --auth setting themselves (the default, token, needs keys).

#include <algorithm>
#include <string>
#include <vector>

#include "server/app/config.hpp"

namespace im::test {

inline server::ParseResult parse_args(std::vector<std::string> args, server::Config& c) {
  const bool names_auth = std::any_of(args.begin(), args.end(), [](const std::string& a) {
    return a.rfind("--auth", 0) == 0;
  });
  if (!names_auth) args.insert(args.end(), {"--auth", "none"});
  args.insert(args.begin(), "im-server");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return server::parse_config(static_cast<int>(argv.size()), argv.data(), c);
}

}  // namespace im::test
