// The gateway through the real proxy: keys, usage in the status, limits, metrics route,
// metadata cache, respond-async and the cold-start header, over loopback sockets.

#include "backend.h"
#include "gateway.h"
#include "keysfile.h"
#include "lifecyclefakes.h"
#include "proxyserver.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSignalSpy>
#include <QTcpServer>
#include <QTcpSocket>
#include <QTemporaryDir>
#include <QTest>

#include <map>
#include <memory>

using namespace slullama;

namespace {

constexpr int kTimeout = 10000;
const QByteArray kToken = "shared-secret";

class FakeBackend final : public Backend
{
public:
    Ticket acquire(Callback done) override
    {
        ++acquires;
        const Ticket ticket = ++m_next;
        if (hold) {
            held[ticket] = std::move(done);
            return ticket;
        }
        AcquireResult r;
        if (failStatus > 0) {
            r.httpStatus = failStatus;
            r.message = failMessage;
            done(r);
            return ticket;
        }
        r.ok = true;
        r.upstream = upstream;
        r.waitedSeconds = waitedSeconds;
        done(r);
        return ticket;
    }
    void cancel(Ticket ticket) override { held.erase(ticket); }
    void release() override { ++releases; }
    void reportUpstreamFailure(quint64, const QString &) override { }
    void wake() override { ++wakes; }
    Status status() const override
    {
        Status s;
        s.version = QStringLiteral("test");
        s.phase = phase;
        s.lastBootSeconds = 20;
        return s;
    }

    Phase phase = Phase::Ready;
    Upstream upstream;
    double waitedSeconds = 0;
    bool hold = false;
    int failStatus = 0; // > 0: every acquire fails with it
    QString failMessage;
    std::map<Ticket, Callback> held;
    int acquires = 0;
    int releases = 0;
    int wakes = 0;

private:
    Ticket m_next = 0;
};

// Answers each request by its path, then closes.
class FakeUpstream final : public QObject
{
public:
    FakeUpstream()
    {
        QVERIFY(m_server.listen(QHostAddress::LocalHost));
        connect(&m_server, &QTcpServer::newConnection, this, [this] {
            while (QTcpSocket *s = m_server.nextPendingConnection()) {
                connect(s, &QTcpSocket::readyRead, s, [this, s] {
                    QByteArray &in = m_buffers[s];
                    in += s->readAll();
                    if (!in.contains("\r\n\r\n") || s->property("answered").toBool())
                        return;
                    s->setProperty("answered", true);
                    const QByteArray path = in.split(' ').value(1);
                    s->write(answer(path));
                    s->disconnectFromHost();
                });
            }
        });
    }
    Upstream upstream() const
    {
        return Upstream {QStringLiteral("127.0.0.1"), m_server.serverPort(), 1, {}};
    }
    QByteArray tags = "{\"models\":[{\"name\":\"llama3:8b\"}]}";

private:
    QByteArray answer(const QByteArray &path)
    {
        if (path == "/api/generate") {
            QByteArray body = http::encodeChunk("{\"response\":\"Hi\",\"done\":false}\n")
                + http::encodeChunk("{\"response\":\"\",\"done\":true,\"prompt_eval_count\":12,"
                                    "\"eval_count\":34}\n")
                + http::lastChunk();
            return "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                + body;
        }
        const QByteArray body = path == "/api/tags" ? tags : QByteArray("{\"version\":\"0.1\"}");
        return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + QByteArray::number(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    }

    QTcpServer m_server;
    std::map<QTcpSocket *, QByteArray> m_buffers;
};

struct Response
{
    int status = 0;
    QByteArray head;
    QByteArray body;
    QJsonObject json() const { return QJsonDocument::fromJson(body).object(); }
    QByteArray header(const QByteArray &name) const
    {
        const auto parsed = http::parseResponseHead(QByteArray(head + "\r\n\r\n"));
        return parsed.head.headers.value(name);
    }
};

QByteArray request(const QByteArray &method, const QByteArray &path, const QByteArray &token,
                   const QByteArray &extra = {})
{
    QByteArray r = method + ' ' + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    if (!token.isEmpty())
        r += "Authorization: Bearer " + token + "\r\n";
    r += extra;
    if (method == "POST")
        r += "Content-Length: 2\r\n\r\n{}";
    else
        r += "\r\n";
    return r;
}

} // namespace

class TestGateway final : public QObject
{
    Q_OBJECT

private slots:
    void init();
    void cleanup();

