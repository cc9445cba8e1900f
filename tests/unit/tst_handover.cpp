// The lifecycle's walltime hand-over (keep_alive = "cancel"): a successor job boots before the
// job in use reaches its time limit, takes the new requests, and the old job is cancelled once
// its requests are done.

#include "lifecycle.h"
#include "lifecyclefakes.h"
#include "statestore.h"

#include <QDir>
#include <QFile>
#include <QJsonDocument>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QTest>

using namespace slullama;
using namespace slullama::test;

namespace {

// `scontrol show job` of a RUNNING job with a 10 min limit that has run `seconds`, on node
// `vm` (job 1) or `gpu02` (the others; see sameNodeFixedPortFails).
QByteArray runningFor(const QString &id, qint64 seconds, bool sameNode = false)
{
    QFile file(QStringLiteral(SLULLAMA_TEST_DATA "/slurm/scontrol-show-job-running.out"));
    if (!file.open(QIODevice::ReadOnly))
        qFatal("missing test data");
    QString text = QString::fromUtf8(file.readAll());
    text.replace(QRegularExpression(QStringLiteral("^JobId=\\d+")), QStringLiteral("JobId=") + id);
    text.replace(QStringLiteral("RunTime=00:00:02"),
                 QStringLiteral("RunTime=") + slurm::formatDuration(seconds));
    if (id != u"1" && !sameNode)
        text.replace(QStringLiteral("NodeList=vm BatchHost=vm"),
                     QStringLiteral("NodeList=gpu02 BatchHost=gpu02"));
    return text.toUtf8();
}

struct Rig
{
    QTemporaryDir dir;
    Config config;
    FakeProcessRunner runner;
    FakeClock clock;
    FakeNodeTunnel *tunnel = nullptr;
    FakeNodeTunnel *successorTunnel = nullptr;
    FakeHealthProbe *probe = nullptr;
    std::unique_ptr<Lifecycle> lc;
    // When each job started running (clock ms), so scontrol reports a growing RunTime.
    std::map<QString, qint64> startedMs;
    bool sameNode = false;

    Rig()
    {
        config.server.logDir = dir.path();
        config.server.bootTimeout = 60;
        config.slurm.idleTimeoutMinutes = 1;
        config.slurm.pollInterval = 1;
        config.slurm.keepAlive = KeepAlive::Cancel;
        config.slurm.handoverLead = 300;
        config.ollama.port = 11434;
        runner.respond(QStringLiteral("sbatch"), exitWith(0, "1\n"));
        runner.respond(QStringLiteral("scancel"), exitWith(0));
        startedMs[QStringLiteral("1")] = clock.monotonicMs();
    }

    Lifecycle &make()
    {
        auto t = std::make_unique<FakeNodeTunnel>();
        auto p = std::make_unique<FakeHealthProbe>();
        tunnel = t.get();
        probe = p.get();
        lc = std::make_unique<Lifecycle>(config, &runner, &clock, std::move(t), std::move(p));
        lc->setTunnelFactory([this]() {
            auto second = std::make_unique<FakeNodeTunnel>();
            second->opens = 10; // another local port than the first tunnel's
            successorTunnel = second.get();
            return std::unique_ptr<NodeTunnel>(std::move(second));
        });
        return *lc;
    }

    void refreshJobs()
    {
        for (const auto &[id, since] : startedMs)
            runner.respond(
                QStringLiteral("scontrol show job -o ") + id,
                exitWith(0, runningFor(id, (clock.monotonicMs() - since) / 1000, sameNode)));
    }

    void settle()
    {
        settleFakes(runner, *probe, clock, [this] { refreshJobs(); });
    }

    void run(qint64 ms, qint64 step = 500)
    {
        advanceSettling(clock, ms, step, [this] { settle(); });
    }

    // Job 1 runs; from now on sbatch answers job 2 (the successor).
    void successorIsJob2()
    {
        runner.respond(QStringLiteral("sbatch"), exitWith(0, "2\n"));
        startedMs[QStringLiteral("2")] = clock.monotonicMs();
    }

    std::optional<SavedState> saved() const
    {
        auto loaded
            = StateStore(QDir(dir.path()).filePath(QStringLiteral("daemon-state.json"))).load();
        return loaded ? *loaded : std::nullopt;
    }
};

} // namespace

