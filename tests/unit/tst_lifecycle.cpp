#include "lifecycle.h"
#include "lifecyclefakes.h"
#include "statestore.h"

#include <QDir>
#include <QFile>
#include <QRegularExpression>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

Q_DECLARE_METATYPE(slullama::ProcessResult)

using namespace slullama;
using namespace slullama::test;

namespace {

QByteArray slurmData(const QString &name, const QString &jobId = QStringLiteral("1"))
{
    QFile file(QStringLiteral(SLULLAMA_TEST_DATA "/slurm/") + name);
    if (!file.open(QIODevice::ReadOnly))
        qFatal("missing test data %s", qPrintable(name));
    QString text = QString::fromUtf8(file.readAll());
    text.replace(QRegularExpression(QStringLiteral("^JobId=\\d+")),
                 QStringLiteral("JobId=") + jobId);
    return text.toUtf8();
}

QByteArray running(const QString &id = QStringLiteral("1"))
{
    return slurmData(QStringLiteral("scontrol-show-job-running.out"), id);
}
QByteArray pending(const QString &id = QStringLiteral("1"))
{
    return slurmData(QStringLiteral("scontrol-show-job-pending.out"), id);
}

// Counts warnings that mention a text, to check "one warning, not one per request".
QStringList g_warnings;
QtMessageHandler g_previousHandler = nullptr;
void recordingHandler(QtMsgType type, const QMessageLogContext &context, const QString &message)
{
    if (type == QtWarningMsg)
        g_warnings << message;
    if (g_previousHandler)
        g_previousHandler(type, context, message);
}

// The lifecycle with fakes for every side effect. Slurm answers: sbatch → job 1, the job is
// RUNNING on node "vm", scancel works — tests override what they need.
struct Rig
{
    QTemporaryDir dir;
    Config config;
    FakeProcessRunner runner;
    FakeClock clock;
    FakeNodeTunnel *tunnel = nullptr;
    FakeHealthProbe *probe = nullptr;
    std::unique_ptr<Lifecycle> lc;
    std::vector<Phase> phases;

    Rig()
    {
        config.server.logDir = dir.path();
        config.server.bootTimeout = 60;
        config.slurm.idleTimeoutMinutes = 1;
        config.slurm.pollInterval = 1;
        config.slurm.commandTimeout = 20;
        config.ollama.port = 11434;
        runner.respond(QStringLiteral("sbatch"), exitWith(0, "1\n"));
        runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, running()));
        runner.respond(QStringLiteral("scancel"), exitWith(0));
    }

    Lifecycle &make()
    {
        auto t = std::make_unique<FakeNodeTunnel>();
        auto p = std::make_unique<FakeHealthProbe>();
        tunnel = t.get();
        probe = p.get();
        lc = std::make_unique<Lifecycle>(config, &runner, &clock, std::move(t), std::move(p));
        QObject::connect(lc.get(), &Lifecycle::phaseChanged, lc.get(),
                         [this](Phase ph) { phases.push_back(ph); });
        return *lc;
    }

    // Lets every scripted answer arrive and every zero-delay timer fire.
    void settle() { settleFakes(runner, *probe, clock); }

    // Lets `ms` pass in small steps, answering as it goes.
    void run(qint64 ms, qint64 step = 100)
    {
        advanceSettling(clock, ms, step, [this] { settle(); });
    }

    QString statePath() const
    {
        return QDir(dir.path()).filePath(QStringLiteral("daemon-state.json"));
    }
    bool stateFileExists() const { return QFile::exists(statePath()); }
};

} // namespace

class TestLifecycle final : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase() { g_previousHandler = qInstallMessageHandler(recordingHandler); }
    void init() { g_warnings.clear(); }

    void statusBeforeFirstUse();
    void coldAcquiresShareOneBoot();
    void pendingReasonThenRunning();
    void sbatchErrorFailsAllWaitersAtOnce();
    void sbatchTimeoutIs503();
    void mungeDownIs503();
    void sbatchNotFoundNamesIt();
    void logDirNotWritable();
    void bootTimeoutIs504AndCancels();
    void pollTimeoutDuringBootKeepsWaiting();
    void cancelledWaiterIsNotCalled();
    void idleTeardownAtDeadlineNotBefore();
    void neverIdleWhileRequestsActive();
    void idleCountsFromLastRelease();
    void rewakeAfterIdle();
    void wakeBootsWithoutWaiters();
    void extendRefusedWarnsOnceAndActsAsCancel();
    void extendAtMostOncePerMinute();
    void cancelKeepAliveNeverExtends();
    void jobLostWhileReady_data();
    void jobLostWhileReady();
    void jobCompletingThenCancelledSaysCancelled();
    void jobFailsDuringBootFailsWaiters();
    void tunnelDiedIsRebuilt();
    void upstreamFailureRebuildsUnhealthyTunnel();
    void tunnelFailuresDuringBootGiveUp();
    void scancelRetriedUntilItSucceeds();
    void adoptRunningJob();
    void adoptPendingJob();
    void adoptGoneJobClearsState();
    void busyProbeFailuresDoNotCutStreams();
    void drainFailsWaitersAtOnce();
    void drainKeepsServedRequests();
    void shutdownCancelsJob();
    void shutdownWhileSleeping();
    void shutdownDuringSubmitCancelsReturnedJob();

    void readyHealthIsProbedPeriodically();
    void serverStoppedAnsweringReplacesJob_data();
    void serverStoppedAnsweringReplacesJob();
    void healthyStrangerOnEndedJobIsNotReady();
    void portZeroWaitsForReportedPort();
    void portZeroNeverReportedTimesOut();
    void recoverSubmission_data();
    void recoverSubmission();
    void recoverSubmissionWhileSlurmDown();
    void bootTimeoutDuringSbatchKeepsTheSubmission();
};

