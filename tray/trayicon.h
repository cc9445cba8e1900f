#pragma once

// The system tray entry: the icon and tooltip for the controller's phase, the context menu,
// the status popup on left click and the controller's notifications as balloon messages.

#include <QObject>
#include <QSystemTrayIcon>

#include <memory>

class QAction;
class QMenu;

namespace slullama {

class Autostart;
class StatusPopup;
class TrayController;
enum class TrayNotification;

class TrayIcon final : public QObject
{
    Q_OBJECT
public:
    // `autostart` may be null (no start-at-login item); neither pointer is owned.
    TrayIcon(TrayController *controller, Autostart *autostart, QObject *parent = nullptr);
    ~TrayIcon() override;

    void show();
    QMenu *menu() const { return m_menu.get(); }
    StatusPopup *popup() const { return m_popup.get(); }
    QSystemTrayIcon *systemTrayIcon() const { return m_tray; }

public slots:
    void refresh();
    void togglePopup();

signals:
    void settingsRequested();
    void quitRequested();

private:
    void onActivated(QSystemTrayIcon::ActivationReason reason);
    void onNotification(TrayNotification kind, const QString &title, const QString &message);
    void onAutostartToggled(bool enabled);

    TrayController *m_controller;
    Autostart *m_autostart;
    std::unique_ptr<QMenu> m_menu;
    std::unique_ptr<StatusPopup> m_popup;
    QSystemTrayIcon *m_tray = nullptr;
    QString m_iconName;
    QString m_phaseName;
    QAction *m_status = nullptr;
    QAction *m_wake = nullptr;
    QAction *m_keepAwake = nullptr;
    QAction *m_connect = nullptr;
    QAction *m_settings = nullptr;
    QAction *m_startAtLogin = nullptr;
    QAction *m_quit = nullptr;
};

} // namespace slullama
