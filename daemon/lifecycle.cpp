#include "lifecycle.h"

#include "jobtemplate.h"
#include "logging.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QSaveFile>
#include <QTimer>

#include <cmath>

namespace slullama {

namespace {

constexpr int kHealthTimeoutMs = 2000;
constexpr qint64 kFirstPollMaxMs = 300;
constexpr qint64 kTunnelRetryBaseMs = 500;
constexpr qint64 kCancelRetryBaseMs = 1000;
constexpr qint64 kCancelRetryMaxMs = 30000;
constexpr int kShutdownCancelAttempts = 3;
// Keep at least this much beyond the idle timeout before the job's limit while in use, and
// extend by this much more so an extension is needed rarely, not every minute.
constexpr qint64 kExtendMarginSeconds = 5 * 60;
constexpr qint64 kExtendHeadroomSeconds = 15 * 60;

QString phaseText(Phase phase)
{
    switch (phase) {
    case Phase::Sleeping:
        return QStringLiteral("sleeping");
    case Phase::Submitting:
        return QStringLiteral("submitting");
    case Phase::Queued:
        return QStringLiteral("queued");
    case Phase::Starting:
        return QStringLiteral("starting");
    case Phase::Ready:
        return QStringLiteral("ready");
    case Phase::Stopping:
        return QStringLiteral("stopping");
    }
    return QStringLiteral("unknown");
}

// Why a job ended, in the words status.last_end_reason uses.
QString endReasonOf(const JobInfo &info)
{
    if (!info.exists)
        return QStringLiteral("job vanished from Slurm");
    const QString detail = info.endDescription();
    if (info.state == u"CANCELLED")
        return QStringLiteral("cancelled outside slullama (%1)").arg(detail);
    if (info.state == u"TIMEOUT" || info.state == u"DEADLINE")
        return QStringLiteral("time limit reached (%1)").arg(detail);
    if (info.state == u"NODE_FAIL" || info.state == u"BOOT_FAIL")
        return QStringLiteral("node failure (%1)").arg(detail);
    if (info.state == u"PREEMPTED")
        return QStringLiteral("preempted (%1)").arg(detail);
    if (info.state == u"COMPLETED" || info.state == u"COMPLETING")
        return QStringLiteral("job script ended (%1)").arg(detail);
    if (info.state == u"FAILED" || info.state == u"OUT_OF_MEMORY")
        return QStringLiteral("job failed (%1, exit %2)").arg(detail, info.exitCode);
    return QStringLiteral("job ended (%1)").arg(detail);
}

int httpStatusFor(const SlurmOutcome &outcome)
{
    return outcome.failure == SlurmFailure::Unreachable ? 503 : 502;
}

} // namespace

Lifecycle::Lifecycle(const Config &config, ProcessRunner *runner, Clock *clock, QObject *parent)
    : Lifecycle(config, runner, clock, makeSshNodeTunnel(config.ssh), makeHttpHealthProbe(), parent)
{ }

Lifecycle::Lifecycle(const Config &config, ProcessRunner *runner, Clock *clock,
                     std::unique_ptr<NodeTunnel> tunnel, std::unique_ptr<HealthProbe> probe,
                     QObject *parent)
    : QObject(parent)
    , m_config(config)
    , m_runner(runner)
    , m_clock(clock)
    , m_tunnel(std::move(tunnel))
    , m_probe(std::move(probe))
    , m_slurm(config.slurm, runner)
    , m_store(StateStore::defaultPath(config))
{
    m_startedMs = m_clock->monotonicMs();
}

Lifecycle::~Lifecycle()
{
    stopAllTimers();
    m_tunnel->close();
}

// ---------------------------------------------------------------------------------------------
// The one place that changes state.

void Lifecycle::setPhase(Phase phase, const QString &why)
{
    if (phase == m_phase)
        return;
    qCInfo(lcLifecycle).noquote() << phaseText(m_phase) << "->" << phaseText(phase)
                                  << (why.isEmpty() ? QString() : QStringLiteral("(") + why + u')');
    m_phase = phase;
    saveState();
    emit phaseChanged(phase);
    emit statusChanged();
}

void Lifecycle::saveState()
{
    if (m_jobId.isEmpty()) {
        clearState();
        return;
    }
    SavedState state;
    state.jobId = m_jobId;
    state.node = m_node;
    state.since = m_jobSince;
    state.phase = phaseText(m_phase);
    state.daemonPid = QCoreApplication::applicationPid();
    if (const VoidResult saved = m_store.save(state); !saved)
        qCWarning(lcLifecycle).noquote() << saved.error();
}

void Lifecycle::clearState()
{
    if (const VoidResult cleared = m_store.clear(); !cleared)
        qCWarning(lcLifecycle).noquote() << cleared.error();
}

// ---------------------------------------------------------------------------------------------
// Backend

Backend::Ticket Lifecycle::acquire(Callback done)
{
    const Ticket ticket = m_nextTicket++;
    ++m_requestCount;
    if (m_shuttingDown) {
        AcquireResult result;
        result.httpStatus = 503;
        result.message = QStringLiteral("slullama is shutting down");
        done(result);
        return ticket;
    }
    ++m_active;
    m_clock->stopTimer(m_idleTimer);
    m_idleTimer = 0;
    if (m_phase == Phase::Ready) {
        maybeExtend();
        AcquireResult result;
        result.ok = true;
        result.upstream.port = m_localPort;
        result.upstream.generation = m_generation;
        emit statusChanged();
        done(result);
        return ticket;
    }
    m_waiters.emplace(ticket, Waiter {std::move(done), m_clock->monotonicMs()});
    if (m_phase == Phase::Sleeping)
        beginBoot();
    emit statusChanged();
    return ticket;
}

void Lifecycle::cancel(Ticket ticket)
{
    if (m_waiters.erase(ticket) == 0)
        return;
    m_active = std::max(0, m_active - 1);
    rearmIdleTimer();
    emit statusChanged();
}

void Lifecycle::release()
{
    m_active = std::max(0, m_active - 1);
    m_lastReleaseMs = m_clock->monotonicMs();
    maybeExtend();
    rearmIdleTimer();
    emit statusChanged();
}

void Lifecycle::reportUpstreamFailure(quint64 generation, const QString &reason)
{
    if (generation != m_generation || m_phase != Phase::Ready)
        return;
    qCWarning(lcLifecycle).noquote()
        << "upstream failure:" << reason << "- checking job and tunnel";
    if (!m_tunnel->isOpen()) {
        onTunnelExited(m_tunnelSerial, QStringLiteral("tunnel not running"));
        return;
    }
    schedulePoll(0);
    if (m_healthInFlight)
        return;
    m_healthInFlight = true;
    const quint64 serial = m_tunnelSerial;
    m_probe->check(QStringLiteral("127.0.0.1"), m_localPort, kHealthTimeoutMs, this,
                   [this, serial](bool healthy, const QString &detail) {
                       m_healthInFlight = false;
                       if (healthy || serial != m_tunnelSerial || m_phase != Phase::Ready)
                           return;
                       // The model server does not answer through this tunnel: rebuild it; if
                       // the server itself is gone the boot timeout ends the job.
                       onTunnelExited(serial, QStringLiteral("health check failed: ") + detail);
                   });
}

void Lifecycle::wake()
{
    if (m_shuttingDown || m_phase != Phase::Sleeping)
        return;
    beginBoot();
}

// ---------------------------------------------------------------------------------------------
// Start and adoption

void Lifecycle::start()
{
    if (m_started)
        return;
    m_started = true;
    auto loaded = m_store.load();
    if (!loaded) {
        qCWarning(lcLifecycle).noquote() << loaded.error() << "- ignoring it";
        clearState();
        return;
    }
    if (!loaded->has_value() || (*loaded)->jobId.isEmpty()) {
        clearState();
        return;
    }
    const SavedState saved = **loaded;
    qCInfo(lcLifecycle).noquote() << "state file names job" << saved.jobId
                                  << "- adopting it if Slurm still has it";
    m_jobId = saved.jobId;
    m_node = saved.node;
    m_jobSince = saved.since.isValid() ? saved.since : m_clock->currentDateTime();
    m_jobInfo = JobInfo {};
    m_jobInfo.id = m_jobId;
    m_readyAtMs = -1;
    m_bootStartMs = m_clock->monotonicMs();
    m_bootTimer = m_clock->startTimer(qint64(m_config.server.bootTimeout * 1000), this, [this]() {
        m_bootTimer = 0;
        onBootTimeout();
    });
    // Queued until the first poll says where the job is; a job Slurm no longer has ends there.
    setPhase(Phase::Queued, QStringLiteral("adopting job %1").arg(m_jobId));
    pollJob();
}

// ---------------------------------------------------------------------------------------------
// Boot

void Lifecycle::beginBoot()
{
    m_bootStartMs = m_clock->monotonicMs();
    m_rebuilding = false;
    m_readyAtMs = -1;
    setPhase(Phase::Submitting,
             m_waiters.empty() ? QStringLiteral("wake") : QStringLiteral("request while sleeping"));
    m_clock->stopTimer(m_bootTimer);
    m_bootTimer = m_clock->startTimer(qint64(m_config.server.bootTimeout * 1000), this, [this]() {
        m_bootTimer = 0;
        onBootTimeout();
    });

    auto script = renderJobScript(m_config);
    if (!script)
        return failBoot(500, QStringLiteral("cannot render the job script: ") + script.error(),
                        false);
    const QString logDir = m_config.server.logDir;
    if (!QDir().mkpath(logDir))
        return failBoot(
            500,
            QStringLiteral("cannot create log_dir %1: check the path and its permissions")
                .arg(logDir),
            false);
    const QString path = QDir(logDir).filePath(m_config.slurm.jobName + QStringLiteral("-job.sh"));
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly) || file.write(script->toUtf8()) < 0 || !file.commit()) {
        return failBoot(500,
                        QStringLiteral("cannot write the job script %1: %2 (is log_dir writable, "
                                       "is the disk full?)")
                            .arg(path, file.errorString()),
                        false);
    }
    m_slurm.submit(path, this, [this](const SlurmOutcome &outcome, const QString &jobId) {
        onSubmitted(outcome, jobId);
    });
}

