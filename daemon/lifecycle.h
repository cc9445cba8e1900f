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

#include <functional>
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
    // SIGTERM, first step (before the drain): requests still waiting for a boot get 503 at once,
    // and so does any later request that would have to wait; requests already served keep going.
    void beginDrain();
    // SIGTERM path: refuses new waiters, cancels the job (scancel), closes the tunnel, clears the
    // state file, then emits shutdownFinished(). Streams should be drained before calling it.
    void shutdown();

    Phase phase() const { return m_phase; }

    // Backend
    Ticket acquire(Callback done) override;
    void cancel(Ticket ticket) override;
    void release() override;
    void release(quint64 generation) override;
    void reportUpstreamFailure(quint64 generation, const QString &reason) override;
    void wake() override;
    void wakeFor(double minutes) override;
    Status status() const override;

    // Walltime hand-over: how a successor job's ssh tunnel is made (tests inject fakes; by
    // default makeSshNodeTunnel(config.ssh)).
    using TunnelFactory = std::function<std::unique_ptr<NodeTunnel>()>;
    void setTunnelFactory(TunnelFactory factory) { m_tunnelFactory = std::move(factory); }

    // Tunables (tests may lower them; defaults are what the daemon uses).
    static constexpr qint64 kHealthIntervalMs = 200;
    static constexpr qint64 kReadyPollMinMs = 5000; // job poll while Starting/Ready
    static constexpr qint64 kExtendMinIntervalMs = 60000;
    static constexpr int kTunnelAttemptsPerBoot = 5;
    // While Ready the model server is probed this often (and at once on an upstream failure); a
    // failed probe rebuilds the tunnel, and a server that still does not answer through the new
    // tunnel for kServerLostAfterMs gets its job cancelled and replaced.
    static constexpr qint64 kReadyHealthIntervalMs = 5000;
    // Under load the probe queues behind the streams' channel opens on the same ssh connection:
    // while requests are active it gets a longer timeout, and a failed probe is retried (after
    // kBusyHealthRetryMs) up to kBusyHealthFailuresTolerated times before the tunnel, and every
    // stream on it, is rebuilt. An upstream failure reported by a request ends the tolerance.
    static constexpr int kBusyHealthTimeoutMs = 10000;
    static constexpr int kBusyHealthFailuresTolerated = 2;
    static constexpr qint64 kBusyHealthRetryMs = 1000;
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
    // A keep-awake promise from the state file (wall clock) becomes a monotonic deadline again.
    void restoreAwakeUntil(const SavedState &saved);
    // A request got an Upstream of this generation / one of them ended.
    void countHandedOut(quint64 generation);
    void finishRelease();

    void beginBoot();
    void onSubmitted(const SlurmOutcome &outcome, const QString &jobId);
    // (Re)starts the timer whose id `id` (a member) holds; the id is 0 again when it fires.
    void armTimer(Clock::TimerId &id, qint64 ms, std::function<void()> fn);
    void armBootTimer(qint64 ms);
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
    // When an idle job may end: the idle timeout after the last use, or a wake's keep-awake.
    qint64 idleDeadlineMs() const;

    // Walltime hand-over (keep_alive = cancel or extension refused): a successor job boots
    // beside the one in use, takes new requests once healthy, and the old one is cancelled when
    // its streams are done. See maybeHandover().
    void maybeHandover();
    void beginHandover();
    void onHandoverSubmitted(const SlurmOutcome &outcome, const QString &jobId);
    void scheduleHandoverStep(qint64 ms);
    void pollHandoverJob();
    void openHandoverTunnel();
    void onHandoverTunnelExited(quint64 serial, const QString &reason);
    void checkHandoverHealth();
    void switchToSuccessor();
    void failHandover(const QString &message);
    bool promoteSuccessor(const QString &reason);
    void retireOldJob();
    void abortHandover(const QString &reason);
    void cancelStrayJob(const QString &jobId, int attempt);
    // Restart after a daemon died while a successor's sbatch ran: every other live job of our
    // name (the one carrying `token`, or one that lost it to its port report) is cancelled.
    void cancelInterruptedSuccessor(const QString &jobName, const QString &keepJobId,
                                    const QString &token, int attempt);
    // Requests still in flight on the old job of a hand-over (its Upstream generations).
    int oldJobInFlight() const;
    QString handoverOtherJobId() const;
    // Clears m_handover; its tunnels are closed and deleted from the event loop (an exit callback
    // may be running inside one of them).
    void resetHandover();
    HandoverStatus handoverStatus() const;

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
    // Requests holding an Upstream, by its generation (entries at zero are erased).
    std::map<quint64, int> m_inFlight;
    quint64 m_jobFirstGeneration = 0; // the current job's first generation

    // The current job (empty id: none).
    QString m_jobId;
    QString m_node;
    QDateTime m_jobSince;
    JobInfo m_jobInfo;
    qint64 m_jobInfoAtMs = 0;
    // Slurm's time texts, parsed once per change rather than on every request.
    slurm::CachedDuration m_limitSeconds;
    slurm::CachedDuration m_runSeconds;

    // The tunnel and boot in progress.
    quint16 m_localPort = 0;
    quint64 m_generation = 0;
    quint64 m_tunnelSerial = 0; // ignores exits of tunnels we already replaced
    int m_tunnelAttempts = 0;
    bool m_healthInFlight = false;
    int m_busyHealthFailures = 0; // consecutive failed ready probes tolerated so far
    bool m_upstreamFailed = false; // a request reported an upstream failure since the last probe
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
    qint64 m_awakeUntilMs = -1; // wakeFor(): no idle teardown before this (monotonic ms)
    qint64 m_lastExtendMs = -1;
    bool m_extendRefused = false;
    bool m_extendInFlight = false;

    // Status.
    QString m_lastError;
    QString m_lastEndReason;
    QString m_lastEndedJobId; // whose end m_lastEndReason describes (followEndState)
    QDateTime m_lastBootAt;
    double m_lastBootSeconds = -1;

    // Walltime hand-over.
    struct Handover
    {
        QString stage; // "", "submitting", "booting", "draining", "failed"
        QString jobId; // the successor
        QString node;
        JobInfo info;
        qint64 infoAtMs = 0;
        quint16 remotePort = 0;
        quint16 localPort = 0;
        std::unique_ptr<NodeTunnel> tunnel;
        quint64 tunnelSerial = 0;
        int tunnelAttempts = 0;
        int cancelAttempts = 0;
        bool pollInFlight = false;
        bool healthInFlight = false;
        qint64 startMs = -1;
        QString message;
        QString oldJobId; // the job handed over from (failed: the job that keeps serving)
        std::unique_ptr<NodeTunnel> oldTunnel;
        quint64 generation = 0; // what m_generation was when the handover began
        // Draining: the old job served generations [oldFirstGeneration, successorGeneration).
        quint64 oldFirstGeneration = 0;
        quint64 successorGeneration = 0;
    };
    Handover m_handover;
    TunnelFactory m_tunnelFactory;
    quint64 m_handoverSerials = 0;
    // The successor's sbatch in flight: its token is in the state file until it answers (kept
    // outside m_handover, which an abort clears while sbatch still runs).
    QString m_handoverSubmitToken;
    int m_handoverSubmitsInFlight = 0;
    // The successor's tunnel, once it is the main one, reports its exits as the main tunnel's.
    quint64 m_promotedHandoverSerial = 0;
    quint64 m_promotedMainSerial = 0;
    Clock::TimerId m_handoverTimer = 0; // the next look at the time left
    qint64 m_handoverDueMs = 0;
    Clock::TimerId m_handoverStepTimer = 0; // successor polls and health checks
    Clock::TimerId m_retireTimer = 0; // the old job's own end

    bool m_started = false;
    bool m_shuttingDown = false;
    bool m_draining = false;
    bool m_shutdownDone = false;
};

} // namespace slullama
