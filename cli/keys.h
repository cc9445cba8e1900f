#pragma once

#include "cliopts.h"
#include "config.h"

namespace slullama {

// `slullama keys add NAME [--admin] | revoke NAME | list`. Returns the exit code: 0, 1 when the
// keys file cannot be read or written or the name is refused.
int runKeysCommand(const cli::Invocation &invocation, const Config &config);

} // namespace slullama