void TestLifecycle::statusBeforeFirstUse()
{
    Rig rig;
    rig.config.slurm.partition = QStringLiteral("a100");
    rig.config.slurm.gres = QStringLiteral("gpu:2");
    rig.config.slurm.idleTimeoutMinutes = 0.25;
    rig.config.slurm.keepAlive = KeepAlive::Cancel;
    Lifecycle &lc = rig.make();
    lc.start();
    const Status s = lc.status();
    QCOMPARE(s.phase, Phase::Sleeping);
    QCOMPARE(s.idleSeconds, qint64(-1));
    QCOMPARE(s.requestCount, qint64(0));
    QCOMPARE(s.idleTimeoutMinutes, 0.25);
    QCOMPARE(s.partition, QStringLiteral("a100"));
    QCOMPARE(s.gres, QStringLiteral("gpu:2"));
    QCOMPARE(s.ollamaPort, 11434);
    QCOMPARE(s.keepAlive, QStringLiteral("cancel"));
    QCOMPARE(s.keepAliveEffective, QStringLiteral("cancel"));
    QVERIFY(!s.tunnelAlive);
    QVERIFY(s.job.id.isEmpty());
    QCOMPARE(s.secondsUntilSleep, qint64(-1));
    QCOMPARE(s.lastBootSeconds, -1.0);
    QVERIFY(!s.version.isEmpty());
    QCOMPARE(rig.runner.calls.size(), size_t(0));
}

void TestLifecycle::coldAcquiresShareOneBoot()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    lc.start();
    Outcome out;
    for (int i = 0; i < 200; ++i)
        lc.acquire(out.callback());
    QCOMPARE(lc.phase(), Phase::Submitting);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
    QVERIFY(out.results.empty());
    QCOMPARE(lc.status().activeRequests, 200);

    // The job script was rendered into log_dir and handed to sbatch.
    const QString script = QDir(rig.dir.path()).filePath(QStringLiteral("slullama-job.sh"));
    const QStringList args = rig.runner.calls[0]->arguments;
    QCOMPARE(args.size(), 3);
    QCOMPARE(args.at(0), QStringLiteral("--parsable"));
    QCOMPARE(args.at(2), script);
    // Before sbatch answers, the state file already names the submission, and the job carries
    // the same token in its comment: a daemon killed now finds the job after a restart.
    const auto during = StateStore(rig.statePath()).load();
    QVERIFY(during && during->has_value());
    QCOMPARE(during->value().phase, QStringLiteral("submitting"));
    QVERIFY(during->value().jobId.isEmpty());
    QCOMPARE(during->value().jobName, rig.config.slurm.jobName);
    QVERIFY(!during->value().submitToken.isEmpty());
    QCOMPARE(args.at(1),
             QStringLiteral("--comment=slullama_submit=") + during->value().submitToken);
    QFile scriptFile(script);
    QVERIFY(scriptFile.open(QIODevice::ReadOnly));
    QVERIFY(scriptFile.readAll().contains("#SBATCH"));

    rig.settle();
    QCOMPARE(lc.phase(), Phase::Queued);
    QVERIFY(rig.stateFileExists());
    QCOMPARE(StateStore(rig.statePath()).load()->value().jobId, QStringLiteral("1"));

    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
    QCOMPARE(
        rig.phases,
        (std::vector<Phase> {Phase::Submitting, Phase::Queued, Phase::Starting, Phase::Ready}));
    QCOMPARE(rig.tunnel->lastNode, QStringLiteral("vm"));
    QCOMPARE(rig.tunnel->lastRemotePort, quint16(11434));
    QCOMPARE(rig.probe->lastPort, rig.tunnel->localPort());

    QCOMPARE(out.results.size(), size_t(200));
    for (const AcquireResult &r : out.results) {
        QVERIFY(r.ok);
        QCOMPARE(r.upstream.host, QStringLiteral("127.0.0.1"));
        QCOMPARE(r.upstream.port, rig.tunnel->localPort());
        QCOMPARE(r.upstream.generation, quint64(1));
        QVERIFY(r.waitedSeconds > 0);
    }
    const Status s = lc.status();
    QCOMPARE(s.phase, Phase::Ready);
    QCOMPARE(s.job.id, QStringLiteral("1"));
    QCOMPARE(s.job.state, QStringLiteral("RUNNING"));
    QCOMPARE(s.job.node, QStringLiteral("vm"));
    QVERIFY(!s.job.timeLeft.isEmpty());
    QVERIFY(s.tunnelAlive);
    QCOMPARE(s.activeRequests, 200);
    QCOMPARE(s.requestCount, qint64(200));
    QCOMPARE(s.idleSeconds, qint64(0));
    QVERIFY(s.lastBootSeconds > 0);
    QVERIFY(s.lastBootAt.isValid());
    QCOMPARE(s.secondsUntilSleep, qint64(-1));

    // Ready: a new request gets its upstream synchronously.
    Outcome hot;
    lc.acquire(hot.callback());
    QCOMPARE(hot.results.size(), size_t(1));
    QVERIFY(hot.results[0].ok);
    QCOMPARE(hot.results[0].waitedSeconds, 0.0);
}

void TestLifecycle::pendingReasonThenRunning()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, pending()));
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(5000);
    QCOMPARE(lc.phase(), Phase::Queued);
    QVERIFY(out.results.empty());
    Status s = lc.status();
    QCOMPARE(s.job.state, QStringLiteral("PENDING"));
    QCOMPARE(s.job.pendingReason, QStringLiteral("Resources"));
    QVERIFY(!s.job.expectedStart.isEmpty());
    QVERIFY(rig.runner.count(QStringLiteral("scontrol show job")) >= 4); // polled on a timer

    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, running()));
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(out.results.size(), size_t(1));
    QVERIFY(out.results[0].ok);
    QVERIFY(lc.status().job.pendingReason.isEmpty());
}

