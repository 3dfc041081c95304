// Must not compile: storage reaches into the network layer (tests/deploy/layers_check.sh).
#include "server/net/session.hpp"
