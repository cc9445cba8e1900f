#include "healthprobe.h"
#include "nodetunnel.h"

#include <QFile>
#include <QFileInfo>
#include <QLocalServer>
#include <QLocalSocket>
#include <QTcpServer>
#include <QTcpSocket>
#include <QTemporaryDir>
#include <QTest>

#include <optional>

#include <unistd.h>

using namespace slullama;

namespace {

// A stand-in for ssh: a small executable script (run directly, not through a shell string).
QString writeFakeSsh(const QTemporaryDir &dir, const QByteArray &body)
{
    const QString path = dir.filePath(QStringLiteral("fake-ssh"));
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly))
        return {};
    file.write("#!/bin/sh\n" + body + "\n");
    file.close();
    file.setPermissions(QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
    return path;
}

} // namespace

class TestNodeTunnel final : public QObject
{
    Q_OBJECT

private slots:
    void arguments();
    void argumentsNotInteractive();
    void extraOptionsAndUser();
    void freePortIsFree();
    void refusesOptionLikeNodeNames_data();
    void refusesOptionLikeNodeNames();
    void exitIsReportedWithStderr();
    void missingProgramIsReported();
    void closeStopsWithoutCallback();
    void healthProbe_data();
    void healthProbe();
    void healthProbeNothingListening();
    void argumentsSocket();
    void socketModeMakesPrivateDirPerTunnel();
    void tcpModeHasNoSocket();
    void healthProbeUnixSocket();
    void healthProbeUnixSocketMissing();
};

void TestNodeTunnel::arguments()
{
    // The default: a pty session whose only command waits, so sshd sets TCP_NODELAY.
    SshConfig ssh;
    ssh.port = 2222;
    const QStringList args = sshTunnelArguments(ssh, QStringLiteral("gpu01"), 40001, 11434);
    QCOMPARE(args,
             (QStringList {QStringLiteral("-tt"), QStringLiteral("-e"), QStringLiteral("none"),
                           QStringLiteral("-L"), QStringLiteral("127.0.0.1:40001:127.0.0.1:11434"),
                           QStringLiteral("-p"), QStringLiteral("2222"), QStringLiteral("-o"),
                           QStringLiteral("BatchMode=yes"), QStringLiteral("-o"),
                           QStringLiteral("ExitOnForwardFailure=yes"), QStringLiteral("-o"),
                           QStringLiteral("ServerAliveInterval=15"), QStringLiteral("-o"),
                           QStringLiteral("ServerAliveCountMax=3"), QStringLiteral("gpu01"),
                           QStringLiteral("exec sleep 2147483647")}));
}

void TestNodeTunnel::argumentsNotInteractive()
{
    SshConfig ssh;
    ssh.port = 2222;
    ssh.interactive = false;
    const QStringList args = sshTunnelArguments(ssh, QStringLiteral("gpu01"), 40001, 11434);
    QCOMPARE(args,
             (QStringList {QStringLiteral("-N"), QStringLiteral("-L"),
                           QStringLiteral("127.0.0.1:40001:127.0.0.1:11434"), QStringLiteral("-p"),
                           QStringLiteral("2222"), QStringLiteral("-o"),
                           QStringLiteral("BatchMode=yes"), QStringLiteral("-o"),
                           QStringLiteral("ExitOnForwardFailure=yes"), QStringLiteral("-o"),
                           QStringLiteral("ServerAliveInterval=15"), QStringLiteral("-o"),
                           QStringLiteral("ServerAliveCountMax=3"), QStringLiteral("gpu01")}));
}

void TestNodeTunnel::extraOptionsAndUser()
{
    SshConfig ssh;
    ssh.identityFile = QStringLiteral("/keys/id ed25519");
    ssh.options = {QStringLiteral("StrictHostKeyChecking=accept-new")};
    ssh.user = QStringLiteral("svc");
    const QStringList args = sshTunnelArguments(ssh, QStringLiteral("n1"), 1, 2);
    const qsizetype i = args.indexOf(QStringLiteral("-i"));
    QVERIFY(i > 0);
    QCOMPARE(args.at(i + 1), QStringLiteral("/keys/id ed25519")); // one argument, spaces and all
    QVERIFY(args.contains(QStringLiteral("StrictHostKeyChecking=accept-new")));
    QCOMPARE(args.at(args.size() - 2), QStringLiteral("svc@n1"));
    ssh.interactive = false;
    QCOMPARE(sshTunnelArguments(ssh, QStringLiteral("n1"), 1, 2).last(), QStringLiteral("svc@n1"));
}