void TestLifecycle::sbatchErrorFailsAllWaitersAtOnce()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("sbatch"),
                       exitWith(1, {}, slurmData(QStringLiteral("sbatch-invalid-partition.err"))));
    Lifecycle &lc = rig.make();
    Outcome out;
    for (int i = 0; i < 5; ++i)
        lc.acquire(out.callback());
    rig.settle(); // no time passes
    QCOMPARE(out.results.size(), size_t(5));
    for (const AcquireResult &r : out.results) {
        QVERIFY(!r.ok);
        QCOMPARE(r.httpStatus, 502);
        QVERIFY2(r.message.contains(QStringLiteral("Invalid partition name specified")),
                 qPrintable(r.message));
    }
    QCOMPARE(lc.phase(), Phase::Sleeping);
    const Status s = lc.status();
    QVERIFY(s.lastError.contains(QStringLiteral("invalid partition specified: nosuchpart")));
    QCOMPARE(s.activeRequests, 0);
    QCOMPARE(rig.runner.count(QStringLiteral("scontrol")), 0);
    QVERIFY(!rig.stateFileExists());

    // The next request tries again.
    rig.runner.respond(QStringLiteral("sbatch"), exitWith(0, "1\n"));
    Outcome again;
    lc.acquire(again.callback());
    rig.run(2000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2);
    QCOMPARE(again.results.size(), size_t(1));
    QVERIFY(again.results[0].ok);
}

void TestLifecycle::sbatchTimeoutIs503()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("sbatch"), timedOut());
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    lc.acquire(out.callback());
    rig.settle();
    QCOMPARE(out.results.size(), size_t(2));
    QCOMPARE(out.results[0].httpStatus, 503);
    QCOMPARE(out.results[0].message,
             QStringLiteral("Slurm controller unreachable (sbatch did not answer within 20 s)"));
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

void TestLifecycle::mungeDownIs503()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("sbatch"),
                       exitWith(1, {}, slurmData(QStringLiteral("sbatch-munge-stopped.err"))));
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.settle();
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 503);
    QVERIFY2(out.results[0].message.startsWith(QStringLiteral("Slurm authentication failed (")),
             qPrintable(out.results[0].message));
    QVERIFY(out.results[0].message.contains(QStringLiteral("Munge encode failed")));
    QCOMPARE(lc.status().lastError, out.results[0].message);
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

void TestLifecycle::sbatchNotFoundNamesIt()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("sbatch"), notFound());
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.settle();
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 502);
    QVERIFY2(out.results[0].message.contains(QStringLiteral("sbatch could not be started")),
             qPrintable(out.results[0].message));
    QVERIFY(out.results[0].message.contains(QStringLiteral("PATH")));
}

void TestLifecycle::logDirNotWritable()
{
    Rig rig;
    // A regular file where log_dir should be (refused for root too).
    const QString blocker = QDir(rig.dir.path()).filePath(QStringLiteral("file"));
    QFile file(blocker);
    QVERIFY(file.open(QIODevice::WriteOnly));
    file.close();
    rig.config.server.logDir = blocker + QStringLiteral("/logs");
    rig.config.server.stateFile = QDir(rig.dir.path()).filePath(QStringLiteral("state.json"));
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.settle();
    QCOMPARE(out.results.size(), size_t(1));
    QVERIFY(!out.results[0].ok);
    QCOMPARE(out.results[0].httpStatus, 500);
    QVERIFY2(out.results[0].message.contains(QStringLiteral("log_dir")),
             qPrintable(out.results[0].message));
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 0);
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

void TestLifecycle::bootTimeoutIs504AndCancels()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, pending()));
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(59000, 500);
    QVERIFY(out.results.empty());
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    rig.run(2000);
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 504);
    const QString message = out.results[0].message;
    QVERIFY2(message.contains(QStringLiteral("queued"))
                 && message.contains(QStringLiteral("PENDING"))
                 && message.contains(QStringLiteral("Resources")),
             qPrintable(message));
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QVERIFY(!rig.stateFileExists());
    QVERIFY(lc.status().lastEndReason.contains(QStringLiteral("boot failed")));
}

void TestLifecycle::pollTimeoutDuringBootKeepsWaiting()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), timedOut());
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(5000);
    QCOMPARE(lc.phase(), Phase::Queued);
    QVERIFY(out.results.empty());
    QVERIFY(lc.status().lastError.contains(QStringLiteral("Slurm controller unreachable")));
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, running()));
    rig.run(2000);
    QCOMPARE(out.results.size(), size_t(1));
    QVERIFY(out.results[0].ok);
    QVERIFY(lc.status().lastError.isEmpty());
}

void TestLifecycle::cancelledWaiterIsNotCalled()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome kept, dropped;
    const auto ticket = lc.acquire(dropped.callback());
    lc.acquire(kept.callback());
    lc.cancel(ticket);
    QCOMPARE(lc.status().activeRequests, 1);
    rig.run(2000);
    QCOMPARE(kept.results.size(), size_t(1));
    QVERIFY(dropped.results.empty());
}