void Lifecycle::onSubmitted(const SlurmOutcome &outcome, const QString &jobId)
{
    if (m_phase != Phase::Submitting) {
        // The boot was abandoned (boot timeout) while sbatch ran: never leave its job behind.
        if (outcome.ok() && !jobId.isEmpty()) {
            qCWarning(lcLifecycle).noquote()
                << "cancelling job" << jobId << "submitted for an abandoned boot";
            m_slurm.cancel(jobId, this, [](const SlurmOutcome &) {});
        }
        return;
    }
    if (!outcome.ok()) {
        qCWarning(lcSlurm).noquote() << outcome.message;
        return failBoot(httpStatusFor(outcome), outcome.message, false);
    }
    qCInfo(lcSlurm).noquote() << "submitted job" << jobId;
    m_jobId = jobId;
    m_node.clear();
    m_jobSince = m_clock->currentDateTime();
    m_jobInfo = JobInfo {};
    m_jobInfo.id = jobId;
    m_jobInfo.state = QStringLiteral("PENDING");
    m_jobInfoAtMs = m_clock->monotonicMs();
    if (m_shuttingDown)
        return beginStopping(QStringLiteral("shutdown"));
    setPhase(Phase::Queued, QStringLiteral("job %1 submitted").arg(jobId));
    schedulePoll(std::min(kFirstPollMaxMs, pollIntervalMs()));
}

