// The proxy relaying to a model server behind a Unix socket (the node tunnel's default local
// end, [ssh] forward_socket): streaming, connection reuse, and a missing socket.

#include "backend.h"
#include "httpparser.h"
#include "proxyserver.h"

#include <QLocalServer>
#include <QLocalSocket>
#include <QPointer>
#include <QTcpSocket>
#include <QTemporaryDir>
#include <QTest>

#include <memory>
#include <vector>

using namespace slullama;

namespace {

constexpr int kTimeout = 10000;
const QByteArray kToken = "t0ken-for-tests";

class FakeBackend final : public Backend
{
public:
    Ticket acquire(Callback done) override
    {
        ++acquires;
        Upstream up = upstream;
        if (!queue.empty()) {
            up = queue.front();
            queue.erase(queue.begin());
        }
        done(AcquireResult {true, up, 0, {}, 0});
        return Ticket(acquires);
    }
    void cancel(Ticket) override { }
    void release() override { ++releases; }
    void reportUpstreamFailure(quint64 generation, const QString &) override
    {
        failures.push_back(generation);
    }
    void wake() override { }
    Status status() const override { return {}; }

    Upstream upstream;
    std::vector<Upstream> queue;
    int acquires = 0;
    int releases = 0;
    std::vector<quint64> failures;
};

struct Peer
{
    QPointer<QLocalSocket> socket;
    QByteArray received;
};

} // namespace

class TestUnixUpstream final : public QObject
{
    Q_OBJECT

private slots:
    void init();
    void cleanup();
    void streamsAndReusesConnection();
    void missingSocketIsRetried();

private:
    Upstream socketUpstream(quint64 generation) const
    {
        Upstream up;
        up.port = 11434;
        up.localSocket = m_path;
        up.generation = generation;
        return up;
    }
    void sendChat()
    {
        m_client->write("POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken
                        + "\r\nContent-Length: 2\r\n\r\n{}");
    }

    std::unique_ptr<QTemporaryDir> m_dir;
    QString m_path;
    std::unique_ptr<QLocalServer> m_local;
    std::vector<std::shared_ptr<Peer>> m_peers;
    std::unique_ptr<FakeBackend> m_backend;
    std::unique_ptr<ProxyServer> m_server;
    std::unique_ptr<QTcpSocket> m_client;
    QByteArray m_received;
};

void TestUnixUpstream::init()
{
    m_dir = std::make_unique<QTemporaryDir>();
    m_path = m_dir->filePath(QStringLiteral("ollama.sock"));
    m_local = std::make_unique<QLocalServer>();
    m_local->setSocketOptions(QLocalServer::UserAccessOption);
    QVERIFY(m_local->listen(m_path));
    connect(m_local.get(), &QLocalServer::newConnection, this, [this] {
        while (QLocalSocket *s = m_local->nextPendingConnection()) {
            auto peer = std::make_shared<Peer>();
            peer->socket = s;
            connect(s, &QLocalSocket::readyRead, this,
                    [peer] { peer->received += peer->socket->readAll(); });
            m_peers.push_back(peer);
        }
    });
    m_backend = std::make_unique<FakeBackend>();
    m_backend->upstream = socketUpstream(7);
    ProxySettings s;
    s.bind = QStringLiteral("127.0.0.1");
    s.port = 0;
    s.token = QString::fromLatin1(kToken);
    m_server = std::make_unique<ProxyServer>(s, m_backend.get());
    const auto listening = m_server->listen();
    QVERIFY2(listening.hasValue(), qPrintable(listening.error()));
    m_client = std::make_unique<QTcpSocket>();
    connect(m_client.get(), &QTcpSocket::readyRead, this,
            [this] { m_received += m_client->readAll(); });
    m_client->connectToHost(QHostAddress::LocalHost, m_server->serverPort());
    m_received.clear();
}

void TestUnixUpstream::cleanup()
{
    m_client.reset();
    m_server.reset();
    m_backend.reset();
    m_peers.clear();
    m_local.reset();
    m_dir.reset();
}

void TestUnixUpstream::streamsAndReusesConnection()
{
    sendChat();
    QTRY_COMPARE_WITH_TIMEOUT(m_peers.size(), size_t(1), kTimeout);
    auto up = m_peers[0];
    QTRY_VERIFY_WITH_TIMEOUT(up->received.endsWith("\r\n\r\n{}"), kTimeout);
    QVERIFY(up->received.contains("Host: 127.0.0.1:11434\r\n"));
    QVERIFY(!up->received.contains("Authorization"));

    up->socket->write("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n");
    up->socket->write(http::encodeChunk("{\"n\":1}\n"));
    // Streamed: the first line arrives before the second is sent.
    QTRY_VERIFY_WITH_TIMEOUT(m_received.contains("{\"n\":1}\n"), kTimeout);
    QVERIFY(!m_received.contains("{\"n\":2}"));
    up->socket->write(http::encodeChunk("{\"n\":2}\n"));
    QTRY_VERIFY_WITH_TIMEOUT(m_received.contains("{\"n\":2}\n"), kTimeout);
    up->socket->write(http::lastChunk());
    QTRY_VERIFY_WITH_TIMEOUT(m_received.endsWith("0\r\n\r\n"), kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_backend->releases, 1, kTimeout);

    // The next request rides the pooled Unix-socket connection.
    m_received.clear();
    up->received.clear();
    sendChat();
    QTRY_VERIFY_WITH_TIMEOUT(up->received.endsWith("\r\n\r\n{}"), kTimeout);
    up->socket->write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    QTRY_VERIFY_WITH_TIMEOUT(m_received.endsWith("\r\n\r\nok"), kTimeout);
    QCOMPARE(m_peers.size(), size_t(1));
    QVERIFY(m_backend->failures.empty());
}

void TestUnixUpstream::missingSocketIsRetried()
{
    // The first acquire names a socket that does not exist (a tunnel gone): reported as an
    // upstream failure of that generation, then retried on the next upstream.
    Upstream gone = socketUpstream(41);
    gone.localSocket = m_dir->filePath(QStringLiteral("gone.sock"));
    m_backend->queue.push_back(gone);
    sendChat();
    QTRY_COMPARE_WITH_TIMEOUT(m_peers.size(), size_t(1), kTimeout);
    auto up = m_peers[0];
    QTRY_VERIFY_WITH_TIMEOUT(up->received.endsWith("\r\n\r\n{}"), kTimeout);
    up->socket->write("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nretried");
    QTRY_VERIFY_WITH_TIMEOUT(m_received.endsWith("retried"), kTimeout);
    QCOMPARE(m_backend->acquires, 2);
    QCOMPARE(m_backend->failures, std::vector<quint64> {41});
}

QTEST_GUILESS_MAIN(TestUnixUpstream)
#include "tst_unixupstream.moc"
