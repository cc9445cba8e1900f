// "Keep awake for…": a wake with a duration postpones the idle teardown until then, the status
// reports it as awake_until, and the wake route refuses a bad duration.

#include "cliopts.h"
#include "lifecycle.h"
#include "lifecyclefakes.h"
#include "proxyserver.h"
#include "statestore.h"

#include <QDir>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRegularExpression>
#include <QTcpSocket>
#include <QTemporaryDir>
#include <QTest>

using namespace slullama;
using namespace slullama::test;

namespace {

constexpr int kTimeout = 5000;
const QByteArray kToken = QByteArrayLiteral("s3cret-token");

QByteArray running()
{
    QFile file(QStringLiteral(SLULLAMA_TEST_DATA "/slurm/scontrol-show-job-running.out"));
    if (!file.open(QIODevice::ReadOnly))
        qFatal("missing test data");
    return file.readAll();
}

struct Rig
{
    QTemporaryDir dir;
    Config config;
    FakeProcessRunner runner;
    FakeClock clock;
    FakeHealthProbe *probe = nullptr;
    std::unique_ptr<Lifecycle> lc;

    Rig()
    {
        config.server.logDir = dir.path();
        config.server.bootTimeout = 60;
        config.slurm.idleTimeoutMinutes = 1;
        config.slurm.pollInterval = 1;
        config.slurm.commandTimeout = 20;
        config.slurm.keepAlive = KeepAlive::Cancel;
        config.ollama.port = 11434;
        runner.respond(QStringLiteral("sbatch"), exitWith(0, "1\n"));
        runner.respond(QStringLiteral("scontrol show job -o 1"), exitWith(0, running()));
        runner.respond(QStringLiteral("scancel"), exitWith(0));
        auto p = std::make_unique<FakeHealthProbe>();
        probe = p.get();
        lc = std::make_unique<Lifecycle>(config, &runner, &clock,
                                         std::make_unique<FakeNodeTunnel>(), std::move(p));
    }

    void settle() { settleFakes(runner, *probe, clock); }

    void run(qint64 ms, qint64 step = 1000)
    {
        advanceSettling(clock, ms, step, [this] { settle(); });
    }

    StateStore store() const
    {
        return StateStore(QDir(dir.path()).filePath(QStringLiteral("daemon-state.json")));
    }
};

// Records what the wake route asked for.
class WakeBackend final : public Backend
{
public:
    Ticket acquire(Callback done) override
    {
        done(AcquireResult {false, {}, 503, QStringLiteral("not in this test"), 0});
        return 1;
    }
    void cancel(Ticket) override { }
    void release() override { }
    void reportUpstreamFailure(quint64, const QString &) override { }
    void wake() override { ++wakes; }
    void wakeFor(double minutes) override { wakeMinutes.push_back(minutes); }
    Status status() const override
    {
        Status s;
        s.version = QStringLiteral("test");
        return s;
    }
    int wakes = 0;
    std::vector<double> wakeMinutes;
};

} // namespace

class TestKeepAwake final : public QObject
{
    Q_OBJECT

private slots:
    void idleTeardownWaitsForAwakeUntil();
    void wakeForWhileReadyExtends();
    void shorterWakeForDoesNotShorten();
    void wakeForIsInTheStateFile();
    void adoptedJobKeepsTheAwakePromise_data();
    void adoptedJobKeepsTheAwakePromise();
    void extendCoversTheAwakePromise_data();
    void extendCoversTheAwakePromise();
    void statusJsonRoundTrip();
    void wakeRoute_data();
    void wakeRoute();
    void wakeRouteBodyInPieces();
    void cliKeepAwake();
};

