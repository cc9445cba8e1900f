// `slullama`: serve | connect | status | wake — thin commands over the libraries.

#include "apiclient.h"
#include "cliopts.h"
#include "commands.h"
#include "keys.h"
#include "logging.h"
#include "serve.h"

#include <QCoreApplication>
#include <QTextStream>

using namespace slullama;

namespace {

void printWarnings(const Config &config)
{
    QTextStream err(stderr);
    for (const QString &warning : config.warnings)
        err << "slullama: warning: " << warning << "\n";
}

// status and wake: one request on the event loop, the JSON on stdout, one line on failure.
// With HOST (from a laptop) the request goes through an SSH tunnel to HOST, as `connect` opens
// one; without, straight to the daemon on this machine.
int runApiCommand(QCoreApplication &app, const cli::Invocation &inv, const Config &config)
{
    const bool wake = inv.command == cli::Command::Wake;
    if (!inv.host.isEmpty())
        return runRemoteApiCommand(config, inv.host, wake, inv.keepAwakeMinutes);
    const cli::Endpoint endpoint = cli::apiEndpoint(config, inv.host);
    ApiClient client(endpoint.url, endpoint.token);
    int exitCode = 1;
    sendApiRequest(
        client, wake,
        [&](int code) {
            exitCode = code;
            app.quit();
        },
        {}, inv.keepAwakeMinutes);
    app.exec();
    return exitCode;
}

} // namespace

int main(int argc, char **argv)
{
    // Qt's glib event dispatcher slows down as the number of open sockets grows (2000
    // streams: 1.4k req/s with timeouts vs 6.1k without); the plain UNIX one does not.
    // It has to be chosen before the application object exists.
    if (qEnvironmentVariableIsEmpty("QT_NO_GLIB"))
        qputenv("QT_NO_GLIB", "1");
    QCoreApplication app(argc, argv);
    QCoreApplication::setApplicationName(QStringLiteral("slullama"));
    QCoreApplication::setApplicationVersion(QStringLiteral(SLULLAMA_VERSION));

    const auto parsed = cli::parseArguments(app.arguments(), cli::Program::Slullama);
    if (!parsed) {
        QTextStream(stderr) << "slullama: " << parsed.error() << "\n";
        return 2;
    }
    const cli::Invocation &inv = *parsed;
    if (inv.version) {
        QTextStream(stdout) << "slullama " << SLULLAMA_VERSION << "\n";
        return 0;
    }
    if (inv.help) {
        QTextStream(stdout) << cli::helpText(inv.program, inv.command);
        return 0;
    }
    if (inv.command == cli::Command::None) {
        QTextStream(stderr) << cli::helpText(inv.program, inv.command);
        return 2;
    }

    setupLogging(inv.verbose);
    const auto config = cli::loadInvocationConfig(inv);
    if (!config) {
        QTextStream(stderr) << "slullama: " << config.error() << "\n";
        return 2;
    }
    printWarnings(*config);

    switch (inv.command) {
    case cli::Command::Serve:
        if (const auto exitCode = cli::prepareServe(inv, *config))
            return *exitCode;
        return runServe(*config);
    case cli::Command::Connect:
        return runConnect(*config);
    case cli::Command::Status:
    case cli::Command::Wake:
        return runApiCommand(app, inv, *config);
    case cli::Command::Keys:
        return runKeysCommand(inv, *config);
    case cli::Command::None:
        break;
    }
    return 2;
}
