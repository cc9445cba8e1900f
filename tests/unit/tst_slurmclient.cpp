#include "lifecyclefakes.h"
#include "processrunner.h"
#include "slurmclient.h"

#include <QFile>
#include <QSignalSpy>
#include <QTest>

Q_DECLARE_METATYPE(slullama::ProcessResult)

using namespace slullama;
using namespace slullama::test;

namespace {

QByteArray slurmData(const QString &name)
{
    QFile file(QStringLiteral(SLULLAMA_TEST_DATA "/slurm/") + name);
    if (!file.open(QIODevice::ReadOnly))
        qFatal("missing test data %s", qPrintable(name));
    return file.readAll();
}

} // namespace

class TestSlurmClient final : public QObject
{
    Q_OBJECT

private slots:
    void parseSbatch_data();
    void parseSbatch();
    void parseShowJobCaptured_data();
    void parseShowJobCaptured();
    void parseShowJobToleratesOrderAndExtraKeys();
    void parseShowJobRejectsGarbage_data();
    void parseShowJobRejectsGarbage();
    void nodeFromNodeList_data();
    void nodeFromNodeList();
    void parseDuration_data();
    void parseDuration();
    void formatDuration_data();
    void formatDuration();
    void secondsLeft();
    void stderrClassifiers();
    void unavailableReason_data();
    void unavailableReason();
    void parseSqueueJobs();
    void reportedPort_data();
    void reportedPort();

    void submitArgumentsAndTimeout();
    void submitWithCommentAndListJobs();
    void submitOutcomes_data();
    void submitOutcomes();
    void showJobInvalidIdIsGone();
    void showJobUnreachable();
    void controllerDownIsUnreachable();
    void cancelTreatsUnknownJobAsCancelled();
    void setTimeLimitDenied();

    void qprocessRunnerSuccess();
    void qprocessRunnerExitCodeAndStderr();
    void qprocessRunnerKillsOnTimeout();
    void qprocessRunnerNotFound();
    void qprocessRunnerNoCallbackAfterContextDies();
};

void TestSlurmClient::parseSbatch_data()
{
    QTest::addColumn<QByteArray>("output");
    QTest::addColumn<QString>("jobId"); // empty = error

    QTest::addRow("captured") << slurmData(QStringLiteral("sbatch-parsable.out"))
                              << QStringLiteral("1");
    QTest::addRow("cluster") << slurmData(QStringLiteral("sbatch-parsable-cluster.out"))
                             << QStringLiteral("1234");
    QTest::addRow("no newline") << QByteArray("98765") << QStringLiteral("98765");
    QTest::addRow("warning first")
        << QByteArray("sbatch: warning: something\n42\n") << QStringLiteral("42");
    QTest::addRow("array") << QByteArray("7_3\n") << QStringLiteral("7_3");
    QTest::addRow("empty") << QByteArray() << QString();
    QTest::addRow("blank lines") << QByteArray("\n\n") << QString();
    QTest::addRow("text") << QByteArray("Submitted batch job 12\n") << QString();
    QTest::addRow("negative") << QByteArray("-1\n") << QString();
}

void TestSlurmClient::parseSbatch()
{
    QFETCH(QByteArray, output);
    QFETCH(QString, jobId);
    const auto result = slurm::parseSbatchParsable(output);
    if (jobId.isEmpty()) {
        QVERIFY(!result);
        QVERIFY(result.error().contains(QStringLiteral("no job id")));
    } else {
        QVERIFY2(result, qPrintable(result.error()));
        QCOMPARE(*result, jobId);
    }
}

