// slullama-tray: the laptop side in the system tray. Opens the tunnel with the [client]
// settings at start (and so at login) and shows no window unless something needs the user.

#include "apistatussource.h"
#include "autostart.h"
#include "config.h"
#include "logging.h"
#include "promptdialogs.h"
#include "settingsdialog.h"
#include "sshtunnelcontrol.h"
#include "traycontroller.h"
#include "trayicon.h"
#include "trayicons.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>
#include <QMessageBox>
#include <QPointer>
#include <QStandardPaths>
#include <QSystemTrayIcon>

#include <cstdio>

using namespace slullama;

namespace {

// The autostart entry names the program the way the login session can find it.
QString programForAutostart()
{
    const QString self = QCoreApplication::applicationFilePath();
    const QString onPath = QStandardPaths::findExecutable(QStringLiteral("slullama-tray"));
    if (!onPath.isEmpty()
        && QFileInfo(onPath).canonicalFilePath() == QFileInfo(self).canonicalFilePath())
        return QStringLiteral("slullama-tray");
    return self;
}

} // namespace

int main(int argc, char **argv)
{
    // -v is "verbose" as in the CLI (Qt's default -v is --version), and --help/--version answer
    // before a display is needed.
    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral(
            "Shows whether the team's GPU node sleeps or is ready, wakes it, and keeps "
            "http://localhost:<local_port> connected to the slullama daemon on the head node.\n"
            "Settings: the [client] section of config.toml."));
    const QCommandLineOption helpOption(
            QStringList{QStringLiteral("h"), QStringLiteral("help")},
            QStringLiteral("Show this help."));
    const QCommandLineOption versionOption(QStringList{QStringLiteral("version")},
                                           QStringLiteral("Show the version."));
    const QCommandLineOption configOption(
            QStringList{QStringLiteral("config")},
            QStringLiteral("Config file (default: $SLULLAMA_CONFIG, else "
                           "~/.config/slullama/config.toml)."),
            QStringLiteral("PATH"));
    const QCommandLineOption verboseOption(
            QStringList{QStringLiteral("v"), QStringLiteral("verbose")},
            QStringLiteral("Debug output on stderr."));
    parser.addOptions({helpOption, versionOption, configOption, verboseOption});
    QStringList arguments;
    for (int i = 0; i < argc; ++i)
        arguments << QString::fromLocal8Bit(argv[i]);
    if (!parser.parse(arguments)) {
        std::fprintf(stderr, "slullama-tray: %s\nTry slullama-tray --help.\n",
                     qPrintable(parser.errorText()));
        return 2;
    }
    if (parser.isSet(helpOption)) {
        std::fputs(qPrintable(parser.helpText().replace(QStringLiteral("<executable_name>"), QStringLiteral("slullama-tray"))), stdout);
        return 0;
    }
    if (parser.isSet(versionOption)) {
        std::printf("slullama-tray %s\n", SLULLAMA_VERSION);
        return 0;
    }
    if (!parser.positionalArguments().isEmpty()) {
        std::fprintf(stderr, "slullama-tray: unexpected argument %s\n",
                     qPrintable(parser.positionalArguments().constFirst()));
        return 2;
    }

    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("slullama-tray"));
    QApplication::setApplicationDisplayName(QStringLiteral("slullama"));
    QApplication::setApplicationVersion(QStringLiteral(SLULLAMA_VERSION));
    QApplication::setDesktopFileName(QStringLiteral("slullama-tray"));
    QApplication::setWindowIcon(appIcon());
    // Closing a dialog must not end a program whose only face is the tray icon.
    QApplication::setQuitOnLastWindowClosed(false);
    setupLogging(parser.isSet(verboseOption));

    const auto env = QProcessEnvironment::systemEnvironment();
    const ConfigLocation location = configLocation(parser.value(configOption), env);
    Config config;
    QString configProblem;
    if (location.isExplicit && !QFileInfo::exists(location.path)) {
        // The settings dialog creates it.
        qCInfo(lcTray).noquote() << location.path << "does not exist yet; using defaults";
    } else {
        auto loaded = loadConfig(parser.value(configOption), env);
        if (loaded) {
            config = std::move(loaded.value());
            for (const QString &warning : std::as_const(config.warnings))
                qCWarning(lcConfig).noquote() << warning;
        } else {
            configProblem = loaded.error();
            std::fprintf(stderr, "slullama-tray: %s\n", qPrintable(configProblem));
        }
    }
    qCInfo(lcTray).noquote() << QStringLiteral("config %1 (%2); head node %3; token %4")
                                        .arg(location.path, location.origin,
                                             config.client.host.isEmpty()
                                                     ? QStringLiteral("not set")
                                                     : config.client.host,
                                             config.client.token.isEmpty()
                                                     ? QStringLiteral("not set")
                                                     : QStringLiteral("set"));

    DialogPrompter prompter;
    SshTunnelControl tunnel(&prompter);
    ApiStatusSource source;
    TrayController controller(&tunnel, &source);
    controller.setClientConfig(config.client);

    const auto autostart = createAutostart(programForAutostart());
    TrayIcon tray(&controller, autostart.get());

    QPointer<SettingsDialog> settings;
    const auto openSettings = [&] {
        if (!settings) {
            settings = new SettingsDialog(controller.clientConfig(), location.path);
            settings->setAttribute(Qt::WA_DeleteOnClose);
            QObject::connect(settings, &SettingsDialog::saved, &controller,
                             [&controller](const ClientConfig &client) {
                                 controller.setClientConfig(client);
                                 controller.start();
                             });
        }
        settings->show();
        settings->raise();
        settings->activateWindow();
    };
    QObject::connect(&tray, &TrayIcon::settingsRequested, &app, openSettings);
    QObject::connect(&tray, &TrayIcon::quitRequested, &app, [&] {
        controller.disconnectTunnel();
        QApplication::quit();
    });

    if (!QSystemTrayIcon::isSystemTrayAvailable())
        qCWarning(lcTray) << "no system tray yet; the icon appears when the panel's tray does";
    tray.show();
    controller.start();

    if (!configProblem.isEmpty()) {
        auto *box = new QMessageBox(QMessageBox::Warning, QStringLiteral("slullama"),
                                    QStringLiteral("The configuration could not be read:\n\n%1\n\n"
                                                   "Fix the file, or save the tray's settings "
                                                   "to replace its [client] section.")
                                            .arg(configProblem));
        box->setAttribute(Qt::WA_DeleteOnClose);
        box->open();
    }
    if (!controller.isConfigured())
        openSettings();

    return app.exec();
}