void TestLifecycle::idleTeardownAtDeadlineNotBefore()
{
    Rig rig; // idle_timeout = 1 min
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    rig.run(5000); // a request of 5 s
    lc.release();
    QCOMPARE(lc.status().secondsUntilSleep, qint64(60));
    rig.run(59000, 1000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    QVERIFY(lc.status().secondsUntilSleep <= 1);
    rig.run(1000, 1000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QCOMPARE(rig.phases.back(), Phase::Sleeping);
    QCOMPARE(rig.phases.at(rig.phases.size() - 2), Phase::Stopping);
    const Status s = lc.status();
    QCOMPARE(s.lastEndReason, QStringLiteral("idle"));
    QVERIFY(!s.tunnelAlive);
    QVERIFY(!rig.tunnel->isOpen());
    QVERIFY(s.job.id.isEmpty());
    QVERIFY(!rig.stateFileExists());
    QVERIFY(s.idleSeconds >= 60);
}

void TestLifecycle::neverIdleWhileRequestsActive()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    rig.run(10 * 60 * 1000, 5000); // a 10-minute stream, idle_timeout 1 min
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    QCOMPARE(lc.status().secondsUntilSleep, qint64(-1));
    lc.release();
    rig.run(59000, 1000);
    QCOMPARE(lc.phase(), Phase::Ready);
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

void TestLifecycle::idleCountsFromLastRelease()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    lc.acquire(out.callback());
    rig.run(2000);
    lc.release();
    rig.run(30000, 1000);
    lc.release(); // the last one ends 30 s later: the deadline moves
    rig.run(45000, 1000);
    QCOMPARE(lc.phase(), Phase::Ready);
    rig.run(16000, 1000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

void TestLifecycle::rewakeAfterIdle()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome first;
    lc.acquire(first.callback());
    rig.run(2000);
    lc.release();
    rig.run(61000, 1000);
    QCOMPARE(lc.phase(), Phase::Sleeping);

    rig.runner.respond(QStringLiteral("sbatch"), exitWith(0, "2\n"));
    rig.runner.respond(QStringLiteral("scontrol show job -o 2"),
                       exitWith(0, running(QStringLiteral("2"))));
    Outcome second;
    lc.acquire(second.callback());
    rig.run(2000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2);
    QCOMPARE(second.results.size(), size_t(1));
    QVERIFY(second.results[0].ok);
    QVERIFY(second.results[0].upstream.generation > first.results[0].upstream.generation);
    QCOMPARE(lc.status().job.id, QStringLiteral("2"));
}

void TestLifecycle::wakeBootsWithoutWaiters()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    lc.wake();
    lc.wake();
    rig.run(2000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(lc.status().activeRequests, 0);
    QCOMPARE(lc.status().idleSeconds, qint64(-1)); // never used
    // Nobody comes: it goes back to sleep after idle_timeout counted from ready.
    rig.run(61000, 1000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

void TestLifecycle::extendRefusedWarnsOnceAndActsAsCancel()
{
    Rig rig; // job: TimeLimit 10 min, RunTime 2 s; idle 1 min + margin → extension wanted at once
    rig.config.slurm.idleTimeoutMinutes = 10;
    rig.runner.respond(
        QStringLiteral("scontrol update"),
        exitWith(1, {}, slurmData(QStringLiteral("scontrol-update-timelimit-denied.err"))));
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("scontrol update JobId=1 TimeLimit=")), 1);
    QCOMPARE(lc.status().keepAliveEffective, QStringLiteral("cancel"));
    QCOMPARE(lc.status().keepAlive, QStringLiteral("extend"));
    for (int i = 0; i < 10; ++i) {
        lc.acquire(out.callback());
        lc.release();
        rig.run(70000, 5000);
    }
    QCOMPARE(rig.runner.count(QStringLiteral("scontrol update")), 1);
    const auto refusals = g_warnings.filter(QStringLiteral("Access/permission denied for job 1"));
    QCOMPARE(refusals.size(), 1);
    QVERIFY(refusals[0].contains(QStringLiteral("cancel")));
}

void TestLifecycle::extendAtMostOncePerMinute()
{
    Rig rig;
    rig.config.slurm.idleTimeoutMinutes = 10;
    rig.runner.respond(QStringLiteral("scontrol update"), exitWith(0));
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    const auto updates
        = [&] { return rig.runner.count(QStringLiteral("scontrol update JobId=1 TimeLimit=")); };
    QCOMPARE(updates(), 1);
    // The job in our fake never shows the new limit, so every poll wants another extension:
    // requests for 50 s must still not run it again.
    for (int i = 0; i < 50; ++i) {
        lc.acquire(out.callback());
        lc.release();
        rig.run(1000);
    }
    QCOMPARE(updates(), 1);
    rig.run(15000, 1000);
    QCOMPARE(updates(), 2);
    QCOMPARE(lc.status().keepAliveEffective, QStringLiteral("extend"));
    // The new limit is beyond run time + idle timeout.
    const QString line = rig.runner.lines().filter(QStringLiteral("TimeLimit=")).first();
    const qint64 minutes = line.section(QStringLiteral("TimeLimit="), 1).toLongLong();
    QVERIFY2(minutes >= 10 + 5, qPrintable(line));
}

void TestLifecycle::cancelKeepAliveNeverExtends()
{
    Rig rig;
    rig.config.slurm.idleTimeoutMinutes = 10;
    rig.config.slurm.keepAlive = KeepAlive::Cancel;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(120000, 1000);
    QCOMPARE(rig.runner.count(QStringLiteral("scontrol update")), 0);
}

void TestLifecycle::jobLostWhileReady_data()
{
    QTest::addColumn<ProcessResult>("answer");
    QTest::addColumn<QString>("reason");
    QTest::addRow("scancel outside")
        << exitWith(0, slurmData(QStringLiteral("scontrol-show-job-cancelled.out")))
        << "cancelled outside slullama";
    QTest::addRow("failed") << exitWith(0,
                                        slurmData(QStringLiteral("scontrol-show-job-failed.out")))
                            << "job failed (FAILED (NonZeroExitCode)";
    QTest::addRow("gone") << exitWith(1, {},
                                      slurmData(QStringLiteral("scontrol-show-job-invalid.err")))
                          << "job vanished from Slurm";
}

void TestLifecycle::jobLostWhileReady()
{
    QFETCH(ProcessResult, answer);
    QFETCH(QString, reason);
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), answer);
    rig.run(6000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QVERIFY2(lc.status().lastEndReason.startsWith(reason), qPrintable(lc.status().lastEndReason));
    QVERIFY(!rig.tunnel->isOpen());
    QVERIFY(!rig.stateFileExists());
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);

    // The proxy retries on a fresh boot.
    lc.release();
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, running()));
    Outcome again;
    lc.acquire(again.callback());
    rig.run(2000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2);
    QCOMPARE(again.results.size(), size_t(1));
    QVERIFY(again.results[0].ok);
}