void TestSlurmClient::parseShowJobCaptured_data()
{
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("id");
    QTest::addColumn<QString>("state");
    QTest::addColumn<QString>("reason");
    QTest::addColumn<QString>("node");
    QTest::addColumn<QString>("timeLimit");
    QTest::addColumn<QString>("comment");
    QTest::addColumn<int>("kind"); // 0 pending, 1 running, 2 ended

    QTest::addRow("running") << "scontrol-show-job-running.out"
                             << "1"
                             << "RUNNING"
                             << "None"
                             << "vm"
                             << "00:10:00"
                             << "" << 1;
    QTest::addRow("pending") << "scontrol-show-job-pending.out"
                             << "2"
                             << "PENDING"
                             << "Resources"
                             << ""
                             << "00:10:00"
                             << "" << 0;
    QTest::addRow("comment") << "scontrol-show-job-running-comment.out"
                             << "1"
                             << "RUNNING"
                             << "None"
                             << "vm"
                             << "00:10:00"
                             << "port=12345" << 1;
    QTest::addRow("cancelled") << "scontrol-show-job-cancelled.out"
                               << "1"
                               << "CANCELLED"
                               << "None"
                               << "vm"
                               << "00:10:00"
                               << "port=12345" << 2;
    QTest::addRow("completed") << "scontrol-show-job-completed.out"
                               << "4"
                               << "COMPLETED"
                               << "None"
                               << "vm"
                               << "UNLIMITED"
                               << "" << 2;
    QTest::addRow("failed") << "scontrol-show-job-failed.out"
                            << "3"
                            << "FAILED"
                            << "NonZeroExitCode"
                            << "vm"
                            << "UNLIMITED"
                            << "" << 2;
}

void TestSlurmClient::parseShowJobCaptured()
{
    QFETCH(QString, file);
    QFETCH(QString, id);
    QFETCH(QString, state);
    QFETCH(QString, reason);
    QFETCH(QString, node);
    QFETCH(QString, timeLimit);
    QFETCH(QString, comment);
    QFETCH(int, kind);

    const auto info = slurm::parseShowJob(slurmData(file));
    QVERIFY2(info, qPrintable(info.error()));
    QCOMPARE(info->id, id);
    QCOMPARE(info->state, state);
    QCOMPARE(info->reason, reason);
    QCOMPARE(info->node(), node);
    QCOMPARE(info->timeLimit, timeLimit);
    QCOMPARE(info->comment, comment);
    QVERIFY(info->exists);
    QCOMPARE(info->isPending(), kind == 0);
    QCOMPARE(info->isRunning(), kind == 1);
    QCOMPARE(info->hasEnded(), kind == 2);
    if (kind == 2)
        QVERIFY(info->endDescription().startsWith(state));
}

void TestSlurmClient::parseShowJobToleratesOrderAndExtraKeys()
{
    const QByteArray line = "slurm_load_jobs noise\n"
                            "JobId=77 NewKey2030=whatever Comment=two words here BatchHost=gpu17 "
                            "TimeLimit=1-00:00:00 Reason=Priority JobState=PENDING NodeList=(null) "
                            "RunTime=00:00:00 Weird=a=b\n";
    const auto info = slurm::parseShowJob(line);
    QVERIFY2(info, qPrintable(info.error()));
    QCOMPARE(info->id, QStringLiteral("77"));
    QCOMPARE(info->state, QStringLiteral("PENDING"));
    QCOMPARE(info->reason, QStringLiteral("Priority"));
    QCOMPARE(info->comment, QStringLiteral("two words here"));
    QCOMPARE(info->node(), QStringLiteral("gpu17"));
    QCOMPARE(info->timeLimit, QStringLiteral("1-00:00:00"));
    QVERIFY(info->isPending());
}

void TestSlurmClient::parseShowJobRejectsGarbage_data()
{
    QTest::addColumn<QByteArray>("output");
    QTest::addRow("empty") << QByteArray();
    QTest::addRow("no job") << QByteArray("No jobs in the system\n");
    QTest::addRow("no state") << QByteArray("JobId=5 Reason=None\n");
    QTest::addRow("binary") << QByteArray("\x00\xff=\x01 JobId", 9);
}

void TestSlurmClient::parseShowJobRejectsGarbage()
{
    QFETCH(QByteArray, output);
    QVERIFY(!slurm::parseShowJob(output));
}

void TestSlurmClient::nodeFromNodeList_data()
{
    QTest::addColumn<QString>("batchHost");
    QTest::addColumn<QString>("nodeList");
    QTest::addColumn<QString>("node");
    QTest::addRow("batch host wins") << "b1"
                                     << "n[1-2]"
                                     << "b1";
    QTest::addRow("plain") << ""
                           << "node7"
                           << "node7";
    QTest::addRow("range") << ""
                           << "gpu[01-03,07],cpu1"
                           << "gpu01";
    QTest::addRow("list") << ""
                          << "a1,a2"
                          << "a1";
    QTest::addRow("list in brackets") << ""
                                      << "x[5,9]"
                                      << "x5";
    QTest::addRow("null") << "(null)"
                          << "(null)"
                          << "";
    QTest::addRow("empty") << ""
                           << ""
                           << "";
    // Regression (tests/fuzz/fuzz_slurm): the node is ssh's destination argument.
    QTest::addRow("option-like batch host") << "-oProxyCommand=x"
                                            << "vm"
                                            << "";
    QTest::addRow("unbalanced brackets") << ""
                                         << "a],b[1"
                                         << "";
    QTest::addRow("words") << "gpu1 extra"
                           << ""
                           << "";
}