class TestHandover final : public QObject
{
    Q_OBJECT

private slots:
    void handoverBeforeLimitSwitchesAndDrains();
    void noHandoverWhenIdleBeforeLimit();
    void failedSuccessorKeepsOldServing();
    void oldJobEndsWhileSuccessorBoots();
    void sameNodeFixedPortFails();
    void restartCancelsTheOtherJob();
    void oldJobRetiresWhenItsOwnRequestsEnd();
    void successorSubmissionIsInTheStateFile();
    void statusJsonRoundTrip();
};

void TestHandover::handoverBeforeLimitSwitchesAndDrains()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome first;
    lc.acquire(first.callback()); // a long stream on job 1
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(first.results.size(), size_t(1));
    const Upstream oldUpstream = first.results.front().upstream;
    rig.successorIsJob2();

    // 10 min limit, 300 s lead: nothing before 5 min of run time.
    rig.run(290000, 1000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
    QVERIFY(!lc.status().handover.active());
    rig.run(15000, 500);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2);
    QCOMPARE(lc.phase(), Phase::Ready);
    Status s = lc.status();
    QCOMPARE(s.handover.stage, QStringLiteral("draining"));
    QCOMPARE(s.handover.successorJobId, QStringLiteral("2"));
    QCOMPARE(s.handover.oldJobId, QStringLiteral("1"));
    QCOMPARE(s.job.id, QStringLiteral("2"));
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0); // job 1 still streams
    QVERIFY(rig.tunnel->isOpen());
    QVERIFY(rig.successorTunnel && rig.successorTunnel->isOpen());
    // Both jobs are in the state file, so a restart orphans neither.
    auto saved = rig.saved();
    QVERIFY(saved.has_value());
    QCOMPARE(saved->jobId, QStringLiteral("2"));
    QCOMPARE(saved->otherJobId, QStringLiteral("1"));

    // New requests go to the successor: another port, a new generation.
    Outcome second;
    lc.acquire(second.callback());
    QCOMPARE(second.results.size(), size_t(1));
    QVERIFY(second.results.front().ok);
    QCOMPARE(second.results.front().upstream.port, rig.successorTunnel->localPort());
    QVERIFY(second.results.front().upstream.port != oldUpstream.port);
    QVERIFY(second.results.front().upstream.generation > oldUpstream.generation);

    lc.release(); // one of the two streams ends: the old one may still run
    rig.run(1000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 0);
    lc.release(); // nothing in flight any more
    rig.run(1000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 2")), 0);
    s = lc.status();
    QVERIFY(!s.handover.active());
    QCOMPARE(s.job.id, QStringLiteral("2"));
    QCOMPARE(lc.phase(), Phase::Ready);
    saved = rig.saved();
    QVERIFY(saved.has_value());
    QCOMPARE(saved->jobId, QStringLiteral("2"));
    QVERIFY(saved->otherJobId.isEmpty());
}