// An outside scancel shows first as COMPLETING (which says nothing about how the job ended):
// the daemon goes to sleep at once and reports "cancelled" once Slurm knows.
void TestLifecycle::jobCompletingThenCancelledSaysCancelled()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    lc.release();
    const QByteArray cancelled = slurmData(QStringLiteral("scontrol-show-job-cancelled.out"));
    QByteArray completing = cancelled;
    completing.replace("JobState=CANCELLED", "JobState=COMPLETING");
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, completing));
    rig.run(6000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QVERIFY(!rig.tunnel->isOpen());
    QVERIFY2(!lc.status().lastEndReason.startsWith(QLatin1String("job script ended")),
             qPrintable(lc.status().lastEndReason));
    QVERIFY2(lc.status().lastEndReason.contains(QLatin1String("COMPLETING")),
             qPrintable(lc.status().lastEndReason));

    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, cancelled));
    rig.run(1000);
    QVERIFY2(lc.status().lastEndReason.startsWith(QLatin1String("cancelled outside slullama")),
             qPrintable(lc.status().lastEndReason));
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
}

void TestLifecycle::jobFailsDuringBootFailsWaiters()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, pending()));
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(3000);
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"),
                       exitWith(0, slurmData(QStringLiteral("scontrol-show-job-failed.out"))));
    rig.run(2000);
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 502);
    QVERIFY2(out.results[0].message.contains(QStringLiteral("NonZeroExitCode")),
             qPrintable(out.results[0].message));
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1); // not retried in a loop
}

void TestLifecycle::tunnelDiedIsRebuilt()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    const quint16 firstPort = rig.tunnel->localPort();
    QCOMPARE(out.results[0].upstream.generation, quint64(1));

    rig.tunnel->die(QStringLiteral("ssh exited with code 255: Connection closed"));
    QCOMPARE(lc.phase(), Phase::Starting);
    QCOMPARE(rig.tunnel->opens, 2);
    Outcome during;
    lc.acquire(during.callback()); // waits for the rebuilt tunnel, not the dead one
    QVERIFY(during.results.empty());
    rig.run(1000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(during.results.size(), size_t(1));
    QVERIFY(during.results[0].ok);
    QCOMPARE(during.results[0].upstream.generation, quint64(2));
    QVERIFY(during.results[0].upstream.port != firstPort);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
}

void TestLifecycle::upstreamFailureRebuildsUnhealthyTunnel()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    const int polls = rig.runner.count(QStringLiteral("scontrol show job"));
    // A stale generation is ignored.
    lc.reportUpstreamFailure(99, QStringLiteral("connection refused"));
    rig.settle();
    QCOMPARE(rig.tunnel->opens, 1);
    // The current one: the job is polled at once and the model server checked.
    rig.probe->healthy = false;
    lc.reportUpstreamFailure(1, QStringLiteral("connection refused"));
    rig.settle();
    QVERIFY(rig.runner.count(QStringLiteral("scontrol show job")) > polls);
    QCOMPARE(lc.phase(), Phase::Starting);
    QCOMPARE(rig.tunnel->opens, 2);
    rig.probe->healthy = true;
    rig.run(1000);
    QCOMPARE(lc.phase(), Phase::Ready);
}

void TestLifecycle::tunnelFailuresDuringBootGiveUp()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    rig.tunnel->failOpen = true;
    Outcome out;
    lc.acquire(out.callback());
    rig.run(20000);
    QCOMPARE(rig.tunnel->opens, Lifecycle::kTunnelAttemptsPerBoot);
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 502);
    QVERIFY2(out.results[0].message.contains(QStringLiteral("cannot start ssh")),
             qPrintable(out.results[0].message));
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1); // not left burning GPU time
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

void TestLifecycle::scancelRetriedUntilItSucceeds()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    lc.release();
    rig.runner.respond(QStringLiteral("scancel"), timedOut());
    rig.run(61000, 1000);
    QCOMPARE(lc.phase(), Phase::Stopping);
    QVERIFY(!rig.tunnel->isOpen());
    QVERIFY(rig.stateFileExists()); // the job may still run: keep it for adoption
    // A request meanwhile cannot get a new job while Slurm is unreachable: prompt 503.
    Outcome late;
    lc.acquire(late.callback());
    rig.run(5000);
    QCOMPARE(late.results.size(), size_t(1));
    QCOMPARE(late.results[0].httpStatus, 503);
    const int attempts = rig.runner.count(QStringLiteral("scancel"));
    QVERIFY(attempts >= 3);
    rig.runner.respond(QStringLiteral("scancel"), exitWith(0));
    rig.run(60000, 1000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QVERIFY(!rig.stateFileExists());
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
}

void TestLifecycle::adoptRunningJob()
{
    Rig rig;
    SavedState saved;
    saved.jobId = QStringLiteral("1");
    saved.node = QStringLiteral("vm");
    saved.since = QDateTime::currentDateTimeUtc();
    QVERIFY(StateStore(rig.statePath()).save(saved));
    Lifecycle &lc = rig.make();
    lc.start();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 0);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(out.results.size(), size_t(1));
    QVERIFY(out.results[0].ok);
    QCOMPARE(lc.status().job.id, QStringLiteral("1"));
}

