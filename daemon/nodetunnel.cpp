#include "nodetunnel.h"

#include "logging.h"
#include "processrunner.h"

#include <QFileInfo>
#include <QHostAddress>
#include <QPointer>
#include <QProcess>
#include <QRegularExpression>
#include <QTcpServer>
#include <QTemporaryDir>
#include <QTimer>

#ifdef Q_OS_LINUX
#include <csignal>
#include <sys/prctl.h>
#endif

namespace slullama {

quint16 pickFreeLoopbackPort()
{
    QTcpServer server;
    if (!server.listen(QHostAddress::LocalHost, 0))
        return 0;
    const quint16 port = server.serverPort();
    server.close();
    return port;
}

QString tunnelSocketParent()
{
    const QString runtime = qEnvironmentVariable("XDG_RUNTIME_DIR");
    const QFileInfo info(runtime);
    if (!runtime.isEmpty() && info.isAbsolute() && info.isDir() && info.isWritable())
        return runtime;
    return QStringLiteral("/tmp");
}

namespace {

QStringList tunnelArguments(const SshConfig &ssh, const QString &node, const QString &forward,
                            bool unixSocket)
{
    // With `-N` there is no session, so neither ssh nor sshd marks the connection interactive
    // and sshd leaves Nagle's algorithm on: a small NDJSON chunk then waits for the head's
    // delayed ACK, up to 40 ms per chunk at p99. A pty session (-tt) is interactive, so both
    // ends set TCP_NODELAY; its only command is a sleeper that never reads the pty, so stdin
    // can stay /dev/null. Killing ssh closes the connection, sshd hangs up the pty and the
    // sleeper dies of SIGHUP. `interactive = false` keeps `-N` for nodes that refuse ptys or
    // commands. `-e none`: no escape sequences on a session nobody types into.
    QStringList args;
    if (ssh.interactive)
        args << QStringLiteral("-tt") << QStringLiteral("-e") << QStringLiteral("none");
    else
        args << QStringLiteral("-N");
    args << QStringLiteral("-L") << forward << QStringLiteral("-p") << QString::number(ssh.port);
    if (!ssh.identityFile.isEmpty())
        args << QStringLiteral("-i") << ssh.identityFile;
    args << QStringLiteral("-o") << QStringLiteral("BatchMode=yes") //
         << QStringLiteral("-o") << QStringLiteral("ExitOnForwardFailure=yes") //
         << QStringLiteral("-o") << QStringLiteral("ServerAliveInterval=15") //
         << QStringLiteral("-o") << QStringLiteral("ServerAliveCountMax=3");
    if (unixSocket)
        args << QStringLiteral("-o") << QStringLiteral("StreamLocalBindUnlink=yes");
    for (const QString &option : ssh.options)
        args << QStringLiteral("-o") << option;
    args << (ssh.user.isEmpty() ? node : ssh.user + QLatin1Char('@') + node);
    // The remote login shell runs this; `exec` leaves no shell behind to survive the hang-up.
    if (ssh.interactive)
        args << QStringLiteral("exec sleep 2147483647");
    return args;
}

} // namespace

QStringList sshTunnelArguments(const SshConfig &ssh, const QString &node, quint16 localPort,
                               quint16 remotePort)
{
    // Bind the local end to loopback explicitly (still, every head-node user can connect).
    return tunnelArguments(
        ssh, node, QStringLiteral("127.0.0.1:%1:127.0.0.1:%2").arg(localPort).arg(remotePort),
        false);
}

QStringList sshTunnelArguments(const SshConfig &ssh, const QString &node,
                               const QString &localSocket, quint16 remotePort)
{
    return tunnelArguments(ssh, node, localSocket + QStringLiteral(":127.0.0.1:%1").arg(remotePort),
                           true);
}

namespace {

constexpr qsizetype kStderrKeep = 4096;
constexpr int kKillAfterMs = 2000;

class SshNodeTunnel final : public QObject, public NodeTunnel
{
public:
    explicit SshNodeTunnel(const SshConfig &ssh) : m_ssh(ssh) { }
    ~SshNodeTunnel() override { close(); }

