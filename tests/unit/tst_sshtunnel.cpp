// SshTunnel against the test bed's real sshd (tests/cluster/up writes bed.env). Label e2e.
// The "head node" is this machine: the forwarded target is a QTcpServer of this test on
// 127.0.0.1, reached through sshd's direct-tcpip.

#include "sshtunnel.h"

#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QProcess>
#include <QRegularExpression>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTcpServer>
#include <QTcpSocket>
#include <QTemporaryDir>
#include <QTest>

#include <csignal>

#include <unistd.h>

using namespace slullama;

namespace {

// Canned answers; records every question.
class TestPrompter final : public SshPrompter
{
public:
    std::optional<bool> hostKeyAnswer; // nullopt: never answer
    QStringList passphrases;           // consumed in order; empty = cancel
    QString kbdAnswer;                 // given to every keyboard-interactive prompt
    QList<SshHostKeyInfo> hostKeys;
    QList<bool> passphraseRetries;
    QList<SshKbdPrompt> kbdPrompts;
    int passwordAsks = 0;

    void acceptHostKey(const SshHostKeyInfo &key, BoolReply reply) override
    {
        hostKeys.append(key);
        if (hostKeyAnswer)
            reply(*hostKeyAnswer);
    }
    void askPassphrase(const QString &, bool retry, TextReply reply) override
    {
        passphraseRetries.append(retry);
        if (passphrases.isEmpty())
            reply(std::nullopt);
        else
            reply(passphrases.takeFirst());
    }
    void askKbdInteractive(const QString &, const QString &, const QList<SshKbdPrompt> &prompts,
                           TextsReply reply) override
    {
        kbdPrompts += prompts;
        QStringList answers;
        for (int i = 0; i < prompts.size(); ++i)
            answers << kbdAnswer;
        reply(answers);
    }
    void askPassword(const QString &, bool, TextReply reply) override
    {
        ++passwordAsks;
        reply(std::nullopt);
    }
};

// The service behind the tunnel: echoes bytes; "GET " requests get an HTTP answer instead.
class RemoteServer final : public QTcpServer
{
public:
    int open = 0;
    int accepted = 0;

    RemoteServer()
    {
        connect(this, &QTcpServer::newConnection, this, [this] {
            while (QTcpSocket *s = nextPendingConnection()) {
                ++open;
                ++accepted;
                connect(s, &QTcpSocket::readyRead, s, [s] {
                    const QByteArray data = s->readAll();
                    if (s->property("http").toBool() || data.startsWith("GET ")) {
                        s->setProperty("http", true);
                        QByteArray head = s->property("head").toByteArray() + data;
                        s->setProperty("head", head);
                        const qsizetype end = head.indexOf("\r\n\r\n");
                        if (end < 0)
                            return;
                        const QByteArray body = "you asked: " + head.left(head.indexOf("\r\n"));
                        s->write("HTTP/1.1 200 OK\r\nContent-Length: " + QByteArray::number(body.size())
                                 + "\r\nConnection: close\r\n\r\n" + body);
                        s->disconnectFromHost();
                        return;
                    }
                    s->write(data);
                });
                connect(s, &QTcpSocket::disconnected, s, [this, s] {
                    --open;
                    s->deleteLater();
                });
            }
        });
    }
};

QMap<QString, QString> readBedEnv(const QString &path)
{
    QMap<QString, QString> env;
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return env;
    static const QRegularExpression line(QStringLiteral("^(?:export\\s+)?([A-Z_0-9]+)=(.*)$"));
    for (const QByteArray &raw : f.readAll().split('\n')) {
        const auto m = line.match(QString::fromUtf8(raw.trimmed()));
        if (!m.hasMatch())
            continue;
        QString value = m.captured(2);
        if (value.size() >= 2 && (value.startsWith(u'\'') || value.startsWith(u'"')) && value.back() == value.front())
            value = value.mid(1, value.size() - 2);
        env.insert(m.captured(1), value);
    }
    return env;
}

QByteArray readFile(const QString &path)
{
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

bool writeFile(const QString &path, const QByteArray &data, QFile::Permissions perms = {})
{
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate) || f.write(data) != data.size())
        return false;
    f.close();
    return perms ? f.setPermissions(perms) : true;
}