void TestLifecycle::adoptPendingJob()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, pending()));
    SavedState saved;
    saved.jobId = QStringLiteral("1");
    QVERIFY(StateStore(rig.statePath()).save(saved));
    Lifecycle &lc = rig.make();
    lc.start();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(3000);
    QCOMPARE(lc.phase(), Phase::Queued);
    QCOMPARE(lc.status().job.pendingReason, QStringLiteral("Resources"));
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 0);
}

void TestLifecycle::adoptGoneJobClearsState()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("scontrol show job -o 7"),
                       exitWith(1, {}, slurmData(QStringLiteral("scontrol-show-job-invalid.err"))));
    SavedState saved;
    saved.jobId = QStringLiteral("7");
    QVERIFY(StateStore(rig.statePath()).save(saved));
    Lifecycle &lc = rig.make();
    lc.start();
    rig.settle();
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QVERIFY(!rig.stateFileExists());
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
    QVERIFY(out.results.at(0).ok);
}

// 2000 streams on the tunnel: the ready probe queues behind their channel opens and times out.
// That alone must not rebuild the tunnel under the live streams; a probe that keeps failing does.
void TestLifecycle::busyProbeFailuresDoNotCutStreams()
{
    Rig rig;
    rig.config.slurm.idleTimeoutMinutes = 10;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback()); // stays active: a stream in progress
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    rig.run(Lifecycle::kReadyHealthIntervalMs);
    QCOMPARE(rig.probe->lastTimeoutMs, Lifecycle::kBusyHealthTimeoutMs);
    // Lets time pass until `n` more probes have been answered.
    const auto probes = [&rig](int n) {
        const int target = rig.probe->checks + n;
        for (int i = 0; i < 1000 && rig.probe->checks < target; ++i)
            rig.run(100, 100);
        return rig.probe->checks >= target;
    };

    // Failures up to the tolerance, then an answer: the count starts over.
    rig.probe->healthy = false;
    QVERIFY(probes(Lifecycle::kBusyHealthFailuresTolerated));
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.tunnel->opens, 1);
    rig.probe->healthy = true;
    QVERIFY(probes(1));
    rig.probe->healthy = false;
    QVERIFY(probes(Lifecycle::kBusyHealthFailuresTolerated));
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.tunnel->opens, 1);
    QVERIFY(!g_warnings.filter(QStringLiteral("requests active, probing again")).isEmpty());

    // It keeps failing: the tunnel is rebuilt, not left broken.
    QVERIFY(probes(1));
    QCOMPARE(rig.tunnel->opens, 2);
    QVERIFY(lc.phase() != Phase::Ready);

    // Once idle, a single failure is enough, as before.
    rig.probe->healthy = true;
    rig.run(1000);
    QCOMPARE(lc.phase(), Phase::Ready);
    lc.release();
    QVERIFY(probes(1));
    QVERIFY(rig.probe->lastTimeoutMs < Lifecycle::kBusyHealthTimeoutMs);
    rig.probe->healthy = false;
    QVERIFY(probes(1));
    QCOMPARE(rig.tunnel->opens, 3);
}

// SIGTERM while requests wait for a boot: they are answered at once instead of holding the drain.
void TestLifecycle::drainFailsWaitersAtOnce()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, pending()));
    Lifecycle &lc = rig.make();
    Outcome first;
    Outcome second;
    lc.acquire(first.callback());
    lc.acquire(second.callback());
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Queued);
    QVERIFY(first.results.empty());
    lc.beginDrain();
    for (const Outcome *o : {&first, &second}) {
        QCOMPARE(o->results.size(), size_t(1));
        QVERIFY(!o->results[0].ok);
        QCOMPARE(o->results[0].httpStatus, 503);
        QVERIFY(o->results[0].message.contains(QStringLiteral("shutting down")));
    }
    QCOMPARE(lc.status().activeRequests, 0);
    // A request that would have to wait is refused at once too.
    Outcome late;
    lc.acquire(late.callback());
    QCOMPARE(late.results.size(), size_t(1));
    QCOMPARE(late.results[0].httpStatus, 503);
    // The job itself goes with shutdown(), as before.
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    QSignalSpy finished(&lc, &Lifecycle::shutdownFinished);
    lc.shutdown();
    rig.run(2000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
    QVERIFY(finished.count() == 1 || finished.wait(1000));
}

// Streams in progress keep their drain time, and a request on a ready job is still served.
void TestLifecycle::drainKeepsServedRequests()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome stream;
    lc.acquire(stream.callback());
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(stream.results.size(), size_t(1));
    lc.beginDrain();
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(lc.status().activeRequests, 1);
    Outcome another;
    lc.acquire(another.callback());
    QCOMPARE(another.results.size(), size_t(1));
    QVERIFY(another.results[0].ok);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    QCOMPARE(rig.tunnel->closes, 0);
}

void TestLifecycle::shutdownCancelsJob()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    Outcome waiting; // irrelevant in Ready, but shutdown must refuse new ones
    QSignalSpy finished(&lc, &Lifecycle::shutdownFinished);
    lc.shutdown();
    lc.acquire(waiting.callback());
    QCOMPARE(waiting.results.size(), size_t(1));
    QCOMPARE(waiting.results[0].httpStatus, 503);
    QCOMPARE(lc.phase(), Phase::Stopping);
    QVERIFY(!rig.tunnel->isOpen());
    rig.settle();
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
    QVERIFY(finished.wait(5000));
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QVERIFY(!rig.stateFileExists());
}

