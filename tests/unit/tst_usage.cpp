#include "lifecyclefakes.h"
#include "ratelimit.h"
#include "usage.h"

#include <QFile>
#include <QJsonDocument>
#include <QTemporaryDir>
#include <QTest>

#include <algorithm>

using namespace slullama;
using slullama::test::FakeClock;

class TestUsage final : public QObject
{
    Q_OBJECT

private slots:
    void scanner_data();
    void scanner();
    void scannerAnySplit();
    void gpuTimeAttribution();
    void todayRollsOverAtLocalMidnight();
    void persistsAcrossRestarts();
    void rateLimiter();
};

void TestUsage::scanner_data()
{
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<bool>("found");
    QTest::addColumn<qint64>("prompt");
    QTest::addColumn<qint64>("completion");

    QTest::addRow("ollama stream")
        << QByteArray("{\"model\":\"m\",\"response\":\"Hi\",\"done\":false}\n"
                      "{\"model\":\"m\",\"response\":\"\",\"done\":true,\"total_duration\":123,"
                      "\"prompt_eval_count\":26,\"prompt_eval_duration\":5,\"eval_count\":290,"
                      "\"eval_duration\":7}\n")
        << true << qint64(26) << qint64(290);
    QTest::addRow("ollama non-streamed with context")
        << QByteArray("{\"response\":\"x\",\"context\":[1,2,3,4],\"done\":true,"
                      "\"prompt_eval_count\": 7 ,\"eval_count\" : 9}")
        << true << qint64(7) << qint64(9);
    QTest::addRow("openai") << QByteArray(
        "{\"id\":\"c\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
        "\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":22,"
        "\"total_tokens\":33}}")
                            << true << qint64(11) << qint64(22);
    QTest::addRow("openai sse") << QByteArray(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
        "\"completion_tokens\":4}}\n\ndata: [DONE]\n\n")
                                << true << qint64(3) << qint64(4);
    QTest::addRow("names inside text do not count")
        << QByteArray("{\"response\":\"say \\\"eval_count\\\": 99 and \\\"prompt_tokens\\\":5\","
                      "\"done\":false}\n{\"eval_count\":\"12\"}\n")
        << false << qint64(0) << qint64(0);
    QTest::addRow("value that looks like a key")
        << QByteArray("{\"response\":\"eval_count\",\"x\":1}") << false << qint64(0) << qint64(0);
    QTest::addRow("nothing") << QByteArray("not json at all") << false << qint64(0) << qint64(0);
    QTest::addRow("embed") << QByteArray("{\"embeddings\":[[0.1,0.2]],\"prompt_eval_count\":8}")
                           << true << qint64(8) << qint64(0);
}

void TestUsage::scanner()
{
    QFETCH(QByteArray, body);
    QFETCH(bool, found);
    QFETCH(qint64, prompt);
    QFETCH(qint64, completion);
    TokenScanner scanner;
    scanner.feed(body);
    QCOMPARE(scanner.found(), found);
    QCOMPARE(scanner.promptTokens(), prompt);
    QCOMPARE(scanner.completionTokens(), completion);
}

void TestUsage::scannerAnySplit()
{
    // A stream arrives in pieces of any size: every split point must give the same counts.
    const QByteArray body = "{\"response\":\"a \\\\\\\"q\\\" b\",\"done\":false}\n"
                            "{\"done\":true,\"prompt_eval_count\":1234,\"eval_count\":56789}\n";
    for (qsizetype cut = 0; cut <= body.size(); ++cut) {
        TokenScanner scanner;
        scanner.feed(QByteArrayView(body).first(cut));
        scanner.feed(QByteArrayView(body).sliced(cut));
        QVERIFY2(scanner.found(), qPrintable(QString::number(cut)));
        QCOMPARE(scanner.promptTokens(), qint64(1234));
        QCOMPARE(scanner.completionTokens(), qint64(56789));
    }
    TokenScanner byteWise;
    for (char c : body)
        byteWise.feed(QByteArrayView(&c, 1));
    QCOMPARE(byteWise.completionTokens(), qint64(56789));
}

void TestUsage::todayRollsOverAtLocalMidnight()
{
    QTemporaryDir dir;
    FakeClock clock;
    UsageTracker usage(dir.filePath(QStringLiteral("usage.json")), &clock);
    const QString alice = QStringLiteral("alice");
    const UsageCounters one {1, 0, 0, 0, 0, 0};

    const QDateTime start = clock.currentDateTime().toLocalTime();
    const qint64 toMidnight = start.msecsTo(QDateTime(start.date().addDays(1), QTime(0, 0)));
    QVERIFY(toMidnight > 2000);
    usage.requestEnded(alice, one);
    // Many requests over the day (the date is kept between them), the last just before midnight.
    for (qint64 step = 0; step < toMidnight - 1000; step += 7 * 60 * 1000) {
        clock.advance(std::min<qint64>(7 * 60 * 1000, toMidnight - 1000 - step));
        usage.requestEnded(alice, one);
    }
    const qint64 beforeMidnight = usage.today(alice).requests;
    QVERIFY(beforeMidnight > 2);
    QCOMPARE(usage.total(alice).requests, beforeMidnight);

    clock.advance(2000); // a new local day
    QCOMPARE(usage.today(alice).requests, qint64(0));
    usage.requestEnded(alice, one);
    QCOMPARE(usage.today(alice).requests, qint64(1));
    QCOMPARE(usage.total(alice).requests, beforeMidnight + 1);
}

