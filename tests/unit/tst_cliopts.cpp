#include "cliopts.h"

#include <QTest>

using namespace slullama;
using namespace slullama::cli;

namespace {

QStringList args(const char *line)
{
    return QString::fromUtf8(line).split(u' ', Qt::SkipEmptyParts);
}

} // namespace

class TestCliOpts final : public QObject
{
    Q_OBJECT

private slots:
    void accepted_data()
    {
        QTest::addColumn<QStringList>("arguments");
        QTest::addColumn<int>("command");
        QTest::addColumn<QString>("config");
        QTest::addColumn<bool>("verbose");
        QTest::addColumn<QString>("host");
        const auto row = [](const char *line, Command c, const char *config, bool verbose,
                            const char *host) {
            QTest::newRow(line) << args(line) << int(c) << QString::fromLatin1(config) << verbose
                                << QString::fromLatin1(host);
        };
        row("slullama -v serve --config X", Command::Serve, "X", true, "");
        row("slullama serve --config X -v", Command::Serve, "X", true, "");
        row("slullama --config=X serve", Command::Serve, "X", false, "");
        row("slullama serve --verbose", Command::Serve, "", true, "");
        row("slullama connect me@hn --local-port 11500", Command::Connect, "", false, "me@hn");
        row("slullama --port 9 connect me@hn", Command::Connect, "", false, "me@hn");
        row("slullama status", Command::Status, "", false, "");
        row("slullama status hn --port 11435 --token t", Command::Status, "", false, "hn");
        row("slullama wake -v", Command::Wake, "", true, "");
        row("slullama --help", Command::None, "", false, "");
    }

    void accepted()
    {
        QFETCH(QStringList, arguments);
        QFETCH(int, command);
        QFETCH(QString, config);
        QFETCH(bool, verbose);
        QFETCH(QString, host);
        const auto inv = parseArguments(arguments, Program::Slullama);
        QVERIFY2(inv.hasValue(), qPrintable(inv.error()));
        QCOMPARE(int(inv->command), command);
        QCOMPARE(inv->configPath, config);
        QCOMPARE(inv->verbose, verbose);
        QCOMPARE(inv->host, host);
    }

    void serveOverrides()
    {
        const auto inv = parseArguments(args("slullama --port 9999 serve --token tk --partition "
                                             "gpu-large --gres gpu:2 --idle-timeout 0.5 "
                                             "--dry-run"),
                                        Program::Slullama);
        QVERIFY2(inv.hasValue(), qPrintable(inv.error()));
        QCOMPARE(inv->overrides.port, std::optional<quint16>(9999));
        QCOMPARE(inv->overrides.token, std::optional<QString>(QStringLiteral("tk")));
        QCOMPARE(inv->overrides.partition, std::optional<QString>(QStringLiteral("gpu-large")));
        QCOMPARE(inv->overrides.gres, std::optional<QString>(QStringLiteral("gpu:2")));
        QCOMPARE(inv->overrides.idleTimeoutMinutes, std::optional<double>(0.5));
        QVERIFY(inv->dryRun);
        QVERIFY(!inv->overrides.host.has_value());
    }

    void connectHostBecomesClientHost()
    {
        const auto inv = parseArguments(args("slullama connect me@hn --local-port 11500"),
                                        Program::Slullama);
        QVERIFY2(inv.hasValue(), qPrintable(inv.error()));
        QCOMPARE(inv->overrides.host, std::optional<QString>(QStringLiteral("me@hn")));
        QCOMPARE(inv->overrides.localPort, std::optional<quint16>(11500));
    }

    void daemonTakesServeFlags()
    {
        const auto inv = parseArguments(args("slullama-daemon --config X -v --port 1234"),
                                        Program::Daemon);
        QVERIFY2(inv.hasValue(), qPrintable(inv.error()));
        QCOMPARE(inv->command, Command::Serve);
        QCOMPARE(inv->configPath, QStringLiteral("X"));
        QCOMPARE(inv->overrides.port, std::optional<quint16>(1234));
    }

