#include "lifecycle.h"

#include "jobtemplate.h"
#include "logging.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QRandomGenerator>
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
    if (info.state == u"COMPLETED")
        return QStringLiteral("job script ended (%1)").arg(detail);
    // Cancelled, timed out or finished: Slurm says which only once the job left COMPLETING
    // (followEndState asks again).
    if (info.state == u"COMPLETING")
        return QStringLiteral("job ending in Slurm (%1)").arg(detail);
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
    // Without a job id only a submission in progress is worth keeping: sbatch may have made a
    // job whose id a crash would lose (also an abandoned boot's sbatch, until its job is gone).
    const bool submitting = m_jobId.isEmpty() && !m_submitToken.isEmpty()
        && (m_phase == Phase::Submitting || m_submitsInFlight > 0);
    // A successor's sbatch in flight is kept too, even when the job it was for is gone.
    if (m_jobId.isEmpty() && !submitting && m_handoverSubmitsInFlight == 0) {
        clearState();
        return;
    }
    SavedState state;
    state.jobId = m_jobId;
    state.node = m_node;
    state.since = m_jobSince;
    state.phase = submitting ? phaseText(Phase::Submitting) : phaseText(m_phase);
    state.daemonPid = QCoreApplication::applicationPid();
    state.jobName = m_recovering ? m_recoverJobName : m_config.slurm.jobName;
    state.submitToken = m_submitToken;
    state.otherJobId = handoverOtherJobId();
    if (m_handoverSubmitsInFlight > 0)
        state.otherSubmitToken = m_handoverSubmitToken;
    if (const qint64 now = m_clock->monotonicMs(); m_awakeUntilMs > now)
        state.awakeUntil = m_clock->currentDateTime().addMSecs(m_awakeUntilMs - now).toUTC();
    if (const VoidResult saved = m_store.save(state); !saved)
        qCWarning(lcLifecycle).noquote() << saved.error();
}

void Lifecycle::clearState()
{
    if (const VoidResult cleared = m_store.clear(); !cleared)
        qCWarning(lcLifecycle).noquote() << cleared.error();
}

void Lifecycle::restoreAwakeUntil(const SavedState &saved)
{
    if (!saved.awakeUntil.isValid())
        return;
    const qint64 left = m_clock->currentDateTime().msecsTo(saved.awakeUntil);
    if (left <= 0)
        return;
    m_awakeUntilMs = std::max(m_awakeUntilMs, m_clock->monotonicMs() + left);
    qCInfo(lcLifecycle).noquote() << "keeping the job awake until"
                                  << saved.awakeUntil.toString(Qt::ISODate)
                                  << "as the previous daemon promised";
}

// ---------------------------------------------------------------------------------------------
// Backend

