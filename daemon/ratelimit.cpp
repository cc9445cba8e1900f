#include "ratelimit.h"

#include <cmath>

namespace slullama {

LimitDecision RateLimiter::admit(const QString &user, int maxConcurrent, int perMinute,
                                 qint64 nowMs)
{
    Bucket &b = m_users[user];
    LimitDecision d;
    if (maxConcurrent > 0 && b.inFlight >= maxConcurrent) {
        d.allowed = false;
        d.retryAfterSeconds = 1;
        d.reason = QStringLiteral("%1 already has %2 requests in flight (limit %3)")
                       .arg(user)
                       .arg(b.inFlight)
                       .arg(maxConcurrent);
        return d;
    }
    if (perMinute > 0) {
        const double perMs = double(perMinute) / 60000.0;
        if (b.tokens < 0)
            b.tokens = perMinute;
        else
            b.tokens = std::min(double(perMinute), b.tokens + double(nowMs - b.lastMs) * perMs);
        b.lastMs = nowMs;
        if (b.tokens < 1.0) {
            d.allowed = false;
            d.retryAfterSeconds = std::max(1, int(std::ceil((1.0 - b.tokens) / perMs / 1000.0)));
            d.reason = QStringLiteral("%1 is over %2 requests per minute").arg(user).arg(perMinute);
            return d;
        }
        b.tokens -= 1.0;
    }
    ++b.inFlight;
    return d;
}

void RateLimiter::release(const QString &user)
{
    const auto it = m_users.find(user);
    if (it != m_users.end() && it->inFlight > 0)
        --it->inFlight;
}

} // namespace slullama
