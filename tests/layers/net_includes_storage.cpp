// Must not compile: the network layer reaches into storage (tests/deploy/layers_check.sh).
#include "server/storage/redis_seq.hpp"
