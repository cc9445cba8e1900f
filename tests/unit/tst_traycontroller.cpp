#include "apistatussource.h"
#include "statussource.h"
#include "traycontroller.h"
#include "tunnelcontrol.h"

#include <QSignalSpy>
#include <QTcpServer>
#include <QTcpSocket>
#include <QTest>

using namespace slullama;

namespace {

class FakeTunnel final : public TunnelControl
{
public:
    void setClientConfig(const ClientConfig &config) override { lastConfig = config; }
    void open() override
    {
        ++opens;
        set(State::Connecting);
    }
    void close() override
    {
        ++closes;
        set(State::Disconnected);
    }
    State state() const override { return m_state; }
    QString errorString() const override { return m_error; }
    ErrorKind errorKind() const override { return m_kind; }

    void set(State state)
    {
        if (state == m_state)
            return;
        m_state = state;
        emit stateChanged(state);
    }
    void fail(ErrorKind kind, const QString &message, bool fatal)
    {
        m_kind = kind;
        m_error = message;
        emit errorOccurred(kind, message);
        set(fatal ? State::Failed : State::Reconnecting);
    }

    int opens = 0;
    int closes = 0;
    ClientConfig lastConfig;

private:
    State m_state = State::Disconnected;
    QString m_error;
    ErrorKind m_kind = ErrorKind::None;
};

class FakeSource final : public StatusSource
{
public:
    void setEndpoint(const QUrl &url, const QString &t) override
    {
        base = url;
        token = t;
    }
    void fetchStatus() override { ++fetches; }
    void wake() override { ++wakes; }

    QUrl base;
    QString token;
    int fetches = 0;
    int wakes = 0;
};

Status parse(const QByteArray &json)
{
    auto status = Status::fromJson(json);
    if (!status)
        qFatal("bad test JSON: %s", qPrintable(status.error()));
    return status.value();
}

QByteArray phaseJson(const char *phase, const char *node = "")
{
    return QByteArrayLiteral(R"({"phase":")") + phase
            + QByteArrayLiteral(R"(","uptime_seconds":100,"job":{"id":"4242","node":")") + node
            + QByteArrayLiteral(R"("}})");
}

ClientConfig clientConfig()
{
    ClientConfig c;
    c.host = QStringLiteral("alice@head");
    c.serverPort = 11435;
    c.localPort = 11500;
    c.token = QStringLiteral("s3cret");
    return c;
}

// Answers every request on 127.0.0.1 with one canned response and keeps the request heads.
class CannedHttp final : public QObject
{
public:
    CannedHttp()
    {
        QVERIFY(m_server.listen(QHostAddress::LocalHost, 0));
        connect(&m_server, &QTcpServer::newConnection, this, [this] {
            while (QTcpSocket *socket = m_server.nextPendingConnection()) {
                connect(socket, &QTcpSocket::readyRead, socket, [this, socket] {
                    m_buffer[socket] += socket->readAll();
                    const QByteArray &data = m_buffer[socket];
                    const qsizetype end = data.indexOf("\r\n\r\n");
                    if (end < 0)
                        return;
                    heads << data.left(end);
                    m_buffer.remove(socket);
                    socket->write("HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\n"
                                  "Content-Length: "
                                  + QByteArray::number(body.size())
                                  + "\r\nConnection: close\r\n\r\n" + body);
                    socket->disconnectFromHost();
                });
                connect(socket, &QTcpSocket::disconnected, socket, &QObject::deleteLater);
            }
        });
    }
    quint16 port() const { return m_server.serverPort(); }

    QByteArray status = "200 OK";
    QByteArray body;
    QList<QByteArray> heads;

private:
    QTcpServer m_server;
    QHash<QTcpSocket *, QByteArray> m_buffer;
};

} // namespace

class TestTrayController : public QObject
{
    Q_OBJECT

private:
    // A controller with a connected tunnel and one status request out.
    struct Rig
    {
        FakeTunnel tunnel;
        FakeSource source;
        qint64 now = 1'000'000;
        TrayController controller{&tunnel, &source};
        QSignalSpy notes{&controller, &TrayController::notification};

