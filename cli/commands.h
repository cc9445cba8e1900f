#pragma once

#include "config.h"

#include <QString>

#include <functional>

namespace slullama {

class ApiClient;

// `slullama connect`: opens the laptop -> head node tunnel in the foreground until Ctrl+C.
// Once it is open, one GET /slullama/status through it checks the [client] token (--token) and
// prints whether it was accepted and the daemon's phase. Implemented in cli/connect.cpp (tunnel
// owner). Returns the exit code.
int runConnect(const Config &config);

// `slullama status|wake HOST` from a laptop: opens the same tunnel to HOST ([client] settings,
// an ephemeral loopback port), sends the one request with the [client] token, prints the status
// JSON and closes the tunnel. Returns the exit code (0, 1 on any failure, 130 on Ctrl+C).
int runRemoteApiCommand(const Config &config, const QString &host, bool wake,
                        double keepAwakeMinutes = 0);

// The status or wake request of `slullama status|wake` and its output: the JSON on stdout, or
// "slullama <command>: <message><context>" on stderr; then done(exit code).
void sendApiRequest(ApiClient &client, bool wake, const std::function<void(int)> &done,
                    const QString &context = {}, double keepAwakeMinutes = 0);

} // namespace slullama