void Lifecycle::schedulePoll(qint64 ms)
{
    m_clock->stopTimer(m_pollTimer);
    m_pollTimer = m_clock->startTimer(ms, this, [this]() {
        m_pollTimer = 0;
        pollJob();
    });
}

void Lifecycle::pollJob()
{
    if (m_pollInFlight || m_jobId.isEmpty())
        return;
    m_pollInFlight = true;
    const QString jobId = m_jobId;
    m_slurm.showJob(jobId, this, [this, jobId](const SlurmOutcome &outcome, const JobInfo &info) {
        m_pollInFlight = false;
        if (jobId != m_jobId)
            return;
        onJobInfo(outcome, info);
    });
}

void Lifecycle::onJobInfo(const SlurmOutcome &outcome, const JobInfo &info)
{
    if (m_phase != Phase::Queued && m_phase != Phase::Starting && m_phase != Phase::Ready)
        return;
    if (!outcome.ok()) {
        // The job keeps running without the controller; keep polling, say so in status.
        qCWarning(lcSlurm).noquote() << "cannot check job" << m_jobId << ":" << outcome.message;
        m_lastError = outcome.message;
        emit statusChanged();
        schedulePoll(m_phase == Phase::Ready ? std::max(kReadyPollMinMs, pollIntervalMs())
                                             : pollIntervalMs());
        return;
    }
    const QString previousState = m_jobInfo.state;
    const QString previousReason = m_jobInfo.reason;
    m_jobInfo = info;
    m_jobInfoAtMs = m_clock->monotonicMs();
    if (info.hasEnded())
        return jobEnded(endReasonOf(info));
    if (m_phase == Phase::Queued && info.isRunning())
        onJobRunning(info);
    else if (m_phase == Phase::Ready)
        maybeExtend();
    if (previousState != info.state || previousReason != info.reason) {
        qCInfo(lcSlurm).noquote() << "job" << m_jobId << info.state
                                  << (info.isPending() ? QStringLiteral("reason=") + info.reason
                                                       : QString());
        emit statusChanged();
    }
    schedulePoll(m_phase == Phase::Ready ? std::max(kReadyPollMinMs, pollIntervalMs())
                                         : pollIntervalMs());
}

