#include "autostart.h"

#include <QDir>
#include <QStandardPaths>

namespace slullama {

namespace {

// Desktop Entry Spec, "The Exec key": quote arguments with reserved characters; a literal
// percent sign is written as %%.
QString quoteExec(const QString &program)
{
    static const QString reserved = QStringLiteral(" \t\n\"'\\><~|&;$*?#()`");
    bool needsQuotes = false;
    for (const QChar c : program) {
        if (reserved.contains(c)) {
            needsQuotes = true;
            break;
        }
    }
    QString escaped = program;
    escaped.replace(QLatin1Char('%'), QStringLiteral("%%"));
    if (!needsQuotes)
        return escaped;
    QString quoted;
    for (const QChar c : std::as_const(escaped)) {
        if (c == QLatin1Char('"') || c == QLatin1Char('`') || c == QLatin1Char('$')
            || c == QLatin1Char('\\'))
            quoted += QLatin1Char('\\');
        quoted += c;
    }
    return QLatin1Char('"') + quoted + QLatin1Char('"');
}

} // namespace

QString desktopEntry(const QString &program)
{
    return QStringLiteral("[Desktop Entry]\n"
                          "Type=Application\n"
                          "Name=slullama\n"
                          "GenericName=Shared Ollama gateway\n"
                          "Comment=Shows, wakes and connects to the team's GPU node\n"
                          "Exec=")
            + quoteExec(program)
            + QStringLiteral("\n"
                             "Icon=slullama\n"
                             "Terminal=false\n"
                             "Categories=Network;Utility;\n"
                             "X-GNOME-Autostart-enabled=true\n");
}

QString xdgAutostartDir()
{
    const QString redirected = qEnvironmentVariable(autostartDirEnv);
    if (!redirected.isEmpty())
        return QDir::cleanPath(redirected);
    return QStandardPaths::writableLocation(QStandardPaths::GenericConfigLocation)
            + QStringLiteral("/autostart");
}

} // namespace slullama
