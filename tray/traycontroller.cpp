#include "traycontroller.h"

#include "logging.h"
#include "statussource.h"

#include <QElapsedTimer>
#include <QUrl>

namespace slullama {

namespace {

qint64 monotonicMs()
{
    static QElapsedTimer timer = [] {
        QElapsedTimer t;
        t.start();
        return t;
    }();
    return timer.elapsed();
}

bool isBooting(Phase phase)
{
    return phase == Phase::Submitting || phase == Phase::Queued || phase == Phase::Starting;
}

bool isAuthStatus(int httpStatus)
{
    return httpStatus == 401 || httpStatus == 403;
}

QString authMessage(int httpStatus)
{
    return QStringLiteral("The daemon refused the token (HTTP %1). Check the token in Settings.")
        .arg(httpStatus);
}

} // namespace

QString tunnelStateName(TunnelControl::State state)
{
    switch (state) {
    case TunnelControl::State::Disconnected:
        return QStringLiteral("disconnected");
    case TunnelControl::State::Connecting:
        return QStringLiteral("connecting");
    case TunnelControl::State::Authenticating:
        return QStringLiteral("authenticating");
    case TunnelControl::State::Connected:
        return QStringLiteral("connected");
    case TunnelControl::State::Reconnecting:
        return QStringLiteral("reconnecting");
    case TunnelControl::State::Failed:
        return QStringLiteral("failed");
    }
    return {};
}

QString trayPhaseName(TrayPhase phase)
{
    switch (phase) {
    case TrayPhase::Disconnected:
        return QStringLiteral("disconnected");
    case TrayPhase::Connecting:
        return QStringLiteral("connecting");
    case TrayPhase::Sleeping:
        return QStringLiteral("sleeping");
    case TrayPhase::Waking:
        return QStringLiteral("waking");
    case TrayPhase::Queued:
        return QStringLiteral("queued");
    case TrayPhase::Starting:
        return QStringLiteral("starting");
    case TrayPhase::Ready:
        return QStringLiteral("ready");
    case TrayPhase::Stopping:
        return QStringLiteral("stopping");
    case TrayPhase::Error:
        return QStringLiteral("error");
    }
    return {};
}

QString trayPhaseLabel(TrayPhase phase)
{
    switch (phase) {
    case TrayPhase::Disconnected:
        return QStringLiteral("Disconnected");
    case TrayPhase::Connecting:
        return QStringLiteral("Connecting…");
    case TrayPhase::Sleeping:
        return QStringLiteral("Sleeping");
    case TrayPhase::Waking:
        return QStringLiteral("Waking up");
    case TrayPhase::Queued:
        return QStringLiteral("Queued");
    case TrayPhase::Starting:
        return QStringLiteral("Starting");
    case TrayPhase::Ready:
        return QStringLiteral("Ready");
    case TrayPhase::Stopping:
        return QStringLiteral("Going to sleep");
    case TrayPhase::Error:
        return QStringLiteral("Error");
    }
    return {};
}

QString trayIconName(TrayPhase phase)
{
    switch (phase) {
    case TrayPhase::Disconnected:
    case TrayPhase::Connecting:
        return QStringLiteral("disconnected");
    case TrayPhase::Sleeping:
    case TrayPhase::Stopping:
        return QStringLiteral("sleeping");
    case TrayPhase::Waking:
    case TrayPhase::Queued:
        return QStringLiteral("waking");
    case TrayPhase::Starting:
        return QStringLiteral("starting");
    case TrayPhase::Ready:
        return QStringLiteral("ready");
    case TrayPhase::Error:
        return QStringLiteral("error");
    }
    return {};
}

QString formatDuration(qint64 seconds)
{
    if (seconds < 0)
        return {};
    const qint64 h = seconds / 3600;
    const qint64 m = (seconds % 3600) / 60;
    const qint64 s = seconds % 60;
    if (h > 0)
        return QStringLiteral("%1 h %2 min").arg(h).arg(m, 2, 10, QLatin1Char('0'));
    if (m > 0)
        return QStringLiteral("%1 min %2 s").arg(m).arg(s, 2, 10, QLatin1Char('0'));
    return QStringLiteral("%1 s").arg(s);
}

TrayController::TrayController(TunnelControl *tunnel, StatusSource *source, QObject *parent)
    : QObject(parent), m_tunnel(tunnel), m_source(source), m_clock(&monotonicMs)
{
    m_pollTimer.setSingleShot(true);
    connect(&m_pollTimer, &QTimer::timeout, this, &TrayController::pollNow);
    m_ticker.setInterval(1000);
    connect(&m_ticker, &QTimer::timeout, this, &TrayController::changed);

    m_lastTunnelState = m_tunnel->state();
    connect(m_tunnel, &TunnelControl::stateChanged, this, &TrayController::onTunnelState);
    connect(m_tunnel, &TunnelControl::errorOccurred, this, &TrayController::onTunnelError);
    connect(m_source, &StatusSource::statusReceived, this, &TrayController::onStatus);
    connect(m_source, &StatusSource::statusFailed, this, &TrayController::onStatusFailed);
    connect(m_source, &StatusSource::wakeAccepted, this, &TrayController::onWakeAccepted);
    connect(m_source, &StatusSource::wakeFailed, this, &TrayController::onWakeFailed);
}

TrayController::~TrayController() = default;

void TrayController::setClock(Clock clock)
{
    m_clock = clock ? std::move(clock) : Clock(&monotonicMs);
}

void TrayController::setClientConfig(const ClientConfig &config)
{
    const bool tunnelChanged = config.host != m_config.host
        || config.serverPort != m_config.serverPort || config.localPort != m_config.localPort
        || config.sshPort != m_config.sshPort || config.identityFile != m_config.identityFile
        || config.knownHosts != m_config.knownHosts;
    m_config = config;

    QUrl base;
    base.setScheme(QStringLiteral("http"));
    base.setHost(QStringLiteral("127.0.0.1"));
    base.setPort(m_config.localPort);
    m_source->setEndpoint(base, m_config.token);
    m_tunnel->setClientConfig(m_config);

    // New credentials deserve a fresh verdict and, if they fail too, a fresh notification.
    m_authNotified = false;
    if (m_httpError) {
        m_error.clear();
        m_httpError = false;
    }

    const auto state = m_tunnel->state();
    const bool up
        = state != TunnelControl::State::Disconnected && state != TunnelControl::State::Failed;
    if (tunnelChanged && (up || state == TunnelControl::State::Failed)) {
        disconnectTunnel();
        connectTunnel();
    } else if (state == TunnelControl::State::Connected) {
        pollNow();
    }
    emit changed();
}

TrayPhase TrayController::phase() const
{
    switch (m_tunnel->state()) {
    case TunnelControl::State::Failed:
        return TrayPhase::Error;
    case TunnelControl::State::Disconnected:
        return TrayPhase::Disconnected;
    case TunnelControl::State::Connecting:
    case TunnelControl::State::Authenticating:
    case TunnelControl::State::Reconnecting:
        return TrayPhase::Connecting;
    case TunnelControl::State::Connected:
        break;
    }
    if (!m_error.isEmpty())
        return TrayPhase::Error;
    if (!m_hasStatus)
        return m_wakePending ? TrayPhase::Waking : TrayPhase::Connecting;
    switch (m_status.phase) {
    case Phase::Sleeping:
        return m_wakePending ? TrayPhase::Waking : TrayPhase::Sleeping;
    case Phase::Submitting:
        return TrayPhase::Waking;
    case Phase::Queued:
        return TrayPhase::Queued;
    case Phase::Starting:
        return TrayPhase::Starting;
    case Phase::Ready:
        return TrayPhase::Ready;
    case Phase::Stopping:
        return TrayPhase::Stopping;
    }
    return TrayPhase::Sleeping;
}

QString TrayController::node() const
{
    return m_hasStatus ? m_status.job.node : QString();
}

QString TrayController::jobId() const
{
    return m_hasStatus ? m_status.job.id : QString();
}

QString TrayController::pendingReason() const
{
    return m_hasStatus && m_status.phase == Phase::Queued ? m_status.job.pendingReason : QString();
}

QString TrayController::expectedStart() const
{
    return m_hasStatus && m_status.phase == Phase::Queued ? m_status.job.expectedStart : QString();
}

QString TrayController::usageToday() const
{
    if (!m_hasStatus || !m_status.usageToday.present)
        return {};
    const UsageSummary &u = m_status.usageToday;
    return QStringLiteral("%1 request%2, %3 tokens, %4 GPU min")
        .arg(u.requests)
        .arg(u.requests == 1 ? QString() : QStringLiteral("s"))
        .arg(u.promptTokens + u.completionTokens)
        .arg(u.gpuSeconds / 60.0, 0, 'f', 1);
}

qint64 TrayController::elapsedSinceStatus() const
{
    return std::max<qint64>(0, (m_clock() - m_statusAt) / 1000);
}

qint64 TrayController::idleSeconds() const
{
    if (!m_hasStatus || m_status.idleSeconds < 0)
        return -1;
    // While requests run the daemon does not count idle time, and neither do we.
    if (m_status.activeRequests > 0)
        return m_status.idleSeconds;
    return m_status.idleSeconds + elapsedSinceStatus();
}

qint64 TrayController::secondsUntilSleep() const
{
    if (!m_hasStatus || m_status.secondsUntilSleep < 0)
        return -1;
    return std::max<qint64>(0, m_status.secondsUntilSleep - elapsedSinceStatus());
}

int TrayController::activeRequests() const
{
    return m_hasStatus ? m_status.activeRequests : 0;
}

qint64 TrayController::requestCount() const
{
    return m_hasStatus ? m_status.requestCount : 0;
}

qint64 TrayController::uptimeSeconds() const
{
    return m_hasStatus ? m_status.uptimeSeconds + elapsedSinceStatus() : -1;
}

QString TrayController::lastError() const
{
    if (!m_error.isEmpty())
        return m_error;
    if (!m_wakeError.isEmpty())
        return m_wakeError;
    if (m_tunnel->state() != TunnelControl::State::Connected && !m_tunnel->errorString().isEmpty())
        return m_tunnel->errorString();
    return m_hasStatus ? m_status.lastError : QString();
}

TunnelControl::State TrayController::tunnelState() const
{
    return m_tunnel->state();
}

bool TrayController::isTunnelUp() const
{
    return m_tunnel->state() == TunnelControl::State::Connected;
}

QString TrayController::endpointUrl() const
{
    return QStringLiteral("http://localhost:%1").arg(m_config.localPort);
}

QString TrayController::toolTip() const
{
    const TrayPhase p = phase();
    QString label = trayPhaseLabel(p);
    if (p == TrayPhase::Queued && !pendingReason().isEmpty())
        label += QStringLiteral(" (") + pendingReason() + QLatin1Char(')');
    QStringList lines {QStringLiteral("slullama: ") + label};

    if (!isConfigured()) {
        lines << QStringLiteral("No head node configured");
        return lines.join(QLatin1Char('\n'));
    }
    if (p == TrayPhase::Disconnected || p == TrayPhase::Connecting) {
        lines << QStringLiteral("Head node: ") + m_config.host;
    }
    if (!expectedStart().isEmpty())
        lines << QStringLiteral("Expected start: ") + expectedStart();
    if (!node().isEmpty())
        lines << QStringLiteral("Node: ") + node();
    QStringList times;
    if (idleSeconds() >= 0 && (p == TrayPhase::Ready || p == TrayPhase::Stopping))
        times << QStringLiteral("idle ") + formatDuration(idleSeconds());
    if (secondsUntilSleep() >= 0)
        times << QStringLiteral("sleeps in ") + formatDuration(secondsUntilSleep());
    if (activeRequests() > 0)
        times << QStringLiteral("%1 active").arg(activeRequests());
    if (!times.isEmpty()) {
        times[0][0] = times[0][0].toUpper();
        lines << times.join(QStringLiteral(", "));
    }
    if (!awakeUntil().isEmpty())
        lines << QStringLiteral("Awake until ") + awakeUntil();
    if (!usageToday().isEmpty())
        lines << QStringLiteral("Today: ") + usageToday();
    if (p == TrayPhase::Error && !lastError().isEmpty())
        lines << lastError();
    return lines.join(QLatin1Char('\n'));
}

int TrayController::pollInterval() const
{
    return m_pollTimer.isActive() ? m_pollTimer.interval() : 0;
}

void TrayController::start()
{
    if (isConfigured())
        connectTunnel();
    emit changed();
}

void TrayController::wake()
{
    m_keepAwakeMinutes = 0;
    requestWake();
}

void TrayController::keepAwakeFor(int minutes)
{
    m_keepAwakeMinutes = std::max(0, minutes);
    requestWake();
}

QString TrayController::awakeUntil() const
{
    if (!m_hasStatus || !m_status.awakeUntil.isValid())
        return {};
    return m_status.awakeUntil.toLocalTime().toString(QStringLiteral("HH:mm"));
}

void TrayController::requestWake()
{
    m_wakeError.clear();
    if (!isConfigured())
        return;
    if (!isTunnelUp()) {
        // One click should do it: connect first, then wake.
        m_wakeOnConnect = true;
        m_wakePending = true;
        if (m_tunnel->state() == TunnelControl::State::Disconnected
            || m_tunnel->state() == TunnelControl::State::Failed)
            connectTunnel();
        emit changed();
        return;
    }
    qCInfo(lcTray) << "asking the daemon to wake the GPU node";
    m_wakePending = true;
    m_wakeSent = false;
    if (m_keepAwakeMinutes > 0)
        m_source->wakeFor(m_keepAwakeMinutes);
    else
        m_source->wake();
    emit changed();
}

void TrayController::connectTunnel()
{
    if (!isConfigured()) {
        qCWarning(lcTray) << "no head node configured; not connecting";
        return;
    }
    const auto state = m_tunnel->state();
    if (state != TunnelControl::State::Disconnected && state != TunnelControl::State::Failed)
        return; // up or on its way: reopening would drop what works
    m_userClosed = false;
    m_error.clear();
    m_httpError = false;
    m_tunnel->open();
    emit changed();
}

void TrayController::disconnectTunnel()
{
    m_userClosed = true;
    m_wakeOnConnect = false;
    m_wakePending = false;
    m_tunnel->close();
    stopPolling();
    m_hasStatus = false;
    emit changed();
}

void TrayController::toggleTunnel()
{
    const auto state = m_tunnel->state();
    if (state == TunnelControl::State::Disconnected || state == TunnelControl::State::Failed)
        connectTunnel();
    else
        disconnectTunnel();
}

void TrayController::pollNow()
{
    if (!isTunnelUp())
        return;
    if (m_fetchInFlight && m_clock() - m_fetchStartedAt < StalledRequestMs)
        return; // its answer schedules the next poll
    m_pollTimer.stop();
    m_fetchInFlight = true;
    m_fetchStartedAt = m_clock();
    ++m_fetchSeq;
    m_source->fetchStatus();
}

void TrayController::onTunnelState(TunnelControl::State state)
{
    const auto previous = m_lastTunnelState;
    m_lastTunnelState = state;
    qCDebug(lcTray) << "tunnel" << tunnelStateName(state);

    if (state == TunnelControl::State::Connected) {
        m_dropNotified = false;
        m_authNotified = false;
        m_failNotified = false;
        m_error.clear();
        m_httpError = false;
        m_fetchInFlight = false;
        pollNow();
        if (m_wakeOnConnect) {
            m_wakeOnConnect = false;
            requestWake();
        }
    } else {
        if (previous == TunnelControl::State::Connected && !m_userClosed && !m_dropNotified) {
            m_dropNotified = true;
            emit notification(
                TrayNotification::TunnelDropped, QStringLiteral("slullama"),
                QStringLiteral("The tunnel to %1 dropped; reconnecting.").arg(m_config.host));
        }
        stopPolling();
        m_hasStatus = false;
        if (state == TunnelControl::State::Failed)
            m_wakeOnConnect = false;
        if (!m_wakeOnConnect)
            m_wakePending = false;
    }
    updateTicker();
    emit changed();
}

void TrayController::onTunnelError(TunnelControl::ErrorKind kind, const QString &message)
{
    qCDebug(lcTray) << "tunnel:" << message; // the tunnel logs it itself
    if (kind == TunnelControl::ErrorKind::Auth) {
        reportAuthFailure(message);
    } else if (kind != TunnelControl::ErrorKind::Network && kind != TunnelControl::ErrorKind::None
               && !m_failNotified) {
        // A lost network is retried and shows as "connecting"; these need the user.
        m_failNotified = true;
        emit notification(TrayNotification::TunnelFailed, QStringLiteral("slullama"), message);
    }
    emit changed();
}

void TrayController::reportAuthFailure(const QString &message)
{
    if (m_authNotified)
        return;
    m_authNotified = true;
    emit notification(TrayNotification::AuthFailed,
                      QStringLiteral("slullama: authentication failed"), message);
}

void TrayController::onStatus(const Status &status)
{
    const quint64 seq = m_fetchSeq;
    m_fetchInFlight = false;
    qCDebug(lcTray).noquote() << "status:" << slullama::phaseName(status.phase);
    if (!isTunnelUp())
        return; // an answer from before the tunnel went down

    // A request that was out when the daemon took the wake answers for the time before it.
    if (seq == m_wakeAcceptedSeq) {
        scheduleNextPoll();
        return;
    }
    // One requested after it settles the wake, whatever it says.
    if (m_wakeSent && seq > m_wakeAcceptedSeq) {
        m_wakePending = false;
        m_wakeSent = false;
    }
    applyStatus(status);
    scheduleNextPoll();
    emit changed();
}

void TrayController::applyStatus(const Status &status)
{
    if (m_hasStatus && status.phase == Phase::Ready
        && (isBooting(m_status.phase) || m_status.phase == Phase::Sleeping)) {
        const QString node
            = status.job.node.isEmpty() ? QStringLiteral("the GPU node") : status.job.node;
        emit notification(TrayNotification::WakeFinished, QStringLiteral("slullama"),
                          QStringLiteral("GPU node ready: model server on ") + node);
    }

    m_status = status;
    m_hasStatus = true;
    m_statusAt = m_clock();
    if (m_httpError) {
        m_error.clear();
        m_httpError = false;
        m_authNotified = false;
    }
    if (status.phase != Phase::Sleeping) {
        m_wakePending = false;
        m_wakeSent = false;
        m_wakeError.clear();
    }
    updateTicker();
}

void TrayController::onStatusFailed(const QString &message, int httpStatus)
{
    m_fetchInFlight = false;
    if (!isTunnelUp())
        return;
    m_httpError = true;
    if (isAuthStatus(httpStatus)) {
        m_error = authMessage(httpStatus);
        reportAuthFailure(m_error);
    } else {
        m_error = QStringLiteral("Status request failed: ") + message;
    }
    qCWarning(lcTray) << m_error;
    scheduleNextPoll();
    emit changed();
}

void TrayController::onWakeAccepted(const Status &status)
{
    if (!isTunnelUp())
        return;
    m_wakeSent = m_wakePending;
    m_wakeAcceptedSeq = m_fetchSeq;
    applyStatus(status);
    scheduleNextPoll();
    emit changed();
}

void TrayController::onWakeFailed(const QString &message, int httpStatus)
{
    m_wakePending = false;
    m_wakeSent = false;
    if (isAuthStatus(httpStatus)) {
        m_httpError = true;
        m_error = authMessage(httpStatus);
        reportAuthFailure(m_error);
    } else {
        m_wakeError = QStringLiteral("Wake failed: ") + message;
    }
    qCWarning(lcTray) << "wake failed:" << message;
    scheduleNextPoll();
    emit changed();
}

bool TrayController::wantsFastPoll() const
{
    if (m_wakePending)
        return true;
    return m_hasStatus && (isBooting(m_status.phase) || m_status.phase == Phase::Stopping);
}

void TrayController::scheduleNextPoll()
{
    if (!isTunnelUp() || m_fetchInFlight) {
        m_pollTimer.stop();
        return;
    }
    m_pollTimer.start(wantsFastPoll() ? FastPollMs : SlowPollMs);
}

void TrayController::stopPolling()
{
    m_pollTimer.stop();
    m_fetchInFlight = false;
}

void TrayController::updateTicker()
{
    if (isTunnelUp() && m_hasStatus) {
        if (!m_ticker.isActive())
            m_ticker.start();
    } else {
        m_ticker.stop();
    }
}

} // namespace slullama
