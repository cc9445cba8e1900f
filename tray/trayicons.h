#pragma once

#include <QIcon>
#include <QString>

namespace slullama {

// The state icons from resources/icons: `name` is TrayController::iconName()
// (sleeping, waking, starting, ready, error, disconnected).
QString trayIconPath(const QString &name);
QIcon trayIcon(const QString &name);
QIcon appIcon();

} // namespace slullama
