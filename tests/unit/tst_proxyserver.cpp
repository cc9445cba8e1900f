#include "proxyfixture.h"

#include <QJsonDocument>
#include <QJsonObject>
#include <QSignalSpy>
#include <QTimer>

using namespace slullama;
using namespace slullama::test;

namespace {

constexpr int kTimeout = 10000;
const QByteArray kToken = "t0ken-for-tests";

http::RequestHead parseHead(const QByteArray &data)
{
    auto r = http::parseRequestHead(data);
    return r.head;
}

} // namespace

class TestProxyServer final : public QObject, private ProxyFixture
{
    Q_OBJECT

private slots:
    void initTestCase();
    void init();
    void cleanup();

    void health();
    void statusAndWake();
    void unauthorized_data();
    void unauthorized();
    void contentLengthResponseAndHeaders();
    void stalePooledConnectionIsReplaced();
    void streamedChunksArriveOneByOne();
    void keepAliveSeveralRequests();
    void pipelinedRequests();
    void headRequest();
    void requestBodyContentLength();
    void requestBodyChunked();
    void malformedRequest();
    void hugeHead();
    void bodyOverLimit();
    void chunkedBodyOverLimit();
    void acquireFailure_data();
    void acquireFailure();
    void clientGoneWhileHeld();
    void heldThenServed();
    void clientGoneMidStream();
    void upstreamRefusedIsRetried();
    void upstreamBreaksMidStream();
    void headerTimeout();
    void portInUse();
    void manyConcurrentStreams();

private:
    void send(Peer &client, const QByteArray &data) { client.socket->write(data); }
    ProxySettings settings() const;
};

void TestProxyServer::initTestCase()
{
    // Hundreds of streams need four descriptors each in this one process.
    raiseFileLimit();
}

ProxySettings TestProxyServer::settings() const
{
    ProxySettings s;
    s.bind = QStringLiteral("127.0.0.1");
    s.port = 0;
    s.token = QString::fromLatin1(kToken);
    s.maxBodyBytes = 1000;
    s.limits.maxHeadBytes = 8 * 1024;
    return s;
}

void TestProxyServer::init()
{
    setUp(settings());
}

void TestProxyServer::cleanup()
{
    tearDown();
}

static QByteArray get(const QByteArray &path, const QByteArray &extra = {})
{
    return "GET " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken + "\r\n"
        + extra + "\r\n";
}

static QJsonObject jsonBody(const QByteArray &response)
{
    const qsizetype at = response.indexOf("\r\n\r\n");
    return QJsonDocument::fromJson(response.mid(at + 4)).object();
}

void TestProxyServer::health()
{
    auto c = connectClient();
    send(*c, "GET /slullama/health HTTP/1.1\r\nHost: x\r\n\r\n");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.contains("{\"status\":\"ok\"}"), kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 200 "));
    QCOMPARE(m_backend->acquires, 0);
}

void TestProxyServer::statusAndWake()
{
    auto c = connectClient();
    send(*c, get("/slullama/status"));
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("}"), kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 200 "));
    QCOMPARE(jsonBody(c->received).value(QStringLiteral("version")).toString(),
             QStringLiteral("test"));
    c->received.clear();
    send(*c,
         "POST /slullama/wake HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nAuthorization: Bearer "
             + kToken + "\r\n\r\n");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("}"), kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 202 "));
    QCOMPARE(m_backend->wakes, 1);
    QCOMPARE(m_backend->acquires, 0);
    QVERIFY(!c->disconnected);
}

void TestProxyServer::unauthorized_data()
{
    QTest::addColumn<QByteArray>("request");
    QTest::addRow("proxied, no token") << QByteArray("GET /api/tags HTTP/1.1\r\nHost: x\r\n\r\n");
    QTest::addRow("proxied, wrong token")
        << QByteArray("GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n");
    QTest::addRow("status, no token")
        << QByteArray("GET /slullama/status HTTP/1.1\r\nHost: x\r\n\r\n");
    QTest::addRow("wake, wrong token") << QByteArray(
        "POST /slullama/wake HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\n\r\n");
}

