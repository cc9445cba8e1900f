#pragma once

// TunnelControl over the real libssh tunnel (common/sshtunnel.h).

#include "sshtunnel.h"
#include "tunnelcontrol.h"

namespace slullama {

class SshPrompter;

class SshTunnelControl final : public TunnelControl
{
    Q_OBJECT
public:
    // `prompter` is not owned and must outlive this object (null: every question is "no").
    explicit SshTunnelControl(SshPrompter *prompter, QObject *parent = nullptr);
    ~SshTunnelControl() override;

    void setClientConfig(const ClientConfig &config) override;
    void open() override;
    void close() override;
    State state() const override;
    QString errorString() const override;
    ErrorKind errorKind() const override { return m_kind; }

    SshTunnel *tunnel() { return &m_tunnel; }

    // SshTunnel reports errors as text only; this sorts them for the tray's notifications.
    static ErrorKind classify(const QString &message, bool fatal);

private:
    void onState(SshTunnel::State state);
    void onError(const QString &message);
    void flushError(bool fatal);

    SshTunnel m_tunnel;
    SshTunnelSettings m_settings;
    ErrorKind m_kind = ErrorKind::None;
    // SshTunnel signals an error just before the state it leads to; whether it was fatal is
    // known only then.
    QString m_pendingError;
};

} // namespace slullama
