#pragma once

// The window a left click on the tray icon opens: everything the controller knows, and the
// three things a user does here (wake, copy the endpoint, connect/disconnect). Renders only.

#include <QFrame>

class QFormLayout;
class QLabel;
class QPushButton;

namespace slullama {

class TrayController;

class StatusPopup final : public QFrame
{
    Q_OBJECT
public:
    explicit StatusPopup(TrayController *controller, QWidget *parent = nullptr);

    // Places the popup next to the tray icon (or the mouse when the icon's place is unknown)
    // and shows it.
    void showNear(const QRect &iconGeometry);

public slots:
    void refresh();
    void copyEndpoint();

private:
    QLabel *addRow(const QString &label, const char *objectName);
    void setRow(QLabel *value, const QString &text, bool visible = true);

    TrayController *m_controller;
    QFormLayout *m_form = nullptr;
    QLabel *m_icon = nullptr;
    QLabel *m_phase = nullptr;
    QLabel *m_host = nullptr;
    QLabel *m_endpoint = nullptr;
    QLabel *m_node = nullptr;
    QLabel *m_job = nullptr;
    QLabel *m_pending = nullptr;
    QLabel *m_expected = nullptr;
    QLabel *m_idle = nullptr;
    QLabel *m_untilSleep = nullptr;
    QLabel *m_active = nullptr;
    QLabel *m_requests = nullptr;
    QLabel *m_uptime = nullptr;
    QLabel *m_usage = nullptr;
    QLabel *m_error = nullptr;
    QPushButton *m_wake = nullptr;
    QPushButton *m_copy = nullptr;
    QPushButton *m_connect = nullptr;
};

} // namespace slullama
