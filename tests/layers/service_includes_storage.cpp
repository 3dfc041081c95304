// Must not compile: the service layer reaches into storage (tests/deploy/layers_check.sh).
#include "server/storage/schema.hpp"