void TestNodeTunnel::freePortIsFree()
{
    const quint16 port = pickFreeLoopbackPort();
    QVERIFY(port > 0);
    QTcpServer server;
    QVERIFY(server.listen(QHostAddress::LocalHost, port));
}

void TestNodeTunnel::refusesOptionLikeNodeNames_data()
{
    QTest::addColumn<QString>("node");
    QTest::addRow("option") << "-oProxyCommand=touch /tmp/x";
    QTest::addRow("space") << "a b";
    QTest::addRow("empty") << "";
    QTest::addRow("at") << "root@host";
}

void TestNodeTunnel::refusesOptionLikeNodeNames()
{
    QFETCH(QString, node);
    auto tunnel = makeSshNodeTunnel(SshConfig {});
    QString error;
    bool exited = false;
    QCOMPARE(tunnel->open(
                 node, 11434, [&](const QString &) { exited = true; }, &error),
             quint16(0));
    QVERIFY(!error.isEmpty());
    QVERIFY(!tunnel->isOpen());
    QVERIFY(!exited);
}

void TestNodeTunnel::exitIsReportedWithStderr()
{
    QTemporaryDir dir;
    SshConfig ssh;
    ssh.program = writeFakeSsh(dir,
                               "echo 'bind [127.0.0.1]:1: Address already in use' >&2\n"
                               "echo 'Could not request local forwarding.' >&2\nexit 255");
    auto tunnel = makeSshNodeTunnel(ssh);
    QString error;
    std::optional<QString> reason;
    const quint16 port = tunnel->open(
        QStringLiteral("vm"), 11434, [&](const QString &r) { reason = r; }, &error);
    QVERIFY2(port > 0, qPrintable(error));
    QCOMPARE(tunnel->localPort(), port);
    QTRY_VERIFY_WITH_TIMEOUT(reason.has_value(), 10000);
    QVERIFY2(reason->contains(QStringLiteral("code 255")), qPrintable(*reason));
    QVERIFY(reason->contains(QStringLiteral("Could not request local forwarding")));
    QVERIFY(!tunnel->isOpen());
}

void TestNodeTunnel::missingProgramIsReported()
{
    SshConfig ssh;
    ssh.program = QStringLiteral("/nonexistent/ssh");
    auto tunnel = makeSshNodeTunnel(ssh);
    QString error;
    std::optional<QString> reason;
    tunnel->open(
        QStringLiteral("vm"), 11434, [&](const QString &r) { reason = r; }, &error);
    QTRY_VERIFY_WITH_TIMEOUT(reason.has_value(), 10000);
    QVERIFY2(reason->contains(QStringLiteral("/nonexistent/ssh could not be started")),
             qPrintable(*reason));
}

void TestNodeTunnel::closeStopsWithoutCallback()
{
    QTemporaryDir dir;
    SshConfig ssh;
    const QString pidFile = dir.filePath(QStringLiteral("pid"));
    ssh.program = writeFakeSsh(dir, "echo $$ > '" + pidFile.toUtf8() + "'\nexec sleep 60");
    auto tunnel = makeSshNodeTunnel(ssh);
    bool exited = false;
    QString error;
    QVERIFY(tunnel->open(
        QStringLiteral("vm"), 11434, [&](const QString &) { exited = true; }, &error));
    QTRY_VERIFY_WITH_TIMEOUT(QFile::exists(pidFile) && QFile(pidFile).size() > 0, 10000);
    QFile file(pidFile);
    QVERIFY(file.open(QIODevice::ReadOnly));
    const QByteArray pid = file.readAll().trimmed();
    tunnel->close();
    QVERIFY(!tunnel->isOpen());
    // The process ends (state Z or gone) and no exit callback runs for a tunnel we closed.
    const auto gone = [&pid]() {
        QFile stat(QStringLiteral("/proc/") + QString::fromLatin1(pid) + QStringLiteral("/stat"));
        if (!stat.open(QIODevice::ReadOnly))
            return true;
        const QByteArray text = stat.readAll();
        return text.mid(text.lastIndexOf(')') + 2, 1) == "Z";
    };
    QTRY_VERIFY_WITH_TIMEOUT(gone(), 10000);
    QVERIFY(!exited);
}

