#pragma once

// The tray's model: owns status polling through the tunnel, turns daemon status and tunnel
// state into one display phase, counts down the time until sleep between polls, and fires
// each notification once per event. No Widgets: the widgets only render what this says.

#include "config.h"
#include "statusmodel.h"
#include "tunnelcontrol.h"

#include <QObject>
#include <QString>
#include <QTimer>

#include <functional>

namespace slullama {

class StatusSource;

// What the tray shows. Submitting is shown as Waking; the tunnel's own states come first.
enum class TrayPhase {
    Disconnected,
    Connecting,
    Sleeping,
    Waking,
    Queued,
    Starting,
    Ready,
    Stopping,
    Error
};

QString trayPhaseName(TrayPhase phase); // lower-case id: "ready", "disconnected", ...
QString trayPhaseLabel(TrayPhase phase); // for people: "Ready", "Waking up", ...
QString trayIconName(TrayPhase phase); // one of: sleeping waking starting ready error disconnected

enum class TrayNotification { WakeFinished, TunnelDropped, AuthFailed, TunnelFailed };

// "2 h 05 min", "4 min 10 s", "12 s"; empty for a negative value.
QString formatDuration(qint64 seconds);

class TrayController final : public QObject
{
    Q_OBJECT
    Q_PROPERTY(QString phaseName READ phaseName NOTIFY changed)
    Q_PROPERTY(QString toolTip READ toolTip NOTIFY changed)
public:
    static constexpr int FastPollMs = 1000;
    static constexpr int SlowPollMs = 10000;
    // A status request that never answers must not stop polling for good.
    static constexpr int StalledRequestMs = 30000;

    // Monotonic milliseconds; replaceable so tests control time.
    using Clock = std::function<qint64()>;

    // Neither is owned; both must outlive the controller.
    TrayController(TunnelControl *tunnel, StatusSource *source, QObject *parent = nullptr);
    ~TrayController() override;

    void setClock(Clock clock);
    void setClientConfig(const ClientConfig &config);
    const ClientConfig &clientConfig() const { return m_config; }
    bool isConfigured() const { return !m_config.host.isEmpty(); }

    TrayPhase phase() const;
    QString phaseName() const { return trayPhaseName(phase()); }
    QString phaseLabel() const { return trayPhaseLabel(phase()); }
    QString iconName() const { return trayIconName(phase()); }

    bool hasStatus() const { return m_hasStatus; }
    const Status &status() const { return m_status; }
    QString node() const;
    QString jobId() const;
    QString pendingReason() const; // only while queued
    QString expectedStart() const; // only while queued
    // The user's own usage today ("12 requests, 2440 tokens, 5.2 GPU min"); empty when the
    // daemon reports none (no gateway usage block).
    QString usageToday() const;
    qint64 idleSeconds() const; // -1: never used or requests active
    qint64 secondsUntilSleep() const; // -1: not counting down
    int activeRequests() const;
    qint64 requestCount() const;
    qint64 uptimeSeconds() const; // -1 without status
    QString lastError() const;

    TunnelControl::State tunnelState() const;
    bool isTunnelUp() const;
    QString endpointUrl() const; // what tools use: http://localhost:<local_port>
    QString toolTip() const;
    // "HH:MM" (local time) while the daemon keeps the node awake on request; else empty.
    QString awakeUntil() const;

    int pollInterval() const; // ms until the next poll is due; 0 when not polling
    bool isPolling() const { return m_pollTimer.isActive() || m_fetchInFlight; }

public slots:
    void start(); // opens the tunnel when a host is configured
    void wake();
    // Wakes (or keeps up) the node for at least `minutes`: "Keep awake for…".
    void keepAwakeFor(int minutes);
    void connectTunnel();
    void disconnectTunnel();
    void toggleTunnel();
    void pollNow();

signals:
    void changed();
    void notification(slullama::TrayNotification kind, const QString &title,
                      const QString &message);

private:
    void onTunnelState(TunnelControl::State state);
    void onTunnelError(TunnelControl::ErrorKind kind, const QString &message);
    void onStatus(const Status &status);
    void onStatusFailed(const QString &message, int httpStatus);
    void onWakeAccepted(const Status &status);
    void applyStatus(const Status &status);
    void onWakeFailed(const QString &message, int httpStatus);
    void requestWake();
    void scheduleNextPoll();
    void stopPolling();
    bool wantsFastPoll() const;
    qint64 elapsedSinceStatus() const; // whole seconds since the last status arrived
    void reportAuthFailure(const QString &message);
    void updateTicker();

    TunnelControl *m_tunnel;
    StatusSource *m_source;
    Clock m_clock;
    ClientConfig m_config;

    Status m_status;
    bool m_hasStatus = false;
    qint64 m_statusAt = 0; // clock value when m_status arrived
    QString m_error; // our own error (tunnel, HTTP); wins over the daemon's
    bool m_httpError = false; // m_error came from the API, not the tunnel
    bool m_wakePending = false; // a wake was asked and no status shows it yet
    bool m_wakeSent = false; // the daemon accepted it; the next status settles it
    bool m_userClosed = false; // the tunnel was closed on purpose: not a "drop"
    bool m_wakeOnConnect = false; // wake() while down: send it once the tunnel is up
    QString m_wakeError; // why the last wake was refused; until the next wake
    int m_keepAwakeMinutes = 0; // of the wake being asked; 0: a plain wake
    bool m_fetchInFlight = false;
    qint64 m_fetchStartedAt = 0;
    quint64 m_fetchSeq = 0; // counts status requests
    quint64 m_wakeAcceptedSeq = 0; // m_fetchSeq when the daemon took the last wake
    TunnelControl::State m_lastTunnelState = TunnelControl::State::Disconnected;

    // One notification per event: re-armed when the condition clears.
    bool m_dropNotified = false;
    bool m_authNotified = false;
    bool m_failNotified = false;

    QTimer m_pollTimer;
    QTimer m_ticker; // refreshes countdowns on screen between polls
};

} // namespace slullama
