#include "sshtunnelcontrol.h"

#include "logging.h"

#include <QTimer>

#include <utility>

namespace slullama {

namespace {

TunnelControl::State toState(SshTunnel::State state)
{
    switch (state) {
    case SshTunnel::State::Disconnected:
        return TunnelControl::State::Disconnected;
    case SshTunnel::State::Connecting:
        return TunnelControl::State::Connecting;
    case SshTunnel::State::Authenticating:
        return TunnelControl::State::Authenticating;
    case SshTunnel::State::Connected:
        return TunnelControl::State::Connected;
    case SshTunnel::State::Reconnecting:
        return TunnelControl::State::Reconnecting;
    case SshTunnel::State::Failed:
        return TunnelControl::State::Failed;
    }
    return TunnelControl::State::Failed;
}

} // namespace

SshTunnelControl::SshTunnelControl(SshPrompter *prompter, QObject *parent)
    : TunnelControl(parent)
{
    m_tunnel.setPrompter(prompter);
    connect(&m_tunnel, &SshTunnel::stateChanged, this, &SshTunnelControl::onState);
    connect(&m_tunnel, &SshTunnel::errorOccurred, this, &SshTunnelControl::onError);
}

SshTunnelControl::~SshTunnelControl()
{
    m_tunnel.setPrompter(nullptr);
}

void SshTunnelControl::setClientConfig(const ClientConfig &config)
{
    m_settings = SshTunnelSettings::fromConfig(config);
}

void SshTunnelControl::open()
{
    m_kind = ErrorKind::None;
    m_tunnel.start(m_settings);
}

void SshTunnelControl::close()
{
    m_tunnel.stop();
}

TunnelControl::State SshTunnelControl::state() const
{
    return toState(m_tunnel.state());
}

QString SshTunnelControl::errorString() const
{
    return m_tunnel.errorString();
}

TunnelControl::ErrorKind SshTunnelControl::classify(const QString &message, bool fatal)
{
    // Transient failures are retried by the tunnel, whatever their wording.
    if (!fatal)
        return ErrorKind::Network;
    const QString m = message.toLower();
    if (m.contains(QLatin1String("host key")))
        return ErrorKind::HostKey;
    if (m.contains(QLatin1String("authentic")) || m.contains(QLatin1String("permission denied"))
        || m.contains(QLatin1String("passphrase")) || m.contains(QLatin1String("password")))
        return ErrorKind::Auth;
    if (m.contains(QLatin1String("port"))
        && (m.contains(QLatin1String("in use")) || m.contains(QLatin1String("busy"))))
        return ErrorKind::PortInUse;
    return ErrorKind::Other;
}

void SshTunnelControl::onState(SshTunnel::State state)
{
    flushError(state == SshTunnel::State::Failed);
    emit stateChanged(toState(state));
}

void SshTunnelControl::onError(const QString &message)
{
    flushError(false);
    m_pendingError = message;
    // An error with no state change after it (e.g. one channel failed) is not fatal.
    QTimer::singleShot(0, this, [this] { flushError(false); });
}

void SshTunnelControl::flushError(bool fatal)
{
    if (m_pendingError.isEmpty())
        return;
    const QString message = std::exchange(m_pendingError, QString());
    m_kind = classify(message, fatal);
    emit errorOccurred(m_kind, message);
}

} // namespace slullama
