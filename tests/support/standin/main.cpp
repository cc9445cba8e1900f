// standin-ollama: stands in for the `ollama` binary in tests and benchmarks. As a command it
// behaves like ollama (serve, pull, list, --version, OLLAMA_HOST); see README.md beside it.

#include "server.h"

#include <QCoreApplication>
#include <QDateTime>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QNetworkAccessManager>
#include <QNetworkReply>
#include <QTimer>

#include <csignal>
#include <cstdio>
#include <sys/resource.h>

using namespace slullama::standin;

namespace {

struct HostPort
{
    QString host;  // empty: all interfaces
    quint16 port = 11434;
    bool ok = true;
};

// OLLAMA_HOST as ollama's envconfig.Host() reads it: "host:port", "http://host:port", ":port",
// "host"; a scheme without a port means that scheme's port; a bad port falls back to the default.
HostPort ollamaHost()
{
    QString s = qEnvironmentVariable("OLLAMA_HOST").trimmed();
    HostPort hp;
    QString defaultPort = QStringLiteral("11434");
    const qsizetype schemeEnd = s.indexOf(QLatin1String("://"));
    if (schemeEnd >= 0) {
        const QString scheme = s.left(schemeEnd);
        if (scheme == QLatin1String("http"))
            defaultPort = QStringLiteral("80");
        else if (scheme == QLatin1String("https"))
            defaultPort = QStringLiteral("443");
        s = s.mid(schemeEnd + 3);
    }
    s = s.section(u'/', 0, 0);
    QString host;
    QString port;
    const qsizetype colon = s.lastIndexOf(u':');
    const bool bracketed = s.startsWith(u'[');
    if (colon >= 0 && (!bracketed || s.lastIndexOf(u']') < colon)
        && (bracketed || s.indexOf(u':') == colon)) {
        host = s.left(colon);
        port = s.mid(colon + 1);
    } else {
        host = s.isEmpty() ? QStringLiteral("127.0.0.1") : s;
        port = defaultPort;
    }
    if (host.startsWith(u'[') && host.endsWith(u']'))
        host = host.mid(1, host.size() - 2);
    bool ok = false;
    const int p = port.toInt(&ok);
    if (!ok || p < 0 || p > 65535) {
        hp.host = QStringLiteral("127.0.0.1");
        hp.port = defaultPort.toUShort();
        return hp;
    }
    hp.host = host;
    hp.port = quint16(p);
    return hp;
}

QHostAddress bindAddress(const QString &host)
{
    if (host.isEmpty())
        return QHostAddress::Any;
    if (host == QLatin1String("localhost"))
        return QHostAddress::LocalHost;
    return QHostAddress(host);
}

// Where a client command connects: a wildcard bind address means this machine.
QString clientBase()
{
    const HostPort hp = ollamaHost();
    QString host = hp.host;
    if (host.isEmpty() || host == QLatin1String("0.0.0.0") || host == QLatin1String("::"))
        host = QStringLiteral("127.0.0.1");
    if (host.contains(u':'))
        host = u'[' + host + u']';
    return QStringLiteral("http://%1:%2").arg(host).arg(hp.port);
}

void logLine(const QString &msg)
{
    const QByteArray line = "time=" + QDateTime::currentDateTime().toString(Qt::ISODateWithMs).toUtf8()
                            + " level=INFO source=standin msg=\"" + msg.toUtf8() + "\"\n";
    std::fputs(line.constData(), stderr);
    std::fflush(stderr);
}

void raiseFileLimit()
{
    // 2000 concurrent streams need more descriptors than the usual soft limit of 1024.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int serve(QCoreApplication &app)
{
    std::signal(SIGPIPE, SIG_IGN);
    raiseFileLimit();
    const HostPort hp = ollamaHost();
    const QHostAddress address = bindAddress(hp.host);
    if (address.isNull()) {
        std::fprintf(stderr, "Error: listen tcp %s:%u: cannot resolve host (the stand-in takes "
                             "IP addresses or localhost)\n",
                     qPrintable(hp.host), hp.port);
        return 1;
    }
    const Settings settings = Settings::fromEnvironment();
    auto *server = new Server(settings, &app);
    auto start = [server, address, port = hp.port] {
        if (!server->listen(address, port)) {
            std::fprintf(stderr, "Error: listen tcp %s:%u: %s\n",
                         qPrintable(address.toString()), port, qPrintable(server->errorString()));
            QCoreApplication::exit(1);
            return;
        }
        QString shown = server->serverAddress().toString();
        if (server->serverAddress().protocol() == QAbstractSocket::IPv6Protocol)
            shown = u'[' + shown + u']';
        // Tests and scripts wait for this line and read the port from it (OLLAMA_HOST=...:0).
        logLine(QStringLiteral("Listening on %1:%2 (version %3)")
                    .arg(shown)
                    .arg(server->serverPort())
                    .arg(QLatin1String(kVersion)));
    };
    if (settings.startupDelayMs > 0) {
        logLine(QStringLiteral("stand-in cold start: listening in %1 ms").arg(settings.startupDelayMs));
        QTimer::singleShot(settings.startupDelayMs, &app, start);
    } else {
        // From the event loop: QCoreApplication::exit(1) on a taken port is ignored before exec(),
        // and ollama exits when it cannot listen.
        QTimer::singleShot(0, &app, start);
    }
    return app.exec();
}

QString humanSize(qint64 bytes)
{
    if (bytes >= 1'000'000'000)
        return QString::number(bytes / 1e9, 'f', 1) + QStringLiteral(" GB");
    if (bytes >= 1'000'000)
        return QString::number(qRound64(bytes / 1e6)) + QStringLiteral(" MB");
    return QString::number(qRound64(bytes / 1e3)) + QStringLiteral(" KB");
}

void printConnectError()
{
    std::fputs("Error: could not connect to ollama app, is it running?\n", stderr);
}

int pull(QCoreApplication &app, const QString &name)
{
    QNetworkAccessManager nam;
    QNetworkRequest request(QUrl(clientBase() + QStringLiteral("/api/pull")));
    request.setHeader(QNetworkRequest::ContentTypeHeader, QStringLiteral("application/json"));
    const QByteArray body =
        QJsonDocument(QJsonObject{{QStringLiteral("model"), name}}).toJson(QJsonDocument::Compact);
    QNetworkReply *reply = nam.post(request, body);
    QByteArray pending;
    int rc = 1;
    bool success = false;
    QString error;
    auto handleLines = [&] {
        qsizetype nl;
        while ((nl = pending.indexOf('\n')) >= 0) {
            const QJsonObject o = QJsonDocument::fromJson(pending.left(nl)).object();
            pending.remove(0, nl + 1);
            if (o.contains(QLatin1String("error"))) {
                error = o.value(QLatin1String("error")).toString();
                continue;
            }
            const QString status = o.value(QLatin1String("status")).toString();
            success = success || status == QLatin1String("success");
            const qint64 total = o.value(QLatin1String("total")).toInteger();
            if (total > 0) {
                const qint64 done = o.value(QLatin1String("completed")).toInteger();
                std::printf("%s %3lld%% %s\n", qPrintable(status), done * 100 / total,
                            qPrintable(humanSize(total)));
            } else {
                std::printf("%s\n", qPrintable(status));
            }
            std::fflush(stdout);
        }
    };
    QObject::connect(reply, &QNetworkReply::readyRead, &app, [&] {
        pending += reply->readAll();
        handleLines();
    });
    QObject::connect(reply, &QNetworkReply::finished, &app, [&] {
        pending += reply->readAll();
        if (!pending.isEmpty() && !pending.endsWith('\n'))
            pending += '\n';
        handleLines();
        if (reply->error() == QNetworkReply::ConnectionRefusedError
            || reply->error() == QNetworkReply::HostNotFoundError) {
            printConnectError();
        } else if (!error.isEmpty()) {
            std::fprintf(stderr, "Error: %s\n", qPrintable(error));
        } else if (reply->error() != QNetworkReply::NoError || !success) {
            std::fprintf(stderr, "Error: %s\n", qPrintable(reply->errorString()));
        } else {
            rc = 0;
        }
        app.quit();
    });
    app.exec();
    return rc;
}

int list(QCoreApplication &app)
{
    QNetworkAccessManager nam;
    QNetworkReply *reply = nam.get(QNetworkRequest(QUrl(clientBase() + QStringLiteral("/api/tags"))));
    int rc = 1;
    QObject::connect(reply, &QNetworkReply::finished, &app, [&] {
        if (reply->error() != QNetworkReply::NoError) {
            printConnectError();
        } else {
            std::printf("%-30s %-14s %-10s %s\n", "NAME", "ID", "SIZE", "MODIFIED");
            const QJsonArray models =
                QJsonDocument::fromJson(reply->readAll()).object().value(QLatin1String("models")).toArray();
            for (const QJsonValue &v : models) {
                const QJsonObject m = v.toObject();
                std::printf("%-30s %-14s %-10s %s\n",
                            qPrintable(m.value(QLatin1String("name")).toString()),
                            qPrintable(m.value(QLatin1String("digest")).toString().left(12)),
                            qPrintable(humanSize(m.value(QLatin1String("size")).toInteger())),
                            qPrintable(m.value(QLatin1String("modified_at")).toString()));
            }
            rc = 0;
        }
        app.quit();
    });
    app.exec();
    return rc;
}

void usage(FILE *out)
{
    std::fputs("Stand-in for the ollama binary (tests and benchmarks only)\n\n"
               "Usage:\n"
               "  standin-ollama serve          answer the Ollama API on OLLAMA_HOST\n"
               "  standin-ollama pull MODEL     pull a model from the running server\n"
               "  standin-ollama list           list the server's models\n"
               "  standin-ollama --version      print the version\n\n"
               "Environment: OLLAMA_HOST, STANDIN_STARTUP_DELAY_MS, STANDIN_TOKEN_DELAY_MS,\n"
               "STANDIN_TOKENS, STANDIN_MODELS, STANDIN_PULL_DELAY_MS, STANDIN_REQUEST_LOG\n",
               out);
}

} // namespace

int main(int argc, char **argv)
{
    // Qt's plain poll dispatcher costs half the CPU of the GLib one with 2000 open streams and
    // their timers; the stand-in must not be what a benchmark measures.
    if (!qEnvironmentVariableIsSet("QT_NO_GLIB"))
        qputenv("QT_NO_GLIB", "1");
    QCoreApplication app(argc, argv);
    const QStringList args = app.arguments().mid(1);
    if (args.isEmpty() || args.first() == QLatin1String("help") || args.first() == QLatin1String("-h")
        || args.first() == QLatin1String("--help")) {
        usage(stdout);
        return 0;
    }
    const QString cmd = args.first();
    if (cmd == QLatin1String("--version") || cmd == QLatin1String("-v")) {
        std::printf("ollama version is %s\n", kVersion);
        return 0;
    }
    if (cmd == QLatin1String("serve") || cmd == QLatin1String("start"))
        return serve(app);
    if (cmd == QLatin1String("pull")) {
        if (args.size() != 2) {
            std::fprintf(stderr, "Error: accepts 1 arg(s), received %d\n", int(args.size() - 1));
            return 1;
        }
        return pull(app, args.at(1));
    }
    if (cmd == QLatin1String("list") || cmd == QLatin1String("ls"))
        return list(app);
    std::fprintf(stderr, "Error: unknown command \"%s\" for \"ollama\"\n", qPrintable(cmd));
    return 1;
}