void TestLifecycle::shutdownWhileSleeping()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    QSignalSpy finished(&lc, &Lifecycle::shutdownFinished);
    lc.shutdown();
    QVERIFY(finished.wait(5000));
    QCOMPARE(rig.runner.calls.size(), size_t(0));
}

void TestLifecycle::shutdownDuringSubmitCancelsReturnedJob()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback()); // sbatch now in flight (not answered yet)
    QSignalSpy finished(&lc, &Lifecycle::shutdownFinished);
    lc.shutdown();
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 503);
    QCOMPARE(finished.count(), 0);
    rig.runner.answer(QStringLiteral("sbatch"), exitWith(0, "5\n"));
    rig.settle();
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 5")), 1);
    QVERIFY(finished.wait(5000));
    QVERIFY(!rig.stateFileExists());
}

// Ready, then the model server stops answering: probes fail, the tunnel is rebuilt once, and a
// server that still does not answer has its job cancelled; waiting requests get a fresh job.
void TestLifecycle::readyHealthIsProbedPeriodically()
{
    Rig rig;
    rig.config.slurm.idleTimeoutMinutes = 10;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    const int before = rig.probe->checks;
    rig.run(60000, 1000);
    const int during = rig.probe->checks - before;
    // About one probe per interval: often enough to notice, not a flood.
    QVERIFY2(during >= 60000 / Lifecycle::kReadyHealthIntervalMs - 1
                 && during <= 60000 / Lifecycle::kReadyHealthIntervalMs + 1,
             qPrintable(QString::number(during)));
    QCOMPARE(rig.probe->lastPort, rig.tunnel->localPort());
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.tunnel->opens, 1);
}

void TestLifecycle::serverStoppedAnsweringReplacesJob_data()
{
    QTest::addColumn<bool>("waiting");
    QTest::addRow("nobody waiting: sleep") << false;
    QTest::addRow("a request waiting: fresh boot") << true;
}

void TestLifecycle::serverStoppedAnsweringReplacesJob()
{
    QFETCH(bool, waiting);
    Rig rig;
    rig.config.slurm.idleTimeoutMinutes = 10;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    lc.release();
    QCOMPARE(lc.phase(), Phase::Ready);
    rig.probe->healthy = false;
    rig.run(Lifecycle::kReadyHealthIntervalMs + 500);
    // First a tunnel rebuild: a dead ssh looks the same as a dead server from here.
    QCOMPARE(lc.phase(), Phase::Starting);
    QCOMPARE(rig.tunnel->opens, 2);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    Outcome later;
    if (waiting)
        lc.acquire(later.callback());
    // Still nothing through the new tunnel: the job is cancelled, not left burning GPU time.
    rig.runner.respond(QStringLiteral("sbatch"), exitWith(0, "2\n"));
    rig.runner.respond(QStringLiteral("scontrol show job -o 2"),
                       exitWith(0, running(QStringLiteral("2"))));
    rig.run(Lifecycle::kServerLostAfterMs + 1000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
    const auto reasons = g_warnings.filter(QStringLiteral("model server on vm stopped answering"));
    QVERIFY2(!reasons.isEmpty(), qPrintable(g_warnings.join(u'\n')));
    if (!waiting) {
        QCOMPARE(lc.phase(), Phase::Sleeping);
        QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
        const Status s = lc.status();
        QVERIFY2(s.lastEndReason.contains(QStringLiteral("model server on vm stopped answering")),
                 qPrintable(s.lastEndReason));
        QVERIFY(s.lastError.contains(QStringLiteral("stopped answering")));
        QVERIFY(s.job.id.isEmpty());
        QVERIFY(!rig.stateFileExists());
        return;
    }
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2);
    QVERIFY(later.results.empty());
    rig.probe->healthy = true;
    rig.run(3000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(later.results.size(), size_t(1));
    QVERIFY(later.results[0].ok);
    QCOMPARE(lc.status().job.id, QStringLiteral("2"));
}

// Something answers on the node's port, but our job has ended (its model server could not bind a
// port another program holds): requests must not go to that stranger.
void TestLifecycle::healthyStrangerOnEndedJobIsNotReady()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    for (int i = 0; i < 50 && lc.phase() != Phase::Starting; ++i)
        rig.run(50, 50);
    QCOMPARE(lc.phase(), Phase::Starting);
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"),
                       exitWith(0, slurmData(QStringLiteral("scontrol-show-job-failed.out"))));
    rig.run(3000);
    QVERIFY(std::find(rig.phases.begin(), rig.phases.end(), Phase::Ready) == rig.phases.end());
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 502);
    QVERIFY2(out.results[0].message.contains(QStringLiteral("ended before the model server")),
             qPrintable(out.results[0].message));
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

void TestLifecycle::portZeroWaitsForReportedPort()
{
    Rig rig;
    rig.config.ollama.port = 0;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(3000);
    // Running, but the job has not set its comment yet: no tunnel to a guessed port.
    QCOMPARE(lc.phase(), Phase::Starting);
    QCOMPARE(rig.tunnel->opens, 0);
    QVERIFY(out.results.empty());
    QByteArray reported = running();
    reported.replace("Power=", "Comment=slullama_port=31234 Power=");
    rig.runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, reported));
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.tunnel->opens, 1);
    QCOMPARE(rig.tunnel->lastRemotePort, quint16(31234));
    QCOMPARE(out.results.size(), size_t(1));
    QVERIFY(out.results[0].ok);
    // A rebuilt tunnel goes to the same reported port.
    rig.tunnel->die(QStringLiteral("ssh exited with code 255"));
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.tunnel->opens, 2);
    QCOMPARE(rig.tunnel->lastRemotePort, quint16(31234));
}

