#pragma once

// Start at login, behind one small interface with one implementation file per OS:
// autostart_xdg.cpp (Linux/BSD: XDG autostart entry), autostart_macos.cpp (LaunchAgent),
// autostart_windows.cpp (HKCU Run key). CMake compiles exactly one of them.

#include "result.h"

#include <QString>

#include <memory>

namespace slullama {

class Autostart
{
public:
    virtual ~Autostart() = default;

    // False where the platform's mechanism is not written yet; setEnabled() then says so.
    virtual bool isSupported() const = 0;
    virtual bool isEnabled() const = 0;
    virtual Result<Ok> setEnabled(bool enabled) = 0;
    // Where the entry lives (a file path or a registry key), for messages and tests.
    virtual QString location() const = 0;
};

// `program` is what the login session runs: a name found on PATH or an absolute path.
std::unique_ptr<Autostart> createAutostart(const QString &program = QStringLiteral("slullama-tray"));

// The XDG autostart entry's text (also what an installer can ship as the menu entry).
QString desktopEntry(const QString &program = QStringLiteral("slullama-tray"));

// $SLULLAMA_AUTOSTART_DIR if set (tests), else $XDG_CONFIG_HOME/autostart (~/.config/autostart).
QString xdgAutostartDir();

inline constexpr char autostartDirEnv[] = "SLULLAMA_AUTOSTART_DIR";
inline constexpr char autostartFileName[] = "slullama-tray.desktop";

} // namespace slullama