// "SHA256:..." of an OpenSSH public key line, as ssh-keygen -l prints it.
QString fingerprintOf(const QByteArray &pubLine)
{
    const QList<QByteArray> parts = pubLine.trimmed().split(' ');
    const QByteArray blob = QByteArray::fromBase64(parts.value(1));
    QByteArray b64 = QCryptographicHash::hash(blob, QCryptographicHash::Sha256).toBase64();
    while (b64.endsWith('='))
        b64.chop(1);
    return QStringLiteral("SHA256:") + QString::fromLatin1(b64);
}

bool runTool(const QString &program, const QStringList &args)
{
    QProcess p;
    p.start(program, args);
    return p.waitForFinished(30000) && p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0;
}

} // namespace

class TestSshTunnel final : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void initTestCase();
    void httpEchoThroughTunnel();
    void twoHundredConcurrentConnections();
    void largeTransferChecksum();
    void sshConfigAlias();
    void proxyCommandFromSshConfig();
    void unknownHostKeyRefused();
    void unknownHostKeyAccepted();
    void changedHostKeyRefused();
    void wrongKeyAuthError();
    void encryptedKeyAsksPassphrase();
    void keyboardInteractive();
    void reconnectsAfterSshdKilled();
    void busyLocalPort();
    void remotePortClosed();
    void stopWhileWaitingForAnswer();

private:
    SshTunnelSettings settings(quint16 sshPort = 0) const;
    bool waitConnected(SshTunnel &tunnel, int ms = 20000);
    QByteArray httpGet(quint16 port, const QByteArray &path);

    QMap<QString, QString> m_bed;
    QTemporaryDir m_dir;
    QString m_key;
    QString m_knownHosts;
    QString m_emptyConfig;
    QByteArray m_hostKeyLine;
    RemoteServer m_remote;
};

void TestSshTunnel::initTestCase()
{
    // The same bed the e2e suites use: SLULLAMA_BED_ENV, else $SLULLAMA_BED_DIR/bed.env.
    const QString bedDir = qEnvironmentVariable("SLULLAMA_BED_DIR", QStringLiteral("/tmp/slullama-bed"));
    const QString envFile = qEnvironmentVariable("SLULLAMA_BED_ENV", bedDir + QStringLiteral("/bed.env"));
    m_bed = readBedEnv(envFile);
    if (m_bed.value(QStringLiteral("BED_SSH_PORT")).isEmpty())
        QSKIP(qPrintable(QStringLiteral("no test bed (%1); run tests/cluster/up").arg(envFile)));
    QVERIFY(m_dir.isValid());
    // Deterministic: no agent, no personal ~/.ssh/config (the alias test writes its own).
    qunsetenv("SSH_AUTH_SOCK");

    // A copy of the bed user's key we can read even as another user (CI runs as root).
    m_key = m_dir.filePath(QStringLiteral("id_bed"));
    const QByteArray key = readFile(m_bed.value(QStringLiteral("BED_SSH_KEY")));
    QVERIFY2(!key.isEmpty(), "cannot read BED_SSH_KEY");
    QVERIFY(writeFile(m_key, key, QFile::ReadOwner | QFile::WriteOwner));

    m_hostKeyLine = readFile(m_bed.value(QStringLiteral("BED_HOST_KEY_PUB"))).trimmed();
    QVERIFY2(!m_hostKeyLine.isEmpty(), "cannot read BED_HOST_KEY_PUB");
    const QList<QByteArray> parts = m_hostKeyLine.split(' ');
    m_knownHosts = m_dir.filePath(QStringLiteral("known_hosts"));
    QByteArray known;
    for (const QString &port : {m_bed.value(QStringLiteral("BED_SSH_PORT")), m_bed.value(QStringLiteral("BED_SSH_KBD_PORT"))}) {
        if (!port.isEmpty())
            known += "[127.0.0.1]:" + port.toUtf8() + ' ' + parts.value(0) + ' ' + parts.value(1) + '\n';
    }
    QVERIFY(writeFile(m_knownHosts, known));
    m_emptyConfig = m_dir.filePath(QStringLiteral("ssh_config"));
    QVERIFY(writeFile(m_emptyConfig, "# empty: keep the user's ~/.ssh/config out of the tests\n"));

    QVERIFY(m_remote.listen(QHostAddress::LocalHost, 0));
}