        Rig(bool connect = true)
        {
            controller.setClock([this] { return now; });
            controller.setClientConfig(clientConfig());
            if (connect) {
                controller.start();
                tunnel.set(TunnelControl::State::Connected);
            }
        }
        void answer(const QByteArray &json) { emit source.statusReceived(parse(json)); }
        int count(TrayNotification kind) const
        {
            int n = 0;
            for (const auto &args : notes)
                n += args.at(0).value<TrayNotification>() == kind ? 1 : 0;
            return n;
        }
    };

private slots:
    void phaseFromStatus_data()
    {
        QTest::addColumn<QByteArray>("json");
        QTest::addColumn<QString>("phase");
        QTest::addColumn<QString>("icon");
        QTest::addColumn<QString>("node");
        QTest::addColumn<QString>("pendingReason");
        QTest::addColumn<QString>("tooltip");

        QTest::addRow("sleeping") << QByteArray(R"({"phase":"sleeping","uptime_seconds":5})")
                                  << "sleeping"
                                  << "sleeping" << ""
                                  << ""
                                  << "slullama: Sleeping";
        QTest::addRow("submitting")
                << QByteArray(R"({"phase":"submitting","uptime_seconds":5})") << "waking"
                << "waking" << ""
                << ""
                << "slullama: Waking up";
        QTest::addRow("queued")
                << QByteArray(R"({"phase":"queued","uptime_seconds":5,
                     "job":{"id":"77","state":"PENDING","pending_reason":"Resources",
                            "expected_start":"2025-01-01T10:00:00"}})")
                << "queued"
                << "waking" << ""
                << "Resources"
                << "slullama: Queued (Resources)";
        QTest::addRow("starting")
                << QByteArray(R"({"phase":"starting","uptime_seconds":5,
                     "job":{"id":"77","state":"RUNNING","node":"gpu03"}})")
                << "starting"
                << "starting"
                << "gpu03"
                << ""
                << "Node: gpu03";
        QTest::addRow("ready")
                << QByteArray(R"({"phase":"ready","uptime_seconds":5,"idle_seconds":125,
                     "seconds_until_sleep":1675,"job":{"id":"77","state":"RUNNING",
                     "node":"gpu07"}})")
                << "ready"
                << "ready"
                << "gpu07"
                << ""
                << "Idle 2 min 05 s, sleeps in 27 min 55 s";
        QTest::addRow("stopping") << QByteArray(R"({"phase":"stopping","uptime_seconds":5})")
                                  << "stopping"
                                  << "sleeping" << ""
                                  << ""
                                  << "Going to sleep";
        // slullama 0.1.3 has no phase: a running job with its tunnel up is ready.
        QTest::addRow("0.1.3 running")
                << QByteArray(R"({"uptime_seconds":9,"request_count":3,"idle_seconds":4,
                     "tunnel_alive":true,"job":{"id":"9","state":"RUNNING","node":"gpu01"}})")
                << "ready"
                << "ready"
                << "gpu01"
                << ""
                << "Node: gpu01";
    }

    void phaseFromStatus()
    {
        QFETCH(QByteArray, json);
        QFETCH(QString, phase);
        QFETCH(QString, icon);
        QFETCH(QString, node);
        QFETCH(QString, pendingReason);
        QFETCH(QString, tooltip);

        Rig rig;
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("connecting"));
        rig.answer(json);
        QCOMPARE(rig.controller.phaseName(), phase);
        QCOMPARE(rig.controller.iconName(), icon);
        QCOMPARE(rig.controller.node(), node);
        QCOMPARE(rig.controller.pendingReason(), pendingReason);
        QVERIFY2(rig.controller.toolTip().contains(tooltip), qPrintable(rig.controller.toolTip()));
        QVERIFY(rig.controller.hasStatus());
    }

    void queuedShowsJobAndExpectedStart()
    {
        Rig rig;
        rig.answer(R"({"phase":"queued","uptime_seconds":5,"request_count":12,"active_requests":1,
                       "job":{"id":"77","state":"PENDING","pending_reason":"Priority",
                              "expected_start":"2025-01-01T10:00:00"}})");
        QCOMPARE(rig.controller.jobId(), QStringLiteral("77"));
        QCOMPARE(rig.controller.pendingReason(), QStringLiteral("Priority"));
        QCOMPARE(rig.controller.expectedStart(), QStringLiteral("2025-01-01T10:00:00"));
        QCOMPARE(rig.controller.requestCount(), 12);
        QCOMPARE(rig.controller.activeRequests(), 1);

        // The reason is Slurm's word for a pending job; once running it no longer applies.
        rig.answer(R"({"phase":"starting","uptime_seconds":6,
                       "job":{"id":"77","state":"RUNNING","node":"gpu2","pending_reason":"None"}})");
        QCOMPARE(rig.controller.pendingReason(), QString());
        QCOMPARE(rig.controller.expectedStart(), QString());
    }

    void usageTodayAndExpectedStartInTooltip()
    {
        Rig rig;
        rig.answer(R"({"phase":"queued","uptime_seconds":5,
                       "job":{"id":"77","state":"PENDING","pending_reason":"Priority",
                              "expected_start":"2025-01-01T10:00:00"},
                       "usage":{"user":"alice","admin":false,
                                "users":{"alice":{"total":{"requests":40},
                                         "today":{"requests":12,"prompt_tokens":340,
                                                  "completion_tokens":2100,
                                                  "gpu_seconds":312.0}}}}})");
        QCOMPARE(rig.controller.usageToday(),
                 QStringLiteral("12 requests, 2440 tokens, 5.2 GPU min"));
        const QString tip = rig.controller.toolTip();
        QVERIFY2(tip.contains(QStringLiteral("Expected start: 2025-01-01T10:00:00")),
                 qPrintable(tip));
        QVERIFY2(tip.contains(QStringLiteral("Today: 12 requests")), qPrintable(tip));

        // A daemon without the gateway's usage block: nothing shown.
        rig.answer(R"({"phase":"ready","uptime_seconds":6,"job":{"id":"77","node":"gpu2"}})");
        QCOMPARE(rig.controller.usageToday(), QString());
        QVERIFY(!rig.controller.toolTip().contains(QStringLiteral("Today")));
    }

    void tunnelStatesComeFirst_data()
    {
        QTest::addColumn<int>("state");
        QTest::addColumn<QString>("phase");
        QTest::addColumn<QString>("icon");
        QTest::addRow("disconnected") << int(TunnelControl::State::Disconnected) << "disconnected"
                                      << "disconnected";
        QTest::addRow("connecting") << int(TunnelControl::State::Connecting) << "connecting"
                                    << "disconnected";
        QTest::addRow("authenticating") << int(TunnelControl::State::Authenticating) << "connecting"
                                        << "disconnected";
        QTest::addRow("reconnecting") << int(TunnelControl::State::Reconnecting) << "connecting"
                                      << "disconnected";
        QTest::addRow("failed") << int(TunnelControl::State::Failed) << "error"
                                << "error";
    }

    void tunnelStatesComeFirst()
    {
        QFETCH(int, state);
        QFETCH(QString, phase);
        QFETCH(QString, icon);
        Rig rig;
        rig.answer(phaseJson("ready", "gpu1"));
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("ready"));
        rig.tunnel.set(TunnelControl::State(state));
        QCOMPARE(rig.controller.phaseName(), phase);
        QCOMPARE(rig.controller.iconName(), icon);
        // What the daemon said before is stale once the tunnel is down.
        QVERIFY(!rig.controller.hasStatus());
        QCOMPARE(rig.controller.node(), QString());
    }

    void notConfiguredDoesNotConnect()
    {
        FakeTunnel tunnel;
        FakeSource source;
        TrayController controller(&tunnel, &source);
        controller.start();
        QCOMPARE(tunnel.opens, 0);
        QVERIFY(!controller.isConfigured());
        QCOMPARE(controller.phaseName(), QStringLiteral("disconnected"));
        QVERIFY(controller.toolTip().contains(QStringLiteral("No head node configured")));
    }

    void configSetsEndpoint()
    {
        Rig rig(false);
        QCOMPARE(rig.source.base, QUrl(QStringLiteral("http://127.0.0.1:11500")));
        QCOMPARE(rig.source.token, QStringLiteral("s3cret"));
        QCOMPARE(rig.tunnel.lastConfig.host, QStringLiteral("alice@head"));
        QCOMPARE(rig.controller.endpointUrl(), QStringLiteral("http://localhost:11500"));
        QVERIFY(!rig.controller.toolTip().contains(QStringLiteral("s3cret")));
    }

    void changedHostReconnects()
    {
        Rig rig;
        QCOMPARE(rig.tunnel.opens, 1);
        ClientConfig c = clientConfig();
        c.token = QStringLiteral("other");
        rig.controller.setClientConfig(c);
        QCOMPARE(rig.tunnel.opens, 1); // a token is the daemon's business, not the tunnel's
        c.host = QStringLiteral("bob@head2");
        rig.controller.setClientConfig(c);
        QCOMPARE(rig.tunnel.closes, 1);
        QCOMPARE(rig.tunnel.opens, 2);
        QCOMPARE(rig.tunnel.lastConfig.host, QStringLiteral("bob@head2"));
        QCOMPARE(rig.notes.count(), 0); // a reconnect we asked for is no "drop"

        // Starting again while up (e.g. after saving unchanged settings) keeps the tunnel.
        rig.tunnel.set(TunnelControl::State::Connected);
        rig.controller.start();
        rig.controller.connectTunnel();
        QCOMPARE(rig.tunnel.opens, 2);
        QCOMPARE(rig.notes.count(), 0);
    }

    void countdownBetweenPolls()
    {
        Rig rig;
        rig.answer(R"({"phase":"ready","uptime_seconds":3600,"idle_seconds":60,
                       "seconds_until_sleep":300,"job":{"id":"1","node":"gpu1"}})");
        QCOMPARE(rig.controller.secondsUntilSleep(), 300);
        QCOMPARE(rig.controller.idleSeconds(), 60);
        rig.now += 10'500;
        QCOMPARE(rig.controller.secondsUntilSleep(), 290);
        QCOMPARE(rig.controller.idleSeconds(), 70);
        QCOMPARE(rig.controller.uptimeSeconds(), 3610);
        QVERIFY2(rig.controller.toolTip().contains(QStringLiteral("sleeps in 4 min 50 s")),
                 qPrintable(rig.controller.toolTip()));
        rig.now += 400'000;
        QCOMPARE(rig.controller.secondsUntilSleep(), 0); // never below zero

        // A fresh status restarts the count from the daemon's word.
        rig.answer(R"({"phase":"ready","uptime_seconds":4000,"idle_seconds":0,
                       "seconds_until_sleep":1800,"job":{"id":"1","node":"gpu1"}})");
        QCOMPARE(rig.controller.secondsUntilSleep(), 1800);
        rig.now += 2'000;
        QCOMPARE(rig.controller.secondsUntilSleep(), 1798);
    }

    void noCountdownWhileInUse()
    {
        Rig rig;
        rig.answer(R"({"phase":"ready","uptime_seconds":10,"idle_seconds":0,"active_requests":2,
                       "seconds_until_sleep":-1,"job":{"id":"1","node":"gpu1"}})");
        rig.now += 60'000;
        QCOMPARE(rig.controller.secondsUntilSleep(), -1);
        QCOMPARE(rig.controller.idleSeconds(), 0);
        QCOMPARE(rig.controller.activeRequests(), 2);
        QVERIFY(!rig.controller.toolTip().contains(QStringLiteral("sleeps in")));
    }

    void pollInterval_data()
    {
        QTest::addColumn<QByteArray>("phase");
        QTest::addColumn<int>("interval");
        QTest::addRow("sleeping") << QByteArray("sleeping") << TrayController::SlowPollMs;
        QTest::addRow("submitting") << QByteArray("submitting") << TrayController::FastPollMs;
        QTest::addRow("queued") << QByteArray("queued") << TrayController::FastPollMs;
        QTest::addRow("starting") << QByteArray("starting") << TrayController::FastPollMs;
        QTest::addRow("ready") << QByteArray("ready") << TrayController::SlowPollMs;
        QTest::addRow("stopping") << QByteArray("stopping") << TrayController::FastPollMs;
    }

    void pollInterval()
    {
        QFETCH(QByteArray, phase);
        QFETCH(int, interval);
        Rig rig;
        QCOMPARE(rig.source.fetches, 1); // polled as soon as the tunnel is up
        QCOMPARE(rig.controller.pollInterval(), 0); // waiting for that answer
        rig.answer(phaseJson(phase.constData(), "gpu1"));
        QCOMPARE(rig.controller.pollInterval(), interval);
    }

    void pollsAgainAndStopsWhenDown()
    {
        Rig rig;
        rig.answer(phaseJson("starting", "gpu1"));
        QTRY_COMPARE_WITH_TIMEOUT(rig.source.fetches, 2, 10000);
        rig.answer(phaseJson("ready", "gpu1"));
        QCOMPARE(rig.controller.pollInterval(), TrayController::SlowPollMs);

        rig.controller.disconnectTunnel();
        QCOMPARE(rig.controller.pollInterval(), 0);
        QVERIFY(!rig.controller.isPolling());
        rig.controller.pollNow();
        QCOMPARE(rig.source.fetches, 2); // nothing to poll through
    }

    void neverWakesByItself()
    {
        Rig rig;
        for (const char *phase : {"sleeping", "sleeping", "stopping", "sleeping"}) {
            rig.answer(phaseJson(phase));
            rig.controller.pollNow();
        }
        rig.tunnel.set(TunnelControl::State::Reconnecting);
        rig.tunnel.set(TunnelControl::State::Connected);
        rig.answer(phaseJson("sleeping"));
        QCOMPARE(rig.source.wakes, 0);
        QVERIFY(rig.source.fetches >= 5);
    }

    void wakeCallsClient()
    {
        Rig rig;
        rig.answer(phaseJson("sleeping"));
        QCOMPARE(rig.controller.pollInterval(), TrayController::SlowPollMs);
        rig.controller.wake();
        QCOMPARE(rig.source.wakes, 1);
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("waking"));
        emit rig.source.wakeAccepted(parse(phaseJson("submitting")));
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("waking"));
        QCOMPARE(rig.controller.pollInterval(), TrayController::FastPollMs);
    }

    void wakeWhileDisconnectedConnectsFirst()
    {
        Rig rig(false);
        rig.controller.wake();
        QCOMPARE(rig.tunnel.opens, 1);
        QCOMPARE(rig.source.wakes, 0);
        rig.tunnel.set(TunnelControl::State::Connected);
        QCOMPARE(rig.source.wakes, 1);
    }

    void wakeRefused()
    {
        Rig rig;
        rig.answer(phaseJson("sleeping"));
        rig.controller.wake();
        emit rig.source.wakeFailed(QStringLiteral("sbatch: error: invalid partition"), 502);
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("sleeping"));
        QVERIFY(rig.controller.lastError().contains(QStringLiteral("invalid partition")));
        QCOMPARE(rig.controller.pollInterval(), TrayController::SlowPollMs);
    }

    void answerFromBeforeWakeIsIgnored()
    {
        Rig rig;
        rig.answer(phaseJson("sleeping"));
        rig.controller.pollNow(); // a status request is out
        const int fetches = rig.source.fetches;
        rig.controller.wake();
        emit rig.source.wakeAccepted(parse(phaseJson("submitting")));
        rig.answer(phaseJson("sleeping")); // answers the request sent before the wake
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("waking"));
        QCOMPARE(rig.source.fetches, fetches);
        rig.controller.pollNow();
        rig.answer(phaseJson("queued"));
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("queued"));
    }

    void wakeFinishedNotifiedOnce()
    {
        Rig rig;
        for (const char *phase : {"sleeping", "submitting", "queued", "starting", "ready", "ready",
                                  "ready"}) {
            rig.answer(phaseJson(phase, "gpu07"));
        }
        QCOMPARE(rig.notes.count(), 1);
        QCOMPARE(rig.notes.at(0).at(0).value<TrayNotification>(), TrayNotification::WakeFinished);
        QCOMPARE(rig.notes.at(0).at(2).toString(),
                 QStringLiteral("GPU node ready: model server on gpu07"));

        // The next boot is a new event.
        for (const char *phase : {"stopping", "sleeping", "starting", "ready", "ready"})
            rig.answer(phaseJson(phase, "gpu09"));
        QCOMPARE(rig.count(TrayNotification::WakeFinished), 2);
        QCOMPARE(rig.notes.at(1).at(2).toString(),
                 QStringLiteral("GPU node ready: model server on gpu09"));
    }

    void alreadyReadyIsNoNews()
    {
        Rig rig;
        rig.answer(phaseJson("ready", "gpu1"));
        rig.answer(phaseJson("ready", "gpu1"));
        // Reconnecting to a node that was ready all along is no wake either.
        rig.tunnel.set(TunnelControl::State::Reconnecting);
        rig.tunnel.set(TunnelControl::State::Connected);
        rig.answer(phaseJson("ready", "gpu1"));
        QCOMPARE(rig.count(TrayNotification::WakeFinished), 0);
    }

    void tunnelDropNotifiedOnce()
    {
        Rig rig;
        rig.answer(phaseJson("ready", "gpu1"));
        rig.tunnel.fail(TunnelControl::ErrorKind::Network, QStringLiteral("connection reset"),
                        false);
        rig.tunnel.set(TunnelControl::State::Connecting);
        rig.tunnel.set(TunnelControl::State::Reconnecting);
        QCOMPARE(rig.count(TrayNotification::TunnelDropped), 1);
        QCOMPARE(rig.notes.count(), 1);
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("connecting"));

        rig.tunnel.set(TunnelControl::State::Connected);
        rig.tunnel.set(TunnelControl::State::Reconnecting);
        QCOMPARE(rig.count(TrayNotification::TunnelDropped), 2);

        // Closing it ourselves is no drop.
        rig.tunnel.set(TunnelControl::State::Connected);
        rig.controller.disconnectTunnel();
        QCOMPARE(rig.count(TrayNotification::TunnelDropped), 2);
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("disconnected"));
    }

    void sshAuthFailureNotifiedOnce()
    {
        Rig rig(false);
        rig.controller.start();
        rig.tunnel.fail(TunnelControl::ErrorKind::Auth,
                        QStringLiteral("Authentication failed for alice@head"), true);
        rig.tunnel.fail(TunnelControl::ErrorKind::Auth,
                        QStringLiteral("Authentication failed for alice@head"), true);
        QCOMPARE(rig.count(TrayNotification::AuthFailed), 1);
        QCOMPARE(rig.notes.count(), 1);
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("error"));
        QCOMPARE(rig.controller.lastError(), QStringLiteral("Authentication failed for alice@head"));

        // After a good login a new failure is news again.
        rig.controller.connectTunnel();
        rig.tunnel.set(TunnelControl::State::Connected);
        rig.tunnel.fail(TunnelControl::ErrorKind::Auth, QStringLiteral("Authentication failed"),
                        true);
        QCOMPARE(rig.count(TrayNotification::AuthFailed), 2);
    }

    void otherTunnelFailureNotified()
    {
        Rig rig(false);
        rig.controller.start();
        rig.tunnel.fail(TunnelControl::ErrorKind::PortInUse,
                        QStringLiteral("127.0.0.1:11434 is in use; set local_port"), true);
        QCOMPARE(rig.count(TrayNotification::TunnelFailed), 1);
        QCOMPARE(rig.count(TrayNotification::AuthFailed), 0);
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("error"));
    }

    void http401IsAuthError()
    {
        Rig rig;
        emit rig.source.statusFailed(QStringLiteral("unauthorized"), 401);
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("error"));
        QVERIFY(rig.controller.lastError().contains(QStringLiteral("401")));
        QVERIFY(rig.controller.lastError().contains(QStringLiteral("token")));
        QVERIFY(rig.controller.toolTip().contains(QStringLiteral("401")));
        QCOMPARE(rig.count(TrayNotification::AuthFailed), 1);
        QCOMPARE(rig.controller.pollInterval(), TrayController::SlowPollMs);

        rig.controller.pollNow();
        emit rig.source.statusFailed(QStringLiteral("unauthorized"), 401);
        QCOMPARE(rig.count(TrayNotification::AuthFailed), 1);

        // A fixed token clears it.
        rig.controller.pollNow();
        rig.answer(phaseJson("sleeping"));
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("sleeping"));
        QCOMPARE(rig.controller.lastError(), QString());
        rig.controller.pollNow();
        emit rig.source.statusFailed(QStringLiteral("unauthorized"), 401);
        QCOMPARE(rig.count(TrayNotification::AuthFailed), 2);
    }

    void otherHttpFailureIsNoAuthError()
    {
        Rig rig;
        emit rig.source.statusFailed(QStringLiteral("connection refused"), 0);
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("error"));
        QVERIFY(rig.controller.lastError().contains(QStringLiteral("connection refused")));
        QCOMPARE(rig.notes.count(), 0);
    }

    void daemonErrorShownWithoutErrorPhase()
    {
        Rig rig;
        rig.answer(R"({"phase":"sleeping","uptime_seconds":5,
                       "last_error":"sbatch failed: invalid account"})");
        QCOMPARE(rig.controller.phaseName(), QStringLiteral("sleeping"));
        QCOMPARE(rig.controller.lastError(), QStringLiteral("sbatch failed: invalid account"));
    }

    void throughApiClient()
    {
        CannedHttp http;
        http.body = phaseJson("ready", "gpu05");
        FakeTunnel tunnel;
        ApiStatusSource source;
        TrayController controller(&tunnel, &source);
        ClientConfig c = clientConfig();
        c.localPort = http.port();
        controller.setClientConfig(c);
        controller.start();
        tunnel.set(TunnelControl::State::Connected);
        QTRY_COMPARE_WITH_TIMEOUT(controller.phaseName(), QStringLiteral("ready"), 10000);
        QCOMPARE(controller.node(), QStringLiteral("gpu05"));
        QCOMPARE(http.heads.size(), 1);
        QVERIFY2(http.heads[0].startsWith("GET /slullama/status "), http.heads[0].constData());
        QVERIFY(http.heads[0].contains("Authorization: Bearer s3cret"));

        controller.wake();
        QTRY_COMPARE_WITH_TIMEOUT(http.heads.size(), 2, 10000);
        QVERIFY2(http.heads[1].startsWith("POST /slullama/wake "), http.heads[1].constData());
    }

    void http401ThroughApiClient()
    {
        CannedHttp http;
        http.status = "401 Unauthorized";
        http.body = R"({"error":"unauthorized"})";
        FakeTunnel tunnel;
        ApiStatusSource source;
        TrayController controller(&tunnel, &source);
        QSignalSpy notes(&controller, &TrayController::notification);
        ClientConfig c = clientConfig();
        c.localPort = http.port();
        controller.setClientConfig(c);
        controller.start();
        tunnel.set(TunnelControl::State::Connected);
        QTRY_COMPARE_WITH_TIMEOUT(controller.phaseName(), QStringLiteral("error"), 10000);
        QVERIFY2(controller.lastError().contains(QStringLiteral("401")),
                 qPrintable(controller.lastError()));
        QCOMPARE(notes.count(), 1);
        QCOMPARE(notes.at(0).at(0).value<TrayNotification>(), TrayNotification::AuthFailed);
    }

    void formatsDurations_data()
    {
        QTest::addColumn<qint64>("seconds");
        QTest::addColumn<QString>("text");
        QTest::addRow("negative") << qint64(-1) << QString();
        QTest::addRow("seconds") << qint64(12) << QStringLiteral("12 s");
        QTest::addRow("minutes") << qint64(250) << QStringLiteral("4 min 10 s");
        QTest::addRow("hours") << qint64(7500) << QStringLiteral("2 h 05 min");
    }

    void formatsDurations()
    {
        QFETCH(qint64, seconds);
        QFETCH(QString, text);
        QCOMPARE(formatDuration(seconds), text);
    }
};

QTEST_GUILESS_MAIN(TestTrayController)
#include "tst_traycontroller.moc"