void TestSlurmClient::nodeFromNodeList()
{
    QFETCH(QString, batchHost);
    QFETCH(QString, nodeList);
    QFETCH(QString, node);
    JobInfo info;
    info.batchHost = batchHost;
    info.nodeList = nodeList;
    QCOMPARE(info.node(), node);
}

void TestSlurmClient::parseDuration_data()
{
    QTest::addColumn<QString>("text");
    QTest::addColumn<qint64>("seconds"); // -1 = nullopt
    QTest::addRow("minutes") << "30" << qint64(1800);
    QTest::addRow("mm:ss") << "5:30" << qint64(330);
    QTest::addRow("hh:mm:ss") << "04:00:00" << qint64(14400);
    QTest::addRow("h:mm:ss") << "0:10:00" << qint64(600);
    QTest::addRow("d-hh") << "2-03" << qint64(2 * 86400 + 3 * 3600);
    QTest::addRow("d-hh:mm") << "1-01:30" << qint64(86400 + 3600 + 1800);
    QTest::addRow("d-hh:mm:ss") << "1-00:00:05" << qint64(86405);
    QTest::addRow("unlimited") << "UNLIMITED" << qint64(-1);
    QTest::addRow("partition limit") << "Partition_Limit" << qint64(-1);
    QTest::addRow("empty") << "" << qint64(-1);
    QTest::addRow("junk") << "1:2:3:4" << qint64(-1);
    // Regression (tests/fuzz/fuzz_slurm): signed overflow on long digit strings.
    QTest::addRow("overflowing days") << "155555555555555-0" << qint64(-1);
    QTest::addRow("overflowing minutes") << "99999999999999999999" << qint64(-1);
}

void TestSlurmClient::parseDuration()
{
    QFETCH(QString, text);
    QFETCH(qint64, seconds);
    const auto parsed = slurm::parseDuration(text);
    if (seconds < 0) {
        QVERIFY(!parsed);
    } else {
        QVERIFY(parsed);
        QCOMPARE(*parsed, seconds);
    }
}

void TestSlurmClient::formatDuration_data()
{
    QTest::addColumn<qint64>("seconds");
    QTest::addColumn<QString>("text");
    QTest::addRow("zero") << qint64(0) << "0:00:00";
    QTest::addRow("negative") << qint64(-5) << "0:00:00";
    QTest::addRow("hours") << qint64(3 * 3600 + 59 * 60 + 12) << "3:59:12";
    QTest::addRow("days") << qint64(86400 + 3661) << "1-01:01:01";
}

void TestSlurmClient::formatDuration()
{
    QFETCH(qint64, seconds);
    QFETCH(QString, text);
    QCOMPARE(slurm::formatDuration(seconds), text);
    if (seconds >= 0)
        QCOMPARE(slurm::parseDuration(text).value_or(-1), seconds);
}

void TestSlurmClient::secondsLeft()
{
    const auto info
        = slurm::parseShowJob(slurmData(QStringLiteral("scontrol-show-job-running.out")));
    QVERIFY(info);
    QCOMPARE(info->secondsLeft().value_or(-1), qint64(598));
    const auto unlimited
        = slurm::parseShowJob(slurmData(QStringLiteral("scontrol-show-job-completed.out")));
    QVERIFY(unlimited);
    QVERIFY(!unlimited->secondsLeft());
}

void TestSlurmClient::stderrClassifiers()
{
    QVERIFY(slurm::isInvalidJobId(slurmData(QStringLiteral("scontrol-show-job-invalid.err"))));
    QVERIFY(!slurm::isInvalidJobId(slurmData(QStringLiteral("sbatch-invalid-partition.err"))));
    QVERIFY(slurm::isPermissionDenied(
        slurmData(QStringLiteral("scontrol-update-timelimit-denied.err"))));
    QVERIFY(!slurm::isPermissionDenied(slurmData(QStringLiteral("scontrol-show-job-invalid.err"))));
}

