#pragma once

#include "config.h"

namespace slullama {

// `slullama connect`: opens the laptop -> head node tunnel in the foreground until Ctrl+C.
// Implemented in cli/connect.cpp (tunnel owner). Returns the exit code.
int runConnect(const Config &config);

} // namespace slullama
