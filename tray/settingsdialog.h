#pragma once

// Head node, ports and token. Saving writes the [client] section of the config.toml the CLI
// reads (clientconfigwriter.h) and hands the new settings to whoever opened the dialog.

#include "config.h"

#include <QDialog>

class QLabel;
class QLineEdit;
class QSpinBox;

namespace slullama {

class SettingsDialog final : public QDialog
{
    Q_OBJECT
public:
    SettingsDialog(const ClientConfig &current, const QString &configPath,
                   QWidget *parent = nullptr);

    // What the fields say, over the settings the dialog was opened with.
    ClientConfig clientConfig() const;
    QString errorText() const;

public slots:
    void accept() override;

signals:
    void saved(const slullama::ClientConfig &config);

private:
    ClientConfig m_base;
    QString m_configPath;
    QLineEdit *m_host = nullptr;
    QSpinBox *m_serverPort = nullptr;
    QSpinBox *m_localPort = nullptr;
    QLineEdit *m_token = nullptr;
    QLabel *m_error = nullptr;
};

} // namespace slullama
