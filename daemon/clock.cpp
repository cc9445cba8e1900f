#include "clock.h"

#include <QElapsedTimer>
#include <QHash>
#include <QPointer>
#include <QTimerEvent>

#include <algorithm>
#include <chrono>
#include <limits>

namespace slullama {

namespace {

// One QObject owns every timer: a request starts and stops timers (idle, hand-over), and a
// QTimer object each time would cost an allocation, a connection and a deleteLater.
class SystemClock final : public QObject, public Clock
{
public:
    SystemClock() { m_elapsed.start(); }

    qint64 monotonicMs() const override { return m_elapsed.elapsed(); }
    QDateTime currentDateTime() const override { return QDateTime::currentDateTime(); }

    TimerId startTimer(qint64 ms, QObject *context, std::function<void()> fn) override
    {
        // Qt timers take int milliseconds; longer waits (days) are clamped, which only means an
        // early, harmless re-check by the caller.
        const auto wait
            = std::chrono::milliseconds(std::clamp<qint64>(ms, 0, std::numeric_limits<int>::max()));
        const int qtId = QObject::startTimer(wait, Qt::PreciseTimer);
        if (qtId == 0)
            return 0;
        const TimerId id = m_nextId++;
        m_timers.insert(qtId, Pending {id, context, std::move(fn)});
        m_qtIds.insert(id, qtId);
        return id;
    }

    void stopTimer(TimerId id) override
    {
        if (const int qtId = m_qtIds.take(id)) {
            killTimer(qtId);
            m_timers.remove(qtId);
        }
    }

protected:
    void timerEvent(QTimerEvent *event) override
    {
        const int qtId = event->timerId();
        killTimer(qtId);
        const auto it = m_timers.find(qtId);
        if (it == m_timers.end())
            return;
        Pending pending = std::move(*it);
        m_timers.erase(it);
        m_qtIds.remove(pending.id);
        if (pending.context) // a destroyed context's timers fire into nothing
            pending.fn();
    }

private:
    struct Pending
    {
        TimerId id;
        QPointer<QObject> context;
        std::function<void()> fn;
    };

    QElapsedTimer m_elapsed;
    QHash<int, Pending> m_timers; // by Qt timer id
    QHash<TimerId, int> m_qtIds; // ours → Qt's
    TimerId m_nextId = 1;
};

} // namespace

std::unique_ptr<Clock> makeSystemClock()
{
    return std::make_unique<SystemClock>();
}

} // namespace slullama
