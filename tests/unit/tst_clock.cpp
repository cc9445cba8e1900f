#include "clock.h"

#include <QElapsedTimer>
#include <QTest>

#include <limits>
#include <memory>

using namespace slullama;

// The system clock's timers: the lifecycle relies on "once, unless stopped or the context is
// gone" for its idle, boot and hand-over timers.
class TestClock : public QObject
{
    Q_OBJECT

private slots:
    void firesOnceAfterTheWait()
    {
        const auto clock = makeSystemClock();
        QObject context;
        int fired = 0;
        const qint64 startedMs = clock->monotonicMs();
        qint64 firedAtMs = -1;
        const Clock::TimerId id = clock->startTimer(30, &context, [&] {
            ++fired;
            firedAtMs = clock->monotonicMs();
        });
        QVERIFY(id != 0);
        QTRY_COMPARE_WITH_TIMEOUT(fired, 1, 5000);
        QVERIFY2(firedAtMs - startedMs >= 29, qPrintable(QString::number(firedAtMs - startedMs)));
        // Single shot: a second wait sees no second call, and stopping a fired id is harmless.
        bool later = false;
        clock->startTimer(60, &context, [&] { later = true; });
        QTRY_VERIFY_WITH_TIMEOUT(later, 5000);
        QCOMPARE(fired, 1);
        clock->stopTimer(id);
        clock->stopTimer(0);
    }

    void stoppedTimerNeverFires()
    {
        const auto clock = makeSystemClock();
        QObject context;
        bool stopped = false;
        bool witness = false;
        const Clock::TimerId id = clock->startTimer(10, &context, [&] { stopped = true; });
        clock->stopTimer(id);
        clock->startTimer(50, &context, [&] { witness = true; });
        QTRY_VERIFY_WITH_TIMEOUT(witness, 5000);
        QVERIFY(!stopped);
    }

    void destroyedContextIsNotCalled()
    {
        const auto clock = makeSystemClock();
        QObject keeper;
        auto context = std::make_unique<QObject>();
        bool called = false;
        bool witness = false;
        clock->startTimer(10, context.get(), [&] { called = true; });
        context.reset();
        clock->startTimer(50, &keeper, [&] { witness = true; });
        QTRY_VERIFY_WITH_TIMEOUT(witness, 5000);
        QVERIFY(!called);
    }

    void idsStayDistinctAndOrderHolds()
    {
        const auto clock = makeSystemClock();
        QObject context;
        QList<int> order;
        const Clock::TimerId a = clock->startTimer(600, &context, [&] { order << 2; });
        const Clock::TimerId b = clock->startTimer(300, &context, [&] { order << 1; });
        QVERIFY(a != b);
        // A restart from inside a callback (what the lifecycle does) works.
        clock->startTimer(0, &context,
                          [&] { clock->startTimer(0, &context, [&] { order << 0; }); });
        QTRY_COMPARE_WITH_TIMEOUT(order.size(), 3, 5000);
        QCOMPARE(order, (QList<int> {0, 1, 2}));
    }

    void hugeWaitsAreClampedNotNegative()
    {
        const auto clock = makeSystemClock();
        QObject context;
        bool called = false;
        const Clock::TimerId id = clock->startTimer(std::numeric_limits<qint64>::max(), &context,
                                                    [&] { called = true; });
        QVERIFY(id != 0);
        // A wait wrapped to a negative int would fire at once, before this later one.
        bool witness = false;
        clock->startTimer(20, &context, [&] { witness = true; });
        QTRY_VERIFY_WITH_TIMEOUT(witness, 5000);
        QVERIFY(!called);
        clock->stopTimer(id);
    }
};

QTEST_GUILESS_MAIN(TestClock)
#include "tst_clock.moc"
