#pragma once

// The team features on top of the proxy (docs/TEAM.md): per-user keys, usage, limits, metrics,
// cold-start behaviour (respond-async, X-Slullama-Cold-Start, metadata cache). Connection calls
// it at a few points of an exchange; it watches the lifecycle's phases for GPU time and the
// cold-start metrics. Without a Gateway the proxy behaves as before (tests, embedding).

#include "backend.h"
#include "clock.h"
#include "config.h"
#include "exchangerecord.h"
#include "keystore.h"
#include "metadatacache.h"
#include "metrics.h"
#include "ratelimit.h"
#include "usage.h"

#include <QByteArray>
#include <QJsonObject>
#include <QObject>

#include <optional>

namespace slullama {

class Auth;
class Lifecycle;

// An answer the gateway gives instead of proxying.
struct GatewayReply
{
    int status = 200;
    QByteArray body;
    QByteArray headers; // complete "Name: value\r\n" lines
};

struct GatewaySettings
{
    QString keysFile;
    QString usageFile;
    QString metadataCacheFile;
    bool cacheMetadata = true;
    QByteArray asyncHeaderName; // empty: respond-async is off
    QByteArray asyncHeaderToken;
    int userMaxConcurrent = 0;
    int userRequestsPerMinute = 0;

    static GatewaySettings fromConfig(const Config &config);
};

class Gateway final : public QObject
{
    Q_OBJECT

public:
    Gateway(const GatewaySettings &settings, Backend *backend, Clock *clock,
            QObject *parent = nullptr);
    ~Gateway() override;

    // Loads keys, usage and the metadata cache; starts watching the keys file.
    void start();
    // Follows the lifecycle's phases (GPU time, cold-start metrics, "asleep" for the cache).
    void attach(Lifecycle *lifecycle);
    void reloadKeys();
    void flush();

    // --- called by Connection ---
    void begin(ExchangeRecord &record, const http::RequestHead &head);
    // Sets record.identity. False: answer 401.
    bool authenticate(ExchangeRecord &record, QByteArrayView authorization,
                      const Auth &shared) const;
    // Before a proxied request acquires the backend: a 429 (limits), a cached metadata answer,
    // or a 503 for a client that asked not to wait for a cold start. Nothing: go on.
    std::optional<GatewayReply> admit(ExchangeRecord &record, const http::RequestHead &head);
    void acquired(ExchangeRecord &record, const AcquireResult &result);
    // Headers added to the relayed response (X-Slullama-Cold-Start).
    QList<http::Header> responseHeaders(const ExchangeRecord &record) const;
    void noteWake(const ExchangeRecord &record);
    void addToStatus(QJsonObject &status, const ExchangeRecord &record);
    QByteArray metricsText();
    void end(ExchangeRecord &record);

    // --- lifecycle events (attach() connects them; tests call them directly) ---
    void onPhase(Phase phase, const Status &status);
    void onStatus(const Status &status);

    KeyStore &keys() { return *m_keys; }
    UsageTracker &usage() { return *m_usage; }
    Metrics &metrics() { return m_metrics; }
    RateLimiter &limiter() { return m_limiter; }
    int inFlight() const { return m_inFlight; }

    static QByteArray normaliseRoute(QByteArrayView path);

private:
    Phase currentPhase() const;
    void declareMetrics();

    GatewaySettings m_settings;
    Backend *m_backend;
    Clock *m_clock;
    KeyStore *m_keys;
    UsageTracker *m_usage;
    MetadataCache m_cache;
    Metrics m_metrics;
    RateLimiter m_limiter;
    int m_inFlight = 0;

    // Lifecycle tracking.
    std::optional<Phase> m_phase; // unset until attach()/onPhase(); then the backend is asked
    qint64 m_bootStartMs = -1;
    qint64 m_runningMs = -1;
    qint64 m_tunnelMs = -1;
    bool m_rebuilding = false;
    bool m_jobWasReady = false;
};

} // namespace slullama