void TestUsage::gpuTimeAttribution()
{
    QTemporaryDir dir;
    FakeClock clock;
    UsageTracker usage(dir.filePath(QStringLiteral("usage.json")), &clock);

    // Asleep: requests cost no GPU time.
    usage.requestStarted(QStringLiteral("alice"));
    clock.advance(10000);
    usage.setJobHeld(true);
    // Alice alone for 10 s.
    clock.advance(10000);
    // Alice and Bob together for 10 s: 5 s each.
    usage.requestStarted(QStringLiteral("bob"));
    clock.advance(10000);
    UsageCounters delta;
    delta.requests = 1;
    delta.promptTokens = 5;
    delta.completionTokens = 7;
    delta.bytesIn = 100;
    delta.bytesOut = 1000;
    usage.requestEnded(QStringLiteral("alice"), delta);
    // Bob alone for 4 s, then nobody for 6 s: the idle tail is Bob's (seen last).
    clock.advance(4000);
    usage.requestEnded(QStringLiteral("bob"), UsageCounters {1, 0, 0, 0, 0, 0});
    clock.advance(6000);
    usage.setJobHeld(false);
    clock.advance(60000); // asleep again
    usage.accrue();

    QCOMPARE(usage.total(QStringLiteral("alice")).gpuSeconds, 15.0);
    QCOMPARE(usage.total(QStringLiteral("bob")).gpuSeconds, 15.0);
    QCOMPARE(usage.total(QStringLiteral("alice")).requests, qint64(1));
    QCOMPARE(usage.total(QStringLiteral("alice")).promptTokens, qint64(5));
    QCOMPARE(usage.total(QStringLiteral("alice")).completionTokens, qint64(7));
    QCOMPARE(usage.total(QStringLiteral("alice")).bytesOut, qint64(1000));
    QCOMPARE(usage.today(QStringLiteral("alice")).requests, qint64(1));

    // A wake without requests: the time is the waker's.
    usage.noteUser(QStringLiteral("carol"));
    usage.setJobHeld(true);
    clock.advance(3000);
    usage.accrue();
    QCOMPARE(usage.total(QStringLiteral("carol")).gpuSeconds, 3.0);

    const QJsonObject own = usage.toJson(QStringLiteral("alice"));
    QCOMPARE(own.keys(), QStringList {QStringLiteral("alice")});
    QCOMPARE(usage.toJson().keys().size(), 3);
    QCOMPARE(own.value(QStringLiteral("alice"))
                 .toObject()
                 .value(QStringLiteral("total"))
                 .toObject()
                 .value(QStringLiteral("completion_tokens"))
                 .toInt(),
             7);
}

void TestUsage::persistsAcrossRestarts()
{
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("state/usage.json"));
    FakeClock clock;
    {
        UsageTracker usage(path, &clock);
        QVERIFY(usage.load().hasValue());
        usage.requestStarted(QStringLiteral("alice"));
        usage.setJobHeld(true);
        clock.advance(2500);
        usage.requestEnded(QStringLiteral("alice"), UsageCounters {1, 10, 20, 30, 40, 0});
        QVERIFY(usage.flush().hasValue());
    }
    QVERIFY(QFile::exists(path));
    UsageTracker again(path, &clock);
    QVERIFY(again.load().hasValue());
    const UsageCounters total = again.total(QStringLiteral("alice"));
    QCOMPARE(total.requests, qint64(1));
    QCOMPARE(total.promptTokens, qint64(10));
    QCOMPARE(total.completionTokens, qint64(20));
    QCOMPARE(total.bytesIn, qint64(30));
    QCOMPARE(total.bytesOut, qint64(40));
    QCOMPARE(total.gpuSeconds, 2.5);
    QCOMPARE(again.today(QStringLiteral("alice")).requests, qint64(1));

    // A corrupt file is reported and counting starts over.
    QFile file(path);
    QVERIFY(file.open(QIODevice::WriteOnly | QIODevice::Truncate));
    file.write("{not json");
    file.close();
    UsageTracker broken(path, &clock);
    QVERIFY(!broken.load().hasValue());
    QCOMPARE(broken.total(QStringLiteral("alice")).requests, qint64(0));
}

void TestUsage::rateLimiter()
{
    RateLimiter limiter;
    const QString u = QStringLiteral("u");
    // Concurrency.
    QVERIFY(limiter.admit(u, 2, 0, 0).allowed);
    QVERIFY(limiter.admit(u, 2, 0, 0).allowed);
    LimitDecision refused = limiter.admit(u, 2, 0, 0);
    QVERIFY(!refused.allowed);
    QCOMPARE(refused.retryAfterSeconds, 1);
    limiter.release(u);
    QVERIFY(limiter.admit(u, 2, 0, 0).allowed);
    limiter.release(u);
    limiter.release(u);
    QCOMPARE(limiter.inFlight(u), 0);

    // Requests per minute: 3 at once, then one per 20 s.
    const QString v = QStringLiteral("v");
    for (int i = 0; i < 3; ++i) {
        QVERIFY(limiter.admit(v, 0, 3, 1000).allowed);
        limiter.release(v);
    }
    refused = limiter.admit(v, 0, 3, 1000);
    QVERIFY(!refused.allowed);
    QCOMPARE(refused.retryAfterSeconds, 20);
    refused = limiter.admit(v, 0, 3, 11000);
    QVERIFY(!refused.allowed);
    QCOMPARE(refused.retryAfterSeconds, 10);
    QVERIFY(limiter.admit(v, 0, 3, 21000).allowed);
    // Other users are not affected.
    QVERIFY(limiter.admit(QStringLiteral("w"), 0, 3, 21000).allowed);
}

QTEST_GUILESS_MAIN(TestUsage)
#include "tst_usage.moc"
