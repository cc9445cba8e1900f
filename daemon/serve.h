#pragma once

#include "config.h"

namespace slullama {

// Runs the head-node daemon until SIGTERM/SIGINT: listens on server.bind:server.port and drives
// the job lifecycle. Needs a QCoreApplication; returns the process exit code. Shared by
// `slullama-daemon` and `slullama serve`.
int runServe(const Config &config);

} // namespace slullama
