#pragma once

// The job lifecycle: one explicit state machine that wakes a Slurm job on demand, tunnels to it,
// and lets it go when idle. It implements Backend for the proxy; status, logs and the tray read
// the same phase.
//
//   Sleeping -> Submitting -> Queued -> Starting -> Ready -> Stopping -> Sleeping
//
// Every side effect goes through ProcessRunner (Slurm commands), NodeTunnel (ssh -L),
// HealthProbe (HTTP) and Clock (time, timers), so tests drive every transition with fakes.

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "healthprobe.h"
#include "nodetunnel.h"
#include "processrunner.h"
#include "slurmclient.h"
#include "statestore.h"
#include "statusmodel.h"

#include <QObject>
#include <QString>

#include <map>
#include <memory>

namespace slullama {

class Lifecycle final : public QObject, public Backend
{
    Q_OBJECT

public:
    // The production constructor: real ssh tunnel and HTTP health probe. `runner` and `clock`
    // must outlive the Lifecycle.
    Lifecycle(const Config &config, ProcessRunner *runner, Clock *clock, QObject *parent = nullptr);
    // For tests: inject the tunnel and the health probe too.
    Lifecycle(const Config &config, ProcessRunner *runner, Clock *clock,
              std::unique_ptr<NodeTunnel> tunnel, std::unique_ptr<HealthProbe> probe,
              QObject *parent = nullptr);
    ~Lifecycle() override;

    // Reads the state file: a job that Slurm still has queued or running is adopted (Queued /
    // Starting) instead of submitting another; otherwise the file is cleared. Call once.
    void start();
    // SIGTERM path: refuses new waiters, cancels the job (scancel), closes the tunnel, clears the
    // state file, then emits shutdownFinished(). Streams should be drained before calling it.
    void shutdown();

    Phase phase() const { return m_phase; }

    // Backend
    Ticket acquire(Callback done) override;
    void cancel(Ticket ticket) override;
    void release() override;
    void reportUpstreamFailure(quint64 generation, const QString &reason) override;
    void wake() override;
    Status status() const override;

    // Tunables (tests may lower them; defaults are what the daemon uses).
    static constexpr qint64 kHealthIntervalMs = 200;
    static constexpr qint64 kReadyPollMinMs = 5000; // job poll while Starting/Ready
    static constexpr qint64 kExtendMinIntervalMs = 60000;
    static constexpr int kTunnelAttemptsPerBoot = 5;
    // While Ready the model server is probed this often (and at once on an upstream failure); a
    // failed probe rebuilds the tunnel, and a server that still does not answer through the new
    // tunnel for kServerLostAfterMs gets its job cancelled and replaced.
    static constexpr qint64 kReadyHealthIntervalMs = 5000;
    static constexpr qint64 kServerLostAfterMs = 8000;
    static constexpr qint64 kRecoverRetryMaxMs = 10000;

signals:
    void phaseChanged(slullama::Phase phase);
    // Something the status should show changed (reason, job state, counts).
    void statusChanged();
    void shutdownFinished();

private:
    struct Waiter
    {
        Callback done;
        qint64 sinceMs = 0;
    };

    void setPhase(Phase phase, const QString &why);
    void saveState();
    void clearState();

    void beginBoot();
    void onSubmitted(const SlurmOutcome &outcome, const QString &jobId);
    void schedulePoll(qint64 ms);
    void pollJob();
    void onJobInfo(const SlurmOutcome &outcome, const JobInfo &info);
    void onJobRunning(const JobInfo &info);
    void openTunnel();
    void onTunnelExited(quint64 tunnelSerial, const QString &reason);
    void scheduleHealth(qint64 ms);
    void checkHealth();
    void becomeReady();
    void onBootTimeout();
    void jobEnded(const QString &reason);
    void followEndState(const QString &jobId, int attempt);
    void failBoot(int httpStatus, const QString &message, bool cancelJob);
    void failWaiters(int httpStatus, const QString &message);
    void serveWaiters();
    void beginStopping(const QString &reason);
    void sendCancel();
    void finishStopping();
    void rearmIdleTimer();
    void onIdleTimer();
    void maybeExtend();

