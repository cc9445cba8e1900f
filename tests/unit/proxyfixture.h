#pragma once

// A real ProxyServer between test clients and a fake model server, with a fake Backend deciding
// what each request is given. Shared by tst_proxyserver and tst_hostileclients.

#include "backend.h"
#include "httpparser.h"
#include "proxyserver.h"

#include <QPointer>
#include <QTcpServer>
#include <QTcpSocket>
#include <QTest>

#include <sys/resource.h>

#include <map>
#include <memory>
#include <vector>

namespace slullama::test {

// Answers at once (ready), holds requests until the test answers them, or fails.
class FakeBackend final : public Backend
{
public:
    Ticket acquire(Callback done) override
    {
        ++acquires;
        const Ticket ticket = ++m_next;
        if (!upstreamQueue.empty()) {
            Upstream up = upstreamQueue.front();
            upstreamQueue.erase(upstreamQueue.begin());
            done(AcquireResult {true, up, 0, {}, 0});
            return ticket;
        }
        if (hold) {
            held[ticket] = std::move(done);
            return ticket;
        }
        if (failStatus) {
            done(AcquireResult {false, {}, failStatus, failMessage, 0});
            return ticket;
        }
        done(AcquireResult {true, upstream, 0, {}, 0});
        return ticket;
    }
    void cancel(Ticket ticket) override
    {
        ++cancels;
        held.erase(ticket);
    }
    void release() override { ++releases; }
    void reportUpstreamFailure(quint64 generation, const QString &reason) override
    {
        failures.push_back({generation, reason});
    }
    void wake() override { ++wakes; }
    Status status() const override
    {
        Status s;
        s.version = QStringLiteral("test");
        s.requestCount = acquires;
        s.phase = Phase::Queued;
        return s;
    }

    // Answers the held requests in the order they came.
    void answerAll(const AcquireResult &result)
    {
        auto pending = std::move(held);
        held.clear();
        for (auto &[ticket, callback] : pending)
            callback(result);
    }
    void answerAll() { answerAll(AcquireResult {true, upstream, 0, {}, 0}); }

    Upstream upstream;
    std::vector<Upstream> upstreamQueue; // served first, one per acquire
    bool hold = false;
    int failStatus = 0;
    QString failMessage;
    std::map<Ticket, Callback> held;
    int acquires = 0;
    int cancels = 0;
    int releases = 0;
    int wakes = 0;
    std::vector<std::pair<quint64, QString>> failures;

private:
    Ticket m_next = 0;
};

// A socket end with everything it received collected.
struct Peer
{
    QPointer<QTcpSocket> socket;
    QByteArray received;
    bool disconnected = false;
};

// The model server stand-in: accepts connections and lets the test answer by hand, or answers
// every request head with `autoResponse`, or (streamForever) with a chunked stream that it keeps
// feeding as fast as the proxy takes it.
class FakeUpstream final : public QObject
{
public:
    FakeUpstream()
    {
        QVERIFY(m_server.listen(QHostAddress::LocalHost));
        connect(&m_server, &QTcpServer::newConnection, this, [this] {
            while (QTcpSocket *s = m_server.nextPendingConnection()) {
                auto peer = std::make_shared<Peer>();
                peer->socket = s;
                peers.push_back(peer);
                connect(s, &QTcpSocket::readyRead, this, [this, peer] {
                    peer->received += peer->socket->readAll();
                    answer(peer);
                });
                connect(s, &QTcpSocket::disconnected, this, [peer] { peer->disconnected = true; });
                connect(s, &QTcpSocket::bytesWritten, this, [this, peer](qint64 n) {
                    pushed += n;
                    feed(peer);
                });
            }
        });
    }
    quint16 port() const { return m_server.serverPort(); }
    Upstream upstream() const { return Upstream {QStringLiteral("127.0.0.1"), port(), 7, {}}; }

    std::vector<std::shared_ptr<Peer>> peers;
    bool autoAnswer = false; // bodies sent here hold no blank line: each "\r\n\r\n" ends a head
    QByteArray autoResponse;
    bool streamForever = false; // with autoAnswer
    qint64 pushed = 0; // bytes the kernel took from us: what the proxy could have read

private:
    void answer(const std::shared_ptr<Peer> &peer)
    {
        if (!autoAnswer)
            return;
        const int heads = int(peer->received.count("\r\n\r\n"));
        int answered = peer->socket->property("autoAnswered").toInt();
        for (; answered < heads; ++answered) {
            if (streamForever) {
                peer->socket->write("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                                    "Transfer-Encoding: chunked\r\n\r\n");
                peer->socket->setProperty("streaming", true);
                feed(peer);
            } else {
                peer->socket->write(autoResponse);
            }
        }
        peer->socket->setProperty("autoAnswered", answered);
    }
    void feed(const std::shared_ptr<Peer> &peer)
    {
        if (!peer->socket || !peer->socket->property("streaming").toBool())
            return;
        static const QByteArray chunk
            = http::encodeChunk(QByteArray(QByteArray(64 * 1024 - 1, 'x') + '\n'));
        while (peer->socket->state() == QAbstractSocket::ConnectedState
               && peer->socket->bytesToWrite() < 1024 * 1024)
            peer->socket->write(chunk);
    }

    QTcpServer m_server;
};

// Raises the soft descriptor limit to the hard one (tests that hold thousands of sockets);
// returns the limit now in force.
inline rlim_t raiseFileLimit()
{
    rlimit limit {};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return 1024;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
        getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur;
}

// The per-test world: a test class derives from it next to QObject, calls setUp() from init()
// and tearDown() from cleanup().
class ProxyFixture
{
protected:
    void setUp(const ProxySettings &s)
    {
        m_backend = std::make_unique<FakeBackend>();
        m_upstream = std::make_unique<FakeUpstream>();
        m_backend->upstream = m_upstream->upstream();
        startServer(s);
    }
    // (Re)starts the proxy with `s` on the same backend.
    void startServer(const ProxySettings &s)
    {
        m_server = std::make_unique<ProxyServer>(s, m_backend.get());
        const auto result = m_server->listen();
        QVERIFY2(result.hasValue(), qPrintable(result.error()));
    }
    void tearDown()
    {
        m_sockets.clear();
        m_clients.clear();
        m_server.reset();
        m_upstream.reset();
        m_backend.reset();
    }
    // A client connection to the proxy; everything it receives is collected in the Peer.
    Peer *connectClient()
    {
        auto peer = std::make_unique<Peer>();
        auto socket = std::make_unique<QTcpSocket>();
        Peer *p = peer.get();
        QObject::connect(socket.get(), &QTcpSocket::readyRead, socket.get(),
                         [p, s = socket.get()] { p->received += s->readAll(); });
        QObject::connect(socket.get(), &QTcpSocket::disconnected, socket.get(),
                         [p] { p->disconnected = true; });
        socket->connectToHost(QHostAddress::LocalHost, m_server->serverPort());
        peer->socket = socket.get();
        m_sockets.push_back(std::move(socket));
        m_clients.push_back(std::move(peer));
        return p;
    }

    std::unique_ptr<FakeBackend> m_backend;
    std::unique_ptr<FakeUpstream> m_upstream;
    std::unique_ptr<ProxyServer> m_server;
    std::vector<std::unique_ptr<QTcpSocket>> m_sockets;
    std::vector<std::unique_ptr<Peer>> m_clients;
};

} // namespace slullama::test
