#pragma once

// The tunnel's questions as dialogs: unknown host key, key passphrase, keyboard-interactive
// rounds (each prompt shown exactly as the server words it) and password. Non-modal: the
// dialog answers the tunnel when it closes, and the event loop keeps running meanwhile.

#include "sshprompter.h"

#include <QObject>
#include <QPointer>

class QDialog;
class QWidget;

namespace slullama {

class DialogPrompter final : public QObject, public SshPrompter
{
    Q_OBJECT
public:
    explicit DialogPrompter(QWidget *parentWindow = nullptr, QObject *parent = nullptr);
    ~DialogPrompter() override;

    void acceptHostKey(const SshHostKeyInfo &key, BoolReply reply) override;
    void askPassphrase(const QString &keyFile, bool retry, TextReply reply) override;
    void askKbdInteractive(const QString &name, const QString &instruction,
                           const QList<SshKbdPrompt> &prompts, TextsReply reply) override;
    void askPassword(const QString &userAtHost, bool retry, TextReply reply) override;

    // The dialog waiting for an answer, if any (tests fill it in).
    QDialog *currentDialog() const { return m_current; }

signals:
    void dialogShown(QDialog *dialog);

private:
    void present(QDialog *dialog);

    QWidget *m_parentWindow;
    QPointer<QDialog> m_current;
};

} // namespace slullama