void TestHandover::noHandoverWhenIdleBeforeLimit()
{
    Rig rig;
    rig.config.slurm.idleTimeoutMinutes = 6; // 360 s
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    rig.successorIsJob2();
    rig.run(98000, 1000);
    lc.release(); // idle deadline at ~460 s of run time, before the 600 s limit
    rig.run(355000, 1000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
    QVERIFY(!lc.status().handover.active());
    rig.run(10000, 1000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
}

void TestHandover::failedSuccessorKeepsOldServing()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    rig.runner.respond(QStringLiteral("sbatch"),
                       exitWith(1, {}, "sbatch: error: QOSMaxSubmitJobPerUserLimit\n"));
    rig.run(305000, 1000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2);
    const Status s = lc.status();
    QCOMPARE(s.handover.stage, QStringLiteral("failed"));
    QVERIFY(s.handover.message.contains(QStringLiteral("QOSMaxSubmitJobPerUserLimit")));
    QCOMPARE(s.job.id, QStringLiteral("1"));
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    rig.run(10000, 1000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2); // not retried for this job
}

void TestHandover::oldJobEndsWhileSuccessorBoots()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    // The successor stays queued until job 1 is gone.
    rig.runner.respond(QStringLiteral("sbatch"), exitWith(0, "2\n"));
    QFile pendingFile(QStringLiteral(SLULLAMA_TEST_DATA "/slurm/scontrol-show-job-pending.out"));
    QVERIFY(pendingFile.open(QIODevice::ReadOnly));
    const QByteArray pendingOut = pendingFile.readAll(); // JobId=2, PENDING
    rig.runner.respond(QStringLiteral("scontrol show job -o 2"), exitWith(0, pendingOut));
    rig.run(305000, 1000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2);
    QCOMPARE(lc.status().handover.stage, QStringLiteral("booting"));
    QCOMPARE(rig.saved()->otherJobId, QStringLiteral("2"));
    // Job 1 reaches its limit.
    rig.startedMs.erase(QStringLiteral("1"));
    rig.runner.respond(
        QStringLiteral("scontrol show job -o 1"),
        exitWith(
            0,
            runningFor(QStringLiteral("1"), 600).replace("JobState=RUNNING", "JobState=TIMEOUT")));
    lc.release();
    rig.run(6000, 500);
    QCOMPARE(lc.status().job.id, QStringLiteral("2"));
    QCOMPARE(lc.phase(), Phase::Queued);
    QCOMPARE(rig.saved()->jobId, QStringLiteral("2"));
    Outcome waiting;
    lc.acquire(waiting.callback()); // waits for the successor, no third job
    rig.run(1000, 500);
    QVERIFY(waiting.results.empty());
    rig.startedMs[QStringLiteral("2")] = rig.clock.monotonicMs();
    rig.run(3000, 500);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(waiting.results.size(), size_t(1));
    QVERIFY(waiting.results.front().ok);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2); // no third job
    QVERIFY(!lc.status().handover.active());
}

void TestHandover::sameNodeFixedPortFails()
{
    Rig rig;
    rig.sameNode = true;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    rig.successorIsJob2();
    rig.run(305000, 1000);
    const Status s = lc.status();
    QCOMPARE(s.handover.stage, QStringLiteral("failed"));
    QVERIFY(s.handover.message.contains(QStringLiteral("ollama.port = 0")));
    QCOMPARE(s.job.id, QStringLiteral("1"));
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 2")), 1);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 0);
    QVERIFY(rig.saved()->otherJobId.isEmpty());
}

void TestHandover::restartCancelsTheOtherJob()
{
    Rig rig;
    SavedState state;
    state.jobId = QStringLiteral("2");
    state.otherJobId = QStringLiteral("1");
    state.phase = QStringLiteral("ready");
    state.node = QStringLiteral("gpu02");
    QVERIFY(
        StateStore(QDir(rig.dir.path()).filePath(QStringLiteral("daemon-state.json"))).save(state));
    rig.startedMs[QStringLiteral("2")] = rig.clock.monotonicMs();
    Lifecycle &lc = rig.make();
    lc.start();
    rig.run(2000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 2")), 0);
    QCOMPARE(lc.status().job.id, QStringLiteral("2"));
    QCOMPARE(lc.phase(), Phase::Ready);
    QVERIFY(rig.saved()->otherJobId.isEmpty());
}

void TestHandover::oldJobRetiresWhenItsOwnRequestsEnd()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome old;
    lc.acquire(old.callback()); // two long streams on job 1
    lc.acquire(old.callback());
    rig.run(2000);
    QCOMPARE(old.results.size(), size_t(2));
    const quint64 oldGeneration = old.results.front().upstream.generation;
    QCOMPARE(old.results.back().upstream.generation, oldGeneration);
    rig.successorIsJob2();
    rig.run(305000, 1000);
    QCOMPARE(lc.status().handover.stage, QStringLiteral("draining"));

    Outcome fresh;
    lc.acquire(fresh.callback()); // two streams on the successor
    lc.acquire(fresh.callback());
    QCOMPARE(fresh.results.size(), size_t(2));
    const quint64 newGeneration = fresh.results.front().upstream.generation;
    QVERIFY(newGeneration > oldGeneration);

    lc.release(newGeneration); // a successor's stream ends: job 1 still streams
    rig.run(1000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 0);
    lc.release(oldGeneration); // one of job 1's two streams ends
    rig.run(1000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 0);
    QVERIFY(rig.tunnel->isOpen());

    // Job 1's last stream ends while the successor still streams: job 1 goes now, not at its
    // limit.
    lc.release(oldGeneration);
    rig.run(1000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
    QVERIFY(!rig.tunnel->isOpen());
    // The successor's stream is untouched.
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 2")), 0);
    QVERIFY(rig.successorTunnel->isOpen());
    QCOMPARE(rig.successorTunnel->closes, 0);
    QCOMPARE(lc.phase(), Phase::Ready);
    Status s = lc.status();
    QVERIFY(!s.handover.active());
    QCOMPARE(s.job.id, QStringLiteral("2"));
    QCOMPARE(s.activeRequests, 1);
    QVERIFY(rig.saved()->otherJobId.isEmpty());

    lc.release(newGeneration);
    rig.run(1000);
    QCOMPARE(lc.status().activeRequests, 0);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 1);
}

