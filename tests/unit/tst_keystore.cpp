#include "keystore.h"

#include <QFile>
#include <QSaveFile>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

#include <csignal>

using namespace slullama;

namespace {

constexpr int kTimeout = 10000;

std::optional<Identity> lookupKey(const KeyStore &store, const QString &key)
{
    return store.lookup(apiKeyDigest(key.toLatin1()));
}

} // namespace

class TestKeyStore final : public QObject
{
    Q_OBJECT

private slots:
    void lookup();
    void picksUpReplacedFile();
    void picksUpFileCreatedLater();
    void brokenFileKeepsKeys();
};

void TestKeyStore::lookup()
{
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("keys.toml"));
    const QString alice = *addKey(path, QStringLiteral("alice"), false);
    const QString bob = *addKey(path, QStringLiteral("bob"), true);
    KeyStore store(path);
    store.start();
    QVERIFY(store.hasKeys());
    QCOMPARE(store.activeKeyCount(), 2);
    const auto a = lookupKey(store, alice);
    QVERIFY(a);
    QCOMPARE(a->user, QStringLiteral("alice"));
    QVERIFY(!a->admin);
    QVERIFY(a->keyed);
    QVERIFY(lookupKey(store, bob)->admin);
    QVERIFY(!lookupKey(store, alice + u'x'));
    QVERIFY(!lookupKey(store, QString()));
    QVERIFY(!store.lookup(QByteArrayView()));
}

void TestKeyStore::picksUpReplacedFile()
{
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("keys.toml"));
    const QString alice = *addKey(path, QStringLiteral("alice"), false);
    KeyStore store(path);
    QSignalSpy reloaded(&store, &KeyStore::reloaded);
    store.start();
    QVERIFY(lookupKey(store, alice));

    // `slullama keys revoke` replaces the file (QSaveFile: write a new one, rename it over).
    QVERIFY(revokeKey(path, QStringLiteral("alice")).hasValue());
    QTRY_VERIFY_WITH_TIMEOUT(!lookupKey(store, alice), kTimeout);
    QVERIFY(store.hasKeys()); // a revoked key keeps keys mode on

    // And again: the watch must survive the replacement.
    const QString carol = *addKey(path, QStringLiteral("carol"), false);
    QTRY_VERIFY_WITH_TIMEOUT(lookupKey(store, carol), kTimeout);

    // Reload on demand (SIGHUP) works without any change too.
    const int before = reloaded.count();
    store.reload();
    QCOMPARE(reloaded.count(), before + 1);
}

void TestKeyStore::picksUpFileCreatedLater()
{
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("keys.toml"));
    KeyStore store(path);
    store.start();
    QVERIFY(!store.hasKeys());
    const QString alice = *addKey(path, QStringLiteral("alice"), false);
    QTRY_VERIFY_WITH_TIMEOUT(lookupKey(store, alice), kTimeout);
    QVERIFY(store.hasKeys());
}

void TestKeyStore::brokenFileKeepsKeys()
{
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("keys.toml"));
    const QString alice = *addKey(path, QStringLiteral("alice"), false);
    KeyStore store(path);
    QSignalSpy reloaded(&store, &KeyStore::reloaded);
    store.start();
    QCOMPARE(reloaded.count(), 1);
    {
        QFile file(path);
        QVERIFY(file.open(QIODevice::Append));
        file.write("[keys.broken\n");
    }
    store.reload();
    QCOMPARE(reloaded.count(), 1); // not reloaded: the old keys stay
    QVERIFY(lookupKey(store, alice));
}

QTEST_GUILESS_MAIN(TestKeyStore)
#include "tst_keystore.moc"