void TestLifecycle::portZeroNeverReportedTimesOut()
{
    Rig rig;
    rig.config.ollama.port = 0;
    rig.config.server.bootTimeout = 10;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(11000, 500);
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 504);
    QVERIFY2(out.results[0].message.contains(QStringLiteral("has not reported its port")),
             qPrintable(out.results[0].message));
    QCOMPARE(rig.tunnel->opens, 0);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
}

// A daemon killed while sbatch ran left {phase submitting, job name, token} and no job id.
void TestLifecycle::recoverSubmission_data()
{
    QTest::addColumn<QByteArray>("squeue");
    QTest::addColumn<QString>("adopted"); // empty: none, a fresh sbatch
    QTest::addColumn<QStringList>("cancelled");
    QTest::addRow("no job made") << QByteArray() << QString() << QStringList();
    QTest::addRow("our job, pending")
        << QByteArray("7|PENDING|slullama_submit=tok42\n") << QStringLiteral("7") << QStringList();
    QTest::addRow("ours and an older orphan")
        << QByteArray("5|RUNNING|slullama_port=30001\n7|RUNNING|slullama_submit=tok42\n")
        << QStringLiteral("7") << QStringList {QStringLiteral("5")};
    // The built-in template with port = 0 overwrites the comment: the newest job is kept.
    QTest::addRow("token overwritten by the port")
        << QByteArray("9|RUNNING|slullama_port=30001\n8|PENDING|(null)\n") << QStringLiteral("9")
        << QStringList {QStringLiteral("8")};
}

void TestLifecycle::recoverSubmission()
{
    QFETCH(QByteArray, squeue);
    QFETCH(QString, adopted);
    QFETCH(QStringList, cancelled);
    Rig rig;
    rig.config.slurm.jobName = QStringLiteral("slullama-t");
    rig.runner.respond(QStringLiteral("squeue --me -h --name=slullama-t"), exitWith(0, squeue));
    for (const QString &id : {QStringLiteral("7"), QStringLiteral("9")})
        rig.runner.respond(QStringLiteral("scontrol show job -o ") + id, exitWith(0, running(id)));
    SavedState saved;
    saved.phase = QStringLiteral("submitting");
    saved.jobName = QStringLiteral("slullama-t");
    saved.submitToken = QStringLiteral("tok42");
    QVERIFY(StateStore(rig.statePath()).save(saved));
    Lifecycle &lc = rig.make();
    lc.start();
    QCOMPARE(lc.phase(), Phase::Submitting);
    Outcome out;
    lc.acquire(out.callback()); // a client of the new process, waiting meanwhile
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 0);
    rig.run(3000);
    QCOMPARE(rig.runner.count(QStringLiteral("squeue")), 1);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), adopted.isEmpty() ? 1 : 0);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), int(cancelled.size()));
    for (const QString &id : cancelled)
        QCOMPARE(rig.runner.count(QStringLiteral("scancel ") + id), 1);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(lc.status().job.id, adopted.isEmpty() ? QStringLiteral("1") : adopted);
    QCOMPARE(out.results.size(), size_t(1));
    QVERIFY(out.results[0].ok);
    QCOMPARE(StateStore(rig.statePath()).load()->value().jobId, lc.status().job.id);
}

void TestLifecycle::recoverSubmissionWhileSlurmDown()
{
    Rig rig;
    rig.runner.respond(QStringLiteral("squeue"), timedOut());
    SavedState saved;
    saved.phase = QStringLiteral("submitting");
    saved.jobName = QStringLiteral("slullama");
    saved.submitToken = QStringLiteral("tok42");
    QVERIFY(StateStore(rig.statePath()).save(saved));
    Lifecycle &lc = rig.make();
    lc.start();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(1000);
    // No second job while Slurm cannot say whether the first exists: a prompt 503 instead.
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 503);
    QVERIFY(out.results[0].message.contains(QStringLiteral("Slurm controller unreachable")));
    rig.run(30000, 1000);
    QVERIFY(rig.runner.count(QStringLiteral("squeue")) >= 3);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 0);
    QVERIFY(rig.stateFileExists());
    QCOMPARE(lc.phase(), Phase::Submitting);
    // Slurm is back and knows the job: adopted, one job.
    rig.runner.respond(QStringLiteral("squeue"), exitWith(0, "1|RUNNING|slullama_submit=tok42\n"));
    Outcome again;
    lc.acquire(again.callback());
    rig.run(15000, 1000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(again.results.size(), size_t(1));
    QVERIFY(again.results[0].ok);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 0);
}

// boot_timeout fires while sbatch still runs: the waiter gets its 504 at once, but the state file
// names the submission until the job sbatch then returns is cancelled.
void TestLifecycle::bootTimeoutDuringSbatchKeepsTheSubmission()
{
    Rig rig;
    rig.config.server.bootTimeout = 10;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.clock.advance(10001); // sbatch not answered yet
    QCOMPARE(out.results.size(), size_t(1));
    QCOMPARE(out.results[0].httpStatus, 504);
    QCOMPARE(lc.phase(), Phase::Sleeping);
    const auto kept = StateStore(rig.statePath()).load();
    QVERIFY(kept && kept->has_value());
    QCOMPARE(kept->value().phase, QStringLiteral("submitting"));
    QVERIFY(!kept->value().submitToken.isEmpty());
    QVERIFY(rig.runner.answer(QStringLiteral("sbatch"), exitWith(0, "8\n")));
    QCOMPARE(rig.runner.pending(QStringLiteral("scancel 8")), 1);
    QVERIFY(rig.stateFileExists()); // until Slurm confirms
    rig.settle();
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 8")), 1);
    QVERIFY(!rig.stateFileExists());
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

QTEST_GUILESS_MAIN(TestLifecycle)
#include "tst_lifecycle.moc"