SshTunnelSettings TestSshTunnel::settings(quint16 sshPort) const
{
    SshTunnelSettings s;
    s.host = m_bed.value(QStringLiteral("BED_USER")) + QStringLiteral("@127.0.0.1");
    s.sshPort = sshPort ? sshPort : m_bed.value(QStringLiteral("BED_SSH_PORT")).toUShort();
    s.identityFile = m_key;
    s.knownHosts = m_knownHosts;
    s.sshConfigFile = m_emptyConfig;
    s.remotePort = m_remote.serverPort();
    s.localPort = 0;
    s.connectTimeoutSeconds = 10;
    return s;
}

bool TestSshTunnel::waitConnected(SshTunnel &tunnel, int ms)
{
    QDeadlineTimer deadline(ms);
    while (tunnel.state() != SshTunnel::State::Connected && tunnel.state() != SshTunnel::State::Failed
           && !deadline.hasExpired())
        QTest::qWait(20);
    if (tunnel.state() != SshTunnel::State::Connected)
        qWarning().noquote() << "tunnel state" << SshTunnel::stateName(tunnel.state()) << tunnel.errorString();
    return tunnel.state() == SshTunnel::State::Connected;
}

QByteArray TestSshTunnel::httpGet(quint16 port, const QByteArray &path)
{
    // The answering server lives on this thread too: wait with the event loop running.
    QTcpSocket s;
    QByteArray response;
    bool closed = false;
    connect(&s, &QTcpSocket::readyRead, this, [&] { response += s.readAll(); });
    connect(&s, &QTcpSocket::disconnected, this, [&] { closed = true; });
    s.connectToHost(QHostAddress::LocalHost, port);
    s.write("GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    QDeadlineTimer deadline(10000);
    while (!closed && s.state() != QAbstractSocket::UnconnectedState && !deadline.hasExpired())
        QTest::qWait(10);
    return response + s.readAll();
}

void TestSshTunnel::httpEchoThroughTunnel()
{
    SshTunnel tunnel;
    QSignalSpy states(&tunnel, &SshTunnel::stateChanged);
    tunnel.start(settings());
    QVERIFY(waitConnected(tunnel));
    QCOMPARE(states.first().first().value<SshTunnel::State>(), SshTunnel::State::Connecting);
    const quint16 port = tunnel.localPort();
    QVERIFY(port != 0);

    const QByteArray response = httpGet(port, "/api/tags");
    QVERIFY2(response.startsWith("HTTP/1.1 200 OK\r\n"), response.constData());
    QVERIFY(response.endsWith("you asked: GET /api/tags HTTP/1.1"));
    QTRY_VERIFY(tunnel.bytesFromRemote() >= quint64(response.size()));

    // Bound on 127.0.0.1 only: another loopback address with the same port is still free.
    QTcpServer other;
    QVERIFY2(other.listen(QHostAddress(QStringLiteral("127.0.0.2")), port), "tunnel listens beyond 127.0.0.1");
}

void TestSshTunnel::twoHundredConcurrentConnections()
{
    SshTunnel tunnel;
    tunnel.start(settings());
    QVERIFY(waitConnected(tunnel));
    constexpr int kCount = 200;
    std::vector<std::unique_ptr<QTcpSocket>> sockets;
    QList<QByteArray> received(kCount);
    for (int i = 0; i < kCount; ++i) {
        auto s = std::make_unique<QTcpSocket>();
        QTcpSocket *raw = s.get();
        connect(raw, &QTcpSocket::readyRead, this, [raw, i, &received] { received[i] += raw->readAll(); });
        raw->connectToHost(QHostAddress::LocalHost, tunnel.localPort());
        raw->write("hello " + QByteArray::number(i) + '\n');
        sockets.push_back(std::move(s));
    }
    const auto allEchoed = [&] {
        for (int i = 0; i < kCount; ++i) {
            if (received[i] != "hello " + QByteArray::number(i) + '\n')
                return false;
        }
        return true;
    };
    QTRY_VERIFY_WITH_TIMEOUT(allEchoed(), 60000);
    // All open at once, each on its own channel.
    QCOMPARE(m_remote.open, kCount);
    QTRY_COMPARE_WITH_TIMEOUT(tunnel.openChannels(), kCount, 5000);
    // A second round on the same connections: channels stay usable.
    for (int i = 0; i < kCount; ++i) {
        received[i].clear();
        sockets[size_t(i)]->write("hello " + QByteArray::number(i) + '\n');
    }
    QTRY_VERIFY_WITH_TIMEOUT(allEchoed(), 60000);
    sockets.clear();
    QTRY_COMPARE_WITH_TIMEOUT(tunnel.openChannels(), 0, 10000);
    QTRY_COMPARE_WITH_TIMEOUT(m_remote.open, 0, 10000);
}

void TestSshTunnel::largeTransferChecksum()
{
    SshTunnel tunnel;
    tunnel.start(settings());
    QVERIFY(waitConnected(tunnel));

    constexpr qint64 kTotal = 200LL * 1024 * 1024;
    constexpr qint64 kChunk = 1024 * 1024;
    QByteArray chunk(kChunk, Qt::Uninitialized);
    quint32 x = 2463534242u; // xorshift: not compressible, not repetitive within a chunk
    QCryptographicHash sent(QCryptographicHash::Sha256);
    QCryptographicHash got(QCryptographicHash::Sha256);
    qint64 written = 0;
    qint64 received = 0;

    QTcpSocket s;
    const auto feed = [&] {
        while (written < kTotal && s.bytesToWrite() < 4 * kChunk) {
            for (qsizetype i = 0; i < chunk.size(); i += 4) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                std::memcpy(chunk.data() + i, &x, 4);
            }
            sent.addData(chunk);
            s.write(chunk);
            written += kChunk;
        }
    };
    connect(&s, &QTcpSocket::bytesWritten, this, feed);
    connect(&s, &QTcpSocket::readyRead, this, [&] {
        const QByteArray data = s.readAll();
        got.addData(data);
        received += data.size();
    });
    QElapsedTimer timer;
    timer.start();
    s.connectToHost(QHostAddress::LocalHost, tunnel.localPort());
    QVERIFY(s.waitForConnected(5000));
    feed();
    QTRY_VERIFY_WITH_TIMEOUT(received >= kTotal, 300000);
    QCOMPARE(received, kTotal);
    QCOMPARE(got.result().toHex(), sent.result().toHex());
    qInfo("200 MB each way through the tunnel in %lld ms", timer.elapsed());
    QVERIFY(tunnel.bytesToRemote() >= quint64(kTotal));
}

