#pragma once

// Time and single-shot timers behind an interface, so tests drive idle, boot and poll timeouts
// by advancing a fake clock instead of sleeping.

#include <QDateTime>
#include <QObject>

#include <functional>
#include <memory>

namespace slullama {

class Clock
{
public:
    using TimerId = quint64; // 0 is never a valid id

    virtual ~Clock() = default;

    // Monotonic milliseconds; only differences mean anything.
    virtual qint64 monotonicMs() const = 0;
    // Wall-clock time, for status fields such as last_boot.at.
    virtual QDateTime currentDateTime() const = 0;

    // Calls `fn` once after `ms`, from the event loop, unless stopped or `context` destroyed.
    virtual TimerId startTimer(qint64 ms, QObject *context, std::function<void()> fn) = 0;
    // Harmless for ids that already fired, were stopped, or are 0.
    virtual void stopTimer(TimerId id) = 0;
};

// QElapsedTimer + QTimer.
std::unique_ptr<Clock> makeSystemClock();

} // namespace slullama
