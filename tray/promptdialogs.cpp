#include "promptdialogs.h"

#include "trayicons.h"

#include <QDialog>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QVBoxLayout>

#include <memory>

namespace slullama {

namespace {

// Calls the tunnel's reply exactly once: with the answer on accept, with "cancel" when the
// dialog is rejected or destroyed unanswered (e.g. at quit).
template<typename Reply, typename Value>
class OnceReply
{
public:
    OnceReply(Reply reply, Value cancel) : m_reply(std::move(reply)), m_cancel(std::move(cancel)) {}
    ~OnceReply() { send(m_cancel); }
    void send(const Value &value)
    {
        if (!m_reply)
            return;
        auto reply = std::move(m_reply);
        m_reply = nullptr;
        reply(value);
    }

private:
    Reply m_reply;
    Value m_cancel;
};

QDialog *makeDialog(QWidget *parent, const QString &title, const char *objectName)
{
    auto *dialog = new QDialog(parent);
    dialog->setObjectName(QString::fromLatin1(objectName));
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setWindowTitle(title);
    dialog->setWindowIcon(appIcon());
    dialog->setMinimumWidth(420);
    return dialog;
}

QLabel *addText(QVBoxLayout *layout, const QString &text, const char *objectName)
{
    auto *label = new QLabel(text);
    label->setObjectName(QString::fromLatin1(objectName));
    label->setTextFormat(Qt::PlainText);  // server-provided text is not markup
    label->setWordWrap(true);
    label->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(label);
    return label;
}

QLineEdit *secretEdit(const char *objectName)
{
    auto *edit = new QLineEdit;
    edit->setObjectName(QString::fromLatin1(objectName));
    edit->setEchoMode(QLineEdit::Password);
    return edit;
}

QDialogButtonBox *addButtons(QDialog *dialog, QVBoxLayout *layout, const QString &okText)
{
    auto *buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, dialog);
    buttons->button(QDialogButtonBox::Ok)->setText(okText);
    QObject::connect(buttons, &QDialogButtonBox::accepted, dialog, &QDialog::accept);
    QObject::connect(buttons, &QDialogButtonBox::rejected, dialog, &QDialog::reject);
    layout->addWidget(buttons);
    return buttons;
}

using OptText = std::optional<QString>;
using OptTexts = std::optional<QStringList>;

// One secret in one line edit: passphrase and password.
void askSecret(QDialog *dialog, const QString &question, const QString &problem,
               SshPrompter::TextReply reply)
{
    auto *layout = new QVBoxLayout(dialog);
    if (!problem.isEmpty())
        addText(layout, problem, "problemLabel")->setStyleSheet(QStringLiteral("color: #c62828;"));
    addText(layout, question, "questionLabel");
    auto *edit = secretEdit("secretEdit");
    layout->addWidget(edit);
    addButtons(dialog, layout, QStringLiteral("Continue"));

    auto once = std::make_shared<OnceReply<SshPrompter::TextReply, OptText>>(std::move(reply),
                                                                           std::nullopt);
    QObject::connect(dialog, &QDialog::finished, dialog, [once, edit](int result) {
        once->send(result == QDialog::Accepted ? OptText(edit->text()) : std::nullopt);
    });
    // Destroyed unanswered: the lambda (and `once`) dies with the dialog and answers "cancel".
}

} // namespace

DialogPrompter::DialogPrompter(QWidget *parentWindow, QObject *parent)
    : QObject(parent)
    , m_parentWindow(parentWindow)
{
}

DialogPrompter::~DialogPrompter()
{
    if (m_current)
        delete m_current.data();
}

void DialogPrompter::present(QDialog *dialog)
{
    m_current = dialog;
    dialog->show();
    dialog->raise();
    dialog->activateWindow();
    emit dialogShown(dialog);
}

