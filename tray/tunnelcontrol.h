#pragma once

// What the tray needs from the laptop -> head node tunnel. The real one wraps SshTunnel
// (sshtunnelcontrol.h); tests drive a fake, so the controller is testable without sshd.

#include "config.h"

#include <QObject>
#include <QString>

namespace slullama {

class TunnelControl : public QObject
{
    Q_OBJECT
public:
    enum class State { Disconnected, Connecting, Authenticating, Connected, Reconnecting, Failed };
    Q_ENUM(State)

    // The kind of the last failure, so the tray can tell an auth failure (a notification and
    // a hint to fix credentials) from a busy port or a network loss.
    enum class ErrorKind { None, Auth, HostKey, PortInUse, Network, Other };
    Q_ENUM(ErrorKind)

    using QObject::QObject;
    ~TunnelControl() override = default;

    // Takes effect at the next open().
    virtual void setClientConfig(const ClientConfig &config) = 0;
    virtual void open() = 0;
    virtual void close() = 0;
    virtual State state() const = 0;
    virtual QString errorString() const = 0;
    virtual ErrorKind errorKind() const = 0;

signals:
    void stateChanged(slullama::TunnelControl::State state);
    void errorOccurred(slullama::TunnelControl::ErrorKind kind, const QString &message);
};

QString tunnelStateName(TunnelControl::State state);

} // namespace slullama