void TestSlurmClient::unavailableReason_data()
{
    QTest::addColumn<QByteArray>("stderrData");
    QTest::addColumn<QString>("reason"); // empty: Slurm refused, a retry will not help

    const QString refused;
    const QString controller = QStringLiteral("Slurm controller unreachable");
    const QString authentication = QStringLiteral("Slurm authentication failed");
    const QString busy = QStringLiteral("Slurm temporarily unavailable");

    // Refusals: HTTP 502.
    QTest::addRow("invalid partition")
        << slurmData(QStringLiteral("sbatch-invalid-partition.err")) << refused;
    QTest::addRow("invalid account")
        << QByteArray("sbatch: error: Batch job submission failed: Invalid account or "
                      "account/partition combination specified\n")
        << refused;
    QTest::addRow("qos limit") << QByteArray(
        "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: "
        "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)\n")
                               << refused;
    QTest::addRow("time limit") << QByteArray(
        "sbatch: error: Batch job submission failed: Requested time limit is "
        "invalid (missing or exceeds some limit)\n")
                                << refused;
    QTest::addRow("permission denied")
        << slurmData(QStringLiteral("scontrol-update-timelimit-denied.err")) << refused;
    QTest::addRow("invalid job id")
        << slurmData(QStringLiteral("scontrol-show-job-invalid.err")) << refused;
    QTest::addRow("hiccup, then refused")
        << QByteArray("sbatch: error: slurm_receive_msg: Socket timed out on send/recv "
                      "operation\nsbatch: error: Batch job submission failed: Invalid partition "
                      "name specified\n")
        << refused;
    QTest::addRow("empty") << QByteArray() << refused;

    // Slurm unavailable for now: HTTP 503 with Retry-After.
    QTest::addRow("controller down")
        << QByteArray("sbatch: error: Batch job submission failed: Unable to contact slurm "
                      "controller (connect failure)\n")
        << controller;
    QTest::addRow("controller down, scontrol")
        << QByteArray("slurm_load_jobs error: Unable to contact slurm controller (connect "
                      "failure)\n")
        << controller;
    QTest::addRow("socket timeout")
        << QByteArray("slurm_load_jobs error: Socket timed out on send/recv operation\n")
        << controller;
    QTest::addRow("zero bytes") << QByteArray(
        "squeue: error: slurm_receive_msg: Zero Bytes were transmitted or "
        "received\nslurm_load_jobs error: Zero Bytes were transmitted or received\n")
                                << controller;
    QTest::addRow("connection failure")
        << QByteArray("scancel: error: Kill job error on job id 5: Communication connection "
                      "failure\n")
        << controller;
    QTest::addRow("transport endpoint")
        << QByteArray("sbatch: error: Batch job submission failed: Transport endpoint is not "
                      "connected\n")
        << controller;
    QTest::addRow("standby") << QByteArray(
        "sbatch: error: Batch job submission failed: Slurm backup controller in "
        "standby mode\n") << controller;
    QTest::addRow("munge stopped")
        << slurmData(QStringLiteral("sbatch-munge-stopped.err")) << authentication;
    QTest::addRow("munge retrying")
        << QByteArray("sbatch: error: Munge encode failed: Failed to access "
                      "\"/run/munge/munge.socket.2\": No such file or directory (retrying ...)\n")
        << authentication;
    QTest::addRow("eagain") << QByteArray(
        "sbatch: error: Slurm temporarily unable to accept job, sleeping and "
        "retrying\nsbatch: error: Batch job submission failed: Resource temporarily "
        "unavailable\n") << busy;
    QTest::addRow("try again") << QByteArray(
        "sbatch: error: Batch job submission failed: Unable to create job record, "
        "try again\n") << busy;
}

void TestSlurmClient::unavailableReason()
{
    QFETCH(QByteArray, stderrData);
    QFETCH(QString, reason);
    QCOMPARE(slurm::unavailableReason(stderrData), reason);
}