void TestSshTunnel::sshConfigAlias()
{
    // HostName, Port, User and IdentityFile all come from the ssh config.
    const QString config = m_dir.filePath(QStringLiteral("alias_config"));
    QVERIFY(writeFile(config, "Host bedalias\n  HostName 127.0.0.1\n  Port " + m_bed.value(QStringLiteral("BED_SSH_PORT")).toUtf8()
                                  + "\n  User " + m_bed.value(QStringLiteral("BED_USER")).toUtf8()
                                  + "\n  IdentityFile " + m_key.toUtf8() + "\n"));
    SshTunnelSettings s = settings();
    s.host = QStringLiteral("bedalias");
    s.sshPort = 0;
    s.identityFile.clear();
    s.sshConfigFile = config;
    SshTunnel tunnel;
    tunnel.start(s);
    QVERIFY(waitConnected(tunnel));
    QVERIFY(httpGet(tunnel.localPort(), "/alias").endsWith("GET /alias HTTP/1.1"));
}

void TestSshTunnel::proxyCommandFromSshConfig()
{
    // libssh 0.10 turns ProxyJump into this kind of ProxyCommand (OpenSSH's `ssh -W`); here the
    // jump is spelled out so the inner ssh uses the test's key and known_hosts, not the user's.
    // The alias's own HostName does not resolve: only the ProxyCommand reaches the sshd.
    const QString ssh = QStandardPaths::findExecutable(QStringLiteral("ssh"));
    if (ssh.isEmpty())
        QSKIP("no OpenSSH ssh for the ProxyCommand");
    const QByteArray port = m_bed.value(QStringLiteral("BED_SSH_PORT")).toUtf8();
    const QByteArray user = m_bed.value(QStringLiteral("BED_USER")).toUtf8();
    const QString config = m_dir.filePath(QStringLiteral("jump_config"));
    QVERIFY(writeFile(config, "Host bedjumped\n  HostName bedjumped.invalid\n  Port 1\n  User " + user
                                  + "\n  IdentityFile " + m_key.toUtf8() + "\n  ProxyCommand " + ssh.toUtf8()
                                  + " -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes"
                                    " -o UserKnownHostsFile="
                                  + m_knownHosts.toUtf8() + " -i " + m_key.toUtf8() + " -p " + port + " -l " + user
                                  + " -W 127.0.0.1:" + port + " 127.0.0.1\n"));
    // The head node's key as known under the alias's name (what the tunnel checks).
    const QList<QByteArray> parts = m_hostKeyLine.split(' ');
    const QString known = m_dir.filePath(QStringLiteral("known_hosts_jump"));
    QVERIFY(writeFile(known, "[bedjumped.invalid]:1 " + parts.value(0) + ' ' + parts.value(1) + '\n'));

    SshTunnelSettings s = settings();
    s.host = QStringLiteral("bedjumped");
    s.sshPort = 0;
    s.identityFile.clear();
    s.sshConfigFile = config;
    s.knownHosts = known;
    SshTunnel tunnel;
    tunnel.start(s);
    QVERIFY(waitConnected(tunnel));
    QVERIFY(httpGet(tunnel.localPort(), "/jumped").endsWith("GET /jumped HTTP/1.1"));
    // More channels over the same ProxyCommand pipe.
    for (int i = 0; i < 5; ++i)
        QVERIFY(httpGet(tunnel.localPort(), "/jumped/" + QByteArray::number(i)).endsWith(" HTTP/1.1"));
}