void TestNodeTunnel::healthProbe_data()
{
    QTest::addColumn<QByteArray>("answer");
    QTest::addColumn<bool>("healthy");
    QTest::addRow("200") << QByteArray("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}") << true;
    QTest::addRow("http/1.0 200") << QByteArray("HTTP/1.0 200 OK\r\n\r\n") << true;
    QTest::addRow("404") << QByteArray("HTTP/1.1 404 Not Found\r\n\r\n") << false;
    QTest::addRow("503") << QByteArray("HTTP/1.1 503 Service Unavailable\r\n\r\n") << false;
    QTest::addRow("closed") << QByteArray() << false;
    QTest::addRow("not http") << QByteArray("SSH-2.0-OpenSSH_9.2\r\n") << false;
}

void TestNodeTunnel::healthProbe()
{
    QFETCH(QByteArray, answer);
    QFETCH(bool, healthy);
    QTcpServer server;
    QVERIFY(server.listen(QHostAddress::LocalHost, 0));
    QByteArray request;
    connect(&server, &QTcpServer::newConnection, this, [&]() {
        QTcpSocket *socket = server.nextPendingConnection();
        connect(socket, &QTcpSocket::readyRead, socket, [&, socket]() {
            request += socket->readAll();
            if (!request.contains("\r\n\r\n"))
                return;
            socket->write(answer);
            socket->disconnectFromHost();
        });
    });
    auto probe = makeHttpHealthProbe();
    std::optional<bool> result;
    probe->check(QStringLiteral("127.0.0.1"), server.serverPort(), 5000, this,
                 [&](bool ok, const QString &) { result = ok; });
    QTRY_VERIFY_WITH_TIMEOUT(result.has_value(), 10000);
    QCOMPARE(*result, healthy);
    QVERIFY(request.startsWith("GET /api/version HTTP/1.1\r\n"));
}

void TestNodeTunnel::healthProbeNothingListening()
{
    const quint16 port = pickFreeLoopbackPort();
    auto probe = makeHttpHealthProbe();
    std::optional<bool> result;
    probe->check(QStringLiteral("127.0.0.1"), port, 5000, this,
                 [&](bool ok, const QString &) { result = ok; });
    QTRY_VERIFY_WITH_TIMEOUT(result.has_value(), 10000);
    QVERIFY(!*result);
}

void TestNodeTunnel::argumentsSocket()
{
    SshConfig ssh;
    ssh.port = 2222;
    const QStringList args = sshTunnelArguments(ssh, QStringLiteral("gpu01"),
                                                QStringLiteral("/run/d/ollama.sock"), 11434);
    QCOMPARE(
        args,
        (QStringList {QStringLiteral("-tt"), QStringLiteral("-e"), QStringLiteral("none"),
                      QStringLiteral("-L"), QStringLiteral("/run/d/ollama.sock:127.0.0.1:11434"),
                      QStringLiteral("-p"), QStringLiteral("2222"), QStringLiteral("-o"),
                      QStringLiteral("BatchMode=yes"), QStringLiteral("-o"),
                      QStringLiteral("ExitOnForwardFailure=yes"), QStringLiteral("-o"),
                      QStringLiteral("ServerAliveInterval=15"), QStringLiteral("-o"),
                      QStringLiteral("ServerAliveCountMax=3"), QStringLiteral("-o"),
                      QStringLiteral("StreamLocalBindUnlink=yes"), QStringLiteral("gpu01"),
                      QStringLiteral("exec sleep 2147483647")}));
    ssh.interactive = false;
    const QStringList plain = sshTunnelArguments(ssh, QStringLiteral("gpu01"),
                                                 QStringLiteral("/run/d/ollama.sock"), 11434);
    QCOMPARE(plain.first(), QStringLiteral("-N"));
    QCOMPARE(plain.last(), QStringLiteral("gpu01"));
    QVERIFY(!sshTunnelArguments(ssh, QStringLiteral("gpu01"), 1, 2)
                 .contains(QStringLiteral("StreamLocalBindUnlink=yes")));
}