void Lifecycle::onJobRunning(const JobInfo &info)
{
    const QString node = info.node();
    if (node.isEmpty())
        return; // not placed yet as far as scontrol says; the next poll will know
    m_node = node;
    m_tunnelAttempts = 0;
    setPhase(Phase::Starting, QStringLiteral("job %1 running on %2").arg(m_jobId, node));
    openTunnel();
}

void Lifecycle::openTunnel()
{
    ++m_tunnelAttempts;
    const quint64 serial = ++m_tunnelSerial;
    QString error;
    const quint16 port = m_tunnel->open(
        m_node, m_config.ollama.port,
        [this, serial](const QString &reason) { onTunnelExited(serial, reason); }, &error);
    if (port == 0) {
        // Report like an exit, but from the event loop so retries cannot recurse.
        m_clock->stopTimer(m_retryTimer);
        m_retryTimer = m_clock->startTimer(0, this, [this, serial, error]() {
            m_retryTimer = 0;
            onTunnelExited(serial, error);
        });
        return;
    }
    m_localPort = port;
    qCInfo(lcNodeTunnel).noquote() << QStringLiteral("tunnel 127.0.0.1:%1 -> %2:%3")
                                          .arg(port)
                                          .arg(m_node)
                                          .arg(m_config.ollama.port);
    emit statusChanged();
    scheduleHealth(kHealthIntervalMs);
}

void Lifecycle::onTunnelExited(quint64 tunnelSerial, const QString &reason)
{
    if (tunnelSerial != m_tunnelSerial)
        return;
    m_lastTunnelError = reason;
    m_localPort = 0;
    m_tunnel->close();
    ++m_tunnelSerial; // late health answers and exits of this tunnel are stale now
    m_clock->stopTimer(m_healthTimer);
    m_healthTimer = 0;
    if (m_phase == Phase::Ready) {
        qCWarning(lcNodeTunnel).noquote()
            << "tunnel to" << m_node << "lost:" << reason << "- rebuilding";
        m_rebuilding = true;
        m_tunnelAttempts = 0;
        m_bootStartMs = m_clock->monotonicMs();
        m_clock->stopTimer(m_idleTimer);
        m_idleTimer = 0;
        m_clock->stopTimer(m_bootTimer);
        m_bootTimer
            = m_clock->startTimer(qint64(m_config.server.bootTimeout * 1000), this, [this]() {
                  m_bootTimer = 0;
                  onBootTimeout();
              });
        setPhase(Phase::Starting, QStringLiteral("rebuilding the tunnel"));
        schedulePoll(0); // ssh often dies because the job did
        openTunnel();
        return;
    }
    if (m_phase != Phase::Starting)
        return;
    if (m_tunnelAttempts >= kTunnelAttemptsPerBoot) {
        return failBoot(502,
                        QStringLiteral("cannot open the ssh tunnel to node %1 (%2 attempts): %3")
                            .arg(m_node)
                            .arg(m_tunnelAttempts)
                            .arg(reason),
                        true);
    }
    qCWarning(lcNodeTunnel).noquote()
        << "tunnel attempt" << m_tunnelAttempts << "failed:" << reason;
    m_clock->stopTimer(m_retryTimer);
    m_retryTimer = m_clock->startTimer(kTunnelRetryBaseMs * m_tunnelAttempts, this, [this]() {
        m_retryTimer = 0;
        if (m_phase == Phase::Starting)
            openTunnel();
    });
}

