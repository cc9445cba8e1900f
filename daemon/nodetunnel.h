#pragma once

// The head node -> compute node hop: `ssh -tt -L LOCAL:127.0.0.1:REMOTE node 'exec sleep …'`
// (or `ssh -N -L …` with [ssh] interactive = false), a long-lived process. An interface so the
// lifecycle's unit tests can fake it (open, die, rebuild).

#include "config.h"

#include <QString>
#include <QStringList>

#include <functional>
#include <memory>

namespace slullama {

class NodeTunnel
{
public:
    // Why the tunnel ended: ssh's exit status and its last stderr lines.
    using ExitCallback = std::function<void(const QString &reason)>;

    virtual ~NodeTunnel() = default;

    // Starts forwarding a free loopback port to 127.0.0.1:remotePort on `node`. Returns the local
    // port, or 0 with `*error` set when it could not start at all. `onExit` is called (from the
    // event loop) if the process ends by itself, never after close().
    virtual quint16 open(const QString &node, quint16 remotePort, ExitCallback onExit,
                         QString *error)
        = 0;
    // Stops the process (if any). Safe to call repeatedly.
    virtual void close() = 0;
    virtual bool isOpen() const = 0;
    virtual quint16 localPort() const = 0;
    // With [ssh] forward_socket the local end is this Unix socket path (open() and localPort()
    // then give the remote port, only as a non-zero "open" mark and for the Host header); empty
    // for a TCP local end.
    virtual QString localSocket() const { return {}; }
};

// What a health probe connects to for `tunnel`: its socket path, else 127.0.0.1.
inline QString tunnelProbeHost(const NodeTunnel &tunnel)
{
    const QString socket = tunnel.localSocket();
    return socket.isEmpty() ? QStringLiteral("127.0.0.1") : socket;
}

// The real one: OpenSSH through QProcess, options from [ssh].
std::unique_ptr<NodeTunnel> makeSshNodeTunnel(const SshConfig &ssh);

// The ssh argument list for one tunnel (pure, for tests and logs).
QStringList sshTunnelArguments(const SshConfig &ssh, const QString &node, quint16 localPort,
                               quint16 remotePort);

// The same with the local end a Unix socket: `ssh -L PATH:127.0.0.1:REMOTE` (a stale socket
// file at PATH is replaced: StreamLocalBindUnlink).
QStringList sshTunnelArguments(const SshConfig &ssh, const QString &node,
                               const QString &localSocket, quint16 remotePort);

// A new private (0700) directory for the tunnel socket: under $XDG_RUNTIME_DIR when that is a
// writable directory, else under /tmp (never log_dir, which may be on NFS).
QString tunnelSocketParent();

// A free TCP port on 127.0.0.1 (bind to port 0, read it, close), or 0.
quint16 pickFreeLoopbackPort();

} // namespace slullama