void TestSshTunnel::unknownHostKeyRefused()
{
    const QString known = m_dir.filePath(QStringLiteral("known_hosts_refuse"));
    QVERIFY(writeFile(known, QByteArray()));
    SshTunnelSettings s = settings();
    s.knownHosts = known;
    TestPrompter prompter;
    prompter.hostKeyAnswer = false;
    SshTunnel tunnel;
    tunnel.setPrompter(&prompter);
    tunnel.start(s);
    QTRY_COMPARE_WITH_TIMEOUT(tunnel.state(), SshTunnel::State::Failed, 20000);
    QCOMPARE(prompter.hostKeys.size(), 1);
    QCOMPARE(prompter.hostKeys.first().fingerprint, fingerprintOf(m_hostKeyLine));
    QCOMPARE(prompter.hostKeys.first().host, QStringLiteral("[127.0.0.1]:") + m_bed.value(QStringLiteral("BED_SSH_PORT")));
    QVERIFY2(tunnel.errorString().contains(QLatin1String("not accepted")), qPrintable(tunnel.errorString()));
    QVERIFY(readFile(known).isEmpty());

    // No prompter at all: refused too, never trusted silently.
    SshTunnel silent;
    silent.start(s);
    QTRY_COMPARE_WITH_TIMEOUT(silent.state(), SshTunnel::State::Failed, 20000);
    QVERIFY(readFile(known).isEmpty());
}

void TestSshTunnel::unknownHostKeyAccepted()
{
    const QString known = m_dir.filePath(QStringLiteral("sub/known_hosts_accept")); // dir created
    SshTunnelSettings s = settings();
    s.knownHosts = known;
    {
        TestPrompter prompter;
        prompter.hostKeyAnswer = true;
        SshTunnel tunnel;
        tunnel.setPrompter(&prompter);
        tunnel.start(s);
        QVERIFY(waitConnected(tunnel));
        QCOMPARE(prompter.hostKeys.size(), 1);
        QCOMPARE(prompter.hostKeys.first().knownHostsFile, known);
        QVERIFY(readFile(known).contains(m_hostKeyLine.split(' ').value(1)));
    }
    // Known now: no question the second time.
    TestPrompter prompter;
    SshTunnel tunnel;
    tunnel.setPrompter(&prompter);
    tunnel.start(s);
    QVERIFY(waitConnected(tunnel));
    QVERIFY(prompter.hostKeys.isEmpty());
}

