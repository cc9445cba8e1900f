// slullama-loadgen: a small HTTP/1.1 load client for end-to-end tests and benchmarks. See
// README.md beside it.

#include "loadrun.h"

#include <QCommandLineParser>
#include <QCoreApplication>
#include <QFile>
#include <QJsonDocument>
#include <QTextStream>
#include <QUrl>

#include <csignal>
#include <cstring>
#include <sys/resource.h>

using namespace slullama::loadgen;

namespace {

// Each connection is a descriptor; the default soft limit (1024) would cap the run below the
// 2000 connections it is meant to open.
void raiseFileLimit()
{
    rlimit limit {};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

[[noreturn]] void usageError(const QString &message)
{
    QTextStream(stderr) << "slullama-loadgen: " << message << "\n";
    std::exit(2);
}

} // namespace

int main(int argc, char *argv[])
{
    ::signal(SIGPIPE, SIG_IGN);
    raiseFileLimit();
    QCoreApplication app(argc, argv);
    QCoreApplication::setApplicationName(QStringLiteral("slullama-loadgen"));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral(
        "Sends --requests HTTP/1.1 requests over --concurrency keep-alive connections and prints "
        "a summary. Exits 1 if any request failed or got an unexpected status."));
    parser.addHelpOption();
    const QCommandLineOption urlOption(
        QStringLiteral("url"), QStringLiteral("http://host:port/path"), QStringLiteral("URL"));
    const QCommandLineOption methodOption(QStringLiteral("method"),
                                          QStringLiteral("GET, POST, ..."),
                                          QStringLiteral("METHOD"), QStringLiteral("GET"));
    const QCommandLineOption bodyOption(QStringLiteral("body"),
                                        QStringLiteral("request body, or @FILE to read it"),
                                        QStringLiteral("BODY"));
    const QCommandLineOption headerOption(QStringLiteral("header"),
                                          QStringLiteral("extra header 'Name: value' (repeatable)"),
                                          QStringLiteral("HEADER"));
    const QCommandLineOption tokenOption(QStringLiteral("token"),
                                         QStringLiteral("sends Authorization: Bearer TOKEN"),
                                         QStringLiteral("TOKEN"));
    const QCommandLineOption concurrencyOption(QStringLiteral("concurrency"),
                                               QStringLiteral("connections at once (default 1)"),
                                               QStringLiteral("N"), QStringLiteral("1"));
    const QCommandLineOption requestsOption(
        QStringLiteral("requests"), QStringLiteral("requests in total (default: concurrency)"),
        QStringLiteral("M"));
    const QCommandLineOption streamOption(
        QStringLiteral("stream"),
        QStringLiteral("count body lines (NDJSON lines, SSE data lines) as chunks"));
    const QCommandLineOption minChunksOption(
        QStringLiteral("min-chunks"),
        QStringLiteral("with --stream: a response with fewer lines is an error"),
        QStringLiteral("N"), QStringLiteral("0"));
    const QCommandLineOption expectOption(
        QStringLiteral("expect-status"),
        QStringLiteral("accepted status(es), comma separated (default: any 2xx)"),
        QStringLiteral("CODES"));
    const QCommandLineOption timeoutOption(QStringLiteral("timeout"),
                                           QStringLiteral("seconds per request (default 60)"),
                                           QStringLiteral("S"), QStringLiteral("60"));
    const QCommandLineOption jsonOption(QStringLiteral("json"),
                                        QStringLiteral("print the summary as one JSON object"));
    parser.addOptions({urlOption, methodOption, bodyOption, headerOption, tokenOption,
                       concurrencyOption, requestsOption, streamOption, minChunksOption,
                       expectOption, timeoutOption, jsonOption});
    parser.process(app);

    Options options;
    const QUrl url(parser.value(urlOption));
    if (!parser.isSet(urlOption) || !url.isValid() || url.scheme() != u"http"
        || url.host().isEmpty())
        usageError(QStringLiteral("--url http://HOST:PORT/PATH is required (plain http only)"));
    options.host = url.host();
    options.port = quint16(url.port(80));
    options.hostHeader = (url.host() + u':' + QString::number(options.port)).toLatin1();
    options.target = url.path(QUrl::FullyEncoded).toLatin1();
    if (options.target.isEmpty())
        options.target = "/";
    if (url.hasQuery())
        options.target += '?' + url.query(QUrl::FullyEncoded).toLatin1();
    options.method = parser.value(methodOption).toUpper().toLatin1();

    if (parser.isSet(bodyOption)) {
        const QString body = parser.value(bodyOption);
        if (body.startsWith(u'@')) {
            QFile file(body.mid(1));
            if (!file.open(QIODevice::ReadOnly))
                usageError(
                    QStringLiteral("cannot read %1: %2").arg(file.fileName(), file.errorString()));
            options.body = file.readAll();
        } else {
            options.body = body.toUtf8();
        }
        options.hasBody = true;
    } else if (options.method == "POST" || options.method == "PUT" || options.method == "PATCH") {
        options.hasBody = true; // Content-Length: 0
    }
    for (const QString &header : parser.values(headerOption)) {
        const qsizetype colon = header.indexOf(u':');
        if (colon <= 0)
            usageError(QStringLiteral("--header '%1' is not 'Name: value'").arg(header));
        options.headers.append(
            {header.left(colon).trimmed().toLatin1(), header.mid(colon + 1).trimmed().toUtf8()});
    }
    if (parser.isSet(tokenOption))
        options.headers.append({"Authorization", "Bearer " + parser.value(tokenOption).toUtf8()});

    bool ok = false;
    options.concurrency = parser.value(concurrencyOption).toInt(&ok);
    if (!ok || options.concurrency < 1)
        usageError(QStringLiteral("--concurrency must be a positive number"));
    options.requests = options.concurrency;
    if (parser.isSet(requestsOption)) {
        options.requests = parser.value(requestsOption).toLongLong(&ok);
        if (!ok || options.requests < 0)
            usageError(QStringLiteral("--requests must be a number >= 0"));
    }
    options.stream = parser.isSet(streamOption);
    options.minChunks = parser.value(minChunksOption).toInt(&ok);
    if (!ok || options.minChunks < 0)
        usageError(QStringLiteral("--min-chunks must be a number >= 0"));
    if (parser.isSet(expectOption)) {
        for (const QString &code : parser.value(expectOption).split(u',', Qt::SkipEmptyParts)) {
            const int status = code.trimmed().toInt(&ok);
            if (!ok || status < 100 || status > 599)
                usageError(QStringLiteral("--expect-status: '%1' is not an HTTP status").arg(code));
            options.expectStatus.append(status);
        }
    }
    const double timeout = parser.value(timeoutOption).toDouble(&ok);
    if (!ok || !(timeout > 0))
        usageError(QStringLiteral("--timeout must be a positive number of seconds"));
    options.timeoutMs = int(std::min(timeout * 1000.0, 24.0 * 3600 * 1000));

    LoadRun run(options);
    QObject::connect(&run, &LoadRun::finished, &app, [&] {
        QTextStream out(stdout);
        if (parser.isSet(jsonOption))
            out << QJsonDocument(run.summary().toJson()).toJson(QJsonDocument::Compact) << "\n";
        else
            out << run.summary().toText();
        out.flush();
        QCoreApplication::exit(run.succeeded() ? 0 : 1);
    });
    run.start();
    return QCoreApplication::exec();
}
