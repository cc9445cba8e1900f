// Hostile and broken clients against a real ProxyServer (fake Backend, fake model server): each
// slow or greedy pattern meets its configured limit and is closed, while an ordinary client
// is still served; tokens are refused whatever their shape and never forwarded or echoed.
// Limits are set small here; the assertions are on behaviour, time bounds are only generous
// QTRY timeouts.

#include "proxyfixture.h"

#include <QTimer>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

using namespace slullama;
using namespace slullama::test;

namespace {

constexpr int kTimeout = 30000; // generous: sanitizer builds on a loaded machine
const QByteArray kToken = "h0stile-T0KEN-4f9a2c";

// A plain socket the test drives by hand: it reads only when told to.
class RawClient
{
public:
    explicit RawClient(quint16 port, int receiveBuffer = 0)
    {
        m_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (m_fd < 0)
            return;
        if (receiveBuffer > 0)
            ::setsockopt(m_fd, SOL_SOCKET, SO_RCVBUF, &receiveBuffer, sizeof receiveBuffer);
        sockaddr_in address {};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(m_fd, reinterpret_cast<sockaddr *>(&address), sizeof address) != 0
            && errno != EINPROGRESS) {
            ::close(m_fd);
            m_fd = -1;
        }
    }
    ~RawClient()
    {
        if (m_fd >= 0)
            ::close(m_fd);
    }
    RawClient(const RawClient &) = delete;
    RawClient &operator=(const RawClient &) = delete;

    bool isOpen() const { return m_fd >= 0; }
    bool writable() const
    {
        pollfd p {m_fd, POLLOUT, 0};
        return ::poll(&p, 1, 0) == 1 && (p.revents & POLLOUT);
    }
    bool send(const QByteArray &data) const
    {
        return ::send(m_fd, data.constData(), size_t(data.size()), MSG_NOSIGNAL) == data.size();
    }
    // True when the peer has closed (or reset) the connection; without `drain`, only when
    // that is visible without reading data (nothing unread is pending).
    bool closedByPeer(bool drain = false)
    {
        char buffer[16384];
        for (;;) {
            pollfd p {m_fd, POLLIN | POLLRDHUP, 0};
            if (::poll(&p, 1, 0) != 1)
                return false;
            if (!drain && (p.revents & (POLLHUP | POLLERR)))
                return true;
            const ssize_t n = ::recv(m_fd, buffer, sizeof buffer, drain ? 0 : MSG_PEEK);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                return true;
            if (n < 0 || !drain)
                return false;
            received.append(buffer, n);
        }
    }

    QByteArray received;

private:
    int m_fd = -1;
};

QByteArray get(const QByteArray &path, const QByteArray &authorization = "Bearer " + kToken)
{
    QByteArray out = "GET " + path + " HTTP/1.1\r\nHost: head\r\n";
    if (!authorization.isNull())
        out += "Authorization: " + authorization + "\r\n";
    return out + "\r\n";
}

} // namespace

class TestHostileClients final : public QObject, private ProxyFixture
{
    Q_OBJECT

private slots:
    void initTestCase() { m_fileLimit = raiseFileLimit(); }
    void init();
    void cleanup();

    void slowlorisHeadIsCutOff();
    void silentConnectionIsClosed();
    void bodyThatStops_data();
    void bodyThatStops();
    void bodyThatNeverEnds();
    void megabyteOfHeaders_data();
    void megabyteOfHeaders();
    void tenThousandIdleConnections();
    void busySlotsRefuseNewcomers();
    void clientThatReadsNothing();
    void badTokens_data();
    void badTokens();
    void goodTokenShapes_data();
    void goodTokenShapes();
    void healthNeedsNoToken();
    void authorizationNeverForwarded();

private:
    ProxySettings settings() const;
    // An ordinary client asks for /api/tags and gets the model server's answer.
    void ordinaryClientIsServed();

    rlim_t m_fileLimit = 1024;
};

ProxySettings TestHostileClients::settings() const
{
    ProxySettings s;
    s.bind = QStringLiteral("127.0.0.1");
    s.port = 0;
    s.token = QString::fromLatin1(kToken);
    s.maxBodyBytes = 64 * 1024;
    s.headerTimeoutMs = 1000;
    s.keepAliveTimeoutMs = 60000;
    s.stallTimeoutMs = 1000;
    s.lingerTimeoutMs = 500;
    return s;
}

