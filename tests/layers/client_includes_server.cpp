// Must not compile: the client library reaches into the server (tests/deploy/layers_check.sh).
#include "server/service/store.hpp"
