#include "clock.h"

#include <QElapsedTimer>
#include <QHash>
#include <QPointer>
#include <QTimer>

namespace slullama {

namespace {

class SystemClock final : public Clock
{
public:
    SystemClock() { m_elapsed.start(); }

    qint64 monotonicMs() const override { return m_elapsed.elapsed(); }
    QDateTime currentDateTime() const override { return QDateTime::currentDateTime(); }

    TimerId startTimer(qint64 ms, QObject *context, std::function<void()> fn) override
    {
        const TimerId id = m_nextId++;
        auto *timer = new QTimer(context);
        timer->setSingleShot(true);
        timer->setTimerType(Qt::PreciseTimer);
        QObject::connect(timer, &QTimer::timeout, timer, [this, id, timer, fn = std::move(fn)]() {
            m_timers.remove(id);
            timer->deleteLater();
            fn();
        });
        // QTimer takes int milliseconds; longer waits (days) are clamped, which only means an
        // early, harmless re-check by the caller.
        timer->start(int(std::clamp<qint64>(ms, 0, std::numeric_limits<int>::max())));
        m_timers.insert(id, timer);
        return id;
    }

    void stopTimer(TimerId id) override
    {
        if (QPointer<QTimer> timer = m_timers.take(id)) {
            timer->stop();
            timer->deleteLater();
        }
    }

private:
    QElapsedTimer m_elapsed;
    QHash<TimerId, QPointer<QTimer>> m_timers;
    TimerId m_nextId = 1;
};

} // namespace

std::unique_ptr<Clock> makeSystemClock()
{
    return std::make_unique<SystemClock>();
}

} // namespace slullama
