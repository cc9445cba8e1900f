#pragma once

#include <QLoggingCategory>

// One category per area; `-v` enables debug output for all of them, QT_LOGGING_RULES for some.
// Never log a token: log whether one is set.
Q_DECLARE_LOGGING_CATEGORY(lcConfig)   // slullama.config
Q_DECLARE_LOGGING_CATEGORY(lcProxy)    // slullama.proxy
Q_DECLARE_LOGGING_CATEGORY(lcHttp)     // slullama.http
Q_DECLARE_LOGGING_CATEGORY(lcSlurm)    // slullama.slurm
Q_DECLARE_LOGGING_CATEGORY(lcLifecycle)// slullama.lifecycle
Q_DECLARE_LOGGING_CATEGORY(lcNodeTunnel) // slullama.nodetunnel
Q_DECLARE_LOGGING_CATEGORY(lcTunnel)   // slullama.tunnel (laptop libssh tunnel)
Q_DECLARE_LOGGING_CATEGORY(lcClient)   // slullama.client
Q_DECLARE_LOGGING_CATEGORY(lcTray)     // slullama.tray

namespace slullama {
// Installs a message pattern with time and category, and turns debug output on for `verbose`.
void setupLogging(bool verbose);
} // namespace slullama