    void keysAndRevocation();
    void openDaemonWithoutKeys();
    void usageInStatus();
    void limits();
    void metricsRoute();
    void metadataCache();
    void respondAsync();
    void coldStartHeader();
    void unavailableCarriesRetryAfter_data();
    void unavailableCarriesRetryAfter();

private:
    void startServer(const QString &token = QString::fromLatin1(kToken));
    Response exchange(const QByteArray &raw);
    // Decodes a chunked body (the proxy relays the model server's chunks unchanged).
    static QByteArray dechunk(const QByteArray &body);

    std::unique_ptr<QTemporaryDir> m_dir;
    std::unique_ptr<test::FakeClock> m_clock;
    std::unique_ptr<FakeBackend> m_backend;
    std::unique_ptr<FakeUpstream> m_upstream;
    std::unique_ptr<Gateway> m_gateway;
    std::unique_ptr<ProxyServer> m_server;
    GatewaySettings m_settings;
    QString m_keysFile;
};

void TestGateway::init()
{
    m_dir = std::make_unique<QTemporaryDir>();
    m_clock = std::make_unique<test::FakeClock>();
    m_backend = std::make_unique<FakeBackend>();
    m_upstream = std::make_unique<FakeUpstream>();
    m_backend->upstream = m_upstream->upstream();
    m_keysFile = m_dir->filePath(QStringLiteral("keys.toml"));
    m_settings = GatewaySettings();
    m_settings.keysFile = m_keysFile;
    m_settings.usageFile = m_dir->filePath(QStringLiteral("usage.json"));
    m_settings.metadataCacheFile = m_dir->filePath(QStringLiteral("metadata-cache.json"));
    m_settings.asyncHeaderName = "Prefer";
    m_settings.asyncHeaderToken = "respond-async";
}

void TestGateway::cleanup()
{
    m_server.reset();
    m_gateway.reset();
    m_upstream.reset();
    m_backend.reset();
    m_clock.reset();
    m_dir.reset();
}

void TestGateway::startServer(const QString &token)
{
    m_gateway = std::make_unique<Gateway>(m_settings, m_backend.get(), m_clock.get());
    m_gateway->start();
    ProxySettings s;
    s.bind = QStringLiteral("127.0.0.1");
    s.port = 0;
    s.token = token;
    m_server = std::make_unique<ProxyServer>(s, m_backend.get());
    m_server->setGateway(m_gateway.get());
    const auto listening = m_server->listen();
    QVERIFY2(listening.hasValue(), qPrintable(listening.error()));
}

Response TestGateway::exchange(const QByteArray &raw)
{
    QTcpSocket socket;
    QByteArray in;
    connect(&socket, &QTcpSocket::readyRead, &socket, [&] { in += socket.readAll(); });
    QSignalSpy closed(&socket, &QTcpSocket::disconnected);
    socket.connectToHost(QHostAddress::LocalHost, m_server->serverPort());
    socket.write(raw);
    if (!closed.wait(kTimeout))
        qWarning("no answer within the timeout");
    in += socket.readAll();
    Response r;
    const qsizetype split = in.indexOf("\r\n\r\n");
    r.head = in.left(split);
    r.body = split < 0 ? QByteArray() : in.mid(split + 4);
    r.status = in.mid(9, 3).toInt();
    if (r.header("transfer-encoding") == "chunked")
        r.body = dechunk(r.body);
    return r;
}

QByteArray TestGateway::dechunk(const QByteArray &body)
{
    http::ChunkedDecoder decoder;
    QByteArray out;
    decoder.feed(body, &out);
    return out;
}

void TestGateway::keysAndRevocation()
{
    const QByteArray alice = addKey(m_keysFile, QStringLiteral("alice"), false)->toLatin1();
    startServer();
    QCOMPARE(exchange(request("GET", "/api/version", alice)).status, 200);
    QCOMPARE(exchange(request("GET", "/api/version", kToken)).status, 200);
    QCOMPARE(exchange(request("GET", "/api/version", "sk-slullama-nope")).status, 401);
    QCOMPARE(exchange(request("GET", "/api/version", {})).status, 401);
    QCOMPARE(exchange(request("GET", "/slullama/status", alice)).status, 200);

    QVERIFY(revokeKey(m_keysFile, QStringLiteral("alice")).hasValue());
    QTRY_COMPARE_WITH_TIMEOUT(exchange(request("GET", "/api/version", alice)).status, 401,
                              kTimeout);
    QCOMPARE(exchange(request("GET", "/slullama/status", alice)).status, 401);
    // The shared token keeps working.
    QCOMPARE(exchange(request("GET", "/api/version", kToken)).status, 200);
}

void TestGateway::openDaemonWithoutKeys()
{
    startServer(QString());
    const Response r = exchange(request("GET", "/slullama/status", {}));
    QCOMPARE(r.status, 200);
    const QJsonObject usage = r.json().value(QStringLiteral("usage")).toObject();
    QCOMPARE(usage.value(QStringLiteral("user")).toString(), QStringLiteral("shared"));
    QVERIFY(usage.value(QStringLiteral("admin")).toBool());

    // Once a key exists, an unset token no longer means open.
    QVERIFY(addKey(m_keysFile, QStringLiteral("alice"), false).hasValue());
    QTRY_COMPARE_WITH_TIMEOUT(exchange(request("GET", "/api/version", {})).status, 401, kTimeout);
}

void TestGateway::usageInStatus()
{
    const QByteArray alice = addKey(m_keysFile, QStringLiteral("alice"), false)->toLatin1();
    const QByteArray bob = addKey(m_keysFile, QStringLiteral("bob"), false)->toLatin1();
    const QByteArray admin = addKey(m_keysFile, QStringLiteral("root"), true)->toLatin1();
    startServer();

    Response r = exchange(request("POST", "/api/generate", alice));
    QCOMPARE(r.status, 200);
    QVERIFY2(r.body.contains("\"eval_count\":34"), r.body.constData());
    exchange(request("POST", "/api/generate", alice));
    exchange(request("POST", "/api/generate", bob));

    r = exchange(request("GET", "/slullama/status", alice));
    QCOMPARE(r.status, 200);
    QJsonObject usage = r.json().value(QStringLiteral("usage")).toObject();
    QCOMPARE(usage.value(QStringLiteral("user")).toString(), QStringLiteral("alice"));
    QJsonObject users = usage.value(QStringLiteral("users")).toObject();
    QCOMPARE(users.keys(), QStringList {QStringLiteral("alice")}); // not bob's
    const QJsonObject total
        = users.value(QStringLiteral("alice")).toObject().value(QStringLiteral("total")).toObject();
    QCOMPARE(total.value(QStringLiteral("requests")).toInt(), 2);
    QCOMPARE(total.value(QStringLiteral("prompt_tokens")).toInt(), 24);
    QCOMPARE(total.value(QStringLiteral("completion_tokens")).toInt(), 68);
    QVERIFY(total.value(QStringLiteral("bytes_out")).toInt() > 200);
    QCOMPARE(total.value(QStringLiteral("bytes_in")).toInt(), 4);
    QVERIFY(r.json().value(QStringLiteral("keys")).isUndefined()); // admins only
    // The status the tray and CLI read is still there.
    QCOMPARE(r.json().value(QStringLiteral("version")).toString(), QStringLiteral("test"));

    r = exchange(request("GET", "/slullama/status", admin));
    usage = r.json().value(QStringLiteral("usage")).toObject();
    QVERIFY(usage.value(QStringLiteral("admin")).toBool());
    users = usage.value(QStringLiteral("users")).toObject();
    QVERIFY(users.contains(QStringLiteral("alice")));
    QVERIFY(users.contains(QStringLiteral("bob")));
    QCOMPARE(
        r.json().value(QStringLiteral("keys")).toObject().value(QStringLiteral("active")).toInt(),
        3);

    // Persisted: a new gateway on the same file knows it.
    m_server.reset();
    m_gateway.reset();
    startServer();
    QCOMPARE(m_gateway->usage().total(QStringLiteral("bob")).completionTokens, qint64(34));
}

void TestGateway::limits()
{
    const QByteArray alice = addKey(m_keysFile, QStringLiteral("alice"), false)->toLatin1();
    m_settings.userMaxConcurrent = 1;
    m_settings.userRequestsPerMinute = 3;
    startServer();
    m_backend->hold = true;

    QTcpSocket first;
    first.connectToHost(QHostAddress::LocalHost, m_server->serverPort());
    first.write(request("GET", "/api/version", alice));
    QTRY_COMPARE_WITH_TIMEOUT(int(m_backend->held.size()), 1, kTimeout);

    Response r = exchange(request("GET", "/api/version", alice));
    QCOMPARE(r.status, 429);
    QCOMPARE(r.header("retry-after"), QByteArray("1"));
    // The shared token is not limited.
    QCOMPARE(m_backend->acquires, 1);
    QTcpSocket sharedClient;
    sharedClient.connectToHost(QHostAddress::LocalHost, m_server->serverPort());
    sharedClient.write(request("GET", "/api/version", kToken));
    QTRY_COMPARE_WITH_TIMEOUT(int(m_backend->held.size()), 2, kTimeout);

    // Held requests finish: the slot is free again, until the minute's budget (3) is spent.
    m_backend->hold = false;
    first.abort();
    sharedClient.abort();
    QTRY_COMPARE_WITH_TIMEOUT(m_gateway->limiter().inFlight(QStringLiteral("alice")), 0, kTimeout);
    QCOMPARE(exchange(request("GET", "/api/version", alice)).status, 200);
    QCOMPARE(exchange(request("GET", "/api/version", alice)).status, 200);
    r = exchange(request("GET", "/api/version", alice));
    QCOMPARE(r.status, 429);
    QCOMPARE(r.header("retry-after"), QByteArray("20"));
    QVERIFY(r.json().value(QStringLiteral("error")).toString().contains(u"per minute"));
    m_clock->advance(20000);
    QCOMPARE(exchange(request("GET", "/api/version", alice)).status, 200);
}

void TestGateway::metricsRoute()
{
    const QByteArray alice = addKey(m_keysFile, QStringLiteral("alice"), false)->toLatin1();
    startServer();
    exchange(request("POST", "/api/generate", alice));
    QCOMPARE(exchange(request("GET", "/metrics", {})).status, 401);
    const Response r = exchange(request("GET", "/metrics", alice));
    QCOMPARE(r.status, 200);
    QVERIFY(r.header("content-type").startsWith("text/plain; version=0.0.4"));
    QVERIFY2(
        r.body.contains(
            "slullama_requests_total{route=\"/api/generate\",status=\"200\",user=\"alice\"} 1\n"),
        r.body.constData());
    QVERIFY(r.body.contains("slullama_tokens_total{kind=\"completion\",user=\"alice\"} 34\n"));
    QVERIFY(r.body.contains(
        "slullama_requests_total{route=\"/metrics\",status=\"401\",user=\"none\"} 1\n"));
}

void TestGateway::metadataCache()
{
    const QByteArray alice = addKey(m_keysFile, QStringLiteral("alice"), false)->toLatin1();
    startServer();
    // Asleep with nothing cached: the request goes to the backend (and would wake it).
    m_backend->phase = Phase::Sleeping;
    QCOMPARE(exchange(request("GET", "/api/tags", alice)).status, 200);
    QCOMPARE(m_backend->acquires, 1);
    // Awake: answered by the model server and remembered.
    m_backend->phase = Phase::Ready;
    QCOMPARE(exchange(request("GET", "/api/tags", alice)).body, m_upstream->tags);
    QCOMPARE(m_backend->acquires, 2);
    // Asleep: answered from the cache, the backend is not asked.
    m_backend->phase = Phase::Sleeping;
    m_upstream->tags = "{\"models\":[]}";
    Response r = exchange(request("GET", "/api/tags", alice));
    QCOMPARE(r.status, 200);
    QCOMPARE(r.header("x-slullama-cache"), QByteArray("hit"));
    QCOMPARE(QJsonDocument::fromJson(r.body),
             QJsonDocument::fromJson("{\"models\":[{\"name\":\"llama3:8b\"}]}"));
    QCOMPARE(m_backend->acquires, 2);
    QCOMPARE(m_backend->wakes, 0);
    // Still behind auth.
    QCOMPARE(exchange(request("GET", "/api/tags", {})).status, 401);
    // A restarted daemon still has it.
    m_server.reset();
    m_gateway.reset();
    startServer();
    QCOMPARE(exchange(request("GET", "/api/tags", alice)).header("x-slullama-cache"),
             QByteArray("hit"));
    QCOMPARE(m_backend->acquires, 2);
    // Switched off: always proxied.
    m_server.reset();
    m_gateway.reset();
    m_settings.cacheMetadata = false;
    startServer();
    QCOMPARE(exchange(request("GET", "/api/tags", alice)).header("x-slullama-cache"), QByteArray());
    QCOMPARE(m_backend->acquires, 3);
}

void TestGateway::respondAsync()
{
    startServer();
    m_backend->phase = Phase::Queued;
    Response r = exchange(request("POST", "/api/generate", kToken, "Prefer: respond-async\r\n"));
    QCOMPARE(r.status, 503);
    QCOMPARE(r.header("preference-applied"), QByteArray("respond-async"));
    QCOMPARE(r.header("retry-after"), QByteArray("20"));
    QCOMPARE(r.json().value(QStringLiteral("phase")).toString(), QStringLiteral("queued"));
    QCOMPARE(m_backend->wakes, 1);
    QCOMPARE(m_backend->acquires, 0);
    // Without the preference the request is held as before.
    m_backend->hold = true;
    QTcpSocket held;
    held.connectToHost(QHostAddress::LocalHost, m_server->serverPort());
    held.write(request("POST", "/api/generate", kToken));
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->acquires, 1, kTimeout);
    held.abort();
    // Awake: the preference changes nothing.
    m_backend->hold = false;
    m_backend->phase = Phase::Ready;
    r = exchange(request("POST", "/api/generate", kToken, "Prefer: wait=5, respond-async\r\n"));
    QCOMPARE(r.status, 200);
}

