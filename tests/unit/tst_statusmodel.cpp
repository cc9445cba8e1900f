#include "statusmodel.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QTest>

using namespace slullama;

namespace {

Status fullStatus()
{
    Status s;
    s.version = QStringLiteral("0.2.0");
    s.uptimeSeconds = 3600;
    s.requestCount = 42;
    s.idleSeconds = 17;
    s.idleTimeoutMinutes = 0.25;
    s.tunnelAlive = true;
    s.job.id = QStringLiteral("1234");
    s.job.state = QStringLiteral("RUNNING");
    s.job.node = QStringLiteral("gpu07");
    s.job.timeLeft = QStringLiteral("3:59:12");
    s.job.pendingReason = QStringLiteral("None");
    s.job.expectedStart = QStringLiteral("2026-12-04T17:00:00");
    s.partition = QStringLiteral("gpu");
    s.gres = QStringLiteral("gpu:1");
    s.ollamaPort = 11434;
    s.keepAlive = QStringLiteral("extend");
    s.phase = Phase::Ready;
    s.keepAliveEffective = QStringLiteral("cancel");
    s.activeRequests = 3;
    s.secondsUntilSleep = 12;
    s.lastError = QStringLiteral("scontrol update refused: Access/permission denied");
    s.lastEndReason = QStringLiteral("idle");
    s.lastBootAt = QDateTime(QDate(2026, 12, 4), QTime(16, 0, 5), Qt::UTC);
    s.lastBootSeconds = 41.5;
    return s;
}

QJsonValue at(const QJsonObject &root, const QString &path)
{
    QJsonValue value = root;
    for (const QString &part : path.split(u'.'))
        value = value.toObject().value(part);
    return value;
}

} // namespace

class TestStatusModel final : public QObject
{
    Q_OBJECT

private slots:
    void phaseNames_data()
    {
        QTest::addColumn<Phase>("phase");
        QTest::addColumn<QString>("name");
        QTest::newRow("sleeping") << Phase::Sleeping << QStringLiteral("sleeping");
        QTest::newRow("submitting") << Phase::Submitting << QStringLiteral("submitting");
        QTest::newRow("queued") << Phase::Queued << QStringLiteral("queued");
        QTest::newRow("starting") << Phase::Starting << QStringLiteral("starting");
        QTest::newRow("ready") << Phase::Ready << QStringLiteral("ready");
        QTest::newRow("stopping") << Phase::Stopping << QStringLiteral("stopping");
    }

    void phaseNames()
    {
        QFETCH(Phase, phase);
        QFETCH(QString, name);
        QCOMPARE(phaseName(phase), name);
        QCOMPARE(phaseFromName(name), std::optional<Phase>(phase));
    }

    void unknownPhaseName() { QVERIFY(!phaseFromName(QStringLiteral("Ready")).has_value()); }

    // The seed's names, where existing scripts look for them, and the new ones beside them.
    void jsonFieldNames_data()
    {
        QTest::addColumn<QString>("path");
        QTest::addColumn<QJsonValue>("expected");
        const auto row = [](const char *path, const QJsonValue &v) {
            QTest::newRow(path) << QString::fromLatin1(path) << v;
        };
        row("version", QStringLiteral("0.2.0"));
        row("uptime_seconds", 3600);
        row("request_count", 42);
        row("idle_seconds", 17);
        row("idle_timeout_minutes", 0.25);
        row("tunnel_alive", true);
        row("job.id", QStringLiteral("1234"));
        row("job.state", QStringLiteral("RUNNING"));
        row("job.node", QStringLiteral("gpu07"));
        row("job.time_left", QStringLiteral("3:59:12"));
        row("config.partition", QStringLiteral("gpu"));
        row("config.gres", QStringLiteral("gpu:1"));
        row("config.ollama_port", 11434);
        row("config.keep_alive", QStringLiteral("extend"));
        row("phase", QStringLiteral("ready"));
        row("keep_alive_effective", QStringLiteral("cancel"));
        row("active_requests", 3);
        row("seconds_until_sleep", 12);
        row("last_error", QStringLiteral("scontrol update refused: Access/permission denied"));
        row("last_end_reason", QStringLiteral("idle"));
        row("last_boot.at", QStringLiteral("2026-12-04T16:00:05Z"));
        row("last_boot.seconds", 41.5);
        row("job.pending_reason", QStringLiteral("None"));
        row("job.expected_start", QStringLiteral("2026-12-04T17:00:00"));
    }

    void jsonFieldNames()
    {
        QFETCH(QString, path);
        QFETCH(QJsonValue, expected);
        QCOMPARE(at(fullStatus().toJson(), path), expected);
    }

    void emptyValuesAreNull()
    {
        const QJsonObject json = Status().toJson();
        QVERIFY(at(json, QStringLiteral("job.id")).isNull());
        QVERIFY(at(json, QStringLiteral("job.node")).isNull());
        QVERIFY(at(json, QStringLiteral("last_error")).isNull());
        QVERIFY(at(json, QStringLiteral("last_boot.at")).isNull());
        QVERIFY(at(json, QStringLiteral("last_boot.seconds")).isNull());
        QCOMPARE(at(json, QStringLiteral("idle_seconds")), QJsonValue(-1));
        QCOMPARE(at(json, QStringLiteral("phase")), QJsonValue(QStringLiteral("sleeping")));
    }

