#pragma once

// Connecting to the node tunnel's local end when it is a Unix socket (only the daemon's user can
// reach a socket in a 0700 directory; any head-node user can reach a loopback TCP port).

#include <QString>

namespace slullama {

// A connected, non-blocking AF_UNIX stream socket to `path`, or -1 with `*error` set. A Unix
// socket connect completes at once or fails, so this never blocks. A full listen backlog
// (EAGAIN: many connects at once, where TCP would queue them) sets `*busy`: try again shortly; the
// caller hands the descriptor to a QTcpSocket with setSocketDescriptor(fd, ConnectedState), as
// QLocalSocket does on Unix.
int connectUnixSocket(const QString &path, QString *error, bool *busy = nullptr);

} // namespace slullama
