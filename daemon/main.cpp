// `slullama-daemon`: the head-node daemon; the same flags and code as `slullama serve`.

#include "cliopts.h"
#include "logging.h"
#include "serve.h"

#include <QCoreApplication>
#include <QTextStream>

using namespace slullama;

int main(int argc, char **argv)
{
    // Qt's glib event dispatcher slows down as the number of open sockets grows (2000
    // streams: 1.4k req/s with timeouts vs 6.1k without); the plain UNIX one does not.
    // It has to be chosen before the application object exists.
    if (qEnvironmentVariableIsEmpty("QT_NO_GLIB"))
        qputenv("QT_NO_GLIB", "1");
    QCoreApplication app(argc, argv);
    QCoreApplication::setApplicationName(QStringLiteral("slullama-daemon"));
    QCoreApplication::setApplicationVersion(QStringLiteral(SLULLAMA_VERSION));

    const auto parsed = cli::parseArguments(app.arguments(), cli::Program::Daemon);
    if (!parsed) {
        QTextStream(stderr) << "slullama-daemon: " << parsed.error() << "\n";
        return 2;
    }
    const cli::Invocation &inv = *parsed;
    if (inv.version) {
        QTextStream(stdout) << "slullama-daemon " << SLULLAMA_VERSION << "\n";
        return 0;
    }
    if (inv.help) {
        QTextStream(stdout) << cli::helpText(inv.program, inv.command);
        return 0;
    }

    setupLogging(inv.verbose);
    const auto config = cli::loadInvocationConfig(inv);
    if (!config) {
        QTextStream(stderr) << "slullama-daemon: " << config.error() << "\n";
        return 2;
    }
    for (const QString &warning : config->warnings)
        QTextStream(stderr) << "slullama-daemon: warning: " << warning << "\n";

    if (const auto exitCode = cli::prepareServe(inv, *config))
        return *exitCode;
    return runServe(*config);
}