void Lifecycle::scheduleHealth(qint64 ms)
{
    m_clock->stopTimer(m_healthTimer);
    m_healthTimer = m_clock->startTimer(ms, this, [this]() {
        m_healthTimer = 0;
        checkHealth();
    });
}

void Lifecycle::checkHealth()
{
    if (m_phase != Phase::Starting || m_localPort == 0)
        return;
    if (m_healthInFlight)
        return scheduleHealth(kHealthIntervalMs);
    m_healthInFlight = true;
    const quint64 serial = m_tunnelSerial;
    m_probe->check(QStringLiteral("127.0.0.1"), m_localPort, kHealthTimeoutMs, this,
                   [this, serial](bool healthy, const QString &detail) {
                       m_healthInFlight = false;
                       if (serial != m_tunnelSerial || m_phase != Phase::Starting)
                           return;
                       if (healthy)
                           return becomeReady();
                       qCDebug(lcLifecycle).noquote()
                           << "model server not answering yet:" << detail;
                       scheduleHealth(kHealthIntervalMs);
                   });
}

void Lifecycle::becomeReady()
{
    const qint64 now = m_clock->monotonicMs();
    m_clock->stopTimer(m_bootTimer);
    m_bootTimer = 0;
    m_clock->stopTimer(m_healthTimer);
    m_healthTimer = 0;
    ++m_generation;
    if (!m_rebuilding) {
        if (m_bootStartMs >= 0)
            m_lastBootSeconds = double(now - m_bootStartMs) / 1000.0;
        m_lastBootAt = m_clock->currentDateTime();
        m_readyAtMs = now;
    }
    m_rebuilding = false;
    m_bootStartMs = -1;
    m_lastError.clear();
    setPhase(Phase::Ready, QStringLiteral("model server answers on 127.0.0.1:%1").arg(m_localPort));
    serveWaiters();
    schedulePoll(std::max(kReadyPollMinMs, pollIntervalMs()));
    maybeExtend();
    rearmIdleTimer();
}

void Lifecycle::serveWaiters()
{
    auto waiters = std::exchange(m_waiters, {});
    const qint64 now = m_clock->monotonicMs();
    for (auto &[ticket, waiter] : waiters) {
        AcquireResult result;
        result.ok = true;
        result.upstream.port = m_localPort;
        result.upstream.generation = m_generation;
        result.waitedSeconds = double(now - waiter.sinceMs) / 1000.0;
        waiter.done(result);
    }
}

void Lifecycle::failWaiters(int httpStatus, const QString &message)
{
    auto waiters = std::exchange(m_waiters, {});
    const qint64 now = m_clock->monotonicMs();
    m_active = std::max(0, m_active - int(waiters.size()));
    for (auto &[ticket, waiter] : waiters) {
        AcquireResult result;
        result.httpStatus = httpStatus;
        result.message = message;
        result.waitedSeconds = double(now - waiter.sinceMs) / 1000.0;
        waiter.done(result);
    }
}