void TestProxyServer::unauthorized()
{
    QFETCH(QByteArray, request);
    auto c = connectClient();
    send(*c, request);
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("}"), kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 401 "));
    QVERIFY(c->received.contains("WWW-Authenticate: Bearer\r\n"));
    QVERIFY(!jsonBody(c->received).value(QStringLiteral("error")).toString().isEmpty());
    QVERIFY(!c->received.contains(kToken));
    QCOMPARE(m_backend->acquires, 0);
    QCOMPARE(m_backend->wakes, 0);
    QCOMPARE(m_upstream->peers.size(), size_t(0));
}

void TestProxyServer::contentLengthResponseAndHeaders()
{
    auto c = connectClient();
    send(*c,
         "GET /api/tags?x=1 HTTP/1.1\r\nHost: proxy:11435\r\nAuthorization: Bearer " + kToken
             + "\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: 5\r\n"
               "X-Custom: kept\r\n\r\n");
    QTRY_COMPARE_WITH_TIMEOUT(m_upstream->peers.size(), size_t(1), kTimeout);
    auto up = m_upstream->peers[0];
    QTRY_VERIFY_WITH_TIMEOUT(up->received.contains("\r\n\r\n"), kTimeout);
    const auto head = parseHead(up->received);
    QCOMPARE(head.target, QByteArray("/api/tags?x=1"));
    QVERIFY(!head.headers.contains("authorization"));
    QVERIFY(!head.headers.contains("x-hop"));
    QVERIFY(!head.headers.contains("keep-alive"));
    QVERIFY(!head.headers.contains("connection"));
    QCOMPARE(head.headers.value("x-custom"), QByteArray("kept"));
    QCOMPARE(head.headers.value("x-forwarded-for"), QByteArray("127.0.0.1"));
    QCOMPARE(head.headers.value("x-forwarded-proto"), QByteArray("http"));
    QCOMPARE(head.headers.value("host"), "127.0.0.1:" + QByteArray::number(m_upstream->port()));
    QVERIFY(!up->received.contains(kToken));

    up->socket->write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n"
                      "Connection: keep-alive\r\n\r\n{\"models\":[]}");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("{\"models\":[]}"), kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 200 OK\r\n"));
    QVERIFY(!c->received.contains("Connection: keep-alive"));
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 1, kTimeout);
    QVERIFY(!c->disconnected);
    QCOMPARE(m_backend->acquires, 1);

    // The upstream connection is kept and reused for the next request, from any client.
    auto c2 = connectClient();
    send(*c2, get("/api/ps"));
    QTRY_VERIFY_WITH_TIMEOUT(up->received.contains("GET /api/ps "), kTimeout);
    QCOMPARE(m_upstream->peers.size(), size_t(1));
    up->socket->write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nps");
    QTRY_VERIFY_WITH_TIMEOUT(c2->received.endsWith("\r\n\r\nps"), kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 2, kTimeout);
    // "Connection: close" from the upstream: not reused; the client connection stays open.
    QTRY_VERIFY_WITH_TIMEOUT(up->disconnected, kTimeout);
    QVERIFY(!c2->received.contains("Connection: close"));
    QVERIFY(!c2->disconnected);
}

void TestProxyServer::stalePooledConnectionIsReplaced()
{
    m_upstream->autoAnswer = true;
    m_upstream->autoResponse = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    auto c = connectClient();
    send(*c, get("/api/tags"));
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("hello"), kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 1, kTimeout);
    QCOMPARE(m_upstream->peers.size(), size_t(1));
    // The model server drops its idle keep-alive connection; the next request must not fail.
    m_upstream->peers[0]->socket->disconnectFromHost();
    c->received.clear();
    send(*c,
         "POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken
             + "\r\nContent-Length: 2\r\n\r\n{}");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("hello"), kTimeout);
    QCOMPARE(m_upstream->peers.size(), size_t(2));
    QVERIFY(m_upstream->peers[1]->received.endsWith("\r\n\r\n{}"));
    QVERIFY(m_backend->failures.empty());
    QCOMPARE(m_backend->acquires, 2);
}

