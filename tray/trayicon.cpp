#include "trayicon.h"

#include "autostart.h"
#include "logging.h"
#include "statuspopup.h"
#include "traycontroller.h"
#include "trayicons.h"

#include <QAction>
#include <QInputDialog>
#include <QMenu>

namespace slullama {

TrayIcon::TrayIcon(TrayController *controller, Autostart *autostart, QObject *parent)
    : QObject(parent)
    , m_controller(controller)
    , m_autostart(autostart)
    , m_menu(std::make_unique<QMenu>())
    , m_popup(std::make_unique<StatusPopup>(controller))
    , m_tray(new QSystemTrayIcon(this))
{
    m_menu->setObjectName(QStringLiteral("trayMenu"));

    // First line: the state in words, for desktops where the tooltip is hard to reach.
    m_status = m_menu->addAction(QString());
    m_status->setObjectName(QStringLiteral("statusAction"));
    m_status->setEnabled(false);
    m_menu->addSeparator();

    m_wake = m_menu->addAction(QStringLiteral("Wake now"));
    m_wake->setObjectName(QStringLiteral("wakeAction"));
    connect(m_wake, &QAction::triggered, m_controller, &TrayController::wake);

    m_keepAwake = m_menu->addAction(QStringLiteral("Keep awake for…"));
    m_keepAwake->setObjectName(QStringLiteral("keepAwakeAction"));
    connect(m_keepAwake, &QAction::triggered, this, [this] {
        bool ok = false;
        const int minutes = QInputDialog::getInt(
            nullptr, QStringLiteral("slullama"),
            QStringLiteral("Keep the GPU node awake for at least (minutes):"), 60, 1, 24 * 60, 15,
            &ok);
        if (ok)
            m_controller->keepAwakeFor(minutes);
    });

    m_connect = m_menu->addAction(QStringLiteral("Connect"));
    m_connect->setObjectName(QStringLiteral("connectAction"));
    connect(m_connect, &QAction::triggered, m_controller, &TrayController::toggleTunnel);

    auto *copy = m_menu->addAction(QStringLiteral("Copy endpoint"));
    copy->setObjectName(QStringLiteral("copyAction"));
    connect(copy, &QAction::triggered, m_popup.get(), &StatusPopup::copyEndpoint);
    m_menu->addSeparator();

    m_settings = m_menu->addAction(QStringLiteral("Settings…"));
    m_settings->setObjectName(QStringLiteral("settingsAction"));
    connect(m_settings, &QAction::triggered, this, &TrayIcon::settingsRequested);

    m_startAtLogin = m_menu->addAction(QStringLiteral("Start at login"));
    m_startAtLogin->setObjectName(QStringLiteral("startAtLoginAction"));
    m_startAtLogin->setCheckable(true);
    if (m_autostart) {
        m_startAtLogin->setChecked(m_autostart->isEnabled());
        m_startAtLogin->setEnabled(m_autostart->isSupported());
        if (!m_autostart->isSupported())
            m_startAtLogin->setToolTip(QStringLiteral("Not available on this platform yet"));
    } else {
        m_startAtLogin->setEnabled(false);
    }
    connect(m_startAtLogin, &QAction::toggled, this, &TrayIcon::onAutostartToggled);
    m_menu->addSeparator();

    m_quit = m_menu->addAction(QStringLiteral("Quit"));
    m_quit->setObjectName(QStringLiteral("quitAction"));
    connect(m_quit, &QAction::triggered, this, &TrayIcon::quitRequested);

    connect(m_menu.get(), &QMenu::aboutToShow, this, [] { qCDebug(lcTray) << "menu shown"; });
    m_tray->setContextMenu(m_menu.get());
    connect(m_tray, &QSystemTrayIcon::activated, this, &TrayIcon::onActivated);
    connect(m_controller, &TrayController::changed, this, &TrayIcon::refresh);
    connect(m_controller, &TrayController::notification, this, &TrayIcon::onNotification);
    refresh();
}

TrayIcon::~TrayIcon()
{
    // The tray icon refers to the menu; drop it first.
    delete m_tray;
    m_tray = nullptr;
}

void TrayIcon::show()
{
    m_tray->show();
}

void TrayIcon::refresh()
{
    if (const QString phase = m_controller->phaseName(); phase != m_phaseName) {
        m_phaseName = phase;
        qCDebug(lcTray).noquote() << "tray state:" << phase;
    }
    const QString name = m_controller->iconName();
    if (name != m_iconName) {
        m_iconName = name;
        m_tray->setIcon(trayIcon(name));
    }
    m_tray->setToolTip(m_controller->toolTip());
    m_status->setText(QStringLiteral("slullama: ") + m_controller->phaseLabel());

    const TrayPhase phase = m_controller->phase();
    const bool booting
        = phase == TrayPhase::Waking || phase == TrayPhase::Queued || phase == TrayPhase::Starting;
    m_wake->setEnabled(m_controller->isConfigured() && !booting && phase != TrayPhase::Ready);
    m_keepAwake->setEnabled(m_controller->isConfigured());

    const auto tunnel = m_controller->tunnelState();
    const bool down
        = tunnel == TunnelControl::State::Disconnected || tunnel == TunnelControl::State::Failed;
    m_connect->setText(down ? QStringLiteral("Connect") : QStringLiteral("Disconnect"));
    m_connect->setEnabled(m_controller->isConfigured());
}

void TrayIcon::togglePopup()
{
    if (m_popup->isVisible())
        m_popup->hide();
    else
        m_popup->showNear(m_tray->geometry());
}

void TrayIcon::onActivated(QSystemTrayIcon::ActivationReason reason)
{
    if (reason == QSystemTrayIcon::Trigger)
        togglePopup();
}

void TrayIcon::onNotification(TrayNotification kind, const QString &title, const QString &message)
{
    const auto icon = kind == TrayNotification::WakeFinished ? QSystemTrayIcon::Information
                                                             : QSystemTrayIcon::Warning;
    qCInfo(lcTray).noquote() << "notification:" << message;
    if (QSystemTrayIcon::supportsMessages())
        m_tray->showMessage(title, message, icon, 10000);
}

void TrayIcon::onAutostartToggled(bool enabled)
{
    if (!m_autostart)
        return;
    const auto result = m_autostart->setEnabled(enabled);
    if (!result) {
        qCWarning(lcTray).noquote() << result.error();
        const QSignalBlocker block(m_startAtLogin);
        m_startAtLogin->setChecked(m_autostart->isEnabled());
        m_tray->showMessage(QStringLiteral("slullama"), result.error(), QSystemTrayIcon::Warning);
        return;
    }
    qCInfo(lcTray).noquote() << (enabled ? "start at login enabled:" : "start at login disabled:")
                             << m_autostart->location();
}

} // namespace slullama