Backend::Ticket Lifecycle::acquire(Callback done)
{
    const Ticket ticket = m_nextTicket++;
    ++m_requestCount;
    if (m_shuttingDown || (m_draining && m_phase != Phase::Ready)) {
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
        result.upstream.localSocket = m_tunnel->localSocket();
        result.upstream.generation = m_generation;
        countHandedOut(m_generation);
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

void Lifecycle::countHandedOut(quint64 generation)
{
    ++m_inFlight[generation];
}

void Lifecycle::release()
{
    // Generation unknown: count it against the newest, so that the old job of a hand-over is
    // never retired early on its account (it still goes once nothing is in flight).
    if (!m_inFlight.empty()) {
        const auto newest = std::prev(m_inFlight.end());
        if (--newest->second <= 0)
            m_inFlight.erase(newest);
    }
    finishRelease();
}

void Lifecycle::release(quint64 generation)
{
    const auto it = m_inFlight.find(generation);
    if (it == m_inFlight.end())
        return release();
    if (--it->second <= 0)
        m_inFlight.erase(it);
    finishRelease();
}

void Lifecycle::finishRelease()
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
    m_upstreamFailed = true;
    schedulePoll(0);
    checkReadyHealth();
}

void Lifecycle::wake()
{
    if (m_shuttingDown || m_phase != Phase::Sleeping)
        return;
    beginBoot();
}

void Lifecycle::wakeFor(double minutes)
{
    if (m_shuttingDown)
        return;
    const qint64 until = m_clock->monotonicMs() + qint64(std::llround(minutes * 60000.0));
    const qint64 before = m_awakeUntilMs;
    m_awakeUntilMs = std::max(m_awakeUntilMs, until);
    wake();
    // In the state file, so that a restarted daemon adopting the job keeps the promise.
    if (m_awakeUntilMs != before)
        saveState();
    rearmIdleTimer();
    maybeExtend(); // keep_alive = "extend": ask for the promised time now
    emit statusChanged();
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
    if (!loaded->has_value()) {
        clearState();
        return;
    }
    const SavedState saved = **loaded;
    if (!saved.otherJobId.isEmpty())
        cancelStrayJob(saved.otherJobId, 0); // a hand-over's second job: one job is enough
    if (!saved.otherSubmitToken.isEmpty())
        cancelInterruptedSuccessor(saved.jobName.isEmpty() ? m_config.slurm.jobName : saved.jobName,
                                   saved.jobId, saved.otherSubmitToken, 0);
    if (saved.jobId.isEmpty()) {
        if (saved.phase == u"submitting" && !saved.jobName.isEmpty()) {
            restoreAwakeUntil(saved);
            return recoverSubmission(saved);
        }
        clearState();
        return;
    }
    restoreAwakeUntil(saved);
    qCInfo(lcLifecycle).noquote() << "state file names job" << saved.jobId
                                  << "- adopting it if Slurm still has it";
    m_jobId = saved.jobId;
    m_node = saved.node;
    m_jobSince = saved.since.isValid() ? saved.since : m_clock->currentDateTime();
    m_jobInfo = JobInfo {};
    m_jobInfo.id = m_jobId;
    m_readyAtMs = -1;
    m_bootStartMs = m_clock->monotonicMs();
    armBootTimer(qint64(m_config.server.bootTimeout * 1000));
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
    // setPhase() writes the state file with this token before sbatch runs; the job carries it in
    // its comment, so a daemon killed meanwhile finds the job (see recoverSubmission()).
    m_submitToken = QString::number(QRandomGenerator::system()->generate64(), 16);
    m_jobSince = m_clock->currentDateTime();
    setPhase(Phase::Submitting,
             m_waiters.empty() ? QStringLiteral("wake") : QStringLiteral("request while sleeping"));
    armBootTimer(qint64(m_config.server.bootTimeout * 1000));

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
    const QByteArray bytes = script->toUtf8();
    // flush() before commit(): Qt 6.4's commit() reports success after a write that failed with
    // ENOSPC and leaves an empty file, which sbatch then rejects with a misleading message.
    if (!file.open(QIODevice::WriteOnly) || file.write(bytes) != bytes.size() || !file.flush()
        || !file.commit()) {
        return failBoot(500,
                        QStringLiteral("cannot write the job script %1: %2 (is log_dir writable, "
                                       "is the disk full?)")
                            .arg(path, file.errorString()),
                        false);
    }
    ++m_submitsInFlight;
    m_slurm.submit(
        path, this,
        [this](const SlurmOutcome &outcome, const QString &jobId) { onSubmitted(outcome, jobId); },
        QStringLiteral("slullama_submit=") + m_submitToken);
}

void Lifecycle::onSubmitted(const SlurmOutcome &outcome, const QString &jobId)
{
    m_submitsInFlight = std::max(0, m_submitsInFlight - 1);
    if (m_phase != Phase::Submitting) {
        // The boot was abandoned (boot timeout) while sbatch ran: never leave its job behind.
        // The state file names the submission until the job is gone, for a restart meanwhile.
        if (!outcome.ok() || jobId.isEmpty())
            return saveState();
        qCWarning(lcLifecycle).noquote()
            << "cancelling job" << jobId << "submitted for an abandoned boot";
        m_slurm.cancel(jobId, this, [this, jobId](const SlurmOutcome &cancelled) {
            if (!cancelled.ok()) {
                qCWarning(lcSlurm).noquote()
                    << "cannot cancel job" << jobId << "of an abandoned boot:" << cancelled.message
                    << "- the state file keeps it for the next start";
                return;
            }
            saveState();
        });
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

// One boot timeout for the boot in progress, however it was started (submit, adoption,
// tunnel rebuild, recovery, a promoted successor).
void Lifecycle::armTimer(Clock::TimerId &id, qint64 ms, std::function<void()> fn)
{
    m_clock->stopTimer(id);
    id = m_clock->startTimer(ms, this, [&id, fn = std::move(fn)]() {
        id = 0; // before fn(), which may arm it again
        fn();
    });
}

void Lifecycle::armBootTimer(qint64 ms)
{
    armTimer(m_bootTimer, ms, [this]() { onBootTimeout(); });
}

void Lifecycle::schedulePoll(qint64 ms)
{
    armTimer(m_pollTimer, ms, [this]() { pollJob(); });
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
    if (info.hasEnded()) {
        const QString jobId = m_jobId;
        jobEnded(endReasonOf(info));
        if (info.exists && info.state == u"COMPLETING")
            followEndState(jobId, 0);
        return;
    }
    if (m_phase == Phase::Queued && info.isRunning())
        onJobRunning(info);
    else if (m_phase == Phase::Starting && m_remotePort == 0 && info.isRunning()) {
        if (resolveRemotePort(info))
            openTunnel();
    } else if (m_phase == Phase::Starting && m_confirmPending && info.isRunning()) {
        return becomeReady(); // it schedules the next poll
    } else if (m_phase == Phase::Ready)
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
    m_remotePort = 0;
    m_confirmPending = false;
    setPhase(Phase::Starting, QStringLiteral("job %1 running on %2").arg(m_jobId, node));
    if (!resolveRemotePort(info)) {
        qCInfo(lcLifecycle).noquote()
            << "waiting for job" << m_jobId << "to report its port (ollama.port = 0)";
        return; // the polls go on; onJobInfo() opens the tunnel once the comment is there
    }
    openTunnel();
}

bool Lifecycle::resolveRemotePort(const JobInfo &info)
{
    if (m_config.ollama.port != 0) {
        m_remotePort = m_config.ollama.port;
        return true;
    }
    const auto reported = slurm::reportedPort(info.comment);
    if (!reported)
        return false;
    m_remotePort = *reported;
    qCInfo(lcLifecycle).noquote() << "job" << m_jobId << "reported port" << m_remotePort;
    return true;
}

void Lifecycle::openTunnel()
{
    ++m_tunnelAttempts;
    const quint64 serial = ++m_tunnelSerial;
    QString error;
    const quint16 port = m_tunnel->open(
        m_node, m_remotePort,
        [this, serial](const QString &reason) { onTunnelExited(serial, reason); }, &error);
    if (port == 0) {
        // Report like an exit, but from the event loop so retries cannot recurse.
        armTimer(m_retryTimer, 0, [this, serial, error]() { onTunnelExited(serial, error); });
        return;
    }
    m_localPort = port;
    m_tunnelOpenedMs = m_clock->monotonicMs();
    qCInfo(lcNodeTunnel).noquote()
        << QStringLiteral("tunnel %1 -> %2:%3")
               .arg(m_tunnel->localSocket().isEmpty() ? QStringLiteral("127.0.0.1:%1").arg(port)
                                                      : m_tunnel->localSocket())
               .arg(m_node)
               .arg(m_remotePort);
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
    m_tunnelOpenedMs = -1;
    m_clock->stopTimer(m_healthTimer);
    m_healthTimer = 0;
    m_clock->stopTimer(m_readyHealthTimer);
    m_readyHealthTimer = 0;
    if (m_phase == Phase::Ready) {
        qCWarning(lcNodeTunnel).noquote()
            << "tunnel to" << m_node << "lost:" << reason << "- rebuilding";
        m_rebuilding = true;
        m_tunnelAttempts = 0;
        m_bootStartMs = m_clock->monotonicMs();
        m_clock->stopTimer(m_idleTimer);
        m_idleTimer = 0;
        armBootTimer(qint64(m_config.server.bootTimeout * 1000));
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
    armTimer(m_retryTimer, kTunnelRetryBaseMs * m_tunnelAttempts, [this]() {
        if (m_phase == Phase::Starting)
            openTunnel();
    });
}

void Lifecycle::scheduleHealth(qint64 ms)
{
    armTimer(m_healthTimer, ms, [this]() { checkHealth(); });
}

void Lifecycle::checkHealth()
{
    if (m_phase != Phase::Starting || m_localPort == 0)
        return;
    if (m_healthInFlight)
        return scheduleHealth(kHealthIntervalMs);
    m_healthInFlight = true;
    const quint64 serial = m_tunnelSerial;
    m_probe->check(
        tunnelProbeHost(*m_tunnel), m_localPort, kHealthTimeoutMs, this,
        [this, serial](bool healthy, const QString &detail) {
            m_healthInFlight = false;
            if (serial != m_tunnelSerial || m_phase != Phase::Starting)
                return;
            if (healthy) {
                if (m_rebuilding)
                    return becomeReady(); // the job was running a moment ago
                // Something answers; make sure it is our job that is still running
                // (not a stranger on a port our model server failed to bind).
                m_confirmPending = true;
                return pollJob();
            }
            const qint64 since = m_clock->monotonicMs() - m_tunnelOpenedMs;
            if (m_rebuilding && m_tunnelOpenedMs >= 0 && m_tunnel->isOpen()
                && since >= kServerLostAfterMs) {
                return replaceJob(QStringLiteral("model server on %1 stopped answering (%2)")
                                      .arg(m_node, detail));
            }
            qCDebug(lcLifecycle).noquote() << "model server not answering yet:" << detail;
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
    m_confirmPending = false;
    if (!m_rebuilding) {
        if (m_bootStartMs >= 0)
            m_lastBootSeconds = double(now - m_bootStartMs) / 1000.0;
        m_lastBootAt = m_clock->currentDateTime();
        m_readyAtMs = now;
        m_jobFirstGeneration = m_generation;
    }
    m_rebuilding = false;
    m_bootStartMs = -1;
    m_busyHealthFailures = 0;
    m_upstreamFailed = false;
    m_lastError.clear();
    setPhase(Phase::Ready, QStringLiteral("model server answers on 127.0.0.1:%1").arg(m_localPort));
    serveWaiters();
    schedulePoll(std::max(kReadyPollMinMs, pollIntervalMs()));
    scheduleReadyHealth(kReadyHealthIntervalMs);
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
        result.upstream.localSocket = m_tunnel->localSocket();
        result.upstream.generation = m_generation;
        result.waitedSeconds = double(now - waiter.sinceMs) / 1000.0;
        countHandedOut(m_generation);
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
    if (m_recovering) {
        // Giving up here could orphan the job sbatch may have made: answer the waiters, keep
        // looking for it.
        failWaiters(504,
                    QStringLiteral("the model server was not ready within boot_timeout (%1 s): "
                                   "still finding the job of an interrupted submission (%2)")
                        .arg(m_config.server.bootTimeout)
                        .arg(m_lastError.isEmpty() ? QStringLiteral("no answer from Slurm yet")
                                                   : m_lastError));
        return;
    }
    QString where = phaseText(m_phase);
    if (!m_jobId.isEmpty()) {
        where += QStringLiteral(", job %1").arg(m_jobId);
        if (!m_jobInfo.state.isEmpty())
            where += QStringLiteral(" %1").arg(m_jobInfo.state);
        if (m_jobInfo.isPending() && !m_jobInfo.reason.isEmpty())
            where += QStringLiteral(", Slurm's reason: %1").arg(m_jobInfo.reason);
    }
    if (m_phase == Phase::Starting && m_remotePort == 0)
        where += QStringLiteral(", the job has not reported its port (ollama.port = 0 needs the "
                                "job to set its comment to slullama_port=N, as the built-in "
                                "template does)");
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
    m_lastEndedJobId = jobId;
    m_jobId.clear();
    m_node.clear();
    if (wasReady && promoteSuccessor(reason))
        return;
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

// A job seen COMPLETING is gone for us at once (its model server is being killed), but Slurm
// tells how it ended (an outside scancel, the time limit, the script) only after COMPLETING:
// ask a few more times so status.last_end_reason can say, holding nothing up meanwhile.
void Lifecycle::followEndState(const QString &jobId, int attempt)
{
    constexpr int kAttempts = 20;
    constexpr qint64 kIntervalMs = 500;
    m_slurm.showJob(
        jobId, this, [this, jobId, attempt](const SlurmOutcome &outcome, const JobInfo &info) {
            if (jobId != m_lastEndedJobId || jobId == m_jobId)
                return; // a later end (or a new job) is what status describes now
            if (outcome.ok() && info.exists && info.state != u"COMPLETING") {
                m_lastEndReason = endReasonOf(info);
                qCInfo(lcLifecycle).noquote() << "job" << jobId << "ended:" << m_lastEndReason;
                emit statusChanged();
                return;
            }
            if (attempt + 1 >= kAttempts || (outcome.ok() && !info.exists))
                return;
            m_clock->startTimer(kIntervalMs, this,
                                [this, jobId, attempt]() { followEndState(jobId, attempt + 1); });
        });
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

qint64 Lifecycle::idleDeadlineMs() const
{
    return std::max(idleBaseMs() + idleTimeoutMs(), m_awakeUntilMs);
}

void Lifecycle::rearmIdleTimer()
{
    m_clock->stopTimer(m_idleTimer);
    m_idleTimer = 0;
    if (m_phase != Phase::Ready || m_active > 0)
        return;
    const qint64 deadline = idleDeadlineMs();
    const qint64 wait = std::max<qint64>(0, deadline - m_clock->monotonicMs());
    armTimer(m_idleTimer, wait, [this]() { onIdleTimer(); });
}

void Lifecycle::onIdleTimer()
{
    if (m_phase != Phase::Ready || m_active > 0)
        return;
    if (m_clock->monotonicMs() < idleDeadlineMs())
        return rearmIdleTimer();
    qCInfo(lcLifecycle).noquote() << "idle for" << m_config.slurm.idleTimeoutMinutes << "min";
    beginStopping(QStringLiteral("idle"));
}

void Lifecycle::beginStopping(const QString &reason)
{
    abortHandover(reason);
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
        armTimer(m_retryTimer, backoff, [this]() {
            if (m_phase == Phase::Stopping)
                sendCancel();
        });
        emit statusChanged();
    });
}

void Lifecycle::finishStopping()
{
    m_lastEndReason = m_stopReason;
    m_lastEndedJobId.clear();
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
    maybeHandover();
    if (m_config.slurm.keepAlive != KeepAlive::Extend || m_extendRefused || m_extendInFlight
        || m_phase != Phase::Ready || m_jobId.isEmpty())
        return;
    const qint64 now = m_clock->monotonicMs();
    if (m_lastExtendMs >= 0 && now - m_lastExtendMs < kExtendMinIntervalMs)
        return;
    const auto limit = m_limitSeconds.parse(m_jobInfo.timeLimit);
    const auto run = m_runSeconds.parse(m_jobInfo.runTime);
    if (!limit || !run)
        return; // UNLIMITED, or not known yet
    const qint64 runNow = *run + (now - m_jobInfoAtMs) / 1000;
    // Enough for the idle timeout after now, or for a wake's keep-awake promise if longer.
    const qint64 awakeLeft = m_awakeUntilMs > now ? (m_awakeUntilMs - now + 999) / 1000 : 0;
    const qint64 needLeft = std::max(idleTimeoutMs() / 1000, awakeLeft) + kExtendMarginSeconds;
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
    for (Clock::TimerId *id : {&m_pollTimer, &m_healthTimer, &m_bootTimer, &m_idleTimer,
                               &m_retryTimer, &m_readyHealthTimer}) {
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
// Health while Ready

void Lifecycle::scheduleReadyHealth(qint64 ms)
{
    armTimer(m_readyHealthTimer, ms, [this]() { checkReadyHealth(); });
}

void Lifecycle::checkReadyHealth()
{
    if (m_phase != Phase::Ready)
        return;
    if (!m_tunnel->isOpen() || m_localPort == 0)
        return onTunnelExited(m_tunnelSerial, QStringLiteral("tunnel not running"));
    if (m_healthInFlight)
        return; // its answer schedules the next check
    m_healthInFlight = true;
    const quint64 serial = m_tunnelSerial;
    // Thousands of streams on the tunnel can delay the probe's channel open by seconds; a probe
    // that only lost that race must not cut them all (see kBusyHealthTimeoutMs).
    const bool busy = m_active > 0;
    m_probe->check(tunnelProbeHost(*m_tunnel), m_localPort,
                   busy ? kBusyHealthTimeoutMs : kHealthTimeoutMs, this,
                   [this, serial](bool healthy, const QString &detail) {
                       m_healthInFlight = false;
                       if (serial != m_tunnelSerial || m_phase != Phase::Ready)
                           return;
                       if (healthy) {
                           m_busyHealthFailures = 0;
                           m_upstreamFailed = false;
                           return scheduleReadyHealth(kReadyHealthIntervalMs);
                       }
                       if (m_active > 0 && !m_upstreamFailed
                           && m_busyHealthFailures < kBusyHealthFailuresTolerated) {
                           ++m_busyHealthFailures;
                           qCWarning(lcLifecycle).noquote()
                               << "model server on" << m_node << "did not answer:" << detail << "-"
                               << m_active
                               << "requests active, probing again before rebuilding the tunnel";
                           return scheduleReadyHealth(kBusyHealthRetryMs);
                       }
                       m_busyHealthFailures = 0;
                       m_upstreamFailed = false;
                       // A dead tunnel and a dead server look alike from here: rebuild the tunnel;
                       // if the server still does not answer through the new one, checkHealth()
                       // replaces the job.
                       qCWarning(lcLifecycle).noquote()
                           << "model server on" << m_node << "did not answer:" << detail;
                       onTunnelExited(serial, QStringLiteral("health check failed: ") + detail);
                   });
}

void Lifecycle::replaceJob(const QString &reason)
{
    qCWarning(lcLifecycle).noquote()
        << reason << "- cancelling job" << m_jobId
        << (m_waiters.empty() ? QStringLiteral("(the next request starts a fresh one)")
                              : QStringLiteral("and starting a fresh one for %1 waiting requests")
                                    .arg(m_waiters.size()));
    m_lastError = reason;
    beginStopping(reason);
}

// ---------------------------------------------------------------------------------------------
// Recovering a submission interrupted by a crash

void Lifecycle::recoverSubmission(const SavedState &saved)
{
    qCWarning(lcLifecycle).noquote()
        << "the previous daemon was stopped while submitting a job: looking for jobs named"
        << saved.jobName << "before submitting another";
    m_recovering = true;
    m_recoverAttempts = 0;
    m_recoverJobName = saved.jobName;
    m_submitToken = saved.submitToken;
    m_jobSince = saved.since.isValid() ? saved.since : m_clock->currentDateTime();
    m_bootStartMs = m_clock->monotonicMs();
    armBootTimer(qint64(m_config.server.bootTimeout * 1000));
    setPhase(Phase::Submitting, QStringLiteral("finding the job of an interrupted submission"));
    listForRecovery();
}

void Lifecycle::listForRecovery()
{
    ++m_recoverAttempts;
    m_slurm.listJobs(m_recoverJobName, this,
                     [this](const SlurmOutcome &outcome, const QList<JobSummary> &jobs) {
                         onRecoveryList(outcome, jobs);
                     });
}

void Lifecycle::onRecoveryList(const SlurmOutcome &outcome, const QList<JobSummary> &jobs)
{
    if (!m_recovering || m_phase != Phase::Submitting)
        return;
    if (!outcome.ok()) {
        qCWarning(lcSlurm).noquote() << "cannot list jobs named" << m_recoverJobName << "(attempt"
                                     << m_recoverAttempts << "):" << outcome.message;
        m_lastError = outcome.message;
        // Submitting another job now could make two: requests get Slurm's error meanwhile.
        failWaiters(httpStatusFor(outcome), outcome.message);
        if (m_shuttingDown && m_recoverAttempts >= kShutdownCancelAttempts) {
            qCWarning(lcLifecycle).noquote()
                << "giving up at shutdown; the state file keeps the interrupted submission";
            m_shutdownDone = true;
            stopAllTimers();
            QTimer::singleShot(0, this, &Lifecycle::shutdownFinished);
            return;
        }
        const qint64 backoff = std::min(kRecoverRetryMaxMs,
                                        kCancelRetryBaseMs << std::min(m_recoverAttempts - 1, 10));
        armTimer(m_retryTimer, backoff, [this]() {
            if (m_recovering && m_phase == Phase::Submitting)
                listForRecovery();
        });
        emit statusChanged();
        return;
    }
    m_recovering = false;
    // Every live job of this user with our job name is ours (one daemon per user and job name):
    // keep the one carrying our token (else the newest), cancel the others.
    const QString mark = QStringLiteral("slullama_submit=") + m_submitToken;
    const JobSummary *keep = nullptr;
    for (const JobSummary &job : jobs) {
        if (!m_submitToken.isEmpty() && job.comment.contains(mark)) {
            keep = &job;
            break;
        }
    }
    const auto number
        = [](const JobSummary &job) { return job.id.section(u'_', 0, 0).toLongLong(); };
    for (const JobSummary &job : jobs) {
        if (!keep)
            keep = &job;
        else if (!keep->comment.contains(mark) && number(job) > number(*keep))
            keep = &job;
    }
    for (const JobSummary &job : jobs) {
        if (keep && job.id == keep->id)
            continue;
        qCWarning(lcSlurm).noquote() << "cancelling job" << job.id << "(" << job.state
                                     << "), a second job named" << m_recoverJobName;
        m_slurm.cancel(job.id, this, [](const SlurmOutcome &) {});
    }
    m_submitToken.clear();
    if (!keep) {
        qCInfo(lcLifecycle).noquote() << "the interrupted submission left no job";
        stopBootTimers();
        m_bootStartMs = -1;
        if (m_shuttingDown) {
            m_stopReason = QStringLiteral("shutdown");
            return finishStopping();
        }
        setPhase(Phase::Sleeping, QStringLiteral("no job of the interrupted submission"));
        if (!m_waiters.empty())
            beginBoot();
        return;
    }
    qCInfo(lcLifecycle).noquote() << "adopting job" << keep->id << "(" << keep->state
                                  << ") of the interrupted submission";
    m_jobId = keep->id;
    m_node.clear();
    m_jobInfo = JobInfo {};
    m_jobInfo.id = m_jobId;
    m_jobInfo.state = keep->state;
    m_jobInfoAtMs = m_clock->monotonicMs();
    m_readyAtMs = -1;
    if (m_shuttingDown)
        return beginStopping(QStringLiteral("shutdown"));
    setPhase(Phase::Queued, QStringLiteral("adopting job %1").arg(m_jobId));
    pollJob();
}

// ---------------------------------------------------------------------------------------------
// Shutdown and status

void Lifecycle::beginDrain()
{
    if (m_draining || m_shuttingDown)
        return;
    m_draining = true;
    if (!m_waiters.empty())
        qCInfo(lcLifecycle) << "shutting down:" << m_waiters.size()
                            << "requests waiting for the model server get 503";
    failWaiters(503, QStringLiteral("slullama is shutting down"));
    emit statusChanged();
}

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
        return; // onSubmitted / onRecoveryList cancel the job Slurm has
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
        s.secondsUntilSleep = std::max<qint64>(0, (idleDeadlineMs() - now + 999) / 1000);
    if (m_awakeUntilMs > now && m_phase != Phase::Sleeping && m_phase != Phase::Stopping)
        s.awakeUntil = m_clock->currentDateTime().addMSecs(m_awakeUntilMs - now);
    s.lastError = m_lastError;
    s.lastEndReason = m_lastEndReason;
    s.lastBootAt = m_lastBootAt;
    s.lastBootSeconds = m_lastBootSeconds;
    s.handover = handoverStatus();
    return s;
}

// ---------------------------------------------------------------------------------------------
// Walltime hand-over
//
// A job that cannot be extended ends at its limit. While the gateway is in use, a successor is
// submitted early enough to boot before that (lead time: handover_lead, or 1.5 x the last boot),
// with its own tunnel; once it answers, it becomes the job in use (a new Upstream generation),
// the old job keeps its tunnel until its streams are done (no request in flight), then it is
// cancelled. The state file names both jobs meanwhile, so a restart never orphans one.

namespace {

constexpr int kHandoverCancelAttempts = 5;

QString writeJobScriptFile(const Config &config, QString *path)
{
    auto script = renderJobScript(config);
    if (!script)
        return QStringLiteral("cannot render the job script: ") + script.error();
    if (!QDir().mkpath(config.server.logDir))
        return QStringLiteral("cannot create log_dir %1").arg(config.server.logDir);
    *path = QDir(config.server.logDir).filePath(config.slurm.jobName + QStringLiteral("-job.sh"));
    QSaveFile file(*path);
    const QByteArray bytes = script->toUtf8();
    if (!file.open(QIODevice::WriteOnly) || file.write(bytes) != bytes.size() || !file.flush()
        || !file.commit())
        return QStringLiteral("cannot write the job script %1: %2").arg(*path, file.errorString());
    return {};
}

} // namespace

void Lifecycle::maybeHandover()
{
    // The old job goes once its own requests are done, however busy the successor is.
    if (m_handover.stage == u"draining" && (m_active == 0 || oldJobInFlight() == 0))
        retireOldJob();
    if (m_handover.stage == u"failed" && m_handover.oldJobId != m_jobId) {
        resetHandover();
        emit statusChanged();
    }
    if (!m_handover.stage.isEmpty() || m_config.slurm.handoverLead <= 0 || m_phase != Phase::Ready
        || m_jobId.isEmpty() || m_shuttingDown)
        return;
    if (m_config.slurm.keepAlive != KeepAlive::Cancel && !m_extendRefused)
        return;
    const auto limit = m_limitSeconds.parse(m_jobInfo.timeLimit);
    const auto run = m_runSeconds.parse(m_jobInfo.runTime);
    if (!limit || !run)
        return; // UNLIMITED, or not known yet
    const qint64 now = m_clock->monotonicMs();
    const qint64 leftMs = *limit * 1000 - (*run * 1000 + (now - m_jobInfoAtMs));
    // At most half the job's whole limit: with a lead longer than the limit every job would
    // start its successor at once, a chain of jobs for the price of one.
    const qint64 leadMs
        = std::min(std::max(qint64(m_config.slurm.handoverLead * 1000),
                            m_lastBootSeconds > 0 ? qint64(m_lastBootSeconds * 1500) : 0),
                   *limit * 1000 / 2);
    if (leftMs > leadMs) {
        // Every request passes here: keep a timer that is already due at (about) that time.
        const qint64 dueMs = now + leftMs - leadMs;
        if (m_handoverTimer != 0 && std::abs(dueMs - m_handoverDueMs) < 1000)
            return;
        m_handoverDueMs = dueMs;
        armTimer(m_handoverTimer, leftMs - leadMs, [this]() { maybeHandover(); });
        return;
    }
    if (leftMs <= 0)
        return;
    // An idle gateway must not keep an allocation: the idle timeout would end it first.
    if (m_active == 0 && idleDeadlineMs() <= now + leftMs)
        return; // a request meanwhile calls this again
    beginHandover();
}

void Lifecycle::beginHandover()
{
    QString path;
    const QString error = writeJobScriptFile(m_config, &path);
    resetHandover();
    m_handover.oldJobId = m_jobId;
    m_handover.startMs = m_clock->monotonicMs();
    m_handover.generation = m_generation;
    if (!error.isEmpty())
        return failHandover(error);
    m_handover.stage = QStringLiteral("submitting");
    qCInfo(lcLifecycle).noquote() << "job" << m_jobId
                                  << "nears its time limit and cannot be extended: submitting a "
                                     "successor (walltime hand-over)";
    // Like the main submission: the state file names the token before sbatch runs, so a daemon
    // killed meanwhile finds the successor by name and token (cancelInterruptedSuccessor()).
    m_handoverSubmitToken = QString::number(QRandomGenerator::system()->generate64(), 16);
    ++m_handoverSubmitsInFlight;
    saveState();
    m_slurm.submit(
        path, this,
        [this](const SlurmOutcome &outcome, const QString &jobId) {
            onHandoverSubmitted(outcome, jobId);
        },
        QStringLiteral("slullama_handover=") + m_jobId + QStringLiteral(",slullama_submit=")
            + m_handoverSubmitToken);
    emit statusChanged();
}

void Lifecycle::onHandoverSubmitted(const SlurmOutcome &outcome, const QString &jobId)
{
    m_handoverSubmitsInFlight = std::max(0, m_handoverSubmitsInFlight - 1);
    if (m_handover.stage != u"submitting") {
        // Abandoned meanwhile (idle, shutdown, the old job ended): never leave the job behind.
        if (outcome.ok() && !jobId.isEmpty())
            cancelStrayJob(jobId, 0);
        if (!m_shutdownDone)
            saveState();
        return;
    }
    if (!outcome.ok())
        return failHandover(QStringLiteral("cannot submit the successor job: ") + outcome.message);
    qCInfo(lcSlurm).noquote() << "submitted successor job" << jobId << "for job"
                              << m_handover.oldJobId;
    m_handover.jobId = jobId;
    m_handover.stage = QStringLiteral("booting");
    m_handover.info = JobInfo {};
    m_handover.info.id = jobId;
    m_handover.info.state = QStringLiteral("PENDING");
    m_handover.infoAtMs = m_clock->monotonicMs();
    saveState();
    emit statusChanged();
    scheduleHandoverStep(std::min(kFirstPollMaxMs, pollIntervalMs()));
}

void Lifecycle::scheduleHandoverStep(qint64 ms)
{
    armTimer(m_handoverStepTimer, ms, [this]() {
        if (m_handover.stage != u"booting")
            return;
        const qint64 now = m_clock->monotonicMs();
        if (now - m_handover.startMs > qint64(m_config.server.bootTimeout * 1000))
            return failHandover(
                QStringLiteral("successor job %1 was not ready within boot_timeout (%2 s)")
                    .arg(m_handover.jobId)
                    .arg(m_config.server.bootTimeout));
        if (m_handover.localPort == 0)
            return pollHandoverJob();
        if (now - m_handover.infoAtMs >= pollIntervalMs())
            pollHandoverJob(); // notices a successor that ended while its server starts
        checkHandoverHealth();
    });
}

void Lifecycle::pollHandoverJob()
{
    if (m_handover.pollInFlight)
        return;
    m_handover.pollInFlight = true;
    const QString jobId = m_handover.jobId;
    m_slurm.showJob(jobId, this, [this, jobId](const SlurmOutcome &outcome, const JobInfo &info) {
        if (jobId != m_handover.jobId || m_handover.stage != u"booting")
            return;
        m_handover.pollInFlight = false;
        const bool tunnelling = m_handover.localPort != 0;
        if (!outcome.ok()) {
            if (!tunnelling)
                scheduleHandoverStep(pollIntervalMs());
            return;
        }
        const QString previousState = m_handover.info.state;
        m_handover.info = info;
        m_handover.infoAtMs = m_clock->monotonicMs();
        if (info.hasEnded())
            return failHandover(QStringLiteral("successor job %1 ended before it was ready: %2")
                                    .arg(jobId, endReasonOf(info)));
        if (previousState != info.state)
            emit statusChanged();
        if (tunnelling)
            return; // the health checks go on
        if (info.isRunning() && !info.node().isEmpty()) {
            m_handover.node = info.node();
            if (m_config.ollama.port != 0)
                m_handover.remotePort = m_config.ollama.port;
            else if (const auto reported = slurm::reportedPort(info.comment))
                m_handover.remotePort = *reported;
            // Both model servers on one node and one fixed port: the successor's cannot bind,
            // and its tunnel would reach the old job's server.
            if (m_handover.remotePort != 0 && m_handover.node == m_node
                && m_handover.remotePort == m_remotePort)
                return failHandover(
                    QStringLiteral("successor job %1 runs on the same node (%2) as the job in "
                                   "use, and ollama.port %3 is fixed: set ollama.port = 0 for "
                                   "walltime hand-overs on shared nodes")
                        .arg(jobId, m_node)
                        .arg(m_remotePort));
            if (m_handover.remotePort != 0)
                return openHandoverTunnel();
        }
        scheduleHandoverStep(pollIntervalMs());
    });
}

void Lifecycle::openHandoverTunnel()
{
    if (!m_handover.tunnel)
        m_handover.tunnel = m_tunnelFactory ? m_tunnelFactory() : makeSshNodeTunnel(m_config.ssh);
    ++m_handover.tunnelAttempts;
    const quint64 serial = ++m_handoverSerials;
    m_handover.tunnelSerial = serial;
    QString error;
    const quint16 port = m_handover.tunnel->open(
        m_handover.node, m_handover.remotePort,
        [this, serial](const QString &reason) {
            if (serial == m_promotedHandoverSerial)
                return onTunnelExited(m_promotedMainSerial, reason);
            onHandoverTunnelExited(serial, reason);
        },
        &error);
    if (port == 0) {
        armTimer(m_handoverStepTimer, 0,
                 [this, serial, error]() { onHandoverTunnelExited(serial, error); });
        return;
    }
    m_handover.localPort = port;
    qCInfo(lcNodeTunnel).noquote() << QStringLiteral("successor tunnel 127.0.0.1:%1 -> %2:%3")
                                          .arg(port)
                                          .arg(m_handover.node)
                                          .arg(m_handover.remotePort);
    emit statusChanged();
    scheduleHandoverStep(kHealthIntervalMs);
}

void Lifecycle::onHandoverTunnelExited(quint64 serial, const QString &reason)
{
    if (serial != m_handover.tunnelSerial || m_handover.stage != u"booting")
        return;
    m_handover.localPort = 0;
    m_handover.tunnel->close();
    m_handover.tunnelSerial = 0; // answers and exits of that tunnel are stale
    m_handover.healthInFlight = false; // its answer is stale now
    if (m_handover.tunnelAttempts >= kTunnelAttemptsPerBoot)
        return failHandover(QStringLiteral("cannot open the ssh tunnel to node %1: %2")
                                .arg(m_handover.node, reason));
    qCWarning(lcNodeTunnel).noquote()
        << "successor tunnel attempt" << m_handover.tunnelAttempts << "failed:" << reason;
    armTimer(m_handoverStepTimer, kTunnelRetryBaseMs * m_handover.tunnelAttempts, [this]() {
        if (m_handover.stage == u"booting" && m_handover.localPort == 0)
            openHandoverTunnel();
    });
}

void Lifecycle::checkHandoverHealth()
{
    if (m_handover.healthInFlight)
        return scheduleHandoverStep(kHealthIntervalMs);
    m_handover.healthInFlight = true;
    const quint64 serial = m_handover.tunnelSerial;
    m_probe->check(tunnelProbeHost(*m_handover.tunnel), m_handover.localPort, kHealthTimeoutMs,
                   this, [this, serial](bool healthy, const QString &detail) {
                       if (serial != m_handover.tunnelSerial || m_handover.stage != u"booting")
                           return;
                       m_handover.healthInFlight = false;
                       // Only a successor Slurm last saw running counts (not a stranger on
                       // a port its model server failed to bind).
                       if (healthy && m_handover.info.isRunning() && m_phase == Phase::Ready)
                           return switchToSuccessor();
                       qCDebug(lcLifecycle).noquote()
                           << "successor model server not answering yet:" << detail;
                       scheduleHandoverStep(kHealthIntervalMs);
                   });
}

void Lifecycle::switchToSuccessor()
{
    const qint64 now = m_clock->monotonicMs();
    m_clock->stopTimer(m_handoverStepTimer);
    m_handoverStepTimer = 0;
    const QString oldJobId = m_jobId;
    const JobInfo oldInfo = m_jobInfo;
    const qint64 oldInfoAtMs = m_jobInfoAtMs;
    qCInfo(lcLifecycle).noquote() << "walltime hand-over: job" << m_handover.jobId << "on"
                                  << m_handover.node << "answers; new requests go there, job"
                                  << oldJobId << "finishes" << m_active
                                  << "request(s) in flight, then it is cancelled";
    m_handover.oldFirstGeneration = m_jobFirstGeneration;
    m_handover.oldTunnel = std::move(m_tunnel);
    m_tunnel = std::move(m_handover.tunnel);
    ++m_tunnelSerial; // exits and health answers of the old tunnel are stale now
    m_promotedHandoverSerial = m_handover.tunnelSerial;
    m_promotedMainSerial = m_tunnelSerial;
    m_jobId = m_handover.jobId;
    m_node = m_handover.node;
    m_jobInfo = m_handover.info;
    m_jobInfoAtMs = m_handover.infoAtMs;
    m_remotePort = m_handover.remotePort;
    m_localPort = m_handover.localPort;
    m_tunnelOpenedMs = now;
    m_tunnelAttempts = 0;
    ++m_generation;
    m_handover.successorGeneration = m_generation;
    m_jobFirstGeneration = m_generation;
    m_jobSince = m_clock->currentDateTime();
    m_lastBootSeconds = double(now - m_handover.startMs) / 1000.0;
    m_lastBootAt = m_clock->currentDateTime();
    m_readyAtMs = now;
    m_lastExtendMs = -1;
    m_extendRefused = false;
    m_lastError.clear();
    m_handover.stage = QStringLiteral("draining");
    m_handover.oldJobId = oldJobId;
    m_handover.localPort = 0;
    m_handover.healthInFlight = false;
    m_handover.pollInFlight = false;
    // The old job goes at its limit anyway: by then its streams are cut, so retire it there.
    m_clock->stopTimer(m_retireTimer);
    m_retireTimer = 0;
    if (const auto limit = slurm::parseDuration(oldInfo.timeLimit),
        run = slurm::parseDuration(oldInfo.runTime);
        limit && run) {
        const qint64 leftMs = *limit * 1000 - (*run * 1000 + (now - oldInfoAtMs));
        armTimer(m_retireTimer, std::max<qint64>(0, leftMs), [this]() { retireOldJob(); });
    }
    saveState();
    schedulePoll(std::max(kReadyPollMinMs, pollIntervalMs()));
    scheduleReadyHealth(kReadyHealthIntervalMs);
    rearmIdleTimer();
    emit statusChanged();
    maybeHandover(); // retires the old job at once when nothing is in flight
}

void Lifecycle::retireOldJob()
{
    if (m_handover.stage != u"draining" && m_handover.stage != u"retiring")
        return;
    m_clock->stopTimer(m_retireTimer);
    m_retireTimer = 0;
    if (m_handover.oldTunnel)
        m_handover.oldTunnel->close();
    if (m_handover.stage == u"draining")
        qCInfo(lcLifecycle).noquote()
            << "walltime hand-over done: cancelling the old job" << m_handover.oldJobId;
    m_handover.stage = QStringLiteral("retiring");
    ++m_handover.cancelAttempts;
    const QString oldJobId = m_handover.oldJobId;
    emit statusChanged();
    m_slurm.cancel(oldJobId, this, [this, oldJobId](const SlurmOutcome &outcome) {
        if (m_handover.stage != u"retiring" || m_handover.oldJobId != oldJobId)
            return;
        if (!outcome.ok() && m_handover.cancelAttempts < kHandoverCancelAttempts) {
            qCWarning(lcSlurm).noquote() << "scancel" << oldJobId << "failed:" << outcome.message;
            armTimer(m_retireTimer, kCancelRetryBaseMs << m_handover.cancelAttempts,
                     [this]() { retireOldJob(); });
            return;
        }
        if (!outcome.ok())
            qCWarning(lcSlurm).noquote() << "giving up on cancelling the old job" << oldJobId
                                         << "(it ends at its time limit):" << outcome.message;
        resetHandover();
        saveState();
        emit statusChanged();
    });
}

void Lifecycle::failHandover(const QString &message)
{
    qCWarning(lcLifecycle).noquote() << "walltime hand-over failed:" << message << "- job"
                                     << m_jobId << "keeps serving until its time limit";
    m_clock->stopTimer(m_handoverStepTimer);
    m_handoverStepTimer = 0;
    const QString successor = m_handover.jobId;
    if (m_handover.tunnel)
        m_handover.tunnel->close();
    resetHandover();
    m_handover.stage = QStringLiteral("failed");
    m_handover.oldJobId = m_jobId;
    m_handover.message = message;
    if (!successor.isEmpty())
        cancelStrayJob(successor, 0);
    saveState();
    emit statusChanged();
}

// The job in use ended while its successor booted: the successor is the boot in progress now.
bool Lifecycle::promoteSuccessor(const QString &reason)
{
    if (m_handover.stage != u"booting" || m_handover.jobId.isEmpty() || m_shuttingDown)
        return false;
    m_clock->stopTimer(m_handoverStepTimer);
    m_handoverStepTimer = 0;
    if (m_handover.tunnel)
        m_handover.tunnel->close();
    m_jobId = m_handover.jobId;
    m_node.clear();
    m_jobInfo = m_handover.info;
    m_jobInfoAtMs = m_handover.infoAtMs;
    m_jobSince = m_clock->currentDateTime();
    m_readyAtMs = -1;
    m_bootStartMs = m_handover.startMs;
    m_rebuilding = false;
    m_remotePort = 0;
    m_tunnelAttempts = 0;
    m_confirmPending = false;
    m_extendRefused = false;
    m_lastExtendMs = -1;
    const qint64 remaining = std::max<qint64>(
        0, qint64(m_config.server.bootTimeout * 1000) - (m_clock->monotonicMs() - m_bootStartMs));
    armBootTimer(remaining);
    resetHandover();
    setPhase(Phase::Queued,
             QStringLiteral("the job in use ended (%1); its successor %2 takes over")
                 .arg(reason, m_jobId));
    pollJob();
    return true;
}

void Lifecycle::abortHandover(const QString &reason)
{
    for (Clock::TimerId *id : {&m_handoverTimer, &m_handoverStepTimer, &m_retireTimer}) {
        m_clock->stopTimer(*id);
        *id = 0;
    }
    if (m_handover.stage.isEmpty() || m_handover.stage == u"failed") {
        resetHandover();
        return;
    }
    qCInfo(lcLifecycle).noquote() << "stopping the walltime hand-over:" << reason;
    if (m_handover.tunnel)
        m_handover.tunnel->close();
    if (m_handover.oldTunnel)
        m_handover.oldTunnel->close();
    const bool draining = m_handover.stage == u"draining" || m_handover.stage == u"retiring";
    const QString other = draining ? m_handover.oldJobId : m_handover.jobId;
    resetHandover();
    if (!other.isEmpty())
        cancelStrayJob(other, 0);
}

void Lifecycle::cancelStrayJob(const QString &jobId, int attempt)
{
    m_slurm.cancel(jobId, this, [this, jobId, attempt](const SlurmOutcome &outcome) {
        if (outcome.ok()) {
            qCInfo(lcSlurm).noquote() << "cancelled job" << jobId;
            return;
        }
        if (attempt + 1 >= kHandoverCancelAttempts) {
            qCWarning(lcSlurm).noquote()
                << "giving up on cancelling job" << jobId << ":" << outcome.message;
            return;
        }
        m_clock->startTimer(kCancelRetryBaseMs << attempt, this,
                            [this, jobId, attempt]() { cancelStrayJob(jobId, attempt + 1); });
    });
}

void Lifecycle::resetHandover()
{
    for (std::unique_ptr<NodeTunnel> *tunnel : {&m_handover.tunnel, &m_handover.oldTunnel}) {
        if (!*tunnel)
            continue;
        (*tunnel)->close();
        std::shared_ptr<NodeTunnel> doomed(std::move(*tunnel));
        QTimer::singleShot(0, this, [doomed]() {});
    }
    m_handover = Handover {};
}

void Lifecycle::cancelInterruptedSuccessor(const QString &jobName, const QString &keepJobId,
                                           const QString &token, int attempt)
{
    m_slurm.listJobs(jobName, this,
                     [this, jobName, keepJobId, token, attempt](const SlurmOutcome &outcome,
                                                                const QList<JobSummary> &jobs) {
                         if (!outcome.ok()) {
                             if (attempt + 1 >= kHandoverCancelAttempts) {
                                 qCWarning(lcSlurm).noquote()
                                     << "giving up on finding the successor job of an interrupted "
                                        "hand-over:"
                                     << outcome.message;
                                 return;
                             }
                             m_clock->startTimer(kCancelRetryBaseMs << attempt, this,
                                                 [this, jobName, keepJobId, token, attempt]() {
                                                     cancelInterruptedSuccessor(jobName, keepJobId,
                                                                                token, attempt + 1);
                                                 });
                             return;
                         }
                         const QString mark = QStringLiteral("slullama_submit=") + token;
                         for (const JobSummary &job : jobs) {
                             if (job.id == keepJobId || job.id == m_jobId
                                 || job.id == m_handover.jobId)
                                 continue;
                             // With ollama.port = 0 the job replaces its comment (and the
                             // token) with its port: a job of our name without a token of
                             // another submission is ours to cancel too.
                             if (!job.comment.contains(mark)
                                 && job.comment.contains(QStringLiteral("slullama_submit=")))
                                 continue;
                             qCWarning(lcSlurm).noquote()
                                 << "cancelling job" << job.id << "(" << job.state
                                 << "), the successor submitted when the previous daemon stopped";
                             cancelStrayJob(job.id, 0);
                         }
                     });
}

int Lifecycle::oldJobInFlight() const
{
    int n = 0;
    for (auto it = m_inFlight.lower_bound(m_handover.oldFirstGeneration);
         it != m_inFlight.end() && it->first < m_handover.successorGeneration; ++it)
        n += it->second;
    return n;
}

QString Lifecycle::handoverOtherJobId() const
{
    if (m_handover.stage == u"draining" || m_handover.stage == u"retiring")
        return m_handover.oldJobId;
    if (m_handover.stage == u"booting")
        return m_handover.jobId;
    return {};
}

HandoverStatus Lifecycle::handoverStatus() const
{
    HandoverStatus h;
    h.stage = m_handover.stage;
    h.oldJobId = m_handover.oldJobId;
    h.message = m_handover.message;
    if (m_handover.stage == u"draining" || m_handover.stage == u"retiring") {
        h.successorJobId = m_jobId;
        h.successorState = m_jobInfo.state;
        h.successorNode = m_node;
        if (h.message.isEmpty())
            h.message = QStringLiteral("job %1 finishes its requests in flight").arg(h.oldJobId);
    } else if (!m_handover.stage.isEmpty() && m_handover.stage != u"failed") {
        h.successorJobId = m_handover.jobId;
        h.successorState = m_handover.info.state;
        h.successorNode = m_handover.node;
    }
    return h;
}

} // namespace slullama