void TestProxyServer::streamedChunksArriveOneByOne()
{
    auto c = connectClient();
    send(*c,
         "POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken
             + "\r\nContent-Length: 2\r\n\r\n{}");
    QTRY_COMPARE_WITH_TIMEOUT(m_upstream->peers.size(), size_t(1), kTimeout);
    auto up = m_upstream->peers[0];
    QTRY_VERIFY_WITH_TIMEOUT(up->received.endsWith("\r\n\r\n{}"), kTimeout);

    up->socket->write("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n");
    up->socket->write(http::encodeChunk("{\"n\":1}\n"));
    // The first line reaches the client while the upstream has not sent the second.
    QTRY_VERIFY_WITH_TIMEOUT(c->received.contains("{\"n\":1}\n"), kTimeout);
    QVERIFY(!c->received.contains("{\"n\":2}"));
    QCOMPARE(m_backend->releases, 0);

    up->socket->write(http::encodeChunk("{\"n\":2}\n"));
    QTRY_VERIFY_WITH_TIMEOUT(c->received.contains("{\"n\":2}\n"), kTimeout);
    QVERIFY(!c->received.endsWith("0\r\n\r\n"));

    up->socket->write(http::lastChunk());
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("0\r\n\r\n"), kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 1, kTimeout);
    QVERIFY(c->received.contains("Transfer-Encoding: chunked\r\n"));

    // The connection stays usable after a chunked response (and so does the upstream one).
    c->received.clear();
    send(*c, get("/api/version"));
    QTRY_VERIFY_WITH_TIMEOUT(up->received.contains("GET /api/version "), kTimeout);
    up->socket->write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("\r\n\r\nok"), kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 2, kTimeout);
    QVERIFY(!c->disconnected);
}

void TestProxyServer::keepAliveSeveralRequests()
{
    m_upstream->autoAnswer = true;
    m_upstream->autoResponse = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    auto c = connectClient();
    for (int i = 1; i <= 5; ++i) {
        c->received.clear();
        send(*c, get("/api/tags"));
        QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("hello"), kTimeout);
        QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, i, kTimeout);
    }
    QCOMPARE(m_backend->acquires, 5);
    QCOMPARE(m_server->connectionCount(), 1);
    QVERIFY(!c->disconnected);
}

void TestProxyServer::pipelinedRequests()
{
    m_upstream->autoAnswer = true;
    m_upstream->autoResponse = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    auto c = connectClient();
    send(*c, get("/api/tags") + get("/slullama/health") + get("/api/ps"));
    QTRY_COMPARE_WITH_TIMEOUT(c->received.count("HTTP/1.1 200 OK"), 3, kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 2, kTimeout);
    // In order: proxied, own route, proxied.
    const qsizetype first = c->received.indexOf("hello");
    const qsizetype health = c->received.indexOf("{\"status\":\"ok\"}");
    const qsizetype last = c->received.lastIndexOf("hello");
    QVERIFY(first < health && health < last);
    // One upstream connection, reused in order.
    QCOMPARE(m_upstream->peers.size(), size_t(1));
    const QByteArray &up = m_upstream->peers[0]->received;
    QVERIFY(up.startsWith("GET /api/tags "));
    QVERIFY(up.indexOf("GET /api/ps ") > 0);
}