void TestSshTunnel::changedHostKeyRefused()
{
    const QString fakeKey = m_dir.filePath(QStringLiteral("fake_host_key"));
    const QString type = QString::fromUtf8(m_hostKeyLine.split(' ').value(0)).remove(QStringLiteral("ssh-"));
    QVERIFY(runTool(QStringLiteral("ssh-keygen"), {QStringLiteral("-q"), QStringLiteral("-t"), type,
                                                   QStringLiteral("-N"), QString(), QStringLiteral("-f"), fakeKey}));
    const QByteArray fake = readFile(fakeKey + QStringLiteral(".pub")).trimmed().split(' ').mid(0, 2).join(' ');
    const QString known = m_dir.filePath(QStringLiteral("known_hosts_changed"));
    QVERIFY(writeFile(known, "# team hosts\nexample.org " + fake + "\n[127.0.0.1]:"
                                 + m_bed.value(QStringLiteral("BED_SSH_PORT")).toUtf8() + ' ' + fake + '\n'));
    SshTunnelSettings s = settings();
    s.knownHosts = known;
    TestPrompter prompter;
    prompter.hostKeyAnswer = true; // must not even be asked
    SshTunnel tunnel;
    tunnel.setPrompter(&prompter);
    tunnel.start(s);
    QTRY_COMPARE_WITH_TIMEOUT(tunnel.state(), SshTunnel::State::Failed, 20000);
    const QString error = tunnel.errorString();
    QVERIFY2(error.contains(QLatin1String("CHANGED")), qPrintable(error));
    QVERIFY2(error.contains(QLatin1String("man-in-the-middle")), qPrintable(error));
    QVERIFY2(error.contains(known + QStringLiteral(" line 3")), qPrintable(error));
    QVERIFY2(error.contains(fingerprintOf(m_hostKeyLine)), qPrintable(error));
    QVERIFY(prompter.hostKeys.isEmpty());
    QVERIFY(!readFile(known).contains(m_hostKeyLine.split(' ').value(1)));
}

void TestSshTunnel::wrongKeyAuthError()
{
    const QString wrong = m_dir.filePath(QStringLiteral("wrong_key"));
    QVERIFY(runTool(QStringLiteral("ssh-keygen"), {QStringLiteral("-q"), QStringLiteral("-t"), QStringLiteral("ed25519"),
                                                   QStringLiteral("-N"), QString(), QStringLiteral("-f"), wrong}));
    SshTunnelSettings s = settings();
    s.identityFile = wrong;
    TestPrompter prompter;
    SshTunnel tunnel;
    tunnel.setPrompter(&prompter);
    QSignalSpy errors(&tunnel, &SshTunnel::errorOccurred);
    tunnel.start(s);
    QTRY_COMPARE_WITH_TIMEOUT(tunnel.state(), SshTunnel::State::Failed, 20000);
    const QString error = tunnel.errorString();
    QVERIFY2(error.startsWith(QStringLiteral("authentication failed for ") + m_bed.value(QStringLiteral("BED_USER"))), qPrintable(error));
    QVERIFY2(error.contains(wrong + QStringLiteral(" (refused by the server)")), qPrintable(error));
    QCOMPARE(errors.size(), 1);
    QVERIFY(prompter.passphraseRetries.isEmpty()); // an unencrypted key needs no question
}

void TestSshTunnel::encryptedKeyAsksPassphrase()
{
    const QString encrypted = m_dir.filePath(QStringLiteral("id_bed_encrypted"));
    QVERIFY(QFile::copy(m_key, encrypted));
    QFile::setPermissions(encrypted, QFile::ReadOwner | QFile::WriteOwner);
    QVERIFY(runTool(QStringLiteral("ssh-keygen"), {QStringLiteral("-q"), QStringLiteral("-p"), QStringLiteral("-N"),
                                                   QStringLiteral("s3cret phrase"), QStringLiteral("-f"), encrypted}));
    SshTunnelSettings s = settings();
    s.identityFile = encrypted;
    TestPrompter prompter;
    prompter.passphrases = {QStringLiteral("wrong"), QStringLiteral("s3cret phrase")};
    SshTunnel tunnel;
    tunnel.setPrompter(&prompter);
    tunnel.start(s);
    QVERIFY(waitConnected(tunnel));
    QCOMPARE(prompter.passphraseRetries, (QList<bool>{false, true}));
    QVERIFY(httpGet(tunnel.localPort(), "/key").endsWith("GET /key HTTP/1.1"));
}

