// Linux and other XDG desktops: an entry in ~/.config/autostart (freedesktop.org
// "Desktop Application Autostart Specification").

#include "autostart.h"

#include <QDir>
#include <QFile>
#include <QSaveFile>

namespace slullama {

namespace {

class XdgAutostart final : public Autostart
{
public:
    explicit XdgAutostart(QString program) : m_program(std::move(program)) {}

    bool isSupported() const override { return true; }

    QString location() const override
    {
        return xdgAutostartDir() + QLatin1Char('/') + QLatin1String(autostartFileName);
    }

    bool isEnabled() const override
    {
        QFile file(location());
        if (!file.open(QIODevice::ReadOnly | QIODevice::Text))
            return false;
        // Desktops switch an entry off in place rather than deleting it.
        const auto lines = QString::fromUtf8(file.readAll()).split(QLatin1Char('\n'));
        for (const QString &raw : lines) {
            const QString line = raw.trimmed();
            if (line.compare(QLatin1String("Hidden=true"), Qt::CaseInsensitive) == 0
                || line.compare(QLatin1String("X-GNOME-Autostart-enabled=false"),
                                Qt::CaseInsensitive)
                        == 0)
                return false;
        }
        return true;
    }

    Result<Ok> setEnabled(bool enabled) override
    {
        const QString path = location();
        if (!enabled) {
            if (QFile::exists(path) && !QFile::remove(path))
                return makeError(QStringLiteral("Cannot remove %1").arg(path));
            return Ok{};
        }
        const QString dir = xdgAutostartDir();
        if (!QDir().mkpath(dir))
            return makeError(QStringLiteral("Cannot create %1").arg(dir));
        QSaveFile file(path);
        if (!file.open(QIODevice::WriteOnly | QIODevice::Text))
            return makeError(QStringLiteral("Cannot write %1: %2").arg(path, file.errorString()));
        file.write(desktopEntry(m_program).toUtf8());
        if (!file.commit())
            return makeError(QStringLiteral("Cannot write %1: %2").arg(path, file.errorString()));
        return Ok{};
    }

private:
    QString m_program;
};

} // namespace

std::unique_ptr<Autostart> createAutostart(const QString &program)
{
    return std::make_unique<XdgAutostart>(program);
}

} // namespace slullama
