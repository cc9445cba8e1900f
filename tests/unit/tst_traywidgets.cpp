#include "autostart.h"
#include "clientconfigwriter.h"
#include "promptdialogs.h"
#include "settingsdialog.h"
#include "statuspopup.h"
#include "statussource.h"
#include "traycontroller.h"
#include "trayicon.h"
#include "trayicons.h"
#include "tunnelcontrol.h"

#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QDialog>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTest>

using namespace slullama;

namespace {

class FakeTunnel final : public TunnelControl
{
public:
    void setClientConfig(const ClientConfig &) override {}
    void open() override { set(State::Connected); }
    void close() override
    {
        ++closes;
        set(State::Disconnected);
    }
    State state() const override { return m_state; }
    QString errorString() const override { return {}; }
    ErrorKind errorKind() const override { return ErrorKind::None; }
    void set(State state)
    {
        m_state = state;
        emit stateChanged(state);
    }
    int closes = 0;

private:
    State m_state = State::Disconnected;
};

class FakeSource final : public StatusSource
{
public:
    void setEndpoint(const QUrl &, const QString &) override {}
    void fetchStatus() override {}
    void wake() override { ++wakes; }
    int wakes = 0;
};

struct Rig
{
    FakeTunnel tunnel;
    FakeSource source;
    TrayController controller{&tunnel, &source};

    Rig()
    {
        ClientConfig c;
        c.host = QStringLiteral("alice@head");
        c.localPort = 11500;
        controller.setClientConfig(c);
        controller.start();
    }
    void answer(const char *json)
    {
        auto status = Status::fromJson(QByteArray(json));
        QVERIFY2(status.hasValue(), qPrintable(status.error()));
        emit source.statusReceived(status.value());
    }
};

QString text(QWidget *root, const char *name)
{
    auto *label = root->findChild<QLabel *>(QString::fromLatin1(name));
    return label ? label->text() : QStringLiteral("<no %1>").arg(QString::fromLatin1(name));
}

bool rowShown(QWidget *root, const char *name)
{
    auto *label = root->findChild<QLabel *>(QString::fromLatin1(name));
    return label && !label->isHidden();
}

QAction *action(QMenu *menu, const char *name)
{
    for (QAction *a : menu->actions()) {
        if (a->objectName() == QLatin1String(name))
            return a;
    }
    return nullptr;
}

// With SLULLAMA_ARTEFACTS set, widgets are saved there as PNG for a person to look at.
void saveArtefact(QWidget *widget, const QString &name)
{
    const QString dir = qEnvironmentVariable("SLULLAMA_ARTEFACTS");
    if (dir.isEmpty())
        return;
    widget->adjustSize();
    widget->grab().save(dir + QLatin1Char('/') + name + QStringLiteral(".png"));
}

QString readFile(const QString &path)
{
    QFile file(path);
    return file.open(QIODevice::ReadOnly) ? QString::fromUtf8(file.readAll()) : QString();
}

void writeFile(const QString &path, const QString &content)
{
    QFile file(path);
    QVERIFY(file.open(QIODevice::WriteOnly));
    file.write(content.toUtf8());
}

const char readyJson[] = R"({"phase":"ready","uptime_seconds":3600,"request_count":42,
    "idle_seconds":125,"seconds_until_sleep":1675,"active_requests":0,
    "last_error":"ollama restarted once",
    "job":{"id":"4242","state":"RUNNING","node":"gpu07"}})";

} // namespace

class TestTrayWidgets : public QObject
{
    Q_OBJECT

private:
    QTemporaryDir m_dir;

private slots:
    void initTestCase()
    {
        QVERIFY(m_dir.isValid());
        qputenv(autostartDirEnv, (m_dir.path() + QStringLiteral("/autostart")).toUtf8());
    }

    void iconsLoad_data()
    {
        QTest::addColumn<QString>("name");
        for (const char *name :
             {"sleeping", "waking", "starting", "ready", "error", "disconnected"})
            QTest::addRow("%s", name) << QString::fromLatin1(name);
    }

