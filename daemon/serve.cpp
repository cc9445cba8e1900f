#include "serve.h"

#include "auth.h"
#include "clock.h"
#include "gateway.h"
#include "lifecycle.h"
#include "logging.h"
#include "processrunner.h"
#include "proxyserver.h"
#include "unixsignals.h"

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QTextStream>
#include <QTimer>

#include <csignal>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

namespace slullama {

namespace {

// Every stream holds two descriptors; the default soft limit of 1024 would cap the daemon at
// about 500 streams, far below server.max_connections.
void raiseFileLimit()
{
    rlimit limit {};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
            qCWarning(lcProxy) << "cannot raise the open file limit:" << strerror(errno);
    }
}

void logSettings(const Config &config)
{
    const ServerConfig &s = config.server;
    qCInfo(lcProxy).noquote() << "slullama-daemon" << SLULLAMA_VERSION << "config:"
                              << (config.sourcePath.isEmpty() ? QStringLiteral("(defaults)")
                                                              : config.sourcePath);
    qCInfo(lcProxy).noquote() << "listening on" << s.bind + u':' + QString::number(s.port)
                              << "| token set:" << (s.token.isEmpty() ? "no" : "yes")
                              << "| max connections" << s.maxConnections << "| max body"
                              << s.maxBodyBytes << "bytes | header timeout" << s.headerTimeout
                              << "s | drain timeout" << s.drainTimeout << "s";
    qCInfo(lcProxy).noquote() << "slurm: partition" << config.slurm.partition << "| gres"
                              << config.slurm.gres << "| time" << config.slurm.time
                              << "| idle timeout" << config.slurm.idleTimeoutMinutes
                              << "min | keep-alive" << keepAliveName(config.slurm.keepAlive)
                              << "| boot timeout" << s.bootTimeout << "s | log dir" << s.logDir;
    if (s.token.isEmpty() && !isLoopbackBind(s.bind))
        qCWarning(lcProxy).noquote() << "no token is set and the daemon listens on" << s.bind
                                     << "- anyone who can reach port" << s.port
                                     << "can use it; set [server] token (or bind = \"127.0.0.1\")";
}

// log_dir holds the job script that sbatch reads and the job logs Slurm writes as this user.
// Anyone else who can write there (the default /tmp/slullama can be made by anyone first) could
// swap the script before sbatch reads it — their code on the GPU node as us — or plant symlinks
// where a job log goes. Made now, so it cannot be made by someone else before the first boot.
// A directory we cannot write at all is left to the boot, which reports it per request.
Result<Ok> checkLogDir(const QString &logDir)
{
    QDir().mkpath(logDir);
    const QByteArray path = QFile::encodeName(logDir);
    struct stat st = {};
    if (::stat(path.constData(), &st) != 0 || !S_ISDIR(st.st_mode))
        return Ok {};
    const bool othersWrite = (st.st_mode & S_IWOTH) != 0;
    const bool foreign = st.st_uid != ::geteuid() && ::access(path.constData(), W_OK) == 0;
    if (othersWrite || foreign)
        return makeError(QStringLiteral("log_dir %1 is %2: other users could replace the job "
                                        "script before sbatch reads it. Set [server] log_dir to "
                                        "a directory of your own that others cannot write")
                             .arg(logDir,
                                  othersWrite ? QStringLiteral("writable by every user")
                                              : QStringLiteral("owned by uid %1").arg(st.st_uid)));
    if (st.st_mode & S_IWGRP)
        qCWarning(lcProxy).noquote() << "log_dir" << logDir
                                     << "is group-writable: every member of its group could "
                                        "change the job script before sbatch reads it";
    return Ok {};
}

} // namespace

int runServe(const Config &config)
{
    // Writes to a vanished peer must be an error on that socket, not the end of the daemon.
    ::signal(SIGPIPE, SIG_IGN);
    // A token given as SLULLAMA_TOKEN is in `config` now. No child may inherit it: sbatch hands
    // its whole environment to the job (Slurm's state files, the node's /proc), ssh may send it.
    qunsetenv("SLULLAMA_TOKEN");
    raiseFileLimit();
    logSettings(config);
    if (const auto logDir = checkLogDir(config.server.logDir); !logDir) {
        QTextStream(stderr) << "slullama: " << logDir.error() << "\n";
        return 1;
    }

    const std::unique_ptr<ProcessRunner> runner = makeQProcessRunner();
    const std::unique_ptr<Clock> clock = makeSystemClock();
    Lifecycle lifecycle(config, runner.get(), clock.get());
    // Before the server: connections report to it until they are destroyed.
    Gateway gateway(GatewaySettings::fromConfig(config), &lifecycle, clock.get());
    gateway.attach(&lifecycle);
    gateway.start();

    ProxyServer server(ProxySettings::fromConfig(config.server), &lifecycle);
    server.setGateway(&gateway);
    if (const auto listening = server.listen(); !listening) {
        QTextStream(stderr) << "slullama: " << listening.error() << "\n";
        return 1;
    }

    UnixSignals unixSignals;
    if (!unixSignals.install({SIGTERM, SIGINT, SIGHUP}))
        qCWarning(lcProxy) << "cannot install signal handlers; SIGTERM will not drain streams";

    QTimer drainTimer;
    drainTimer.setSingleShot(true);
    bool stopping = false;
    bool shuttingDown = false;
    auto shutDown = [&] {
        if (shuttingDown)
            return;
        shuttingDown = true;
        drainTimer.stop();
        if (server.connectionCount() > 0)
            qCInfo(lcProxy) << "drain timeout: closing" << server.connectionCount()
                            << "remaining connections";
        server.abortAll();
        lifecycle.shutdown();
    };
    QObject::connect(&unixSignals, &UnixSignals::received, &server, [&](int number) {
        if (number == SIGHUP) {
            qCInfo(lcProxy) << "SIGHUP: reloading the keys file";
            gateway.reloadKeys();
            return;
        }
        if (stopping) {
            qCInfo(lcProxy) << "signal" << number << "again: not waiting for streams";
            shutDown();
            return;
        }
        stopping = true;
        qCInfo(lcProxy) << "signal" << number << "- no new connections; waiting up to"
                        << config.server.drainTimeout << "s for" << server.activeExchangeCount()
                        << "requests in flight";
        drainTimer.start(int(std::max(0.0, config.server.drainTimeout) * 1000));
        // Requests still waiting for a boot would hold the drain for its whole timeout and then
        // be cut anyway: they get 503 now, and their connections close; streams keep draining.
        lifecycle.beginDrain();
        server.stopAccepting();
    });
    QObject::connect(&server, &ProxyServer::drained, &server, shutDown);
    QObject::connect(&drainTimer, &QTimer::timeout, &server, shutDown);
    QObject::connect(&lifecycle, &Lifecycle::shutdownFinished, &server, [&gateway] {
        gateway.flush();
        qCInfo(lcProxy) << "stopped";
        QCoreApplication::exit(0);
    });

    lifecycle.start();
    return QCoreApplication::exec();
}

} // namespace slullama