void TestSlurmClient::submitArgumentsAndTimeout()
{
    FakeProcessRunner runner;
    SlurmConfig config;
    config.commandTimeout = 7.5;
    SlurmClient client(config, &runner);
    QObject context;
    client.submit(QStringLiteral("/logs/slullama-job.sh"), &context,
                  [](const SlurmOutcome &, const QString &) {});
    QCOMPARE(runner.calls.size(), size_t(1));
    QCOMPARE(runner.calls[0]->program, QStringLiteral("sbatch"));
    QCOMPARE(runner.calls[0]->arguments,
             (QStringList {QStringLiteral("--parsable"), QStringLiteral("/logs/slullama-job.sh")}));
    QCOMPARE(runner.calls[0]->timeoutMs, 7500);

    client.showJob(QStringLiteral("5"), &context, [](const SlurmOutcome &, const JobInfo &) {});
    client.cancel(QStringLiteral("5"), &context, [](const SlurmOutcome &) {});
    client.setTimeLimit(QStringLiteral("5"), 95, &context, [](const SlurmOutcome &) {});
    QCOMPARE(runner.lines(),
             (QStringList {QStringLiteral("sbatch --parsable /logs/slullama-job.sh"),
                           QStringLiteral("scontrol show job -o 5"), QStringLiteral("scancel 5"),
                           QStringLiteral("scontrol update JobId=5 TimeLimit=95")}));
    for (const auto &call : runner.calls)
        QCOMPARE(call->timeoutMs, 7500);
}

void TestSlurmClient::submitOutcomes_data()
{
    QTest::addColumn<ProcessResult>("result");
    QTest::addColumn<int>("failure");
    QTest::addColumn<QString>("messagePart");
    QTest::addColumn<QString>("jobId");

    QTest::addRow("ok") << exitWith(0, "31\n") << int(SlurmFailure::None) << ""
                        << "31";
    QTest::addRow("bad partition")
        << exitWith(1, {}, slurmData(QStringLiteral("sbatch-invalid-partition.err")))
        << int(SlurmFailure::Refused) << "Invalid partition name specified"
        << "";
    QTest::addRow("qos limit") << exitWith(
        1, {},
        "sbatch: error: Batch job submission failed: Job violates accounting/QOS "
        "policy (job submit limit, user's size and/or time limits)\n")
                               << int(SlurmFailure::Refused)
                               << "sbatch --parsable /x.sh failed (exit 1): sbatch: error: "
                               << "";
    // Slurm's words, on one line for the status page.
    QTest::addRow("munge stopped")
        << exitWith(1, {}, slurmData(QStringLiteral("sbatch-munge-stopped.err")))
        << int(SlurmFailure::Unreachable)
        << "Slurm authentication failed (sbatch: error: If munged is up, restart with "
           "--num-threads=10; sbatch: error: Munge encode failed: Failed to access"
        << "";
    QTest::addRow("controller down")
        << exitWith(1, {}, "slurm_load_jobs error: Socket timed out on send/recv operation\n")
        << int(SlurmFailure::Unreachable)
        << "Slurm controller unreachable (sbatch: slurm_load_jobs error: Socket timed out"
        << "";
    QTest::addRow("timeout") << timedOut() << int(SlurmFailure::Unreachable)
                             << "Slurm controller unreachable (sbatch did not answer within 20 s)"
                             << "";
    QTest::addRow("not found") << notFound() << int(SlurmFailure::NotFound)
                               << "sbatch could not be started"
                               << "";
    QTest::addRow("garbage") << exitWith(0, "hello\n") << int(SlurmFailure::BadOutput)
                             << "no job id"
                             << "";
}

void TestSlurmClient::submitOutcomes()
{
    QFETCH(ProcessResult, result);
    QFETCH(int, failure);
    QFETCH(QString, messagePart);
    QFETCH(QString, jobId);

    FakeProcessRunner runner;
    SlurmClient client(SlurmConfig {}, &runner);
    QObject context;
    std::optional<std::pair<SlurmOutcome, QString>> got;
    client.submit(QStringLiteral("/x.sh"), &context,
                  [&](const SlurmOutcome &o, const QString &id) { got = std::make_pair(o, id); });
    QVERIFY(!got); // never synchronous
    QVERIFY(runner.answer(QStringLiteral("sbatch"), result));
    QVERIFY(got);
    QCOMPARE(int(got->first.failure), failure);
    QVERIFY2(got->first.message.contains(messagePart), qPrintable(got->first.message));
    QCOMPARE(got->second, jobId);
}