void TestSshTunnel::keyboardInteractive()
{
    const quint16 kbdPort = m_bed.value(QStringLiteral("BED_SSH_KBD_PORT")).toUShort();
    if (!kbdPort)
        QSKIP("the test bed has no keyboard-interactive sshd");
    SshTunnelSettings s = settings(kbdPort);
    s.identityFile = m_dir.filePath(QStringLiteral("no_such_key")); // force past publickey
    TestPrompter prompter;
    prompter.kbdAnswer = m_bed.value(QStringLiteral("BED_USER_PASSWORD"));
    SshTunnel tunnel;
    tunnel.setPrompter(&prompter);
    tunnel.start(s);
    QVERIFY(waitConnected(tunnel));
    QVERIFY(!prompter.kbdPrompts.isEmpty());
    // PAM's own wording reaches the prompter untouched, and it is a secret.
    QVERIFY2(prompter.kbdPrompts.first().text.contains(QLatin1String("assword")),
             qPrintable(prompter.kbdPrompts.first().text));
    QVERIFY(!prompter.kbdPrompts.first().echo);
    QCOMPARE(prompter.passwordAsks, 0);
    QVERIFY(httpGet(tunnel.localPort(), "/kbd").endsWith("GET /kbd HTTP/1.1"));

    // A wrong code is refused with a clear message.
    TestPrompter wrong;
    wrong.kbdAnswer = QStringLiteral("not-the-password");
    SshTunnel refused;
    refused.setPrompter(&wrong);
    refused.start(s);
    QTRY_COMPARE_WITH_TIMEOUT(refused.state(), SshTunnel::State::Failed, 60000);
    QVERIFY2(refused.errorString().contains(QLatin1String("keyboard-interactive (refused)")),
             qPrintable(refused.errorString()));
}

void TestSshTunnel::reconnectsAfterSshdKilled()
{
    const QString sshPort = m_bed.value(QStringLiteral("BED_SSH_PORT"));
    SshTunnel tunnel;
    SshTunnelSettings s = settings();
    s.maxBackoffSeconds = 2;
    tunnel.start(s);
    QVERIFY(waitConnected(tunnel));
    QVERIFY(httpGet(tunnel.localPort(), "/before").endsWith("GET /before HTTP/1.1"));

    // Our end of the ssh connection, then the sshd processes holding the other end.
    QProcess ss;
    ss.start(QStringLiteral("ss"), {QStringLiteral("-Htnp"), QStringLiteral("state"), QStringLiteral("established")});
    if (!ss.waitForFinished(10000) || ss.exitCode() != 0)
        QSKIP("ss (iproute2) is not available");
    const QString table = QString::fromUtf8(ss.readAllStandardOutput());
    const QString me = QStringLiteral("pid=%1,").arg(::getpid());
    QString clientPort;
    static const QRegularExpression row(QStringLiteral("(\\S+):(\\d+)\\s+(\\S+):(\\d+)\\s+(.*)$"));
    for (const QString &line : table.split(u'\n')) {
        const auto m = row.match(line);
        if (m.hasMatch() && m.captured(4) == sshPort && m.captured(5).contains(me))
            clientPort = m.captured(2);
    }
    QVERIFY2(!clientPort.isEmpty(), "cannot find the tunnel's ssh connection in ss");
    QList<int> pids;
    static const QRegularExpression pidRe(QStringLiteral("pid=(\\d+)"));
    for (const QString &line : table.split(u'\n')) {
        const auto m = row.match(line);
        if (m.hasMatch() && m.captured(2) == sshPort && m.captured(4) == clientPort) {
            for (auto it = pidRe.globalMatch(m.captured(5)); it.hasNext();)
                pids << it.next().captured(1).toInt();
        }
    }
    if (pids.isEmpty())
        QSKIP("cannot see sshd's processes (not root?)");
    QVERIFY(!pids.contains(::getpid()));

    QSignalSpy states(&tunnel, &SshTunnel::stateChanged);
    int killed = 0;
    for (int pid : pids)
        killed += ::kill(pid, SIGKILL) == 0 ? 1 : 0; // the rest may already be gone with the first
    QVERIFY(killed > 0);
    QTRY_VERIFY_WITH_TIMEOUT(states.contains(QVariantList{QVariant::fromValue(SshTunnel::State::Reconnecting)}), 20000);
    QVERIFY2(tunnel.errorString().contains(QLatin1String("reconnecting in 1 s")), qPrintable(tunnel.errorString()));
    QVERIFY(waitConnected(tunnel, 30000));
    QVERIFY(httpGet(tunnel.localPort(), "/after").endsWith("GET /after HTTP/1.1"));
}

