#include "settingsdialog.h"

#include "clientconfigwriter.h"
#include "logging.h"
#include "trayicons.h"

#include <QAction>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QSpinBox>
#include <QVBoxLayout>

namespace slullama {

namespace {

QSpinBox *portBox(quint16 value, const char *objectName, QWidget *parent)
{
    auto *box = new QSpinBox(parent);
    box->setObjectName(QString::fromLatin1(objectName));
    box->setRange(1, 65535);
    box->setValue(value == 0 ? 1 : value);
    return box;
}

} // namespace

SettingsDialog::SettingsDialog(const ClientConfig &current, const QString &configPath,
                               QWidget *parent)
    : QDialog(parent)
    , m_base(current)
    , m_configPath(configPath)
{
    setObjectName(QStringLiteral("settingsDialog"));
    setWindowTitle(QStringLiteral("slullama settings"));
    setWindowIcon(appIcon());

    auto *layout = new QVBoxLayout(this);
    auto *form = new QFormLayout;
    layout->addLayout(form);

    m_host = new QLineEdit(current.host, this);
    m_host->setObjectName(QStringLiteral("hostEdit"));
    m_host->setPlaceholderText(QStringLiteral("user@headnode"));
    m_host->setToolTip(QStringLiteral(
            "SSH destination of the head node; ~/.ssh/config host aliases work"));
    form->addRow(QStringLiteral("Head node:"), m_host);

    m_serverPort = portBox(current.serverPort, "serverPortSpin", this);
    m_serverPort->setToolTip(QStringLiteral("The daemon's port on the head node"));
    form->addRow(QStringLiteral("Server port:"), m_serverPort);

    m_localPort = portBox(current.localPort, "localPortSpin", this);
    m_localPort->setToolTip(QStringLiteral(
            "Where tools on this computer find Ollama (http://localhost:PORT)"));
    form->addRow(QStringLiteral("Local port:"), m_localPort);

    m_token = new QLineEdit(current.token, this);
    m_token->setObjectName(QStringLiteral("tokenEdit"));
    m_token->setEchoMode(QLineEdit::Password);
    m_token->setPlaceholderText(QStringLiteral("shared secret from the daemon's [server] token"));
    auto *reveal = m_token->addAction(QIcon::fromTheme(QStringLiteral("view-visible")),
                                      QLineEdit::TrailingPosition);
    reveal->setCheckable(true);
    reveal->setToolTip(QStringLiteral("Show the token"));
    connect(reveal, &QAction::toggled, this, [this](bool shown) {
        m_token->setEchoMode(shown ? QLineEdit::Normal : QLineEdit::Password);
    });
    form->addRow(QStringLiteral("Token:"), m_token);

    auto *where = new QLabel(QStringLiteral("Saved to the [client] section of %1")
                                     .arg(m_configPath.toHtmlEscaped()),
                             this);
    where->setWordWrap(true);
    where->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(where);

    m_error = new QLabel(this);
    m_error->setObjectName(QStringLiteral("errorLabel"));
    m_error->setWordWrap(true);
    m_error->setStyleSheet(QStringLiteral("color: #c62828;"));
    m_error->hide();
    layout->addWidget(m_error);

    auto *buttons = new QDialogButtonBox(QDialogButtonBox::Save | QDialogButtonBox::Cancel, this);
    connect(buttons, &QDialogButtonBox::accepted, this, &SettingsDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &SettingsDialog::reject);
    layout->addWidget(buttons);
}

ClientConfig SettingsDialog::clientConfig() const
{
    ClientConfig config = m_base;
    config.host = m_host->text().trimmed();
    config.serverPort = static_cast<quint16>(m_serverPort->value());
    config.localPort = static_cast<quint16>(m_localPort->value());
    config.token = m_token->text();
    return config;
}

QString SettingsDialog::errorText() const
{
    return m_error->isHidden() ? QString() : m_error->text();
}

void SettingsDialog::accept()
{
    const ClientConfig config = clientConfig();
    QString problem;
    if (config.host.isEmpty())
        problem = QStringLiteral("Enter the head node, e.g. user@headnode.");
    else if (config.host.contains(QLatin1Char(' ')) || config.host.startsWith(QLatin1Char('-')))
        problem = QStringLiteral("The head node is an SSH destination like user@headnode, without "
                                 "spaces or options.");
    else if (config.token.contains(QLatin1Char('\n')))
        problem = QStringLiteral("The token must be a single line.");

    if (problem.isEmpty()) {
        const auto written = writeClientSection(m_configPath, config);
        if (!written)
            problem = written.error();
    }
    if (!problem.isEmpty()) {
        m_error->setText(problem);
        m_error->show();
        return;
    }
    m_error->hide();
    m_error->clear();
    qCInfo(lcTray).noquote() << "saved [client] settings to" << m_configPath;
    emit saved(config);
    QDialog::accept();
}

} // namespace slullama
