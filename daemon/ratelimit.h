#pragma once

// Optional per-user limits: requests in flight, and requests per minute (a token bucket that
// holds a minute's worth and refills continuously). A refused request gets 429 with
// Retry-After. 0 means no limit.

#include <QHash>
#include <QString>

namespace slullama {

struct LimitDecision
{
    bool allowed = true;
    int retryAfterSeconds = 0; // when refused
    QString reason; // when refused, for the response body
};

class RateLimiter final
{
public:
    // A request of `user` wants in. When allowed it holds a concurrency slot until release().
    LimitDecision admit(const QString &user, int maxConcurrent, int perMinute, qint64 nowMs);
    void release(const QString &user);
    int inFlight(const QString &user) const { return m_users.value(user).inFlight; }

private:
    struct Bucket
    {
        int inFlight = 0;
        double tokens = -1; // -1: not started (a full bucket)
        qint64 lastMs = 0;
    };
    QHash<QString, Bucket> m_users;
};

} // namespace slullama