void Lifecycle::onBootTimeout()
{
    if (m_phase != Phase::Submitting && m_phase != Phase::Queued && m_phase != Phase::Starting)
        return;
    QString where = phaseText(m_phase);
    if (!m_jobId.isEmpty()) {
        where += QStringLiteral(", job %1").arg(m_jobId);
        if (!m_jobInfo.state.isEmpty())
            where += QStringLiteral(" %1").arg(m_jobInfo.state);
        if (m_jobInfo.isPending() && !m_jobInfo.reason.isEmpty())
            where += QStringLiteral(", Slurm's reason: %1").arg(m_jobInfo.reason);
    }
    if (m_phase == Phase::Starting && !m_lastTunnelError.isEmpty())
        where += QStringLiteral(", last tunnel error: %1").arg(m_lastTunnelError);
    failBoot(504,
             QStringLiteral("the model server was not ready within boot_timeout (%1 s): %2")
                 .arg(m_config.server.bootTimeout)
                 .arg(where),
             true);
}

void Lifecycle::failBoot(int httpStatus, const QString &message, bool cancelJob)
{
    qCWarning(lcLifecycle).noquote() << "boot failed:" << message;
    m_lastError = message;
    stopAllTimers();
    m_tunnel->close();
    ++m_tunnelSerial;
    m_localPort = 0;
    m_bootStartMs = -1;
    m_rebuilding = false;
    failWaiters(httpStatus, message);
    if (cancelJob && !m_jobId.isEmpty())
        return beginStopping(QStringLiteral("boot failed: ") + message);
    m_jobId.clear();
    m_node.clear();
    m_jobInfo = JobInfo {};
    setPhase(Phase::Sleeping, message);
    if (m_shuttingDown)
        finishStopping();
}

void Lifecycle::jobEnded(const QString &reason)
{
    qCWarning(lcLifecycle).noquote() << "job" << m_jobId << "ended:" << reason;
    const bool wasReady = m_readyAtMs >= 0;
    m_lastEndReason = reason;
    stopAllTimers();
    m_tunnel->close();
    ++m_tunnelSerial;
    m_localPort = 0;
    m_bootStartMs = -1;
    m_rebuilding = false;
    m_readyAtMs = -1;
    const QString jobId = m_jobId;
    m_jobId.clear();
    m_node.clear();
    if (!wasReady) {
        // Never came up: retrying would likely fail the same way; say why now.
        m_lastError = QStringLiteral("Slurm job %1 ended before the model server was ready: %2")
                          .arg(jobId, reason);
        failWaiters(502, m_lastError);
    }
    setPhase(Phase::Sleeping, reason);
    // Requests that were waiting for a tunnel rebuild of a job that then ended get a fresh boot.
    if (!m_waiters.empty() && !m_shuttingDown)
        beginBoot();
}

// ---------------------------------------------------------------------------------------------
// Idle, stopping, keep-alive

qint64 Lifecycle::pollIntervalMs() const
{
    return std::max<qint64>(50, qint64(m_config.slurm.pollInterval * 1000));
}

qint64 Lifecycle::idleTimeoutMs() const
{
    return std::max<qint64>(0, qint64(std::llround(m_config.slurm.idleTimeoutMinutes * 60000.0)));
}

qint64 Lifecycle::idleBaseMs() const
{
    return std::max(m_lastReleaseMs, m_readyAtMs);
}

void Lifecycle::rearmIdleTimer()
{
    m_clock->stopTimer(m_idleTimer);
    m_idleTimer = 0;
    if (m_phase != Phase::Ready || m_active > 0)
        return;
    const qint64 deadline = idleBaseMs() + idleTimeoutMs();
    const qint64 wait = std::max<qint64>(0, deadline - m_clock->monotonicMs());
    m_idleTimer = m_clock->startTimer(wait, this, [this]() {
        m_idleTimer = 0;
        onIdleTimer();
    });
}

void Lifecycle::onIdleTimer()
{
    if (m_phase != Phase::Ready || m_active > 0)
        return;
    if (m_clock->monotonicMs() < idleBaseMs() + idleTimeoutMs())
        return rearmIdleTimer();
    qCInfo(lcLifecycle).noquote() << "idle for" << m_config.slurm.idleTimeoutMinutes << "min";
    beginStopping(QStringLiteral("idle"));
}

