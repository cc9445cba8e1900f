#pragma once

// Saves the tray's settings into the [client] section of the config.toml the CLI reads. A
// text-level edit, so the user's other sections, comments and key order survive: only the
// values of host, server_port, token and local_port change (added when missing), nothing else.
// Not handled: a [client] table written as dotted keys (client.host = ...) or as an inline table.

#include "config.h"
#include "result.h"

#include <QString>

namespace slullama {

// Pure: `original` with the [client] values replaced or added (a [client] section is appended
// when there is none).
QString withClientSection(const QString &original, const ClientConfig &client);

// Reads `path` (missing = empty), applies withClientSection() and writes it back atomically.
// A new file is created readable by the owner only, as it holds the token; an existing one that
// others may read is made owner-only when a token is saved into it.
Result<Ok> writeClientSection(const QString &path, const ClientConfig &client);

} // namespace slullama
