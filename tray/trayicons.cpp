#include "trayicons.h"

namespace slullama {

QString trayIconPath(const QString &name)
{
    return QStringLiteral(":/icons/slullama-") + name + QStringLiteral(".svg");
}

QIcon trayIcon(const QString &name)
{
    return QIcon(trayIconPath(name));
}

QIcon appIcon()
{
    return QIcon(QStringLiteral(":/icons/slullama.svg"));
}

} // namespace slullama