    quint16 open(const QString &node, quint16 remotePort, ExitCallback onExit,
                 QString *error) override
    {
        close();
        // A node name comes from Slurm; refuse anything ssh could read as an option.
        static const QRegularExpression hostPattern(
            QStringLiteral("^[A-Za-z0-9_][A-Za-z0-9._-]*$"));
        if (!hostPattern.match(node).hasMatch()) {
            if (error)
                *error = QStringLiteral("refusing to ssh to node name \"%1\"").arg(node);
            return 0;
        }
        quint16 localPort = 0;
        QStringList args;
        if (m_ssh.forwardSocket) {
            // A fresh 0700 directory per tunnel: only our user can connect, and a socket left
            // by an earlier ssh can never be mistaken for this one.
            auto dir = std::make_unique<QTemporaryDir>(tunnelSocketParent()
                                                       + QStringLiteral("/slullama-tunnel-XXXXXX"));
            if (!dir->isValid()) {
                if (error)
                    *error = QStringLiteral("cannot create a private directory for the tunnel "
                                            "socket: %1")
                                 .arg(dir->errorString());
                return 0;
            }
            m_socketDir = std::move(dir);
            m_localSocket = m_socketDir->filePath(QStringLiteral("ollama.sock"));
            localPort = remotePort;
            args = sshTunnelArguments(m_ssh, node, m_localSocket, remotePort);
        } else {
            localPort = pickFreeLoopbackPort();
            if (localPort == 0) {
                if (error)
                    *error = QStringLiteral("no free local port on 127.0.0.1 for the node tunnel");
                return 0;
            }
            args = sshTunnelArguments(m_ssh, node, localPort, remotePort);
        }
        auto *process = new QProcess(this);
        process->setProgram(m_ssh.program);
        process->setArguments(args);
        process->setStandardInputFile(QProcess::nullDevice());
        // The pty's output (nothing, or a login message) must not pile up unread.
        process->setStandardOutputFile(QProcess::nullDevice());
#ifdef Q_OS_LINUX
        // A daemon killed with SIGKILL must not leave its tunnels behind.
        process->setChildProcessModifier([]() { ::prctl(PR_SET_PDEATHSIG, SIGTERM); });
#endif
        auto stderrTail = std::make_shared<QByteArray>();
        QObject::connect(process, &QProcess::readyReadStandardError, process,
                         [process, stderrTail]() {
                             stderrTail->append(process->readAllStandardError());
                             if (stderrTail->size() > kStderrKeep)
                                 stderrTail->remove(0, stderrTail->size() - kStderrKeep);
                         });
        QObject::connect(
            process, &QProcess::finished, this,
            [this, process, stderrTail, onExit](int code, QProcess::ExitStatus status) {
                stderrTail->append(process->readAllStandardError());
                const QString text = QString::fromLocal8Bit(*stderrTail).trimmed();
                const QString reason = (status == QProcess::CrashExit
                                            ? QStringLiteral("ssh was killed")
                                            : QStringLiteral("ssh exited with code %1").arg(code))
                    + (text.isEmpty() ? QString() : QStringLiteral(": ") + text);
                ended(process, reason, onExit);
            });
        QObject::connect(process, &QProcess::errorOccurred, this,
                         [this, process, onExit](QProcess::ProcessError e) {
                             if (e != QProcess::FailedToStart)
                                 return;
                             ended(process,
                                   QStringLiteral("%1 could not be started (%2)")
                                       .arg(m_ssh.program, process->errorString()),
                                   onExit);
                         });
        qCInfo(lcNodeTunnel).noquote() << "starting" << describeCommand(m_ssh.program, args);
        m_process = process;
        m_localPort = localPort;
        process->start(QIODevice::ReadOnly);
        return localPort;
    }

    void close() override
    {
        QProcess *process = m_process;
        m_process = nullptr;
        m_localPort = 0;
        m_localSocket.clear();
        m_socketDir.reset();
        if (!process)
            return;
        QObject::disconnect(process, nullptr, this, nullptr);
        if (process->state() == QProcess::NotRunning) {
            process->deleteLater();
            return;
        }
        qCDebug(lcNodeTunnel) << "closing tunnel";
        // SIGTERM, then SIGKILL if ssh lingers; never a blocking wait.
        QObject::connect(process, &QProcess::finished, process, &QObject::deleteLater);
        process->terminate();
        QTimer::singleShot(kKillAfterMs, process, [process]() { process->kill(); });
    }

    bool isOpen() const override
    {
        return m_process != nullptr;
    }
    quint16 localPort() const override
    {
        return m_localPort;
    }
    QString localSocket() const override
    {
        return m_localSocket;
    }

private:
    void ended(QProcess *process, const QString &reason, const ExitCallback &onExit)
    {
        if (process != m_process)
            return; // an old tunnel we already replaced or closed
        m_process = nullptr;
        m_localPort = 0;
        m_localSocket.clear();
        m_socketDir.reset();
        process->deleteLater();
        qCWarning(lcNodeTunnel).noquote() << "tunnel ended:" << reason;
        if (onExit)
            onExit(reason);
    }

    SshConfig m_ssh;
    QPointer<QProcess> m_process;
    quint16 m_localPort = 0;
    QString m_localSocket;
    std::unique_ptr<QTemporaryDir> m_socketDir; // removed (with the socket) on close
};

} // namespace

std::unique_ptr<NodeTunnel> makeSshNodeTunnel(const SshConfig &ssh)
{
    return std::make_unique<SshNodeTunnel>(ssh);
}

} // namespace slullama