    // Restart safety for a daemon killed while sbatch ran: the state file names the job name and
    // the submit token (sbatch --comment) but no job id yet.
    void recoverSubmission(const SavedState &saved);
    void listForRecovery();
    void onRecoveryList(const SlurmOutcome &outcome, const QList<JobSummary> &jobs);
    // ollama.port = 0: the port the running job reported in its comment; false while unknown.
    bool resolveRemotePort(const JobInfo &info);
    // Health while Ready, and replacing a job whose model server stopped answering.
    void scheduleReadyHealth(qint64 ms);
    void checkReadyHealth();
    void replaceJob(const QString &reason);
    void stopBootTimers();
    void stopAllTimers();
    qint64 pollIntervalMs() const;
    qint64 idleTimeoutMs() const;
    qint64 idleBaseMs() const;

    Config m_config;
    ProcessRunner *m_runner;
    Clock *m_clock;
    std::unique_ptr<NodeTunnel> m_tunnel;
    std::unique_ptr<HealthProbe> m_probe;
    SlurmClient m_slurm;
    StateStore m_store;

    Phase m_phase = Phase::Sleeping;
    std::map<Ticket, Waiter> m_waiters;
    Ticket m_nextTicket = 1;
    int m_active = 0;
    qint64 m_requestCount = 0;

    // The current job (empty id: none).
    QString m_jobId;
    QString m_node;
    QDateTime m_jobSince;
    JobInfo m_jobInfo;
    qint64 m_jobInfoAtMs = 0;

    // The tunnel and boot in progress.
    quint16 m_localPort = 0;
    quint64 m_generation = 0;
    quint64 m_tunnelSerial = 0; // ignores exits of tunnels we already replaced
    int m_tunnelAttempts = 0;
    bool m_healthInFlight = false;
    bool m_pollInFlight = false;
    qint64 m_bootStartMs = -1;
    bool m_rebuilding = false;
    QString m_lastTunnelError;
    quint16 m_remotePort = 0; // the model server's port on the node (reported, with port = 0)
    qint64 m_tunnelOpenedMs = -1;
    // Health passed: the next job poll must still see the job RUNNING before requests go there
    // (a job whose model server failed to bind a port held by someone else ends at once).
    bool m_confirmPending = false;

    // Submission and its recovery after a crash.
    QString m_submitToken;
    int m_submitsInFlight = 0;
    QString m_recoverJobName;
    bool m_recovering = false;
    int m_recoverAttempts = 0;

    // Stopping.
    QString m_stopReason;
    int m_cancelAttempts = 0;
    bool m_cancelInFlight = false;

    // Timers (Clock ids; 0 = not armed).
    Clock::TimerId m_pollTimer = 0;
    Clock::TimerId m_healthTimer = 0;
    Clock::TimerId m_bootTimer = 0;
    Clock::TimerId m_idleTimer = 0;
    Clock::TimerId m_retryTimer = 0;
    Clock::TimerId m_readyHealthTimer = 0;

    // Activity and keep-alive.
    qint64 m_startedMs = 0;
    qint64 m_lastReleaseMs = -1; // -1: never used
    qint64 m_readyAtMs = -1;
    qint64 m_lastExtendMs = -1;
    bool m_extendRefused = false;
    bool m_extendInFlight = false;

    // Status.
    QString m_lastError;
    QString m_lastEndReason;
    QString m_lastEndedJobId; // whose end m_lastEndReason describes (followEndState)
    QDateTime m_lastBootAt;
    double m_lastBootSeconds = -1;

    bool m_started = false;
    bool m_shuttingDown = false;
    bool m_shutdownDone = false;
};

} // namespace slullama
