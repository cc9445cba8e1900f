#include "autostart.h"

#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QTest>

using namespace slullama;

class TestAutostart : public QObject
{
    Q_OBJECT

private:
    QTemporaryDir m_home;
    QString m_dir;

    QString entryPath() const { return m_dir + QStringLiteral("/slullama-tray.desktop"); }

    static QString read(const QString &path)
    {
        QFile file(path);
        if (!file.open(QIODevice::ReadOnly))
            return {};
        return QString::fromUtf8(file.readAll());
    }

private slots:
    void initTestCase()
    {
        QVERIFY(m_home.isValid());
        // Never the real ~/.config/autostart: a folder that does not exist yet.
        m_dir = m_home.path() + QStringLiteral("/config/autostart");
        qputenv(autostartDirEnv, m_dir.toUtf8());
    }

    void cleanup() { QFile::remove(entryPath()); }

    void locationIsRedirected()
    {
        QCOMPARE(xdgAutostartDir(), m_dir);
        const auto autostart = createAutostart();
        QVERIFY(autostart->isSupported());
        QCOMPARE(autostart->location(), entryPath());
        QVERIFY(!autostart->isEnabled());
    }

    void enableWritesEntry()
    {
        const auto autostart = createAutostart();
        const auto result = autostart->setEnabled(true);
        QVERIFY2(result.hasValue(), qPrintable(result.error()));
        QVERIFY(QFile::exists(entryPath()));
        QVERIFY(autostart->isEnabled());

        const QStringList lines = read(entryPath()).split(QLatin1Char('\n'));
        QCOMPARE(lines.first(), QStringLiteral("[Desktop Entry]"));
        for (const char *expected :
             {"Type=Application", "Exec=slullama-tray", "Icon=slullama",
              "X-GNOME-Autostart-enabled=true", "Terminal=false"}) {
            QVERIFY2(lines.contains(QString::fromLatin1(expected)), expected);
        }
        QVERIFY(lines.contains(QStringLiteral("Name=slullama")));
        // Enabling twice leaves one well-formed entry.
        QVERIFY(autostart->setEnabled(true).hasValue());
        QCOMPARE(read(entryPath()).count(QStringLiteral("[Desktop Entry]")), 1);
    }

    void disableRemovesEntry()
    {
        const auto autostart = createAutostart();
        QVERIFY(autostart->setEnabled(true).hasValue());
        QVERIFY(autostart->isEnabled());
        const auto result = autostart->setEnabled(false);
        QVERIFY2(result.hasValue(), qPrintable(result.error()));
        QVERIFY(!QFile::exists(entryPath()));
        QVERIFY(!autostart->isEnabled());
        // Disabling what is not there is fine.
        QVERIFY(autostart->setEnabled(false).hasValue());
    }

    void desktopSwitchedOffIsDisabled_data()
    {
        QTest::addColumn<QString>("line");
        QTest::addRow("gnome") << QStringLiteral("X-GNOME-Autostart-enabled=false");
        QTest::addRow("hidden") << QStringLiteral("Hidden=true");
    }

    void desktopSwitchedOffIsDisabled()
    {
        QFETCH(QString, line);
        QVERIFY(QDir().mkpath(m_dir));
        QFile file(entryPath());
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write(QStringLiteral("[Desktop Entry]\nType=Application\nExec=slullama-tray\n%1\n")
                           .arg(line)
                           .toUtf8());
        file.close();
        QVERIFY(!createAutostart()->isEnabled());
    }

    void execIsQuoted_data()
    {
        QTest::addColumn<QString>("program");
        QTest::addColumn<QString>("exec");
        QTest::addRow("name") << QStringLiteral("slullama-tray")
                              << QStringLiteral("Exec=slullama-tray");
        QTest::addRow("path") << QStringLiteral("/opt/slullama/bin/slullama-tray")
                              << QStringLiteral("Exec=/opt/slullama/bin/slullama-tray");
        QTest::addRow("space") << QStringLiteral("/home/a b/slullama-tray")
                               << QStringLiteral("Exec=\"/home/a b/slullama-tray\"");
        QTest::addRow("percent and dollar")
                << QStringLiteral("/x/100% $HOME/tray")
                << QStringLiteral("Exec=\"/x/100%% \\$HOME/tray\"");
    }

    void execIsQuoted()
    {
        QFETCH(QString, program);
        QFETCH(QString, exec);
        QVERIFY2(desktopEntry(program).split(QLatin1Char('\n')).contains(exec),
                 qPrintable(desktopEntry(program)));
        const auto autostart = createAutostart(program);
        QVERIFY(autostart->setEnabled(true).hasValue());
        QVERIFY(read(entryPath()).split(QLatin1Char('\n')).contains(exec));
    }

    void unwritableDirIsAnError()
    {
        // A file where the folder should be: mkpath fails and the message names the place.
        const QString blocker = m_home.path() + QStringLiteral("/blocked");
        QFile file(blocker);
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.close();
        qputenv(autostartDirEnv, (blocker + QStringLiteral("/autostart")).toUtf8());
        const auto result = createAutostart()->setEnabled(true);
        qputenv(autostartDirEnv, m_dir.toUtf8());
        QVERIFY(!result.hasValue());
        QVERIFY2(result.error().contains(blocker), qPrintable(result.error()));
    }
};

QTEST_GUILESS_MAIN(TestAutostart)
#include "tst_autostart.moc"
