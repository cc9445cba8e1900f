#include "apiclient.h"

#include <QJsonDocument>
#include <QSignalSpy>
#include <QTcpServer>
#include <QTcpSocket>
#include <QTest>

using namespace slullama;

namespace {

// Answers every request on 127.0.0.1 with one canned response and keeps the request heads.
class CannedServer final : public QObject
{
    Q_OBJECT
public:
    explicit CannedServer(QByteArray response) : m_response(std::move(response))
    {
        connect(&m_server, &QTcpServer::newConnection, this, [this] {
            while (QTcpSocket *socket = m_server.nextPendingConnection()) {
                connect(socket, &QTcpSocket::readyRead, this, [this, socket] {
                    m_buffer += socket->readAll();
                    if (!m_buffer.contains("\r\n\r\n"))
                        return;
                    requests << m_buffer;
                    m_buffer.clear();
                    socket->write(m_response);
                    socket->disconnectFromHost();
                });
                connect(socket, &QTcpSocket::disconnected, socket, &QObject::deleteLater);
            }
        });
    }
    bool listen() { return m_server.listen(QHostAddress::LocalHost); }
    QUrl url() const
    {
        return QUrl(QStringLiteral("http://127.0.0.1:") + QString::number(m_server.serverPort()));
    }

    QList<QByteArray> requests;

private:
    QTcpServer m_server;
    QByteArray m_response;
    QByteArray m_buffer;
};

QByteArray response(int code, const char *reason, const QByteArray &body)
{
    return "HTTP/1.1 " + QByteArray::number(code) + ' ' + reason
           + "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "
           + QByteArray::number(body.size()) + "\r\n\r\n" + body;
}

QByteArray statusBody()
{
    Status s;
    s.version = QStringLiteral("0.2.0");
    s.phase = Phase::Queued;
    s.job.id = QStringLiteral("99");
    s.job.pendingReason = QStringLiteral("Resources");
    return QJsonDocument(s.toJson()).toJson(QJsonDocument::Compact);
}

} // namespace

class TestApiClient final : public QObject
{
    Q_OBJECT

private slots:
    void fetchStatus()
    {
        CannedServer server(response(200, "OK", statusBody()));
        QVERIFY(server.listen());
        ApiClient client(server.url(), QStringLiteral("s3cret"));
        QSignalSpy received(&client, &ApiClient::statusReceived);
        QSignalSpy failed(&client, &ApiClient::statusFailed);
        client.fetchStatus();
        QVERIFY(received.wait(10000));
        QCOMPARE(failed.count(), 0);
        const auto status = received.at(0).at(0).value<Status>();
        QCOMPARE(status.phase, Phase::Queued);
        QCOMPARE(status.job.pendingReason, QStringLiteral("Resources"));
        QCOMPARE(received.at(0).at(1).toByteArray(), statusBody());
        QCOMPARE(server.requests.size(), 1);
        const QByteArray &head = server.requests.at(0);
        QVERIFY2(head.startsWith("GET /slullama/status HTTP/1.1\r\n"), head.constData());
        QVERIFY2(head.contains("Authorization: Bearer s3cret\r\n"), head.constData());
    }

    void noTokenNoHeader()
    {
        CannedServer server(response(200, "OK", statusBody()));
        QVERIFY(server.listen());
        ApiClient client(server.url(), QString());
        QSignalSpy received(&client, &ApiClient::statusReceived);
        client.fetchStatus();
        QVERIFY(received.wait(10000));
        QVERIFY(!server.requests.at(0).contains("Authorization"));
    }

    void wakePosts()
    {
        CannedServer server(response(202, "Accepted", statusBody()));
        QVERIFY(server.listen());
        ApiClient client(server.url(), QStringLiteral("t"));
        QSignalSpy accepted(&client, &ApiClient::wakeAccepted);
        client.wake();
        QVERIFY(accepted.wait(10000));
        QVERIFY(server.requests.at(0).startsWith("POST /slullama/wake HTTP/1.1\r\n"));
        QCOMPARE(accepted.at(0).at(0).value<Status>().job.id, QStringLiteral("99"));
    }

    void failures_data()
    {
        QTest::addColumn<QByteArray>("answer");
        QTest::addColumn<int>("httpStatus");
        QTest::addColumn<QString>("expected");
        QTest::newRow("401") << response(401, "Unauthorized", R"({"error":"unauthorized"})")
                             << 401 << QStringLiteral("token rejected");
        QTest::newRow("503 with message")
            << response(503, "Service Unavailable", R"({"error":"sbatch: invalid partition"})")
            << 503 << QStringLiteral("answered HTTP 503: sbatch: invalid partition");
        QTest::newRow("404") << response(404, "Not Found", "404 page not found") << 404
                             << QStringLiteral("not Ollama itself");
        QTest::newRow("not status json") << response(200, "OK", R"({"models":[]})") << 0
                                         << QStringLiteral("not a slullama status");
    }

    void failures()
    {
        QFETCH(QByteArray, answer);
        QFETCH(int, httpStatus);
        QFETCH(QString, expected);
        CannedServer server(answer);
        QVERIFY(server.listen());
        ApiClient client(server.url(), QStringLiteral("t"));
        QSignalSpy failed(&client, &ApiClient::statusFailed);
        QSignalSpy received(&client, &ApiClient::statusReceived);
        client.fetchStatus();
        QVERIFY(failed.wait(10000));
        QCOMPARE(received.count(), 0);
        const QString message = failed.at(0).at(0).toString();
        QVERIFY2(message.contains(expected), qPrintable(message));
        QCOMPARE(failed.at(0).at(1).toInt(), httpStatus);
        QVERIFY(!message.contains(QStringLiteral("Bearer")));
    }

    void connectionRefused()
    {
        quint16 port = 0;
        {
            QTcpServer probe;  // a port that was free a moment ago, now closed again
            QVERIFY(probe.listen(QHostAddress::LocalHost));
            port = probe.serverPort();
        }
        const QUrl url(QStringLiteral("http://127.0.0.1:") + QString::number(port));
        ApiClient client(url, QString());
        QSignalSpy failed(&client, &ApiClient::wakeFailed);
        client.wake();
        QVERIFY(failed.wait(10000));
        QCOMPARE(failed.at(0).at(0).toString(),
                 QStringLiteral("no slullama daemon at ") + url.toString()
                     + QStringLiteral(" (connection refused): is it running, and on this port?"));
        QCOMPARE(failed.at(0).at(1).toInt(), 0);
    }

    void timeout()
    {
        QTcpServer silent;  // accepts (the kernel does) but never answers
        QVERIFY(silent.listen(QHostAddress::LocalHost));
        ApiClient client(QUrl(QStringLiteral("http://127.0.0.1:")
                              + QString::number(silent.serverPort())),
                         QString());
        client.setTimeout(300);
        QSignalSpy failed(&client, &ApiClient::statusFailed);
        client.fetchStatus();
        QVERIFY(failed.wait(10000));
        QVERIFY2(failed.at(0).at(0).toString().startsWith(QStringLiteral("no answer from")),
                 qPrintable(failed.at(0).at(0).toString()));
    }
};

QTEST_GUILESS_MAIN(TestApiClient)
#include "tst_apiclient.moc"
