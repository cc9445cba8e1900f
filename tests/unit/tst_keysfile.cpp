#include "cliopts.h"
#include "keysfile.h"

#include <QFile>
#include <QRegularExpression>
#include <QSet>
#include <QTemporaryDir>
#include <QTest>

#include <sys/stat.h>

using namespace slullama;

class TestKeysFile final : public QObject
{
    Q_OBJECT

private slots:
    void generatedKeys();
    void roundTrip();
    void parseErrors_data();
    void parseErrors();
    void addRevokeList();
    void fileIsPrivate();
    void keysFilePath_data();
    void keysFilePath();
    void commandLine_data();
    void commandLine();
};

void TestKeysFile::generatedKeys()
{
    const QRegularExpression shape(QStringLiteral("^sk-slullama-[A-Za-z0-9_-]{43}$"));
    QSet<QString> seen;
    for (int i = 0; i < 50; ++i) {
        const QString key = generateApiKey();
        QVERIFY2(shape.match(key).hasMatch(), qPrintable(key));
        seen.insert(key);
    }
    QCOMPARE(seen.size(), 50);
    QCOMPARE(apiKeyDigest("abc").toHex(),
             QByteArray("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

void TestKeysFile::roundTrip()
{
    KeysFile file;
    ApiKey a;
    a.name = QStringLiteral("alice@lab");
    a.sha256 = apiKeyDigest("one");
    a.created = QDateTime(QDate(2024, 5, 1), QTime(10, 0), Qt::UTC);
    ApiKey b;
    b.name = QStringLiteral("bob");
    b.sha256 = apiKeyDigest("two");
    b.admin = true;
    b.revoked = QDateTime(QDate(2024, 6, 1), QTime(8, 0), Qt::UTC);
    b.maxConcurrent = 2;
    b.requestsPerMinute = 60;
    file.keys = {a, b};
    const auto parsed = parseKeysFile(serializeKeysFile(file), QStringLiteral("mem"));
    QVERIFY2(parsed.hasValue(), qPrintable(parsed.error()));
    QCOMPARE(parsed->keys.size(), 2);
    const ApiKey *pa = parsed->find(QStringLiteral("alice@lab"));
    const ApiKey *pb = parsed->find(QStringLiteral("bob"));
    QVERIFY(pa && pb);
    QCOMPARE(pa->sha256, a.sha256);
    QCOMPARE(pa->created, a.created);
    QVERIFY(!pa->isRevoked());
    QVERIFY(!pa->admin);
    QVERIFY(!pa->maxConcurrent);
    QCOMPARE(pb->revoked, b.revoked);
    QVERIFY(pb->admin);
    QCOMPARE(*pb->maxConcurrent, 2);
    QCOMPARE(*pb->requestsPerMinute, 60);
    // The digests are in the file, never anything that would let one rebuild a key.
    QVERIFY(!serializeKeysFile(file).contains("one"));
}

void TestKeysFile::parseErrors_data()
{
    QTest::addColumn<QByteArray>("text");
    QTest::addColumn<QString>("expected");
    const QByteArray hash = "sha256 = \"" + QByteArray(64, 'a') + "\"\n";
    QTest::addRow("syntax") << QByteArray("[keys.a\n") << QStringLiteral("TOML syntax error");
    QTest::addRow("short hash") << QByteArray("[keys.a]\nsha256 = \"abcd\"\n")
                                << QStringLiteral("expected 64 hex digits");
    QTest::addRow("not hex") << QByteArray("[keys.a]\nsha256 = \"" + QByteArray(64, 'z') + "\"\n")
                             << QStringLiteral("expected 64 hex digits");
    QTest::addRow("no hash") << QByteArray("[keys.a]\nadmin = true\n")
                             << QStringLiteral("sha256 is missing");
    QTest::addRow("typo in revoked")
        << QByteArray("[keys.a]\n" + hash + "revokd = \"2024-01-01T00:00:00Z\"\n")
        << QStringLiteral("unknown field");
    QTest::addRow("bad time") << QByteArray("[keys.a]\n" + hash + "revoked = \"yesterday\"\n")
                              << QStringLiteral("ISO 8601");
    QTest::addRow("bad name") << QByteArray("[keys.\"a b\"]\n" + hash)
                              << QStringLiteral("a name is letters");
    QTest::addRow("other table") << QByteArray("[server]\nport = 1\n")
                                 << QStringLiteral("expected only [keys.");
    QTest::addRow("negative limit") << QByteArray("[keys.a]\n" + hash + "max_concurrent = -1\n")
                                    << QStringLiteral("integer >= 0");
}

void TestKeysFile::parseErrors()
{
    QFETCH(QByteArray, text);
    QFETCH(QString, expected);
    const auto parsed = parseKeysFile(text, QStringLiteral("keys.toml"));
    QVERIFY(!parsed.hasValue());
    QVERIFY2(parsed.error().contains(expected), qPrintable(parsed.error()));
    QVERIFY2(parsed.error().startsWith(QStringLiteral("keys.toml")), qPrintable(parsed.error()));
}

void TestKeysFile::addRevokeList()
{
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("sub/keys.toml"));
    const auto alice = addKey(path, QStringLiteral("alice"), false);
    QVERIFY2(alice.hasValue(), qPrintable(alice.error()));
    const auto bob = addKey(path, QStringLiteral("bob"), true);
    QVERIFY(bob.hasValue());
    QVERIFY(*alice != *bob);
    QVERIFY(!addKey(path, QStringLiteral("alice"), false).hasValue()); // still active
    QVERIFY(!addKey(path, QStringLiteral("bad name"), false).hasValue());

    auto file = loadKeysFile(path);
    QVERIFY(file.hasValue());
    QCOMPARE(file->find(QStringLiteral("alice"))->sha256, apiKeyDigest(alice->toLatin1()));
    QVERIFY(file->find(QStringLiteral("bob"))->admin);

    QVERIFY(revokeKey(path, QStringLiteral("alice")).hasValue());
    QVERIFY(revokeKey(path, QStringLiteral("alice")).hasValue()); // twice is fine
    QVERIFY(!revokeKey(path, QStringLiteral("carol")).hasValue());
    file = loadKeysFile(path);
    QVERIFY(file->find(QStringLiteral("alice"))->isRevoked());
    QVERIFY(!file->find(QStringLiteral("bob"))->isRevoked());

    const QString list = formatKeyList(*file);
    QVERIFY(list.contains(QStringLiteral("alice")));
    QVERIFY(list.contains(QStringLiteral("bob")));
    QVERIFY(!list.contains(QString::fromLatin1(file->find(QStringLiteral("bob"))->sha256.toHex())));

    // A revoked name may get a new key; the old one stays dead.
    const auto again = addKey(path, QStringLiteral("alice"), false);
    QVERIFY(again.hasValue());
    file = loadKeysFile(path);
    QCOMPARE(file->keys.size(), 2);
    QVERIFY(!file->find(QStringLiteral("alice"))->isRevoked());
    QCOMPARE(file->find(QStringLiteral("alice"))->sha256, apiKeyDigest(again->toLatin1()));
}

void TestKeysFile::fileIsPrivate()
{
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("keys.toml"));
    QVERIFY(addKey(path, QStringLiteral("alice"), false).hasValue());
    struct stat st
    {
    };
    QCOMPARE(::stat(QFile::encodeName(path).constData(), &st), 0);
    QCOMPARE(int(st.st_mode & 0777), 0600);
    QVERIFY(loadKeysFile(dir.filePath(QStringLiteral("missing.toml")))->keys.isEmpty());
}

void TestKeysFile::keysFilePath_data()
{
    QTest::addColumn<QString>("source");
    QTest::addColumn<QString>("keysFile");
    QTest::addColumn<QString>("expected");
    QTest::addRow("default") << "/etc/slullama/config.toml"
                             << ""
                             << "/etc/slullama/keys.toml";
    QTest::addRow("relative") << "/etc/slullama/config.toml"
                              << "team/keys.toml"
                              << "/etc/slullama/team/keys.toml";
    QTest::addRow("absolute") << "/etc/slullama/config.toml"
                              << "/srv/keys.toml"
                              << "/srv/keys.toml";
    QTest::addRow("no config file") << ""
                                    << ""
                                    << "/home/x/.config/slullama/keys.toml";
}

void TestKeysFile::keysFilePath()
{
    QFETCH(QString, source);
    QFETCH(QString, keysFile);
    QFETCH(QString, expected);
    Config config;
    config.sourcePath = source;
    config.server.keysFile = keysFile;
    QProcessEnvironment env;
    env.insert(QStringLiteral("HOME"), QStringLiteral("/home/x"));
    QCOMPARE(effectiveKeysFile(config, env), expected);
}

void TestKeysFile::commandLine_data()
{
    QTest::addColumn<QString>("line");
    QTest::addColumn<QString>("keysArgs"); // joined by '|', or "error: TEXT"
    QTest::addColumn<bool>("admin");
    QTest::addRow("add") << "slullama keys add alice --config /c.toml" << "add|alice" << false;
    QTest::addRow("add admin") << "slullama --admin keys add bob" << "add|bob" << true;
    QTest::addRow("revoke") << "slullama keys revoke alice" << "revoke|alice" << false;
    QTest::addRow("list") << "slullama keys list" << "list" << false;
    QTest::addRow("help") << "slullama keys --help" << "" << false;
    QTest::addRow("no action") << "slullama keys" << "error: expected add, revoke or list" << false;
    QTest::addRow("add without name") << "slullama keys add" << "error: needs a NAME" << false;
    QTest::addRow("list with name") << "slullama keys list x" << "error: takes no NAME" << false;
    QTest::addRow("admin on revoke") << "slullama keys revoke x --admin"
                                     << "error: --admin only goes with" << false;
    QTest::addRow("admin elsewhere") << "slullama status --admin" << "error: --admin" << false;
    QTest::addRow("token not for keys") << "slullama keys list --token t"
                                        << "error: --token is not an option" << false;
}

void TestKeysFile::commandLine()
{
    QFETCH(QString, line);
    QFETCH(QString, keysArgs);
    QFETCH(bool, admin);
    const auto parsed = cli::parseArguments(line.split(u' '), cli::Program::Slullama);
    if (keysArgs.startsWith(QStringLiteral("error: "))) {
        QVERIFY(!parsed.hasValue());
        QVERIFY2(parsed.error().contains(keysArgs.mid(7)), qPrintable(parsed.error()));
        return;
    }
    QVERIFY2(parsed.hasValue(), qPrintable(parsed.error()));
    QCOMPARE(parsed->command, cli::Command::Keys);
    QCOMPARE(parsed->keysArgs.join(u'|'), keysArgs);
    QCOMPARE(parsed->admin, admin);
    QVERIFY(parsed->host.isEmpty());
}

QTEST_GUILESS_MAIN(TestKeysFile)
#include "tst_keysfile.moc"