void TestProxyServer::headRequest()
{
    m_upstream->autoAnswer = true;
    m_upstream->autoResponse = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    auto c = connectClient();
    send(*c, "HEAD / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken + "\r\n\r\n");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("\r\n\r\n"), kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 1, kTimeout);
    QVERIFY(c->received.contains("Content-Length: 1234"));
    QVERIFY(!c->disconnected);
}

void TestProxyServer::requestBodyContentLength()
{
    auto c = connectClient();
    const QByteArray body(900, 'b');
    send(*c,
         "POST /api/generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken
             + "\r\nContent-Length: 900\r\nExpect: 100-continue\r\n\r\n");
    QTRY_COMPARE_WITH_TIMEOUT(m_upstream->peers.size(), size_t(1), kTimeout);
    // The proxy answers Expect itself once the upstream is there.
    QTRY_VERIFY_WITH_TIMEOUT(c->received.startsWith("HTTP/1.1 100 Continue\r\n\r\n"), kTimeout);
    send(*c, body);
    auto up = m_upstream->peers[0];
    QTRY_VERIFY_WITH_TIMEOUT(up->received.endsWith(body), kTimeout);
    QVERIFY(!parseHead(up->received).headers.contains("expect"));
    QCOMPARE(parseHead(up->received).headers.value("content-length"), QByteArray("900"));
    up->socket->write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("done"), kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 1, kTimeout);
}

void TestProxyServer::requestBodyChunked()
{
    auto c = connectClient();
    const QByteArray chunks = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
    send(*c,
         "POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken
             + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks.left(10));
    QTRY_COMPARE_WITH_TIMEOUT(m_upstream->peers.size(), size_t(1), kTimeout);
    auto up = m_upstream->peers[0];
    QTRY_VERIFY_WITH_TIMEOUT(up->received.endsWith(chunks.left(10)), kTimeout);
    send(*c, chunks.mid(10));
    // Forwarded raw, unchanged.
    QTRY_VERIFY_WITH_TIMEOUT(up->received.endsWith(QByteArray("\r\n\r\n" + chunks)), kTimeout);
    QCOMPARE(parseHead(up->received).headers.value("transfer-encoding"), QByteArray("chunked"));
    up->socket->write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("done"), kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 1, kTimeout);
    QVERIFY(!c->disconnected);
}

void TestProxyServer::malformedRequest()
{
    auto c = connectClient();
    send(*c, "GET /api/tags HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n");
    QTRY_VERIFY_WITH_TIMEOUT(c->disconnected, kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 400 "));
    QVERIFY(!jsonBody(c->received).value(QStringLiteral("error")).toString().isEmpty());
    QCOMPARE(m_backend->acquires, 0);
}

void TestProxyServer::hugeHead()
{
    auto c = connectClient();
    QByteArray request = "GET /api/tags HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 2000; ++i)
        request += "X-Filler-" + QByteArray::number(i) + ": " + QByteArray(40, 'f') + "\r\n";
    request += "\r\n";
    send(*c, request);
    QTRY_VERIFY_WITH_TIMEOUT(c->disconnected, kTimeout);
    QVERIFY2(c->received.startsWith("HTTP/1.1 431 "), c->received.left(40).constData());
    QVERIFY(c->received.contains("\"error\""));
    QCOMPARE(m_backend->acquires, 0);
}

void TestProxyServer::bodyOverLimit()
{
    auto c = connectClient();
    send(*c,
         "POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken
             + "\r\nContent-Length: 5000\r\n\r\n" + QByteArray(5000, 'x'));
    QTRY_VERIFY_WITH_TIMEOUT(c->disconnected, kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 413 "));
    QCOMPARE(m_backend->acquires, 0);
}

void TestProxyServer::chunkedBodyOverLimit()
{
    auto c = connectClient();
    send(*c,
         "POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken
             + "\r\nTransfer-Encoding: chunked\r\n\r\n" + http::encodeChunk(QByteArray(3000, 'x')));
    QTRY_VERIFY_WITH_TIMEOUT(c->disconnected, kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 413 "));
    QCOMPARE(m_backend->acquires, 1);
    QCOMPARE(m_backend->releases, 1);
    QTRY_COMPARE_WITH_TIMEOUT(m_upstream->peers.size(), size_t(1), kTimeout);
    QTRY_VERIFY_WITH_TIMEOUT(m_upstream->peers[0]->disconnected, kTimeout);
}

void TestProxyServer::acquireFailure_data()
{
    QTest::addColumn<int>("status");
    QTest::addColumn<QString>("message");
    QTest::addRow("502") << 502
                         << QStringLiteral("sbatch: error: invalid partition specified: nope");
    QTest::addRow("503") << 503 << QStringLiteral("Slurm controller unreachable");
    QTest::addRow("504") << 504 << QStringLiteral("still queued (Resources) after 900 s");
}

void TestProxyServer::acquireFailure()
{
    QFETCH(int, status);
    QFETCH(QString, message);
    m_backend->failStatus = status;
    m_backend->failMessage = message;
    auto c = connectClient();
    send(*c, get("/api/tags"));
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("}"), kTimeout);
    QVERIFY(c->received.startsWith(QByteArray("HTTP/1.1 " + QByteArray::number(status) + ' ')));
    QCOMPARE(jsonBody(c->received).value(QStringLiteral("error")).toString(), message);
    QCOMPARE(m_backend->releases, 0);
    QVERIFY(!c->disconnected); // no body pending: the connection stays usable
}

void TestProxyServer::clientGoneWhileHeld()
{
    m_backend->hold = true;
    auto c = connectClient();
    send(*c, get("/api/tags"));
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->held.size(), size_t(1), kTimeout);
    c->socket->abort();
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->cancels, 1, kTimeout);
    QVERIFY(m_backend->held.empty());
    QCOMPARE(m_backend->releases, 0);
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
}