    void iconsLoad()
    {
        QFETCH(QString, name);
        QVERIFY(QFile::exists(trayIconPath(name)));
        // Needs Qt's SVG icon engine; a blank tray icon is the failure this catches.
        const QImage image = trayIcon(name).pixmap(22, 22).toImage();
        QVERIFY(!image.isNull());
        QCOMPARE(image.width(), 22);
        bool painted = false;
        for (int y = 0; y < image.height() && !painted; ++y)
            for (int x = 0; x < image.width() && !painted; ++x)
                painted = qAlpha(image.pixel(x, y)) > 0;
        QVERIFY2(painted, "blank icon: is Qt's SVG icon engine installed (Debian libqt6svg6)?");
        QVERIFY(!appIcon().pixmap(64, 64).isNull());
    }

    void popupShowsControllerState()
    {
        Rig rig;
        StatusPopup popup(&rig.controller);
        rig.answer(readyJson);
        QCOMPARE(text(&popup, "phaseValue"), QStringLiteral("Ready"));
        QCOMPARE(text(&popup, "hostValue"), QStringLiteral("alice@head"));
        QCOMPARE(text(&popup, "endpointValue"), QStringLiteral("http://localhost:11500"));
        QCOMPARE(text(&popup, "nodeValue"), QStringLiteral("gpu07"));
        QCOMPARE(text(&popup, "jobValue"), QStringLiteral("4242"));
        QVERIFY(text(&popup, "idleValue").startsWith(QStringLiteral("2 min 0")));
        QVERIFY(text(&popup, "untilSleepValue").startsWith(QStringLiteral("27 min")));
        QCOMPARE(text(&popup, "activeValue"), QStringLiteral("0"));
        QCOMPARE(text(&popup, "requestsValue"), QStringLiteral("42"));
        QVERIFY(text(&popup, "uptimeValue").startsWith(QStringLiteral("1 h 00 min")));
        QCOMPARE(text(&popup, "errorValue"), QStringLiteral("ollama restarted once"));
        QVERIFY(rowShown(&popup, "errorValue"));
        QVERIFY(!rowShown(&popup, "pendingValue"));
        saveArtefact(&popup, QStringLiteral("popup-ready"));

        rig.answer(R"({"phase":"queued","uptime_seconds":3700,
            "job":{"id":"4243","state":"PENDING","pending_reason":"Resources"}})");
        QCOMPARE(text(&popup, "phaseValue"), QStringLiteral("Queued"));
        QVERIFY(rowShown(&popup, "pendingValue"));
        QCOMPARE(text(&popup, "pendingValue"), QStringLiteral("Resources"));
        QVERIFY(!rowShown(&popup, "errorValue"));
        QVERIFY(!popup.findChild<QPushButton *>(QStringLiteral("wakeButton"))->isEnabled());
        saveArtefact(&popup, QStringLiteral("popup-queued"));
    }

    void popupButtonsAct()
    {
        Rig rig;
        StatusPopup popup(&rig.controller);
        rig.answer(R"({"phase":"sleeping","uptime_seconds":10})");
        auto *wake = popup.findChild<QPushButton *>(QStringLiteral("wakeButton"));
        auto *copy = popup.findChild<QPushButton *>(QStringLiteral("copyButton"));
        auto *connect = popup.findChild<QPushButton *>(QStringLiteral("connectButton"));
        QVERIFY(wake && copy && connect);

        QVERIFY(wake->isEnabled());
        QTest::mouseClick(wake, Qt::LeftButton);
        QCOMPARE(rig.source.wakes, 1);
        QCOMPARE(text(&popup, "phaseValue"), QStringLiteral("Waking up"));

        QApplication::clipboard()->clear();
        QTest::mouseClick(copy, Qt::LeftButton);
        QCOMPARE(QApplication::clipboard()->text(), QStringLiteral("http://localhost:11500"));

        QCOMPARE(connect->text(), QStringLiteral("Disconnect"));
        QTest::mouseClick(connect, Qt::LeftButton);
        QCOMPARE(rig.tunnel.closes, 1);
        QCOMPARE(connect->text(), QStringLiteral("Connect"));
        QCOMPARE(text(&popup, "phaseValue"), QStringLiteral("Disconnected"));
        QVERIFY(!rowShown(&popup, "nodeValue"));
    }

    void menuHasActions()
    {
        Rig rig;
        const auto autostart = createAutostart();
        QVERIFY(autostart->setEnabled(false).hasValue());
        TrayIcon tray(&rig.controller, autostart.get());
        QMenu *menu = tray.menu();

        QStringList texts;
        for (QAction *a : menu->actions()) {
            if (!a->isSeparator() && a->objectName() != QLatin1String("statusAction"))
                texts << a->text();
        }
        saveArtefact(menu, QStringLiteral("menu"));
        QCOMPARE(texts,
                 (QStringList{QStringLiteral("Wake now"), QStringLiteral("Keep awake for…"),
                              QStringLiteral("Disconnect"),
                              QStringLiteral("Copy endpoint"), QStringLiteral("Settings…"),
                              QStringLiteral("Start at login"), QStringLiteral("Quit")}));

        QAction *login = action(menu, "startAtLoginAction");
        QVERIFY(login->isCheckable());
        QVERIFY(!login->isChecked());
        login->trigger();
        QVERIFY(login->isChecked());
        QVERIFY(autostart->isEnabled());
        QVERIFY(QFile::exists(autostart->location()));
        login->trigger();
        QVERIFY(!autostart->isEnabled());

        QSignalSpy settings(&tray, &TrayIcon::settingsRequested);
        QSignalSpy quit(&tray, &TrayIcon::quitRequested);
        action(menu, "settingsAction")->trigger();
        action(menu, "quitAction")->trigger();
        QCOMPARE(settings.count(), 1);
        QCOMPARE(quit.count(), 1);

        action(menu, "wakeAction")->trigger();
        QCOMPARE(rig.source.wakes, 1);
        action(menu, "connectAction")->trigger();
        QCOMPARE(rig.tunnel.closes, 1);
        QCOMPARE(action(menu, "connectAction")->text(), QStringLiteral("Connect"));
    }

    void trayIconFollowsController()
    {
        Rig rig;
        TrayIcon tray(&rig.controller, nullptr);
        rig.answer(readyJson);
        QSystemTrayIcon *icon = tray.systemTrayIcon();
        QCOMPARE(icon->toolTip(), rig.controller.toolTip());
        QVERIFY(icon->toolTip().contains(QStringLiteral("Ready")));
        QVERIFY(icon->toolTip().contains(QStringLiteral("gpu07")));
        QVERIFY(icon->toolTip().contains(QStringLiteral("Idle 2 min")));
        const qint64 readyKey = icon->icon().cacheKey();
        QVERIFY(!icon->icon().isNull());

        rig.tunnel.set(TunnelControl::State::Reconnecting);
        QVERIFY(icon->icon().cacheKey() != readyKey);
        QVERIFY(icon->toolTip().contains(QStringLiteral("Connecting")));
        QCOMPARE(action(tray.menu(), "statusAction")->text(),
                 QStringLiteral("slullama: Connecting…"));
        // Without an autostart implementation the item is there but off.
        QVERIFY(!action(tray.menu(), "startAtLoginAction")->isEnabled());
    }

    void settingsDialogKeepsOtherSections()
    {
        const QString path = m_dir.path() + QStringLiteral("/keep.toml");
        writeFile(path, QStringLiteral(
                "# team settings\n"
                "[server]\n"
                "port = 11435 # daemon port\n"
                "token = \"server-secret\"\n"
                "\n"
                "[client]\n"
                "host = \"old@head\" # who we are\n"
                "ssh_port = 2222\n"
                "\n"
                "[slurm]\n"
                "partition = \"gpu\"\n"));
        ClientConfig current;
        current.host = QStringLiteral("old@head");
        current.sshPort = 2222;
        SettingsDialog dialog(current, path);
        saveArtefact(&dialog, QStringLiteral("settings"));
        QSignalSpy saved(&dialog, &SettingsDialog::saved);
        dialog.findChild<QLineEdit *>(QStringLiteral("hostEdit"))->setText(QStringLiteral("new@head2"));
        dialog.findChild<QSpinBox *>(QStringLiteral("serverPortSpin"))->setValue(12000);
        dialog.findChild<QSpinBox *>(QStringLiteral("localPortSpin"))->setValue(11600);
        dialog.findChild<QLineEdit *>(QStringLiteral("tokenEdit"))->setText(QStringLiteral("t\"ok"));
        dialog.accept();

        QCOMPARE(dialog.result(), int(QDialog::Accepted));
        QCOMPARE(saved.count(), 1);
        const auto config = saved.at(0).at(0).value<ClientConfig>();
        QCOMPARE(config.host, QStringLiteral("new@head2"));
        QCOMPARE(config.sshPort, quint16(2222)); // fields the dialog does not show survive

        const QString written = readFile(path);
        QCOMPARE(written, QStringLiteral("# team settings\n"
                                         "[server]\n"
                                         "port = 11435 # daemon port\n"
                                         "token = \"server-secret\"\n"
                                         "\n"
                                         "[client]\n"
                                         "host = \"new@head2\" # who we are\n"
                                         "ssh_port = 2222\n"
                                         "server_port = 12000\n"
                                         "token = \"t\\\"ok\"\n"
                                         "local_port = 11600\n"
                                         "\n"
                                         "[slurm]\n"
                                         "partition = \"gpu\"\n"));
    }

    void settingsDialogCreatesPrivateFile()
    {
        const QString path = m_dir.path() + QStringLiteral("/new/sub/config.toml");
        SettingsDialog dialog(ClientConfig{}, path);
        dialog.findChild<QLineEdit *>(QStringLiteral("hostEdit"))->setText(QStringLiteral("a@h"));
        dialog.accept();
        QCOMPARE(dialog.errorText(), QString());
        QVERIFY(readFile(path).startsWith(QStringLiteral("[client]\nhost = \"a@h\"\n")));
        // It holds the token: the owner's only.
        QCOMPARE(QFile::permissions(path) & (QFile::ReadGroup | QFile::ReadOther),
                 QFileDevice::Permissions());
    }

    void savingATokenMakesAReadableFilePrivate()
    {
        const QString path = m_dir.path() + QStringLiteral("/shared.toml");
        QFile f(path);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("[slurm]\npartition = \"gpu\"\n");
        f.close();
        const auto readable = QFile::ReadOwner | QFile::WriteOwner | QFile::ReadGroup | QFile::ReadOther;
        QVERIFY(QFile::setPermissions(path, readable));

        ClientConfig client;
        client.host = QStringLiteral("a@h");
        QVERIFY(writeClientSection(path, client)); // no token: left as it was
        QCOMPARE(QFile::permissions(path) & (QFile::ReadGroup | QFile::ReadOther),
                 QFile::ReadGroup | QFile::ReadOther);
        client.token = QStringLiteral("secret");
        QVERIFY(writeClientSection(path, client));
        QCOMPARE(QFile::permissions(path) & (QFile::ReadGroup | QFile::ReadOther),
                 QFileDevice::Permissions());
        QVERIFY(readFile(path).contains(QStringLiteral("partition = \"gpu\"")));
    }

    void settingsDialogRefusesEmptyHost()
    {
        const QString path = m_dir.path() + QStringLiteral("/empty.toml");
        SettingsDialog dialog(ClientConfig{}, path);
        QSignalSpy saved(&dialog, &SettingsDialog::saved);
        dialog.accept();
        QCOMPARE(saved.count(), 0);
        QVERIFY(dialog.errorText().contains(QStringLiteral("head node")));
        QVERIFY(!QFile::exists(path));
    }

    void clientSectionEdits_data()
    {
        QTest::addColumn<QString>("before");
        QTest::addColumn<QString>("after");
        const QString keys = QStringLiteral("host = \"u@h\"\nserver_port = 11435\ntoken = \"\"\n"
                                            "local_port = 11434\n");
        QTest::addRow("empty") << QString() << QStringLiteral("[client]\n") + keys;
        QTest::addRow("appended after other sections")
                << QStringLiteral("[server]\nport = 1\n")
                << QStringLiteral("[server]\nport = 1\n\n[client]\n") + keys;
        QTest::addRow("hash inside a string is no comment")
                << QStringLiteral("[client]\ntoken = \"a#b\" # the secret\n")
                << QStringLiteral("[client]\ntoken = \"\" # the secret\nhost = \"u@h\"\n"
                                  "server_port = 11435\nlocal_port = 11434\n");
        QTest::addRow("literal string and odd spacing")
                << QStringLiteral("[ client ]  # laptop\n  host='x@y'\n")
                << QStringLiteral("[ client ]  # laptop\n  host= \"u@h\"\nserver_port = 11435\n"
                                  "token = \"\"\nlocal_port = 11434\n");
        QTest::addRow("client sub-table untouched")
                << QStringLiteral("[client.extra]\nhost = \"keep\"\n")
                << QStringLiteral("[client.extra]\nhost = \"keep\"\n\n[client]\n") + keys;
        QTest::addRow("crlf kept")
                << QStringLiteral("[client]\r\nhost = \"a\"\r\n")
                << QStringLiteral("[client]\r\nhost = \"u@h\"\r\nserver_port = 11435\r\n"
                                  "token = \"\"\r\nlocal_port = 11434\r\n");
    }

    void clientSectionEdits()
    {
        QFETCH(QString, before);
        QFETCH(QString, after);
        ClientConfig c;
        c.host = QStringLiteral("u@h");
        QCOMPARE(withClientSection(before, c), after);
    }

    void kbdInteractiveShowsServerWords()
    {
        DialogPrompter prompter;
        std::optional<QStringList> answer;
        int replies = 0;
        prompter.askKbdInteractive(
                QStringLiteral("Duo two-factor"), QStringLiteral("Site policy: use your token."),
                {SshKbdPrompt{QStringLiteral("Verification code: "), false},
                 SshKbdPrompt{QStringLiteral("Favourite colour? "), true}},
                [&](std::optional<QStringList> a) {
                    answer = a;
                    ++replies;
                });
        QDialog *dialog = prompter.currentDialog();
        QVERIFY(dialog);
        QCOMPARE(text(dialog, "promptLabel0"), QStringLiteral("Verification code: "));
        QCOMPARE(text(dialog, "promptLabel1"), QStringLiteral("Favourite colour? "));
        QCOMPARE(text(dialog, "instructionLabel"), QStringLiteral("Site policy: use your token."));
        saveArtefact(dialog, QStringLiteral("kbd-interactive"));
        auto *code = dialog->findChild<QLineEdit *>(QStringLiteral("answerEdit0"));
        auto *colour = dialog->findChild<QLineEdit *>(QStringLiteral("answerEdit1"));
        QCOMPARE(code->echoMode(), QLineEdit::Password);
        QCOMPARE(colour->echoMode(), QLineEdit::Normal);
        code->setText(QStringLiteral("123456"));
        colour->setText(QStringLiteral("blue"));
        dialog->accept();
        QCOMPARE(replies, 1);
        QVERIFY(answer.has_value());
        QCOMPARE(*answer, (QStringList{QStringLiteral("123456"), QStringLiteral("blue")}));
        QTRY_VERIFY(!prompter.currentDialog()); // deleted on close
        QCOMPARE(replies, 1);
    }

    void hostKeyRefusedByDefault()
    {
        DialogPrompter prompter;
        std::optional<bool> trusted;
        prompter.acceptHostKey(SshHostKeyInfo{QStringLiteral("[head]:2222"),
                                              QStringLiteral("ssh-ed25519"),
                                              QStringLiteral("SHA256:abcDEF123"),
                                              QStringLiteral("/tmp/kh")},
                               [&](bool ok) { trusted = ok; });
        QDialog *dialog = prompter.currentDialog();
        QVERIFY(dialog);
        QCOMPARE(text(dialog, "fingerprintLabel"), QStringLiteral("SHA256:abcDEF123"));
        QVERIFY(text(dialog, "introLabel").contains(QStringLiteral("[head]:2222")));
        saveArtefact(dialog, QStringLiteral("host-key"));
        dialog->show();
        QTest::keyClick(dialog, Qt::Key_Return); // Enter means "no" here
        QVERIFY(trusted.has_value());
        QCOMPARE(*trusted, false);
    }

    void secretCancelledWhenDialogGoes()
    {
        int replies = 0;
        std::optional<QString> answer = QStringLiteral("unset");
        {
            DialogPrompter prompter;
            prompter.askPassphrase(QStringLiteral("/home/a/.ssh/id_ed25519"), true,
                                   [&](std::optional<QString> a) {
                                       answer = a;
                                       ++replies;
                                   });
            QVERIFY(text(prompter.currentDialog(), "questionLabel")
                            .contains(QStringLiteral("id_ed25519")));
            QVERIFY(!text(prompter.currentDialog(), "problemLabel").isEmpty());
        } // e.g. the tray quits while asking: the tunnel still gets its (negative) answer
        QCOMPARE(replies, 1);
        QVERIFY(!answer.has_value());

        DialogPrompter prompter;
        prompter.askPassword(QStringLiteral("alice@head"), false, [&](std::optional<QString> a) {
            answer = a;
            ++replies;
        });
        prompter.currentDialog()->findChild<QLineEdit *>(QStringLiteral("secretEdit"))
                ->setText(QStringLiteral("pw"));
        prompter.currentDialog()->accept();
        QCOMPARE(replies, 2);
        QCOMPARE(answer, std::optional<QString>(QStringLiteral("pw")));
    }
};

QTEST_MAIN(TestTrayWidgets)
#include "tst_traywidgets.moc"