void TestHostileClients::init()
{
    setUp(settings());
    // Every request head gets a small JSON answer unless a test silences the model server.
    m_upstream->autoAnswer = true;
    m_upstream->autoResponse = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Content-Length: 11\r\n\r\n{\"ok\":true}";
}

void TestHostileClients::cleanup()
{
    tearDown();
}

void TestHostileClients::ordinaryClientIsServed()
{
    Peer *c = connectClient();
    c->socket->write(get("/api/tags"));
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("{\"ok\":true}") || c->disconnected, kTimeout);
    QVERIFY2(c->received.startsWith("HTTP/1.1 200 "), c->received.left(80).constData());
    c->socket->abort();
}

void TestHostileClients::slowlorisHeadIsCutOff()
{
    // One byte every 100 ms: the whole head would take ~6 s; header_timeout is 1 s.
    const QByteArray head = get("/api/tags");
    Peer *slow = connectClient();
    int sent = 0;
    QTimer drip;
    connect(&drip, &QTimer::timeout, this, [&] {
        if (sent < head.size() && !slow->disconnected && slow->socket)
            slow->socket->write(head.mid(sent++, 1));
    });
    drip.start(100);

    ordinaryClientIsServed(); // while the slow head is dripping in

    QTRY_VERIFY_WITH_TIMEOUT(slow->disconnected, kTimeout);
    drip.stop();
    QVERIFY2(slow->received.startsWith("HTTP/1.1 408 "), slow->received.left(80).constData());
    QVERIFY(slow->received.contains("\"error\""));
    QVERIFY2(sent < head.size(), "the head was complete before the timeout: test too slow?");
    QCOMPARE(m_backend->acquires, 1); // only the ordinary client's
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
}

void TestHostileClients::silentConnectionIsClosed()
{
    ProxySettings s = settings();
    s.keepAliveTimeoutMs = 300;
    startServer(s);
    Peer *silent = connectClient();
    QTRY_VERIFY_WITH_TIMEOUT(silent->disconnected, kTimeout);
    QVERIFY(silent->received.isEmpty());
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
    QCOMPARE(m_backend->acquires, 0);
}

void TestHostileClients::bodyThatStops_data()
{
    QTest::addColumn<QByteArray>("request");
    QTest::addRow("content-length")
        << QByteArray("POST /api/chat HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + kToken
                      + "\r\nContent-Length: 50000\r\n\r\n{\"model\":");
    QTest::addRow("chunked") << QByteArray(
        "POST /api/chat HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + kToken
        + "\r\nTransfer-Encoding: chunked\r\n\r\n" + http::encodeChunk("{\"model\":"));
}

void TestHostileClients::bodyThatStops()
{
    QFETCH(QByteArray, request);
    m_upstream->autoAnswer = false; // waits for the whole request body (which never comes)
    Peer *c = connectClient();
    c->socket->write(request); // and never the rest of the body
    // The request reaches the model server, then the stall timeout aborts both ends.
    QTRY_COMPARE_WITH_TIMEOUT(m_upstream->peers.size(), size_t(1), kTimeout);
    QTRY_VERIFY_WITH_TIMEOUT(m_upstream->peers[0]->received.contains("{\"model\":"), kTimeout);
    QTRY_VERIFY_WITH_TIMEOUT(c->disconnected, kTimeout);
    QTRY_VERIFY_WITH_TIMEOUT(m_upstream->peers[0]->disconnected, kTimeout);
    QVERIFY(!c->received.startsWith("HTTP/1.1 2"));
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
    QCOMPARE(m_server->activeExchangeCount(), 0);
    QCOMPARE(m_backend->releases, m_backend->acquires);
    m_upstream->autoAnswer = true;
    ordinaryClientIsServed();
}

