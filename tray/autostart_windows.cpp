// Windows: designed, not written yet. The plan: a value "slullama-tray" holding the quoted
// executable path under HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run
// (QSettings with NativeFormat reaches it without Win32 calls); disabling removes the value.

#include "autostart.h"

namespace slullama {

namespace {

class RunKeyAutostart final : public Autostart
{
public:
    bool isSupported() const override { return false; }
    bool isEnabled() const override { return false; }
    QString location() const override
    {
        return QStringLiteral(
                "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run");
    }
    Result<Ok> setEnabled(bool) override
    {
        return makeError(QStringLiteral(
                "Start at login is not implemented on Windows yet (planned: the HKCU Run key). "
                "Put a shortcut to slullama-tray in the Startup folder (shell:startup) instead."));
    }
};

} // namespace

std::unique_ptr<Autostart> createAutostart(const QString &)
{
    return std::make_unique<RunKeyAutostart>();
}

} // namespace slullama