void TestSshTunnel::busyLocalPort()
{
    QTcpServer ollama;
    QVERIFY(ollama.listen(QHostAddress::LocalHost, 0));
    SshTunnelSettings s = settings();
    s.localPort = ollama.serverPort();
    SshTunnel tunnel;
    QSignalSpy errors(&tunnel, &SshTunnel::errorOccurred);
    tunnel.start(s);
    QTRY_COMPARE_WITH_TIMEOUT(tunnel.state(), SshTunnel::State::Failed, 10000);
    QCOMPARE(tunnel.errorString(), QStringLiteral("local port %1 is in use (a local Ollama?) — set [client] "
                                                  "local_port or --local-port")
                                       .arg(ollama.serverPort()));
    QCOMPARE(errors.size(), 1);
}

void TestSshTunnel::remotePortClosed()
{
    // Port 1 (tcpmux): only root may listen there, so unlike a just-freed ephemeral port it
    // cannot be taken by whatever else runs on this machine meanwhile.
    QTcpSocket probe;
    probe.connectToHost(QHostAddress::LocalHost, 1);
    if (probe.waitForConnected(2000))
        QSKIP("something listens on 127.0.0.1:1");
    SshTunnelSettings s = settings();
    s.remotePort = 1;
    SshTunnel tunnel;
    QSignalSpy errors(&tunnel, &SshTunnel::errorOccurred);
    tunnel.start(s);
    QVERIFY(waitConnected(tunnel));
    QTcpSocket client;
    bool closed = false;
    connect(&client, &QTcpSocket::disconnected, this, [&] { closed = true; });
    client.connectToHost(QHostAddress::LocalHost, tunnel.localPort());
    QTRY_VERIFY_WITH_TIMEOUT(closed, 10000); // the local client is not left hanging
    QTRY_VERIFY_WITH_TIMEOUT(!errors.isEmpty(), 5000);
    for (const auto &e : errors)
        qInfo() << e;
    QCOMPARE(errors.size(), 1);
    QVERIFY2(errors.first().first().toString().contains(QStringLiteral("could not connect to 127.0.0.1:%1").arg(s.remotePort)),
             qPrintable(errors.first().first().toString()));
    QCOMPARE(tunnel.state(), SshTunnel::State::Connected); // one refused request does not drop the tunnel
    QCOMPARE(tunnel.openChannels(), 0);
}

void TestSshTunnel::stopWhileWaitingForAnswer()
{
    const QString known = m_dir.filePath(QStringLiteral("known_hosts_pending"));
    SshTunnelSettings s = settings();
    s.knownHosts = known;
    TestPrompter prompter; // never answers
    auto tunnel = std::make_unique<SshTunnel>();
    tunnel->setPrompter(&prompter);
    tunnel->start(s);
    QTRY_COMPARE_WITH_TIMEOUT(prompter.hostKeys.size(), 1, 20000);
    tunnel->stop();
    QCOMPARE(tunnel->state(), SshTunnel::State::Disconnected);
    tunnel.reset(); // joins the worker: must not hang on the unanswered question
    QVERIFY(!QFile::exists(known) || readFile(known).isEmpty());
}

QTEST_GUILESS_MAIN(TestSshTunnel)
#include "tst_sshtunnel.moc"