void TestHostileClients::bodyThatNeverEnds()
{
    // A chunked body that keeps coming: cut off at max_body_bytes (64 KiB here) with 413.
    m_upstream->autoAnswer = false;
    Peer *c = connectClient();
    c->socket->write("POST /api/chat HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + kToken
                     + "\r\nTransfer-Encoding: chunked\r\n\r\n");
    const QByteArray chunk = http::encodeChunk(QByteArray(4096, 'y'));
    qint64 written = 0;
    QTimer pump;
    connect(&pump, &QTimer::timeout, this, [&] {
        if (c->disconnected || !c->socket || c->socket->bytesToWrite() > 256 * 1024
            || written > 64 * 1024 * 1024)
            return;
        c->socket->write(chunk);
        written += chunk.size();
    });
    pump.start(0);
    QTRY_VERIFY_WITH_TIMEOUT(c->disconnected, kTimeout);
    pump.stop();
    QVERIFY2(c->received.startsWith("HTTP/1.1 413 "), c->received.left(80).constData());
    QVERIFY(written < 64 * 1024 * 1024);
    QTRY_VERIFY_WITH_TIMEOUT(!m_upstream->peers.empty() && m_upstream->peers[0]->disconnected,
                             kTimeout);
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
    QCOMPARE(m_backend->releases, m_backend->acquires);
}

void TestHostileClients::megabyteOfHeaders_data()
{
    QTest::addColumn<QByteArray>("request");
    QTest::addColumn<int>("status");
    const QByteArray start
        = "GET /api/tags HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + kToken + "\r\n";
    QTest::addRow("one 1 MB header")
        << QByteArray(start + "X-Big: " + QByteArray(1024 * 1024, 'b') + "\r\n\r\n") << 431;
    QByteArray many = start;
    while (many.size() < 1024 * 1024)
        many += "X-H" + QByteArray::number(many.size()) + ": v\r\n";
    QTest::addRow("1 MB of small headers") << QByteArray(many + "\r\n") << 431;
    QTest::addRow("1 MB request line")
        << QByteArray("GET /" + QByteArray(1024 * 1024, 'u') + " HTTP/1.1\r\nHost: h\r\n\r\n")
        << 431;
    QTest::addRow("1 MB of header lines without an end")
        << QByteArray(start + QByteArray(1024 * 1024 / 6, '\n').replace('\n', "X: y\r\n")) << 431;
}

void TestHostileClients::megabyteOfHeaders()
{
    QFETCH(QByteArray, request);
    QFETCH(int, status);
    Peer *c = connectClient();
    c->socket->write(request);
    QTRY_VERIFY_WITH_TIMEOUT(c->disconnected, kTimeout);
    QVERIFY2(c->received.startsWith(QByteArray("HTTP/1.1 " + QByteArray::number(status) + ' ')),
             c->received.left(80).constData());
    QVERIFY(c->received.contains("Connection: close\r\n"));
    QVERIFY(!c->received.contains(kToken));
    QCOMPARE(m_backend->acquires, 0);
    QCOMPARE(m_upstream->peers.size(), size_t(0));
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
    ordinaryClientIsServed();
}

void TestHostileClients::tenThousandIdleConnections()
{
    // Two descriptors per connection the server still holds, one per client socket.
    const int count = int(std::min<rlim_t>(10000, m_fileLimit > 600 ? m_fileLimit - 500 : 100));
    if (count < 10000)
        qWarning("RLIMIT_NOFILE allows only %d idle connections", count);
    ProxySettings s = settings();
    s.maxConnections = 64;
    startServer(s);

    std::vector<std::unique_ptr<RawClient>> idle;
    idle.reserve(size_t(count));
    int peakConnections = 0;
    for (int i = 0; i < count; ++i) {
        idle.push_back(std::make_unique<RawClient>(m_server->serverPort()));
        QVERIFY2(idle.back()->isOpen(), qPrintable(qt_error_string(errno)));
        if (i % 200 == 199) {
            // Let the server accept what the kernel queued (the listen backlog is finite).
            QCoreApplication::processEvents();
            peakConnections = std::max(peakConnections, m_server->connectionCount());
        }
    }
    // Every idle socket beyond the limit is closed by the server, one way or the other.
    int open = count;
    QTRY_VERIFY_WITH_TIMEOUT(
        [&] {
            peakConnections = std::max(peakConnections, m_server->connectionCount());
            open = 0;
            for (auto &client : idle)
                open += client->closedByPeer() ? 0 : 1;
            return open <= s.maxConnections;
        }(),
        kTimeout * 2);
    QVERIFY2(peakConnections <= s.maxConnections, qPrintable(QString::number(peakConnections)));
    QCOMPARE(m_server->connectionCount(), s.maxConnections);
    QCOMPARE(m_backend->acquires, 0);

    // An ordinary client still gets in (an idle connection makes room) and is answered.
    ordinaryClientIsServed();
    QVERIFY(m_server->connectionCount() <= s.maxConnections);
    idle.clear();
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
}