void Lifecycle::beginStopping(const QString &reason)
{
    stopAllTimers();
    m_tunnel->close();
    ++m_tunnelSerial;
    m_localPort = 0;
    m_stopReason = reason;
    m_cancelAttempts = 0;
    if (m_jobId.isEmpty())
        return finishStopping();
    setPhase(Phase::Stopping, reason);
    sendCancel();
}

void Lifecycle::sendCancel()
{
    if (m_cancelInFlight)
        return;
    m_cancelInFlight = true;
    ++m_cancelAttempts;
    const QString jobId = m_jobId;
    m_slurm.cancel(jobId, this, [this, jobId](const SlurmOutcome &outcome) {
        m_cancelInFlight = false;
        if (m_phase != Phase::Stopping || jobId != m_jobId)
            return;
        if (outcome.ok()) {
            qCInfo(lcSlurm).noquote() << "cancelled job" << jobId;
            return finishStopping();
        }
        qCWarning(lcSlurm).noquote() << "scancel" << jobId << "failed (attempt" << m_cancelAttempts
                                     << "):" << outcome.message;
        m_lastError = outcome.message;
        // Requests that arrived meanwhile cannot get a new job while Slurm is unreachable.
        if (!m_waiters.empty())
            failWaiters(httpStatusFor(outcome), outcome.message);
        if (m_shuttingDown && m_cancelAttempts >= kShutdownCancelAttempts) {
            // Keep the state file: the next start adopts (and later cancels) the job.
            qCWarning(lcLifecycle).noquote()
                << "giving up on cancelling job" << jobId << "at shutdown; the state file keeps it";
            m_shutdownDone = true;
            stopAllTimers();
            QTimer::singleShot(0, this, &Lifecycle::shutdownFinished);
            return;
        }
        const qint64 backoff
            = std::min(kCancelRetryMaxMs, kCancelRetryBaseMs << std::min(m_cancelAttempts - 1, 10));
        m_clock->stopTimer(m_retryTimer);
        m_retryTimer = m_clock->startTimer(backoff, this, [this]() {
            m_retryTimer = 0;
            if (m_phase == Phase::Stopping)
                sendCancel();
        });
        emit statusChanged();
    });
}

void Lifecycle::finishStopping()
{
    m_lastEndReason = m_stopReason;
    m_jobId.clear();
    m_node.clear();
    m_jobInfo = JobInfo {};
    m_readyAtMs = -1;
    m_extendInFlight = false;
    setPhase(Phase::Sleeping, m_stopReason);
    clearState();
    if (m_shuttingDown) {
        if (!m_shutdownDone) {
            m_shutdownDone = true;
            QTimer::singleShot(0, this, &Lifecycle::shutdownFinished);
        }
        return;
    }
    if (!m_waiters.empty())
        beginBoot();
}

void Lifecycle::maybeExtend()
{
    if (m_config.slurm.keepAlive != KeepAlive::Extend || m_extendRefused || m_extendInFlight
        || m_phase != Phase::Ready || m_jobId.isEmpty())
        return;
    const qint64 now = m_clock->monotonicMs();
    if (m_lastExtendMs >= 0 && now - m_lastExtendMs < kExtendMinIntervalMs)
        return;
    const auto limit = slurm::parseDuration(m_jobInfo.timeLimit);
    const auto run = slurm::parseDuration(m_jobInfo.runTime);
    if (!limit || !run)
        return; // UNLIMITED, or not known yet
    const qint64 runNow = *run + (now - m_jobInfoAtMs) / 1000;
    const qint64 needLeft = idleTimeoutMs() / 1000 + kExtendMarginSeconds;
    if (*limit - runNow >= needLeft)
        return;
    const qint64 minutes = (runNow + needLeft + kExtendHeadroomSeconds + 59) / 60;
    m_lastExtendMs = now;
    m_extendInFlight = true;
    const QString jobId = m_jobId;
    qCInfo(lcSlurm).noquote() << "extending job" << jobId << "to" << minutes << "min";
    m_slurm.setTimeLimit(jobId, minutes, this, [this, jobId, minutes](const SlurmOutcome &outcome) {
        m_extendInFlight = false;
        if (jobId != m_jobId)
            return;
        if (outcome.ok()) {
            m_jobInfo.timeLimit = slurm::formatDuration(minutes * 60);
            emit statusChanged();
            return;
        }
        if (outcome.failure == SlurmFailure::PermissionDenied) {
            m_extendRefused = true;
            qCWarning(lcSlurm).noquote()
                << "keep_alive = \"extend\" refused by Slurm, behaving as \"cancel\" from now on "
                   "(the job ends at its time limit; the next request starts a new one):"
                << outcome.message;
            emit statusChanged();
            return;
        }
        qCWarning(lcSlurm).noquote() << "could not extend job" << jobId << ":" << outcome.message;
    });
}

