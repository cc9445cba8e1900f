#pragma once

// What the tray needs from the daemon's HTTP API: read /slullama/status and ask for a wake.
// The real one wraps ApiClient (apistatussource.h); tests drive a fake.

#include "statusmodel.h"

#include <QObject>
#include <QString>
#include <QUrl>

namespace slullama {

class StatusSource : public QObject
{
    Q_OBJECT
public:
    using QObject::QObject;
    ~StatusSource() override = default;

    virtual void setEndpoint(const QUrl &base, const QString &token) = 0;
    // GET /slullama/status — never wakes the node.
    virtual void fetchStatus() = 0;
    virtual void wake() = 0;
    // A wake that keeps the node up for at least `minutes` (the daemon reports awake_until).
    virtual void wakeFor(double minutes)
    {
        Q_UNUSED(minutes);
        wake();
    }

signals:
    void statusReceived(const slullama::Status &status);
    // httpStatus is 0 when no HTTP answer came (connection refused, timeout, bad JSON).
    void statusFailed(const QString &message, int httpStatus);
    // The daemon's status right after it took the wake (usually phase submitting).
    void wakeAccepted(const slullama::Status &status);
    void wakeFailed(const QString &message, int httpStatus);
};

} // namespace slullama