void TestProxyServer::heldThenServed()
{
    m_backend->hold = true;
    m_upstream->autoAnswer = true;
    m_upstream->autoResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    auto c = connectClient();
    send(*c, get("/api/tags"));
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->held.size(), size_t(1), kTimeout);
    QVERIFY(c->received.isEmpty());
    m_backend->answerAll(AcquireResult {true, m_upstream->upstream(), 0, {}, 3});
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("ok"), kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 1, kTimeout);
    QCOMPARE(m_backend->cancels, 0);
}

void TestProxyServer::clientGoneMidStream()
{
    auto c = connectClient();
    send(*c, get("/api/generate"));
    QTRY_COMPARE_WITH_TIMEOUT(m_upstream->peers.size(), size_t(1), kTimeout);
    auto up = m_upstream->peers[0];
    QTRY_VERIFY_WITH_TIMEOUT(up->received.contains("\r\n\r\n"), kTimeout);
    up->socket->write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + http::encodeChunk("{\"response\":\"a\"}\n"));
    QTRY_VERIFY_WITH_TIMEOUT(c->received.contains("{\"response\":\"a\"}"), kTimeout);
    c->socket->abort();
    // The model server sees its request go away, so generation stops.
    QTRY_VERIFY_WITH_TIMEOUT(up->disconnected, kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 1, kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
    QCOMPARE(m_backend->releases, 1);
    QVERIFY(m_backend->failures.empty());
}

void TestProxyServer::upstreamRefusedIsRetried()
{
    // A port nobody listens on: take one and free it.
    quint16 deadPort = 0;
    {
        QTcpServer probe;
        QVERIFY(probe.listen(QHostAddress::LocalHost));
        deadPort = probe.serverPort();
    }
    m_backend->upstreamQueue.push_back(Upstream {QStringLiteral("127.0.0.1"), deadPort, 41, {}});
    m_upstream->autoAnswer = true;
    m_upstream->autoResponse = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nretried";
    auto c = connectClient();
    send(*c,
         "POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken
             + "\r\nContent-Length: 2\r\n\r\n{}");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("retried"), kTimeout);
    QCOMPARE(m_backend->acquires, 2);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 2, kTimeout);
    QCOMPARE(m_backend->failures.size(), size_t(1));
    QCOMPARE(m_backend->failures[0].first, quint64(41));
    QVERIFY(m_upstream->peers[0]->received.endsWith("\r\n\r\n{}"));
}