void TestNodeTunnel::socketModeMakesPrivateDirPerTunnel()
{
    QTemporaryDir dir;
    const QString argsFile = dir.filePath(QStringLiteral("args"));
    SshConfig ssh;
    QVERIFY(ssh.forwardSocket); // the default
    ssh.program = writeFakeSsh(dir, "echo \"$@\" > '" + argsFile.toUtf8() + "'\nexec sleep 60");
    auto tunnel = makeSshNodeTunnel(ssh);
    QString error;
    QVERIFY2(tunnel->open(QStringLiteral("vm"), 11434, {}, &error) > 0, qPrintable(error));
    const QString first = tunnel->localSocket();
    QVERIFY(first.endsWith(QStringLiteral("/ollama.sock")));
    QCOMPARE(tunnelProbeHost(*tunnel), first);
    const QFileInfo parent(QFileInfo(first).path());
    QVERIFY(parent.isDir());
    QCOMPARE(int(parent.permissions() & 0x0777 /* QFile user/group/other bits */),
             int(QFile::ReadUser | QFile::WriteUser | QFile::ExeUser));
    QCOMPARE(parent.ownerId(), uint(::getuid()));
    QTRY_VERIFY_WITH_TIMEOUT(QFile::exists(argsFile) && QFile(argsFile).size() > 0, 10000);
    QFile file(argsFile);
    QVERIFY(file.open(QIODevice::ReadOnly));
    QVERIFY(file.readAll().contains((first + QStringLiteral(":127.0.0.1:11434")).toUtf8()));
    // A rebuild gets a new path; the old directory is gone.
    QVERIFY(tunnel->open(QStringLiteral("vm"), 11434, {}, &error) > 0);
    QVERIFY(tunnel->localSocket() != first);
    QVERIFY(!QFileInfo::exists(parent.filePath()));
    const QString second = QFileInfo(tunnel->localSocket()).path();
    tunnel->close();
    QVERIFY(tunnel->localSocket().isEmpty());
    QVERIFY(!QFileInfo::exists(second));
}

void TestNodeTunnel::tcpModeHasNoSocket()
{
    QTemporaryDir dir;
    SshConfig ssh;
    ssh.forwardSocket = false;
    ssh.program = writeFakeSsh(dir, "exec sleep 60");
    auto tunnel = makeSshNodeTunnel(ssh);
    QString error;
    const quint16 port = tunnel->open(QStringLiteral("vm"), 11434, {}, &error);
    QVERIFY2(port > 0, qPrintable(error));
    QVERIFY(tunnel->localSocket().isEmpty());
    QCOMPARE(tunnelProbeHost(*tunnel), QStringLiteral("127.0.0.1"));
    tunnel->close();
}

void TestNodeTunnel::healthProbeUnixSocket()
{
    QTemporaryDir dir;
    QLocalServer server;
    server.setSocketOptions(QLocalServer::UserAccessOption);
    const QString path = dir.filePath(QStringLiteral("ollama.sock"));
    QVERIFY(server.listen(path));
    QByteArray request;
    connect(&server, &QLocalServer::newConnection, this, [&]() {
        QLocalSocket *socket = server.nextPendingConnection();
        connect(socket, &QLocalSocket::readyRead, socket, [&, socket]() {
            request += socket->readAll();
            if (!request.contains("\r\n\r\n"))
                return;
            socket->write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
            socket->disconnectFromServer();
        });
    });
    auto probe = makeHttpHealthProbe();
    std::optional<bool> result;
    probe->check(path, 11434, 5000, this, [&](bool ok, const QString &) { result = ok; });
    QTRY_VERIFY_WITH_TIMEOUT(result.has_value(), 10000);
    QVERIFY(*result);
    QVERIFY(request.startsWith("GET /api/version HTTP/1.1\r\nHost: 127.0.0.1:11434\r\n"));
}

void TestNodeTunnel::healthProbeUnixSocketMissing()
{
    // The tunnel is not up yet: no socket file. A failed check, reported from the event loop.
    QTemporaryDir dir;
    auto probe = makeHttpHealthProbe();
    std::optional<bool> result;
    QString detail;
    probe->check(dir.filePath(QStringLiteral("ollama.sock")), 11434, 5000, this,
                 [&](bool ok, const QString &d) {
                     result = ok;
                     detail = d;
                 });
    QVERIFY(!result.has_value());
    QTRY_VERIFY_WITH_TIMEOUT(result.has_value(), 10000);
    QVERIFY(!*result);
    QVERIFY2(detail.contains(QStringLiteral("refused")), qPrintable(detail));
}

QTEST_GUILESS_MAIN(TestNodeTunnel)
#include "tst_nodetunnel.moc"