void TestSlurmClient::showJobInvalidIdIsGone()
{
    FakeProcessRunner runner;
    SlurmClient client(SlurmConfig {}, &runner);
    QObject context;
    std::optional<std::pair<SlurmOutcome, JobInfo>> got;
    client.showJob(QStringLiteral("999999"), &context,
                   [&](const SlurmOutcome &o, const JobInfo &i) { got = std::make_pair(o, i); });
    runner.answer(QStringLiteral("scontrol"),
                  exitWith(1, {}, slurmData(QStringLiteral("scontrol-show-job-invalid.err"))));
    QVERIFY(got);
    QVERIFY(got->first.ok());
    QVERIFY(!got->second.exists);
    QVERIFY(got->second.hasEnded());
    QCOMPARE(got->second.id, QStringLiteral("999999"));
}

void TestSlurmClient::showJobUnreachable()
{
    FakeProcessRunner runner;
    SlurmClient client(SlurmConfig {}, &runner);
    QObject context;
    std::optional<SlurmOutcome> got;
    client.showJob(QStringLiteral("1"), &context,
                   [&](const SlurmOutcome &o, const JobInfo &) { got = o; });
    runner.answer(QStringLiteral("scontrol"), timedOut());
    QVERIFY(got);
    QCOMPARE(got->failure, SlurmFailure::Unreachable);
    QCOMPARE(got->message,
             QStringLiteral("Slurm controller unreachable (scontrol did not answer within 20 s)"));
}

void TestSlurmClient::controllerDownIsUnreachable()
{
    FakeProcessRunner runner;
    SlurmClient client(SlurmConfig {}, &runner);
    QObject context;
    std::vector<SlurmOutcome> got;
    const auto keep = [&](const SlurmOutcome &o, const QString &) { got.push_back(o); };
    // Captured on the bed with slurmctld stopped: sbatch gives up after about 9 s, exit 1.
    client.submit(QStringLiteral("/j.sh"), &context, keep);
    runner.answer(QStringLiteral("sbatch"),
                  exitWith(1, {},
                           "sbatch: error: Batch job submission failed: Unable to contact slurm "
                           "controller (connect failure)\n"));
    // A command killed at the timeout: what it printed before says why (munged stopped here).
    client.submit(QStringLiteral("/j.sh"), &context, keep);
    ProcessResult hung = timedOut();
    hung.stderrData
        = "sbatch: error: Munge encode failed: Failed to connect to \"/x/munge.socket.2\": "
          "Connection refused (retrying ...)\n";
    runner.answer(QStringLiteral("sbatch"), hung);
    QCOMPARE(got.size(), size_t(2));
    QCOMPARE(got[0].failure, SlurmFailure::Unreachable);
    QVERIFY2(got[0].message.startsWith(QStringLiteral("Slurm controller unreachable (sbatch")),
             qPrintable(got[0].message));
    QVERIFY(got[0].message.contains(QStringLiteral("connect failure")));
    QCOMPARE(got[1].failure, SlurmFailure::Unreachable);
    QVERIFY2(got[1].message.startsWith(
                 QStringLiteral("Slurm authentication failed (sbatch did not answer within 20 s")),
             qPrintable(got[1].message));
    QVERIFY2(got[1].message.contains(QStringLiteral("it said: sbatch: error: Munge encode failed")),
             qPrintable(got[1].message));
}

void TestSlurmClient::cancelTreatsUnknownJobAsCancelled()
{
    FakeProcessRunner runner;
    SlurmClient client(SlurmConfig {}, &runner);
    QObject context;
    std::vector<SlurmOutcome> got;
    client.cancel(QStringLiteral("5"), &context, [&](const SlurmOutcome &o) { got.push_back(o); });
    client.cancel(QStringLiteral("6"), &context, [&](const SlurmOutcome &o) { got.push_back(o); });
    client.cancel(QStringLiteral("7"), &context, [&](const SlurmOutcome &o) { got.push_back(o); });
    runner.answer(
        QStringLiteral("scancel 5"),
        exitWith(1, {}, "scancel: error: Kill job error on job id 5: Invalid job id specified\n"));
    runner.answer(QStringLiteral("scancel 6"), exitWith(0));
    runner.answer(QStringLiteral("scancel 7"), timedOut());
    QCOMPARE(got.size(), size_t(3));
    QVERIFY(got[0].ok());
    QVERIFY(got[1].ok());
    QCOMPARE(got[2].failure, SlurmFailure::Unreachable);
}