void DialogPrompter::acceptHostKey(const SshHostKeyInfo &key, BoolReply reply)
{
    QDialog *dialog = makeDialog(m_parentWindow, QStringLiteral("Unknown host key"), "hostKeyDialog");
    auto *layout = new QVBoxLayout(dialog);
    addText(layout,
            QStringLiteral("slullama has not connected to %1 before, so it cannot tell whether it "
                           "is really that computer.")
                    .arg(key.host),
            "introLabel");
    addText(layout, QStringLiteral("%1 key fingerprint:").arg(key.keyType), "keyTypeLabel");
    QLabel *fp = addText(layout, key.fingerprint, "fingerprintLabel");
    QFont mono = fp->font();
    mono.setFamily(QStringLiteral("monospace"));
    mono.setStyleHint(QFont::Monospace);
    fp->setFont(mono);
    addText(layout,
            QStringLiteral("Compare it with the fingerprint your cluster's administrators publish "
                           "(or `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the head node). "
                           "Trusting it adds the key to %1.")
                    .arg(key.knownHostsFile),
            "adviceLabel");
    auto *buttons = addButtons(dialog, layout, QStringLiteral("Trust and connect"));
    // Refusing is the safe answer; a stray Enter must not trust a key.
    buttons->button(QDialogButtonBox::Ok)->setAutoDefault(false);
    buttons->button(QDialogButtonBox::Cancel)->setDefault(true);

    auto once = std::make_shared<OnceReply<BoolReply, bool>>(std::move(reply), false);
    connect(dialog, &QDialog::finished, dialog,
            [once](int result) { once->send(result == QDialog::Accepted); });
    present(dialog);
}

void DialogPrompter::askPassphrase(const QString &keyFile, bool retry, TextReply reply)
{
    QDialog *dialog = makeDialog(m_parentWindow, QStringLiteral("Key passphrase"), "passphraseDialog");
    askSecret(dialog, QStringLiteral("Passphrase for %1:").arg(keyFile),
              retry ? QStringLiteral("That passphrase did not unlock the key.") : QString(),
              std::move(reply));
    present(dialog);
}

void DialogPrompter::askPassword(const QString &userAtHost, bool retry, TextReply reply)
{
    QDialog *dialog = makeDialog(m_parentWindow, QStringLiteral("Password"), "passwordDialog");
    askSecret(dialog, QStringLiteral("Password for %1:").arg(userAtHost),
              retry ? QStringLiteral("The server refused that password.") : QString(),
              std::move(reply));
    present(dialog);
}

void DialogPrompter::askKbdInteractive(const QString &name, const QString &instruction,
                                       const QList<SshKbdPrompt> &prompts, TextsReply reply)
{
    QDialog *dialog = makeDialog(
            m_parentWindow, name.isEmpty() ? QStringLiteral("Head node login") : name, "kbdDialog");
    auto *layout = new QVBoxLayout(dialog);
    if (!name.isEmpty())
        addText(layout, name, "nameLabel");
    if (!instruction.isEmpty())
        addText(layout, instruction, "instructionLabel");

    QList<QLineEdit *> edits;
    auto *form = new QFormLayout;
    layout->addLayout(form);
    for (qsizetype i = 0; i < prompts.size(); ++i) {
        // The server's words, as they are: HPC sites phrase their one-time-code prompts.
        auto *label = new QLabel(prompts[i].text);
        label->setObjectName(QStringLiteral("promptLabel%1").arg(i));
        label->setTextFormat(Qt::PlainText);
        auto *edit = secretEdit("");
        edit->setObjectName(QStringLiteral("answerEdit%1").arg(i));
        if (prompts[i].echo)
            edit->setEchoMode(QLineEdit::Normal);
        label->setBuddy(edit);
        form->addRow(label, edit);
        edits << edit;
    }
    addButtons(dialog, layout, QStringLiteral("Continue"));

    auto once = std::make_shared<OnceReply<TextsReply, OptTexts>>(std::move(reply), std::nullopt);
    connect(dialog, &QDialog::finished, dialog, [once, edits](int result) {
        if (result != QDialog::Accepted) {
            once->send(std::nullopt);
            return;
        }
        QStringList answers;
        for (QLineEdit *edit : edits)
            answers << edit->text();
        once->send(answers);
    });
    present(dialog);
}

} // namespace slullama