void TestKeepAwake::idleTeardownWaitsForAwakeUntil()
{
    Rig rig; // idle_timeout = 1 min
    Lifecycle &lc = *rig.lc;
    const QDateTime wokeAt = rig.clock.currentDateTime();
    lc.wakeFor(5);
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    Status s = lc.status();
    QVERIFY(s.awakeUntil.isValid());
    QCOMPARE(wokeAt.secsTo(s.awakeUntil), qint64(300));
    QVERIFY(s.secondsUntilSleep > 290);

    rig.run(4 * 60 * 1000); // well past the 1-min idle timeout
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    rig.run(60 * 1000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
    QCOMPARE(lc.status().lastEndReason, QStringLiteral("idle"));
    QVERIFY(!lc.status().awakeUntil.isValid());
}

void TestKeepAwake::wakeForWhileReadyExtends()
{
    Rig rig;
    Lifecycle &lc = *rig.lc;
    lc.wake(); // a plain wake: asleep again a minute after ready
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QVERIFY(!lc.status().awakeUntil.isValid());
    rig.run(50 * 1000);
    lc.wakeFor(3);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 1); // no second job
    rig.run(2 * 60 * 1000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    rig.run(62 * 1000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
}

void TestKeepAwake::shorterWakeForDoesNotShorten()
{
    Rig rig;
    Lifecycle &lc = *rig.lc;
    lc.wakeFor(10);
    rig.run(2000);
    const QDateTime until = lc.status().awakeUntil;
    lc.wakeFor(2);
    QCOMPARE(lc.status().awakeUntil, until);
    rig.run(5 * 60 * 1000);
    QCOMPARE(lc.phase(), Phase::Ready);
}

void TestKeepAwake::wakeForIsInTheStateFile()
{
    Rig rig;
    Lifecycle &lc = *rig.lc;
    lc.wake();
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    auto saved = rig.store().load();
    QVERIFY(saved && saved->has_value());
    QVERIFY(!saved->value().awakeUntil.isValid());
    const QDateTime wokeAt = rig.clock.currentDateTime();
    lc.wakeFor(90);
    saved = rig.store().load();
    QVERIFY(saved && saved->has_value());
    QCOMPARE(saved->value().jobId, QStringLiteral("1"));
    QCOMPARE(saved->value().awakeUntil, wokeAt.addSecs(90 * 60));
    // Later saves (phase changes, polls) keep the same promise.
    rig.run(5000);
    lc.wakeFor(1); // shorter: changes nothing
    QCOMPARE(rig.store().load()->value().awakeUntil, wokeAt.addSecs(90 * 60));
}

void TestKeepAwake::adoptedJobKeepsTheAwakePromise_data()
{
    QTest::addColumn<int>("promisedMinutes"); // 0: a state file without awake_until
    QTest::addColumn<int>("readyMinutes"); // how long the adopted job then stays up (about)
    QTest::addRow("no promise") << 0 << 1;
    QTest::addRow("promise") << 5 << 5;
    QTest::addRow("promise already past") << -3 << 1;
}

void TestKeepAwake::adoptedJobKeepsTheAwakePromise()
{
    QFETCH(int, promisedMinutes);
    QFETCH(int, readyMinutes);
    Rig rig; // idle_timeout = 1 min
    // What the previous daemon left after `wake --keep-awake`.
    SavedState state;
    state.jobId = QStringLiteral("1");
    state.node = QStringLiteral("vm");
    state.phase = QStringLiteral("ready");
    state.since = rig.clock.currentDateTime().addSecs(-120);
    if (promisedMinutes != 0)
        state.awakeUntil = rig.clock.currentDateTime().addSecs(promisedMinutes * 60).toUTC();
    QVERIFY(rig.store().save(state));

    Lifecycle &lc = *rig.lc;
    lc.start();
    rig.run(3000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("sbatch")), 0);
    QCOMPARE(lc.status().awakeUntil.isValid(), promisedMinutes > 0);
    // The state file written for the adopted job keeps the promise.
    QCOMPARE(rig.store().load()->value().awakeUntil.isValid(), promisedMinutes > 0);

    rig.run(readyMinutes * 60 * 1000 - 10000);
    QCOMPARE(lc.phase(), Phase::Ready);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel")), 0);
    rig.run(20000);
    QCOMPARE(lc.phase(), Phase::Sleeping);
    QCOMPARE(rig.runner.count(QStringLiteral("scancel 1")), 1);
}

void TestKeepAwake::extendCoversTheAwakePromise_data()
{
    QTest::addColumn<double>("minutes"); // 0: a plain wake
    QTest::addColumn<QString>("update"); // the scontrol update expected, empty: none

    // The job: 10 min limit, 2 s run. Plain: 1 min idle + 5 min margin fit.
    QTest::addRow("plain wake") << 0.0 << QString();
    QTest::addRow("within the limit") << 4.0 << QString();
    // 120 min + 5 min margin + 15 min headroom beyond the ~2 s run: 141 min.
    QTest::addRow("beyond the limit")
        << 120.0 << QStringLiteral("scontrol update JobId=1 TimeLimit=141");
}

void TestKeepAwake::extendCoversTheAwakePromise()
{
    QFETCH(double, minutes);
    QFETCH(QString, update);
    Rig rig;
    rig.config.slurm.keepAlive = KeepAlive::Extend;
    rig.runner.respond(QStringLiteral("scontrol update"), exitWith(0));
    rig.lc = std::make_unique<Lifecycle>(
        rig.config, &rig.runner, &rig.clock, std::make_unique<FakeNodeTunnel>(),
        std::unique_ptr<HealthProbe>(rig.probe = new FakeHealthProbe));
    Lifecycle &lc = *rig.lc;
    lc.wake();
    rig.run(2000);
    QCOMPARE(lc.phase(), Phase::Ready);
    const QString anyUpdate = QStringLiteral("scontrol update");
    QCOMPARE(rig.runner.count(anyUpdate), 0);
    if (minutes > 0)
        lc.wakeFor(minutes);
    // Asked at once, not at the next poll.
    QCOMPARE(rig.runner.count(anyUpdate), update.isEmpty() ? 0 : 1);
    if (!update.isEmpty())
        QCOMPARE(rig.runner.lines().filter(anyUpdate).constFirst(), update);
    rig.run(10000);
    QCOMPARE(rig.runner.count(anyUpdate), update.isEmpty() ? 0 : 1);
}

void TestKeepAwake::statusJsonRoundTrip()
{
    Status s;
    s.phase = Phase::Ready;
    s.awakeUntil = QDateTime(QDate(2026, 12, 4), QTime(19, 30), Qt::UTC);
    const QJsonObject json = s.toJson();
    QCOMPARE(json.value(QStringLiteral("awake_until")).toString(),
             QStringLiteral("2026-12-04T19:30:00Z"));
    auto back = Status::fromJson(QJsonDocument(json).toJson());
    QVERIFY(back.hasValue());
    QCOMPARE(back->awakeUntil, s.awakeUntil);

    s.awakeUntil = {};
    QVERIFY(s.toJson().value(QStringLiteral("awake_until")).isNull());
    back = Status::fromJson(QJsonDocument(s.toJson()).toJson());
    QVERIFY(back.hasValue());
    QVERIFY(!back->awakeUntil.isValid());
}

static QByteArray wakeRequest(const QByteArray &query, const QByteArray &body)
{
    return "POST /slullama/wake" + query + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken
        + "\r\nContent-Length: " + QByteArray::number(body.size()) + "\r\n\r\n" + body;
}

void TestKeepAwake::wakeRoute_data()
{
    QTest::addColumn<QByteArray>("query");
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<int>("status");
    QTest::addColumn<double>("minutes"); // 0: a plain wake(); -1: neither

    QTest::addRow("plain") << QByteArray() << QByteArray() << 202 << 0.0;
    QTest::addRow("query") << QByteArray("?minutes=90") << QByteArray() << 202 << 90.0;
    QTest::addRow("body") << QByteArray() << QByteArray(R"({"keep_awake_minutes": 30})") << 202
                          << 30.0;
    QTest::addRow("max") << QByteArray("?minutes=1440") << QByteArray() << 202 << 1440.0;
    QTest::addRow("zero") << QByteArray("?minutes=0") << QByteArray() << 400 << -1.0;
    QTest::addRow("negative") << QByteArray() << QByteArray(R"({"keep_awake_minutes": -5})") << 400
                              << -1.0;
    QTest::addRow("too long") << QByteArray("?minutes=1441") << QByteArray() << 400 << -1.0;
    QTest::addRow("not a number") << QByteArray("?minutes=abc") << QByteArray() << 400 << -1.0;
    QTest::addRow("string in body")
        << QByteArray() << QByteArray(R"({"keep_awake_minutes": "60"})") << 400 << -1.0;
    QTest::addRow("not json") << QByteArray() << QByteArray("sixty") << 400 << -1.0;
}

void TestKeepAwake::wakeRoute()
{
    QFETCH(QByteArray, query);
    QFETCH(QByteArray, body);
    QFETCH(int, status);
    QFETCH(double, minutes);

    WakeBackend backend;
    ProxySettings settings;
    settings.bind = QStringLiteral("127.0.0.1");
    settings.port = 0;
    settings.token = QString::fromLatin1(kToken);
    ProxyServer server(settings, &backend);
    const auto listening = server.listen();
    QVERIFY2(listening.hasValue(), qPrintable(listening.error()));

    QTcpSocket socket;
    QByteArray received;
    connect(&socket, &QTcpSocket::readyRead, this, [&] { received += socket.readAll(); });
    socket.connectToHost(QHostAddress::LocalHost, server.serverPort());
    socket.write(wakeRequest(query, body));
    QTRY_VERIFY_WITH_TIMEOUT(received.endsWith("}"), kTimeout);
    QVERIFY2(received.startsWith(QByteArray("HTTP/1.1 " + QByteArray::number(status) + ' ')),
             received.constData());
    if (status == 400) {
        const QByteArray json = received.mid(received.indexOf("\r\n\r\n") + 4);
        QVERIFY(!QJsonDocument::fromJson(json)
                     .object()
                     .value(QStringLiteral("error"))
                     .toString()
                     .isEmpty());
    }
    QCOMPARE(backend.wakes, minutes == 0 ? 1 : 0);
    if (minutes > 0)
        QCOMPARE(backend.wakeMinutes, std::vector<double> {minutes});
    else
        QVERIFY(backend.wakeMinutes.empty());

    // The connection stays usable: the body was consumed.
    received.clear();
    socket.write(wakeRequest("?minutes=5", {}));
    QTRY_VERIFY_WITH_TIMEOUT(received.endsWith("}"), kTimeout);
    QVERIFY(received.startsWith("HTTP/1.1 202 "));
}

void TestKeepAwake::wakeRouteBodyInPieces()
{
    WakeBackend backend;
    ProxySettings settings;
    settings.bind = QStringLiteral("127.0.0.1");
    settings.port = 0;
    settings.token = QString::fromLatin1(kToken);
    ProxyServer server(settings, &backend);
    QVERIFY(server.listen().hasValue());

    QTcpSocket socket;
    QByteArray received;
    connect(&socket, &QTcpSocket::readyRead, this, [&] { received += socket.readAll(); });
    socket.connectToHost(QHostAddress::LocalHost, server.serverPort());
    const QByteArray request = wakeRequest({}, R"({"keep_awake_minutes": 45})");
    const qsizetype split = request.size() - 10;
    socket.write(request.left(split));
    // Until the rest arrives the body is incomplete JSON: an early answer would be a 400.
    QTRY_VERIFY_WITH_TIMEOUT(socket.bytesToWrite() == 0, kTimeout);
    QCoreApplication::processEvents();
    socket.write(request.mid(split));
    QTRY_VERIFY_WITH_TIMEOUT(received.endsWith("}"), kTimeout);
    QVERIFY(received.startsWith("HTTP/1.1 202 "));
    QCOMPARE(backend.wakeMinutes, std::vector<double> {45.0});
}

void TestKeepAwake::cliKeepAwake()
{
    const auto parse = [](const QStringList &args) {
        return cli::parseArguments(QStringList {QStringLiteral("slullama")} + args,
                                   cli::Program::Slullama);
    };
    auto inv
        = parse({QStringLiteral("wake"), QStringLiteral("--keep-awake"), QStringLiteral("90")});
    QVERIFY(inv.hasValue());
    QCOMPARE(inv->keepAwakeMinutes, 90.0);
    inv = parse({QStringLiteral("wake")});
    QVERIFY(inv.hasValue());
    QCOMPARE(inv->keepAwakeMinutes, 0.0);
    QVERIFY(!parse({QStringLiteral("wake"), QStringLiteral("--keep-awake"), QStringLiteral("0")})
                 .hasValue());
    QVERIFY(!parse({QStringLiteral("wake"), QStringLiteral("--keep-awake"), QStringLiteral("2000")})
                 .hasValue());
    QVERIFY(!parse({QStringLiteral("status"), QStringLiteral("--keep-awake"), QStringLiteral("5")})
                 .hasValue());
}

QTEST_GUILESS_MAIN(TestKeepAwake)
#include "tst_keepawake.moc"