    void roundTrip_data()
    {
        QTest::addColumn<bool>("full");
        QTest::newRow("full") << true;
        QTest::newRow("defaults") << false;
    }

    void roundTrip()
    {
        QFETCH(bool, full);
        const Status in = full ? fullStatus() : Status();
        const QByteArray json = QJsonDocument(in.toJson()).toJson();
        const auto out = Status::fromJson(json);
        QVERIFY2(out.hasValue(), qPrintable(out.error()));
        // Every field survives: the JSON of the copy is the JSON of the original.
        QCOMPARE(out->toJson(), in.toJson());
        QCOMPARE(out->phase, in.phase);
        QCOMPARE(out->lastBootAt, in.lastBootAt);
        QCOMPARE(out->job.id, in.job.id);
        QCOMPARE(out->idleTimeoutMinutes, in.idleTimeoutMinutes);
    }

    // What slullama 0.1.3 answered: no phase, float seconds, null job while asleep.
    void seedStatusParses_data()
    {
        QTest::addColumn<QByteArray>("json");
        QTest::addColumn<Phase>("phase");
        QTest::addColumn<QString>("jobId");
        QTest::addColumn<qint64>("idleSeconds");
        QTest::newRow("asleep")
            << QByteArray(R"({"version":"0.1.3","uptime_seconds":12.7,"request_count":0,)"
                          R"("idle_seconds":-1,"idle_timeout_minutes":30,"tunnel_alive":false,)"
                          R"("job":{"id":null,"state":null,"node":null,"time_left":null},)"
                          R"("config":{"partition":"gpu","gres":"gpu:1","ollama_port":11434,)"
                          R"("keep_alive":"extend"}})")
            << Phase::Sleeping << QString() << qint64(-1);
        QTest::newRow("running")
            << QByteArray(R"({"version":"0.1.3","uptime_seconds":100,"request_count":5,)"
                          R"("idle_seconds":3.9,"idle_timeout_minutes":30,"tunnel_alive":true,)"
                          R"("job":{"id":"777","state":"RUNNING","node":"n1","time_left":"1:00"},)"
                          R"("config":{"partition":"gpu","gres":"gpu:1","ollama_port":11434,)"
                          R"("keep_alive":"cancel"}})")
            << Phase::Ready << QStringLiteral("777") << qint64(3);
        QTest::newRow("pending, numeric id")
            << QByteArray(R"({"uptime_seconds":1,"job":{"id":778,"state":"PENDING"}})")
            << Phase::Queued << QStringLiteral("778") << qint64(-1);
    }

    void seedStatusParses()
    {
        QFETCH(QByteArray, json);
        QFETCH(Phase, phase);
        QFETCH(QString, jobId);
        QFETCH(qint64, idleSeconds);
        const auto status = Status::fromJson(json);
        QVERIFY2(status.hasValue(), qPrintable(status.error()));
        QCOMPARE(status->phase, phase);
        QCOMPARE(status->job.id, jobId);
        QCOMPARE(status->idleSeconds, idleSeconds);
        // keep_alive_effective falls back to what is configured.
        QCOMPARE(status->keepAliveEffective, status->keepAlive);
    }

    // Regression (tests/fuzz/fuzz_status): numbers beyond qint64 were converted anyway
    // (undefined behaviour; INT64_MIN on x86). Any server on the port may send them.
    void hugeNumbersFallBack()
    {
        const auto status = Status::fromJson(
            R"({"phase":"starting","uptime_seconds":1e300,"request_count":1e19,)"
            R"("idle_seconds":-1e300,"seconds_until_sleep":9.3e18,"active_requests":1e300})");
        QVERIFY2(status.hasValue(), qPrintable(status.error()));
        QCOMPARE(status->uptimeSeconds, qint64(0));
        QCOMPARE(status->requestCount, qint64(0));
        QCOMPARE(status->idleSeconds, qint64(-1));
        QCOMPARE(status->secondsUntilSleep, qint64(-1));
        QCOMPARE(status->activeRequests, 0);
        QCOMPARE(status->phase, Phase::Starting);
    }

    void rejects_data()
    {
        QTest::addColumn<QByteArray>("json");
        QTest::addColumn<QString>("expected");
        QTest::newRow("not json") << QByteArray("<html>") << QStringLiteral("not valid JSON");
        QTest::newRow("truncated") << QByteArray(R"({"phase":"ready")")
                                   << QStringLiteral("not valid JSON");
        QTest::newRow("array") << QByteArray("[1,2]") << QStringLiteral("not a JSON object");
        QTest::newRow("ollama answer") << QByteArray(R"({"models":[]})")
                                       << QStringLiteral("not a slullama status");
    }

    void rejects()
    {
        QFETCH(QByteArray, json);
        QFETCH(QString, expected);
        const auto status = Status::fromJson(json);
        QVERIFY(!status.hasValue());
        QVERIFY2(status.error().contains(expected), qPrintable(status.error()));
    }
};

QTEST_GUILESS_MAIN(TestStatusModel)
#include "tst_statusmodel.moc"