void Lifecycle::stopAllTimers()
{
    for (Clock::TimerId *id :
         {&m_pollTimer, &m_healthTimer, &m_bootTimer, &m_idleTimer, &m_retryTimer}) {
        m_clock->stopTimer(*id);
        *id = 0;
    }
}

void Lifecycle::stopBootTimers()
{
    for (Clock::TimerId *id : {&m_healthTimer, &m_bootTimer, &m_retryTimer}) {
        m_clock->stopTimer(*id);
        *id = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown and status

void Lifecycle::shutdown()
{
    if (m_shuttingDown)
        return;
    m_shuttingDown = true;
    qCInfo(lcLifecycle) << "shutting down";
    failWaiters(503, QStringLiteral("slullama is shutting down"));
    switch (m_phase) {
    case Phase::Sleeping:
        clearState();
        m_shutdownDone = true;
        QTimer::singleShot(0, this, &Lifecycle::shutdownFinished);
        return;
    case Phase::Submitting:
        return; // onSubmitted cancels the job sbatch returns
    case Phase::Queued:
    case Phase::Starting:
    case Phase::Ready:
        return beginStopping(QStringLiteral("shutdown"));
    case Phase::Stopping:
        return; // finishStopping() completes the shutdown
    }
}

Status Lifecycle::status() const
{
    const qint64 now = m_clock->monotonicMs();
    Status s;
    s.version = QStringLiteral(SLULLAMA_VERSION);
    s.uptimeSeconds = (now - m_startedMs) / 1000;
    s.requestCount = m_requestCount;
    if (m_lastReleaseMs < 0 && m_active == 0)
        s.idleSeconds = -1;
    else
        s.idleSeconds = m_active > 0 ? 0 : (now - m_lastReleaseMs) / 1000;
    s.idleTimeoutMinutes = m_config.slurm.idleTimeoutMinutes;
    s.tunnelAlive = m_tunnel->isOpen() && m_localPort != 0;
    s.job.id = m_jobId;
    if (!m_jobId.isEmpty()) {
        s.job.state = m_jobInfo.state;
        s.job.node = m_node;
        if (auto left = m_jobInfo.secondsLeft(); left && m_jobInfo.isRunning())
            s.job.timeLeft
                = slurm::formatDuration(std::max<qint64>(0, *left - (now - m_jobInfoAtMs) / 1000));
        if (m_jobInfo.isPending()) {
            s.job.pendingReason = m_jobInfo.reason;
            const QDateTime start = QDateTime::fromString(m_jobInfo.startTime, Qt::ISODate);
            if (start.isValid())
                s.job.expectedStart = start.toString(Qt::ISODate);
        }
    }
    s.partition = m_config.slurm.partition;
    s.gres = m_config.slurm.gres;
    s.ollamaPort = m_config.ollama.port;
    s.keepAlive = m_config.slurm.keepAlive == KeepAlive::Extend ? QStringLiteral("extend")
                                                                : QStringLiteral("cancel");
    s.phase = m_phase;
    s.keepAliveEffective = m_extendRefused ? QStringLiteral("cancel") : s.keepAlive;
    s.activeRequests = m_active;
    if (m_phase == Phase::Ready && m_active == 0)
        s.secondsUntilSleep
            = std::max<qint64>(0, (idleBaseMs() + idleTimeoutMs() - now + 999) / 1000);
    s.lastError = m_lastError;
    s.lastEndReason = m_lastEndReason;
    s.lastBootAt = m_lastBootAt;
    s.lastBootSeconds = m_lastBootSeconds;
    return s;
}

} // namespace slullama
