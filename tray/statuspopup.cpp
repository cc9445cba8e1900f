#include "statuspopup.h"

#include "logging.h"
#include "traycontroller.h"
#include "trayicons.h"

#include <QClipboard>
#include <QCursor>
#include <QFormLayout>
#include <QGuiApplication>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QScreen>
#include <QVBoxLayout>

namespace slullama {

namespace {

const QString dash = QStringLiteral("—");

QString orDash(const QString &text)
{
    return text.isEmpty() ? dash : text;
}

} // namespace

StatusPopup::StatusPopup(TrayController *controller, QWidget *parent)
    : QFrame(parent, Qt::Popup), m_controller(controller)
{
    setObjectName(QStringLiteral("statusPopup"));
    setFrameShape(QFrame::StyledPanel);
    setWindowTitle(QStringLiteral("slullama"));

    auto *layout = new QVBoxLayout(this);

    auto *header = new QHBoxLayout;
    m_icon = new QLabel(this);
    m_icon->setFixedSize(32, 32);
    m_phase = new QLabel(this);
    m_phase->setObjectName(QStringLiteral("phaseValue"));
    QFont big = m_phase->font();
    big.setBold(true);
    big.setPointSizeF(big.pointSizeF() * 1.25);
    m_phase->setFont(big);
    header->addWidget(m_icon);
    header->addWidget(m_phase, 1);
    layout->addLayout(header);

    m_form = new QFormLayout;
    m_form->setLabelAlignment(Qt::AlignRight);
    layout->addLayout(m_form);
    m_host = addRow(QStringLiteral("Head node"), "hostValue");
    m_endpoint = addRow(QStringLiteral("Endpoint"), "endpointValue");
    m_node = addRow(QStringLiteral("GPU node"), "nodeValue");
    m_job = addRow(QStringLiteral("Slurm job"), "jobValue");
    m_pending = addRow(QStringLiteral("Waiting for"), "pendingValue");
    m_expected = addRow(QStringLiteral("Expected start"), "expectedStartValue");
    m_idle = addRow(QStringLiteral("Idle"), "idleValue");
    m_untilSleep = addRow(QStringLiteral("Sleeps in"), "untilSleepValue");
    m_active = addRow(QStringLiteral("Active requests"), "activeValue");
    m_requests = addRow(QStringLiteral("Requests served"), "requestsValue");
    m_uptime = addRow(QStringLiteral("Daemon uptime"), "uptimeValue");
    m_usage = addRow(QStringLiteral("Your usage today"), "usageValue");
    m_error = addRow(QStringLiteral("Last error"), "errorValue");
    m_error->setWordWrap(true);
    m_error->setMaximumWidth(320);
    m_error->setStyleSheet(QStringLiteral("color: #c62828;"));

    auto *buttons = new QHBoxLayout;
    m_wake = new QPushButton(QStringLiteral("Wake"), this);
    m_wake->setObjectName(QStringLiteral("wakeButton"));
    m_wake->setToolTip(QStringLiteral("Start the GPU node now, before the first request"));
    m_copy = new QPushButton(QStringLiteral("Copy endpoint"), this);
    m_copy->setObjectName(QStringLiteral("copyButton"));
    m_connect = new QPushButton(this);
    m_connect->setObjectName(QStringLiteral("connectButton"));
    buttons->addWidget(m_wake);
    buttons->addWidget(m_copy);
    buttons->addWidget(m_connect);
    layout->addLayout(buttons);

    connect(m_wake, &QPushButton::clicked, m_controller, &TrayController::wake);
    connect(m_copy, &QPushButton::clicked, this, &StatusPopup::copyEndpoint);
    connect(m_connect, &QPushButton::clicked, m_controller, &TrayController::toggleTunnel);
    connect(m_controller, &TrayController::changed, this, &StatusPopup::refresh);
    refresh();
}

QLabel *StatusPopup::addRow(const QString &label, const char *objectName)
{
    auto *value = new QLabel(this);
    value->setObjectName(QString::fromLatin1(objectName));
    value->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_form->addRow(label + QLatin1Char(':'), value);
    return value;
}

void StatusPopup::setRow(QLabel *value, const QString &text, bool visible)
{
    value->setText(text);
    m_form->setRowVisible(value, visible);
}

void StatusPopup::refresh()
{
    const TrayController &c = *m_controller;
    const TrayPhase phase = c.phase();
    m_icon->setPixmap(trayIcon(c.iconName()).pixmap(32, 32));
    m_phase->setText(c.phaseLabel());

    const bool configured = c.isConfigured();
    setRow(m_host, configured ? c.clientConfig().host : QStringLiteral("not set — open Settings"));
    setRow(m_endpoint, c.endpointUrl());
    const bool queued = phase == TrayPhase::Queued;
    const bool known = c.hasStatus();
    setRow(m_node, orDash(c.node()), known);
    setRow(m_job, orDash(c.jobId()), known);
    setRow(m_pending, orDash(c.pendingReason()), queued);
    setRow(m_expected, orDash(c.expectedStart()), queued && !c.expectedStart().isEmpty());
    setRow(m_usage, c.usageToday(), !c.usageToday().isEmpty());
    QString idle = dash;
    if (c.idleSeconds() >= 0)
        idle = formatDuration(c.idleSeconds());
    else if (c.activeRequests() > 0)
        idle = QStringLiteral("in use");
    else if (phase == TrayPhase::Ready)
        idle = QStringLiteral("not used yet");
    setRow(m_idle, idle, known);
    QString untilSleep = c.secondsUntilSleep() >= 0
        ? formatDuration(c.secondsUntilSleep())
        : (c.activeRequests() > 0 ? QStringLiteral("not while in use") : dash);
    if (!c.awakeUntil().isEmpty())
        untilSleep += QStringLiteral(" (awake until ") + c.awakeUntil() + QLatin1Char(')');
    setRow(m_untilSleep, untilSleep, known);
    setRow(m_active, QString::number(c.activeRequests()), known);
    setRow(m_requests, QString::number(c.requestCount()), known);
    setRow(m_uptime, c.uptimeSeconds() >= 0 ? formatDuration(c.uptimeSeconds()) : dash, known);
    setRow(m_error, c.lastError(), !c.lastError().isEmpty());

    const bool booting
        = phase == TrayPhase::Waking || phase == TrayPhase::Queued || phase == TrayPhase::Starting;
    m_wake->setEnabled(configured && !booting && phase != TrayPhase::Ready);

    const auto tunnel = c.tunnelState();
    const bool down
        = tunnel == TunnelControl::State::Disconnected || tunnel == TunnelControl::State::Failed;
    m_connect->setText(down ? QStringLiteral("Connect") : QStringLiteral("Disconnect"));
    m_connect->setEnabled(configured);
    adjustSize();
}

void StatusPopup::copyEndpoint()
{
    QGuiApplication::clipboard()->setText(m_controller->endpointUrl());
}

void StatusPopup::showNear(const QRect &iconGeometry)
{
    refresh();
    const QPoint anchor = iconGeometry.isValid() ? iconGeometry.center() : QCursor::pos();
    QScreen *screen = QGuiApplication::screenAt(anchor);
    if (!screen)
        screen = QGuiApplication::primaryScreen();
    const QRect area = screen ? screen->availableGeometry() : QRect(QPoint(0, 0), size());
    const QSize s = sizeHint();

    // Open towards the middle of the screen, away from the panel the icon sits in.
    QPoint pos = anchor;
    pos.rx() -= s.width() / 2;
    if (anchor.y() > area.center().y())
        pos.ry() = (iconGeometry.isValid() ? iconGeometry.top() : anchor.y()) - s.height();
    else
        pos.ry() = iconGeometry.isValid() ? iconGeometry.bottom() : anchor.y();
    pos.setX(std::clamp(pos.x(), area.left(), std::max(area.left(), area.right() - s.width())));
    pos.setY(std::clamp(pos.y(), area.top(), std::max(area.top(), area.bottom() - s.height())));
    move(pos);
    show();
    raise();
    activateWindow();
    // Where it went: for bug reports about odd placements, and for the Xvfb end-to-end test.
    const auto rect = [](const QRect &r) {
        return QStringLiteral("%1,%2 %3x%4").arg(r.x()).arg(r.y()).arg(r.width()).arg(r.height());
    };
    qCDebug(lcTray).noquote() << QStringLiteral("status popup shown: popup %1; wake button %2")
                                     .arg(rect(frameGeometry()),
                                          rect(QRect(m_wake->mapToGlobal(QPoint(0, 0)),
                                                     m_wake->size())));
}

} // namespace slullama