void TestSlurmClient::setTimeLimitDenied()
{
    FakeProcessRunner runner;
    SlurmClient client(SlurmConfig {}, &runner);
    QObject context;
    std::optional<SlurmOutcome> got;
    client.setTimeLimit(QStringLiteral("1"), 30, &context, [&](const SlurmOutcome &o) { got = o; });
    runner.answer(
        QStringLiteral("scontrol update"),
        exitWith(1, {}, slurmData(QStringLiteral("scontrol-update-timelimit-denied.err"))));
    QVERIFY(got);
    QCOMPARE(got->failure, SlurmFailure::PermissionDenied);
    QVERIFY(got->message.contains(QStringLiteral("Access/permission denied for job 1")));
}

// The real runner: programs from coreutils, never a shell string.

void TestSlurmClient::qprocessRunnerSuccess()
{
    auto runner = makeQProcessRunner();
    QObject context;
    std::optional<ProcessResult> got;
    runner->run(QStringLiteral("/bin/echo"), {QStringLiteral("hello world")}, 10000, &context,
                [&](const ProcessResult &r) { got = r; });
    QVERIFY(!got);
    QTRY_VERIFY_WITH_TIMEOUT(got.has_value(), 10000);
    QVERIFY(got->succeeded());
    QCOMPARE(got->stdoutData, QByteArray("hello world\n"));
}

void TestSlurmClient::qprocessRunnerExitCodeAndStderr()
{
    auto runner = makeQProcessRunner();
    QObject context;
    std::optional<ProcessResult> got;
    // ls of a missing path: exit 2 with a message on stderr.
    runner->run(QStringLiteral("/bin/ls"), {QStringLiteral("/nonexistent-slullama-path")}, 10000,
                &context, [&](const ProcessResult &r) { got = r; });
    QTRY_VERIFY_WITH_TIMEOUT(got.has_value(), 10000);
    QVERIFY(!got->succeeded());
    QVERIFY(!got->timedOut);
    QCOMPARE(got->exitCode, 2);
    QVERIFY(got->stderrData.contains("nonexistent-slullama-path"));
}

void TestSlurmClient::qprocessRunnerKillsOnTimeout()
{
    auto runner = makeQProcessRunner();
    QObject context;
    std::optional<ProcessResult> got;
    runner->run(QStringLiteral("/bin/sleep"), {QStringLiteral("60")}, 200, &context,
                [&](const ProcessResult &r) { got = r; });
    QTRY_VERIFY_WITH_TIMEOUT(got.has_value(), 20000);
    QVERIFY(got->timedOut);
    QVERIFY(!got->succeeded());
}

void TestSlurmClient::qprocessRunnerNotFound()
{
    auto runner = makeQProcessRunner();
    QObject context;
    std::optional<ProcessResult> got;
    runner->run(QStringLiteral("slullama-no-such-program"), {}, 10000, &context,
                [&](const ProcessResult &r) { got = r; });
    QVERIFY(!got);
    QTRY_VERIFY_WITH_TIMEOUT(got.has_value(), 10000);
    QVERIFY(got->failedToStart);
    QVERIFY(!got->errorString.isEmpty());

    // Through SlurmClient this becomes a message naming the program.
    SlurmOutcome outcome;
    bool done = false;
    SlurmClient client(SlurmConfig {}, runner.get());
    const QByteArray path = qgetenv("PATH");
    qputenv("PATH", "/nonexistent-slullama-bin");
    client.submit(QStringLiteral("/x.sh"), &context, [&](const SlurmOutcome &o, const QString &) {
        outcome = o;
        done = true;
    });
    qputenv("PATH", path);
    QTRY_VERIFY_WITH_TIMEOUT(done, 10000);
    QCOMPARE(outcome.failure, SlurmFailure::NotFound);
    QVERIFY2(outcome.message.startsWith(QStringLiteral("sbatch could not be started")),
             qPrintable(outcome.message));
}

void TestSlurmClient::qprocessRunnerNoCallbackAfterContextDies()
{
    auto runner = makeQProcessRunner();
    bool called = false;
    {
        QObject context;
        runner->run(QStringLiteral("/bin/sleep"), {QStringLiteral("60")}, 60000, &context,
                    [&](const ProcessResult &) { called = true; });
    }
    // Context gone: the process was killed with it and the callback never runs.
    QTest::qWait(100);
    QVERIFY(!called);
}

