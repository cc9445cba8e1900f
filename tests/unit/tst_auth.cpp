#include "auth.h"

#include <QTest>

using namespace slullama;

class TestAuth final : public QObject
{
    Q_OBJECT

private slots:
    void constantTimeEquals_data();
    void constantTimeEquals();
    void isAuthorized_data();
    void isAuthorized();
    void noTokenAllowsEverything();
    void loopbackBind_data();
    void loopbackBind();
};

void TestAuth::constantTimeEquals_data()
{
    QTest::addColumn<QByteArray>("a");
    QTest::addColumn<QByteArray>("b");
    QTest::addColumn<bool>("equal");
    QTest::addRow("both empty") << QByteArray() << QByteArray() << true;
    QTest::addRow("same") << QByteArray("s3cret") << QByteArray("s3cret") << true;
    QTest::addRow("last byte differs") << QByteArray("s3cret") << QByteArray("s3cres") << false;
    QTest::addRow("first byte differs") << QByteArray("s3cret") << QByteArray("t3cret") << false;
    QTest::addRow("prefix") << QByteArray("s3cret") << QByteArray("s3cre") << false;
    QTest::addRow("longer") << QByteArray("s3cret") << QByteArray("s3cretX") << false;
    QTest::addRow("empty vs one") << QByteArray() << QByteArray("a") << false;
    QTest::addRow("trailing NUL") << QByteArray("ab") << QByteArray("ab\0", 3) << false;
    QTest::addRow("high bytes") << QByteArray("\xff\x80") << QByteArray("\xff\x80") << true;
    QTest::addRow("case") << QByteArray("Token") << QByteArray("token") << false;
}

void TestAuth::constantTimeEquals()
{
    QFETCH(QByteArray, a);
    QFETCH(QByteArray, b);
    QFETCH(bool, equal);
    QCOMPARE(slullama::constantTimeEquals(a, b), equal);
    QCOMPARE(slullama::constantTimeEquals(b, a), equal);
}

void TestAuth::isAuthorized_data()
{
    QTest::addColumn<QByteArray>("header");
    QTest::addColumn<bool>("ok");
    QTest::addRow("right") << QByteArray("Bearer s3cret") << true;
    QTest::addRow("scheme lower case") << QByteArray("bearer s3cret") << true;
    QTest::addRow("extra blanks") << QByteArray("  Bearer   s3cret  ") << true;
    QTest::addRow("tab") << QByteArray("Bearer\ts3cret") << true;
    QTest::addRow("missing") << QByteArray() << false;
    QTest::addRow("wrong") << QByteArray("Bearer s3creT") << false;
    QTest::addRow("prefix of token") << QByteArray("Bearer s3cre") << false;
    QTest::addRow("token plus more") << QByteArray("Bearer s3cret2") << false;
    QTest::addRow("no scheme") << QByteArray("s3cret") << false;
    QTest::addRow("basic scheme") << QByteArray("Basic s3cret") << false;
    QTest::addRow("scheme glued") << QByteArray("Bearers3cret") << false;
    QTest::addRow("scheme only") << QByteArray("Bearer ") << false;
    QTest::addRow("two tokens") << QByteArray("Bearer s3cret s3cret") << false;
}

void TestAuth::isAuthorized()
{
    QFETCH(QByteArray, header);
    QFETCH(bool, ok);
    const Auth auth(QStringLiteral("s3cret"));
    QVERIFY(auth.enabled());
    QCOMPARE(auth.isAuthorized(header), ok);
}

void TestAuth::noTokenAllowsEverything()
{
    const Auth auth;
    QVERIFY(!auth.enabled());
    QVERIFY(auth.isAuthorized(QByteArray()));
    QVERIFY(auth.isAuthorized("Bearer anything"));
}

void TestAuth::loopbackBind_data()
{
    QTest::addColumn<QString>("bind");
    QTest::addColumn<bool>("loopback");
    QTest::addRow("127.0.0.1") << QStringLiteral("127.0.0.1") << true;
    QTest::addRow("127.1.2.3") << QStringLiteral("127.1.2.3") << true;
    QTest::addRow("::1") << QStringLiteral("::1") << true;
    QTest::addRow("localhost") << QStringLiteral("localhost") << true;
    QTest::addRow("0.0.0.0") << QStringLiteral("0.0.0.0") << false;
    QTest::addRow("::") << QStringLiteral("::") << false;
    QTest::addRow("10.0.0.5") << QStringLiteral("10.0.0.5") << false;
}

void TestAuth::loopbackBind()
{
    QFETCH(QString, bind);
    QFETCH(bool, loopback);
    QCOMPARE(isLoopbackBind(bind), loopback);
}

QTEST_GUILESS_MAIN(TestAuth)
#include "tst_auth.moc"