void TestHandover::successorSubmissionIsInTheStateFile()
{
    Rig rig;
    Lifecycle &lc = rig.make();
    Outcome out;
    lc.acquire(out.callback());
    rig.run(2000);
    const auto firstSaved = rig.saved();
    QVERIFY(firstSaved.has_value());
    QVERIFY(firstSaved->otherSubmitToken.isEmpty());
    // The successor's sbatch hangs; the daemon is killed meanwhile.
    rig.runner.held << QStringLiteral("sbatch");
    rig.run(305000, 1000);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 2);
    QCOMPARE(rig.runner.pending(QStringLiteral("sbatch")), 1);
    const auto saved = rig.saved();
    QVERIFY(saved.has_value());
    QCOMPARE(saved->jobId, QStringLiteral("1"));
    QVERIFY(!saved->otherSubmitToken.isEmpty());
    QVERIFY(saved->otherJobId.isEmpty());
    QVERIFY(saved->otherSubmitToken != firstSaved->submitToken);
    // The job carries the token the state file names.
    const QString sbatch = rig.runner.lines().filter(QStringLiteral("sbatch")).last();
    QVERIFY2(sbatch.contains(QStringLiteral("slullama_submit=") + saved->otherSubmitToken),
             qPrintable(sbatch));

    // The restarted daemon: Slurm has the successor (2), a job of our name that replaced its
    // token with its port (4), and one carrying another submission's token (3).
    rig.runner.held.clear();
    const QByteArray listed = "1|RUNNING|slullama_port=41234\n"
                              "2|PENDING|slullama_handover=1,slullama_submit="
        + saved->otherSubmitToken.toUtf8()
        + "\n3|PENDING|slullama_submit=0ther\n4|RUNNING|slullama_port=40000\n";
    rig.runner.respond(QStringLiteral("squeue"), exitWith(0, listed));
    Lifecycle &restarted = rig.make();
    restarted.start();
    rig.run(3000);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 2")), 1);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 4")), 1);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 3")), 0);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 0);
    QCOMPARE(restarted.phase(), Phase::Ready);
    QCOMPARE(restarted.status().job.id, QStringLiteral("1"));
    QVERIFY(rig.saved()->otherSubmitToken.isEmpty());
}

void TestHandover::statusJsonRoundTrip()
{
    Status s;
    s.handover.stage = QStringLiteral("booting");
    s.handover.successorJobId = QStringLiteral("42");
    s.handover.successorState = QStringLiteral("PENDING");
    s.handover.oldJobId = QStringLiteral("41");
    const auto back = Status::fromJson(QJsonDocument(s.toJson()).toJson());
    QVERIFY(back.hasValue());
    QCOMPARE(back->handover.stage, QStringLiteral("booting"));
    QCOMPARE(back->handover.successorJobId, QStringLiteral("42"));
    QCOMPARE(back->handover.successorState, QStringLiteral("PENDING"));
    QCOMPARE(back->handover.oldJobId, QStringLiteral("41"));
    QVERIFY(back->handover.successorNode.isEmpty());
    const auto none = Status::fromJson(QJsonDocument(Status {}.toJson()).toJson());
    QVERIFY(none.hasValue());
    QVERIFY(!none->handover.active());
    QVERIFY(Status {}.toJson().value(QStringLiteral("handover")).isNull());
}

QTEST_GUILESS_MAIN(TestHandover)
#include "tst_handover.moc"