void TestSlurmClient::parseSqueueJobs()
{
    // Captured: squeue --me -h --name=N -o '%i|%T|%k' (Slurm 22.05.8).
    const QByteArray out = "13|PENDING|slullama_submit=abc123\n14|RUNNING|(null)\n"
                           "15_2|RUNNING|a|b c\nwarning: something\n\n";
    const QList<JobSummary> jobs = slurm::parseSqueueJobs(out);
    QCOMPARE(jobs.size(), 3);
    QCOMPARE(jobs[0],
             (JobSummary {QStringLiteral("13"), QStringLiteral("PENDING"),
                          QStringLiteral("slullama_submit=abc123")}));
    QCOMPARE(jobs[1].comment, QStringLiteral("(null)"));
    QCOMPARE(jobs[2].id, QStringLiteral("15_2"));
    QCOMPARE(jobs[2].comment, QStringLiteral("a|b c"));
    QVERIFY(slurm::parseSqueueJobs(QByteArray()).isEmpty());
}

void TestSlurmClient::reportedPort_data()
{
    QTest::addColumn<QString>("comment");
    QTest::addColumn<int>("port"); // 0: none
    QTest::addRow("template") << "slullama_port=31234" << 31234;
    QTest::addRow("among other words") << "x=1 slullama_port=8080" << 8080;
    QTest::addRow("unset") << "(null)" << 0;
    QTest::addRow("submit token only") << "slullama_submit=abc" << 0;
    QTest::addRow("out of range") << "slullama_port=70000" << 0;
    QTest::addRow("zero") << "slullama_port=0" << 0;
    QTest::addRow("not a number") << "slullama_port=12ab" << 0;
    QTest::addRow("other prefix") << "xslullama_port=1234" << 0;
}

void TestSlurmClient::reportedPort()
{
    QFETCH(QString, comment);
    QFETCH(int, port);
    const auto got = slurm::reportedPort(comment);
    QCOMPARE(got.has_value(), port != 0);
    if (got)
        QCOMPARE(int(*got), port);
}

void TestSlurmClient::submitWithCommentAndListJobs()
{
    SlurmConfig config;
    config.commandTimeout = 3;
    FakeProcessRunner runner;
    SlurmClient slurm(config, &runner);
    QObject context;
    QString jobId;
    slurm.submit(
        QStringLiteral("/x/job.sh"), &context,
        [&](const SlurmOutcome &, const QString &id) { jobId = id; },
        QStringLiteral("slullama_submit=t1"));
    QCOMPARE(
        runner.calls.back()->arguments,
        (QStringList {QStringLiteral("--parsable"), QStringLiteral("--comment=slullama_submit=t1"),
                      QStringLiteral("/x/job.sh")}));
    QVERIFY(runner.answer(QStringLiteral("sbatch"), exitWith(0, "42\n")));
    QCOMPARE(jobId, QStringLiteral("42"));

    QList<JobSummary> listed;
    SlurmOutcome outcome;
    slurm.listJobs(QStringLiteral("my job"), &context,
                   [&](const SlurmOutcome &o, const QList<JobSummary> &jobs) {
                       outcome = o;
                       listed = jobs;
                   });
    QCOMPARE(runner.calls.back()->program, QStringLiteral("squeue"));
    QCOMPARE(
        runner.calls.back()->arguments,
        (QStringList {QStringLiteral("--me"), QStringLiteral("-h"), QStringLiteral("--name=my job"),
                      QStringLiteral("-o"), QStringLiteral("%i|%T|%k")}));
    QCOMPARE(runner.calls.back()->timeoutMs, 3000);
    QVERIFY(
        runner.answer(QStringLiteral("squeue"), exitWith(0, "42|RUNNING|slullama_submit=t1\n")));
    QVERIFY(outcome.ok());
    QCOMPARE(listed.size(), 1);
    QCOMPARE(listed[0].id, QStringLiteral("42"));

    slurm.listJobs(QStringLiteral("x"), &context,
                   [&](const SlurmOutcome &o, const QList<JobSummary> &) { outcome = o; });
    QVERIFY(runner.answer(QStringLiteral("squeue"), timedOut()));
    QCOMPARE(outcome.failure, SlurmFailure::Unreachable);
}

QTEST_GUILESS_MAIN(TestSlurmClient)
#include "tst_slurmclient.moc"
