// macOS: designed, not written yet. The plan: a LaunchAgent property list
// ~/Library/LaunchAgents/org.slullama.tray.plist with Label org.slullama.tray,
// ProgramArguments [<app bundle>/Contents/MacOS/slullama-tray], RunAtLoad true and
// ProcessType Interactive; enabling writes it, disabling removes it (launchd reads the folder
// at the next login, so no launchctl call is needed).

#include "autostart.h"

#include <QDir>

namespace slullama {

namespace {

class LaunchAgentAutostart final : public Autostart
{
public:
    bool isSupported() const override { return false; }
    bool isEnabled() const override { return false; }
    QString location() const override
    {
        return QDir::homePath() + QStringLiteral("/Library/LaunchAgents/org.slullama.tray.plist");
    }
    Result<Ok> setEnabled(bool) override
    {
        return makeError(QStringLiteral(
                "Start at login is not implemented on macOS yet (planned: a LaunchAgent in "
                "~/Library/LaunchAgents). Add slullama-tray to System Settings → General → "
                "Login Items instead."));
    }
};

} // namespace

std::unique_ptr<Autostart> createAutostart(const QString &)
{
    return std::make_unique<LaunchAgentAutostart>();
}

} // namespace slullama