void TestHostileClients::busySlotsRefuseNewcomers()
{
    // When every connection has a request in progress nothing can be closed to make room.
    ProxySettings s = settings();
    s.maxConnections = 4;
    startServer(s);
    m_backend->hold = true;
    std::vector<Peer *> busy;
    for (int i = 0; i < s.maxConnections; ++i) {
        busy.push_back(connectClient());
        busy.back()->socket->write(get("/api/tags"));
    }
    QTRY_COMPARE_WITH_TIMEOUT(int(m_backend->held.size()), s.maxConnections, kTimeout);
    Peer *late = connectClient();
    late->socket->write(get("/api/tags"));
    QTRY_VERIFY_WITH_TIMEOUT(late->disconnected, kTimeout);
    QVERIFY2(late->received.startsWith("HTTP/1.1 503 "), late->received.left(80).constData());
    QVERIFY(late->received.contains("too many connections"));
    QCOMPARE(m_server->connectionCount(), s.maxConnections);
    m_backend->answerAll();
    for (Peer *c : busy)
        QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("{\"ok\":true}"), kTimeout);
}

void TestHostileClients::clientThatReadsNothing()
{
    m_upstream->streamForever = true;
    // A small receive buffer, and the test never reads: only the proxy's buffers can fill.
    RawClient client(m_server->serverPort(), 4096);
    QVERIFY(client.isOpen());
    QTRY_VERIFY_WITH_TIMEOUT(client.writable(), kTimeout);
    QVERIFY(client.send(get("/api/generate")));

    QTRY_COMPARE_WITH_TIMEOUT(m_upstream->peers.size(), size_t(1), kTimeout);
    QTRY_VERIFY_WITH_TIMEOUT(m_upstream->pushed > 0, kTimeout);
    // Back-pressure: the proxy stops reading the model server; after stall_timeout (1 s) it
    // aborts the upstream request and closes the client.
    QTRY_VERIFY_WITH_TIMEOUT(m_upstream->peers[0]->disconnected, kTimeout);
    qInfo("the model server could push %lld bytes before the proxy stopped reading",
          m_upstream->pushed);
    // Kernel socket buffers plus the proxy's bounded buffers: megabytes, not the endless stream.
    QVERIFY2(m_upstream->pushed < 64LL * 1024 * 1024,
             qPrintable(QString::number(m_upstream->pushed)));
    QTRY_VERIFY_WITH_TIMEOUT(client.closedByPeer(true), kTimeout);
    QVERIFY(client.received.startsWith("HTTP/1.1 200 "));
    QTRY_COMPARE_WITH_TIMEOUT(m_server->connectionCount(), 0, kTimeout);
    QCOMPARE(m_server->activeExchangeCount(), 0);
    QCOMPARE(m_backend->releases, m_backend->acquires);
    m_upstream->streamForever = false;
    ordinaryClientIsServed();
}

void TestHostileClients::badTokens_data()
{
    QTest::addColumn<QByteArray>("request");
    const QByteArray shorter = kToken.chopped(1);
    const QByteArray rows[][2] = {
        {"none", QByteArray()},
        {"empty", ""},
        {"scheme only", "Bearer"},
        {"scheme and blank", "Bearer   "},
        {"one byte short", "Bearer " + shorter},
        {"one byte long", "Bearer " + kToken + "x"},
        {"last byte differs", "Bearer " + shorter + "X"},
        {"prefix byte", "Bearer x" + kToken},
        {"case differs", "Bearer " + kToken.toUpper()},
        {"no scheme", kToken},
        {"basic scheme", "Basic " + kToken},
        {"two words", "Bearer " + kToken + " " + kToken},
        {"very long", "Bearer " + QByteArray(8000, 'a')},
        {"nul inside", "Bearer " + kToken.left(4) + QByteArray(1, '\0') + kToken.mid(4)},
    };
    const QByteArray targets[][2] = {
        {"GET", "/api/tags"},
        {"GET", "/slullama/status"},
        {"POST", "/slullama/wake"},
        {"GET", "/slullama/nonexistent"},
    };
    for (const auto &target : targets) {
        for (const auto &row : rows) {
            QByteArray request = target[0] + ' ' + target[1] + " HTTP/1.1\r\nHost: h\r\n";
            if (!row[1].isNull())
                request += "Authorization: " + row[1] + "\r\n";
            if (target[0] == "POST")
                request += "Content-Length: 0\r\n";
            QTest::addRow("%s %s, %s", target[0].constData(), target[1].constData(),
                          row[0].constData())
                << QByteArray(request + "\r\n");
        }
    }
    QTest::addRow("token in the query") << get("/api/tags?token=" + kToken, QByteArray());
    QTest::addRow("token as another header")
        << QByteArray("GET /api/tags HTTP/1.1\r\nHost: h\r\nX-Token: " + kToken + "\r\n\r\n");
}

