// Must compile: the service layer includes itself and what it links (the control
// of tests/deploy/layers_check.sh: the probes fail for their include alone).
#include "auth/token.hpp"
#include "protocol/frames.hpp"
#include "server/common/log.hpp"
#include "server/service/service.hpp"