    void rejected_data()
    {
        QTest::addColumn<QStringList>("arguments");
        QTest::addColumn<bool>("daemon");
        QTest::addColumn<QString>("expected");
        const auto row = [](const char *line, bool daemon, const char *expected) {
            QTest::newRow(line) << args(line) << daemon << QString::fromUtf8(expected);
        };
        row("slullama status --partition x", false,
            "--partition is not an option of `slullama status` (see `slullama status --help`)");
        row("slullama serve --local-port 5", false, "--local-port is not an option of `slullama "
                                                    "serve`");
        row("slullama connect --dry-run", false, "--dry-run is not an option of `slullama "
                                                 "connect`");
        row("slullama --gres x", false, "--gres needs a command");
        row("slullama serve --bogus", false,
            "Unknown option 'bogus' (see `slullama serve --help`)");
        row("slullama frobnicate", false, "unknown command \"frobnicate\"");
        row("slullama serve extra", false, "unexpected argument \"extra\"");
        row("slullama status a b", false, "unexpected argument \"b\"");
        row("slullama serve --port 0", false, "--port: expected a port number 1..65535, got 0");
        row("slullama serve --port abc", false, "--port: expected a port number");
        row("slullama serve --idle-timeout -1", false, "--idle-timeout: expected a number >= 0");
        row("slullama serve --port", false, "Missing value after '--port'");
        row("slullama-daemon serve", true, "unexpected argument \"serve\"");
        row("slullama-daemon --local-port 3", true, "--local-port needs a command");
    }

    void rejected()
    {
        QFETCH(QStringList, arguments);
        QFETCH(bool, daemon);
        QFETCH(QString, expected);
        const auto inv = parseArguments(arguments, daemon ? Program::Daemon : Program::Slullama);
        QVERIFY(!inv.hasValue());
        QVERIFY2(inv.error().contains(expected), qPrintable(inv.error()));
    }

    void helpListsOnlyTheCommandsOptions()
    {
        const QString status = helpText(Program::Slullama, Command::Status);
        QVERIFY(status.startsWith(QStringLiteral("Usage: slullama status [HOST]")));
        QVERIFY(status.contains(QStringLiteral("--token T")));
        QVERIFY(!status.contains(QStringLiteral("--partition")));
        const QString serve = helpText(Program::Daemon, Command::Serve);
        QVERIFY(serve.startsWith(QStringLiteral("Usage: slullama-daemon")));
        QVERIFY(serve.contains(QStringLiteral("--dry-run")));
        QVERIFY(!serve.contains(QStringLiteral("--local-port")));
    }

    void endpoint_data()
    {
        QTest::addColumn<QString>("host");
        QTest::addColumn<QString>("url");
        QTest::addColumn<QString>("token");
        QTest::newRow("local") << QString() << QStringLiteral("http://127.0.0.1:2000")
                               << QStringLiteral("server-token");
        QTest::newRow("host") << QStringLiteral("hn") << QStringLiteral("http://hn:3000")
                              << QStringLiteral("client-token");
        QTest::newRow("user@host") << QStringLiteral("me@hn.example")
                                   << QStringLiteral("http://hn.example:3000")
                                   << QStringLiteral("client-token");
        QTest::newRow("ipv6") << QStringLiteral("[::1]") << QStringLiteral("http://[::1]:3000")
                              << QStringLiteral("client-token");
    }

    void endpoint()
    {
        QFETCH(QString, host);
        QFETCH(QString, url);
        QFETCH(QString, token);
        Config c;
        c.server.port = 2000;
        c.server.token = QStringLiteral("server-token");
        c.client.serverPort = 3000;
        c.client.token = QStringLiteral("client-token");
        const Endpoint e = apiEndpoint(c, host);
        QCOMPARE(e.url.toString(), url);
        QCOMPARE(e.token, token);
    }

    void endpointFallsBackToTheOtherToken()
    {
        Config c;
        c.client.token = QStringLiteral("only-client");
        QCOMPARE(apiEndpoint(c, {}).token, QStringLiteral("only-client"));
        c.client.token.clear();
        c.server.token = QStringLiteral("only-server");
        QCOMPARE(apiEndpoint(c, QStringLiteral("hn")).token, QStringLiteral("only-server"));
    }
};

QTEST_GUILESS_MAIN(TestCliOpts)
#include "tst_cliopts.moc"