void TestProxyServer::upstreamBreaksMidStream()
{
    auto c = connectClient();
    send(*c, get("/api/generate"));
    QTRY_COMPARE_WITH_TIMEOUT(m_upstream->peers.size(), size_t(1), kTimeout);
    auto up = m_upstream->peers[0];
    QTRY_VERIFY_WITH_TIMEOUT(up->received.contains("\r\n\r\n"), kTimeout);
    up->socket->write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + http::encodeChunk("{\"response\":\"a\"}\n"));
    QTRY_VERIFY_WITH_TIMEOUT(c->received.contains("{\"response\":\"a\"}"), kTimeout);
    up->socket->abort();
    QTRY_VERIFY_WITH_TIMEOUT(c->disconnected, kTimeout);
    // No fake terminator: the client can tell the answer is incomplete.
    QVERIFY(!c->received.endsWith("0\r\n\r\n"));
    QCOMPARE(m_backend->releases, 1);
    QCOMPARE(m_backend->failures.size(), size_t(1));
    QCOMPARE(m_backend->acquires, 1);
}

void TestProxyServer::headerTimeout()
{
    ProxySettings s = settings();
    s.headerTimeoutMs = 300;
    startServer(s);
    auto c = connectClient();
    send(*c, "GET /api/tags HTTP/1.1\r\nHost: x\r\n"); // never finished
    QTRY_VERIFY_WITH_TIMEOUT(c->disconnected, kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 408 "));
    QCOMPARE(m_backend->acquires, 0);
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
}

void TestProxyServer::portInUse()
{
    ProxySettings s = settings();
    s.port = m_server->serverPort();
    ProxyServer second(s, m_backend.get());
    const auto result = second.listen();
    QVERIFY(!result.hasValue());
    QVERIFY2(result.error().contains(QStringLiteral("port %1 on 127.0.0.1 is in use").arg(s.port)),
             qPrintable(result.error()));
    QVERIFY(result.error().contains(QStringLiteral("[server] port")));
}

void TestProxyServer::manyConcurrentStreams()
{
    constexpr int kStreams = 200;
    // Every upstream connection gets a streamed answer of three lines once its request is in.
    QObject guard;
    int answered = 0;
    auto answerNew = [&] {
        for (auto &peer : m_upstream->peers) {
            if (peer->socket && !peer->socket->property("answered").toBool()
                && peer->received.contains("\r\n\r\n")) {
                peer->socket->setProperty("answered", true);
                ++answered;
                QByteArray out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                for (int i = 0; i < 3; ++i)
                    out += http::encodeChunk(
                        QByteArray("{\"line\":" + QByteArray::number(i) + "}\n"));
                out += http::lastChunk();
                peer->socket->write(out);
            }
        }
    };
    QTimer pump;
    connect(&pump, &QTimer::timeout, &guard, answerNew);
    pump.start(5);

    std::vector<Peer *> clients;
    for (int i = 0; i < kStreams; ++i) {
        clients.push_back(connectClient());
        send(*clients.back(), get("/api/generate"));
    }
    auto allDone = [&] {
        for (const auto &c : clients) {
            if (!c->received.endsWith("0\r\n\r\n"))
                return false;
        }
        return true;
    };
    QTRY_VERIFY_WITH_TIMEOUT(allDone(), 60000);
    QCOMPARE(answered, kStreams);
    for (const auto &c : clients) {
        QVERIFY(c->received.startsWith("HTTP/1.1 200 OK"));
        QVERIFY(c->received.contains("{\"line\":2}\n"));
    }
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, kStreams, kTimeout);
    QCOMPARE(m_backend->acquires, kStreams);
}

QTEST_GUILESS_MAIN(TestProxyServer)
#include "tst_proxyserver.moc"