void TestGateway::coldStartHeader()
{
    startServer();
    m_backend->waitedSeconds = 12.5;
    Response r = exchange(request("GET", "/api/version", kToken));
    QCOMPARE(r.status, 200);
    QCOMPARE(r.header("x-slullama-cold-start"), QByteArray("12.50"));
    m_backend->waitedSeconds = 0;
    r = exchange(request("GET", "/api/version", kToken));
    QCOMPARE(r.header("x-slullama-cold-start"), QByteArray());
}

void TestGateway::unavailableCarriesRetryAfter_data()
{
    QTest::addColumn<int>("status");
    QTest::addColumn<QString>("message");
    QTest::addColumn<QByteArray>("retryAfter");
    // Slurm refusing the job does not pass: no Retry-After.
    QTest::addRow("refused") << 502
                             << QStringLiteral("sbatch --parsable /j.sh failed (exit 1): sbatch: "
                                               "error: Batch job submission failed: Invalid "
                                               "partition name specified")
                             << QByteArray();
    QTest::addRow("munge") << 503
                           << QStringLiteral("Slurm authentication failed (sbatch: error: Munge "
                                             "encode failed: ... (Did you start munged?))")
                           << QByteArray("30");
    QTest::addRow("controller") << 503
                                << QStringLiteral("Slurm controller unreachable (sbatch: error: "
                                                  "Batch job submission failed: Unable to contact "
                                                  "slurm controller (connect failure))")
                                << QByteArray("30");
    QTest::addRow("shutting down")
        << 503 << QStringLiteral("slullama is shutting down") << QByteArray("30");
    QTest::addRow("boot timeout") << 504 << QStringLiteral("not ready within boot_timeout")
                                  << QByteArray();
}

void TestGateway::unavailableCarriesRetryAfter()
{
    QFETCH(int, status);
    QFETCH(QString, message);
    QFETCH(QByteArray, retryAfter);
    startServer();
    m_backend->phase = Phase::Sleeping;
    m_backend->failStatus = status;
    m_backend->failMessage = message;
    const Response r = exchange(request("POST", "/api/chat", kToken));
    QCOMPARE(r.status, status);
    QCOMPARE(r.header("retry-after"), retryAfter);
    QCOMPARE(r.json().value(QStringLiteral("error")).toString(), message);
    QCOMPARE(m_backend->acquires, 1);
}

QTEST_GUILESS_MAIN(TestGateway)
#include "tst_gateway.moc"