void TestHostileClients::badTokens()
{
    QFETCH(QByteArray, request);
    Peer *c = connectClient();
    c->socket->write(request);
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("}") || c->disconnected, kTimeout);
    // A header with a NUL in it is not HTTP at all (400); everything else is refused with 401.
    QVERIFY2(c->received.startsWith("HTTP/1.1 401 ") || c->received.startsWith("HTTP/1.1 400 "),
             c->received.left(80).constData());
    if (!request.contains('\0'))
        QVERIFY(c->received.startsWith("HTTP/1.1 401 "));
    // The answer never echoes what was presented (nor, a fortiori, the real token).
    QVERIFY(!c->received.contains(kToken));
    QVERIFY(!c->received.contains(kToken.chopped(1)));
    QCOMPARE(m_backend->acquires, 0);
    QCOMPARE(m_backend->wakes, 0);
    QCOMPARE(m_upstream->peers.size(), size_t(0));
}

void TestHostileClients::goodTokenShapes_data()
{
    QTest::addColumn<QByteArray>("authorization");
    QTest::addRow("canonical") << QByteArray("Bearer " + kToken);
    QTest::addRow("lower-case scheme") << QByteArray("bearer " + kToken);
    QTest::addRow("blanks around") << QByteArray("BEARER \t" + kToken + " \t");
}

void TestHostileClients::goodTokenShapes()
{
    QFETCH(QByteArray, authorization);
    Peer *c = connectClient();
    c->socket->write(get("/slullama/status", authorization));
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("}"), kTimeout);
    QVERIFY2(c->received.startsWith("HTTP/1.1 200 "), c->received.left(80).constData());
    QVERIFY(!c->received.contains(kToken));
}

void TestHostileClients::healthNeedsNoToken()
{
    Peer *c = connectClient();
    c->socket->write(get("/slullama/health", QByteArray()));
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("}"), kTimeout);
    QVERIFY(c->received.startsWith("HTTP/1.1 200 "));
    QVERIFY(!c->received.contains(kToken));
    QCOMPARE(m_backend->acquires, 0);
}

void TestHostileClients::authorizationNeverForwarded()
{
    Peer *c = connectClient();
    // Every spelling the proxy accepts, plus a second Authorization and proxy credentials.
    c->socket->write("POST /api/chat HTTP/1.1\r\nHost: h\r\nauthorization: bearer " + kToken
                     + "\r\nAUTHORIZATION: Bearer " + kToken + "\r\nProxy-Authorization: Basic "
                     + kToken.toBase64() + "\r\nConnection: keep-alive, X-Secret\r\nX-Secret: "
                     + kToken + "\r\nContent-Length: 2\r\n\r\n{}");
    QTRY_VERIFY_WITH_TIMEOUT(c->received.endsWith("{\"ok\":true}"), kTimeout);
    QCOMPARE(m_upstream->peers.size(), size_t(1));
    QTRY_VERIFY_WITH_TIMEOUT(m_upstream->peers[0]->received.endsWith("\r\n\r\n{}"), kTimeout);
    const QByteArray seen = m_upstream->peers[0]->received;
    QVERIFY2(!seen.toLower().contains("authorization"), seen.constData());
    QVERIFY2(!seen.contains(kToken), seen.constData());
    QVERIFY(!seen.contains(kToken.toBase64()));
    QVERIFY(!c->received.contains(kToken));
}

QTEST_GUILESS_MAIN(TestHostileClients)
#include "tst_hostileclients.moc"
