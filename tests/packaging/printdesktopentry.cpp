// Prints the XDG autostart entry the tray writes for "Start at login" (tray/autostart.cpp), so
// packaging.desktop_entry can check that the packaged launcher and autostart files say the same.

#include "autostart.h"

#include <cstdio>

int main()
{
    const QByteArray text = slullama::desktopEntry(QStringLiteral("slullama-tray")).toUtf8();
    std::fwrite(text.constData(), 1, size_t(text.size()), stdout);
    return 0;
}
