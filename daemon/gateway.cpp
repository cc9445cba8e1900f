#include "gateway.h"

#include "auth.h"
#include "keysfile.h"
#include "lifecycle.h"
#include "logging.h"
#include "statestore.h"

#include <QDir>
#include <QFileInfo>
#include <QJsonDocument>

#include <cmath>

namespace slullama {

namespace {

bool isBlank(char c)
{
    return c == ' ' || c == '\t';
}

// The credentials of "Authorization: Bearer X" (scheme case-insensitive, blanks around), or
// empty when the header is absent or not of that form.
QByteArrayView bearerValue(QByteArrayView authorization)
{
    qsizetype i = 0;
    while (i < authorization.size() && isBlank(authorization[i]))
        ++i;
    constexpr QByteArrayView scheme("bearer");
    if (authorization.size() - i <= scheme.size()
        || authorization.sliced(i, scheme.size()).compare(scheme, Qt::CaseInsensitive) != 0
        || !isBlank(authorization[i + scheme.size()]))
        return {};
    i += scheme.size();
    while (i < authorization.size() && isBlank(authorization[i]))
        ++i;
    qsizetype end = authorization.size();
    while (end > i && isBlank(authorization[end - 1]))
        --end;
    return authorization.sliced(i, end - i);
}

bool holdsNode(Phase phase)
{
    return phase == Phase::Starting || phase == Phase::Ready || phase == Phase::Stopping;
}

// Why a job ended (Status::lastEndReason, the lifecycle's words) as a metrics label.
QByteArray endReasonLabel(const QString &reason)
{
    const QString r = reason.toLower();
    if (r.startsWith(u"idle"))
        return "idle";
    if (r.startsWith(u"shutdown"))
        return "shutdown";
    if (r.startsWith(u"boot failed"))
        return "boot_failed";
    if (r.contains(u"time limit"))
        return "time_limit";
    if (r.contains(u"cancelled outside"))
        return "cancelled_outside";
    if (r.contains(u"node failure"))
        return "node_failure";
    if (r.contains(u"preempted"))
        return "preempted";
    if (r.contains(u"vanished"))
        return "vanished";
    if (r.contains(u"job script ended") || r.contains(u"job failed") || r.startsWith(u"job ended"))
        return "job_ended";
    return "other";
}

QByteArray errorJson(const QString &message)
{
    return QJsonDocument(QJsonObject {{QStringLiteral("error"), message}})
        .toJson(QJsonDocument::Compact);
}

const std::vector<double> &coldStartBuckets()
{
    static const std::vector<double> buckets {0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800};
    return buckets;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// ExchangeRecord

void ExchangeRecord::reset()
{
    *this = ExchangeRecord();
}

void ExchangeRecord::responseHead(const http::ResponseHead &head, qsizetype headBytes)
{
    status = head.status;
    bytesOut += headBytes;
    m_chunked = head.headers.hasToken("transfer-encoding", "chunked");
    if (status != 200)
        capture = false;
}

void ExchangeRecord::responseBody(QByteArrayView bytes)
{
    bytesOut += bytes.size();
    if (!scanTokens && !capture)
        return;
    if (!m_chunked) {
        feedDecoded(bytes);
        return;
    }
    m_decoded.resize(0);
    m_decoder.feed(bytes, &m_decoded);
    feedDecoded(m_decoded);
}

void ExchangeRecord::feedDecoded(QByteArrayView bytes)
{
    if (scanTokens)
        tokens.feed(bytes);
    if (capture) {
        if (captured.size() + bytes.size() > MetadataCache::kMaxBodyBytes) {
            capture = false;
            captureOverflow = true;
            captured.clear();
        } else {
            captured.append(bytes);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settings

GatewaySettings GatewaySettings::fromConfig(const Config &config)
{
    GatewaySettings s;
    s.keysFile = effectiveKeysFile(config);
    const QString stateDir = QFileInfo(StateStore::defaultPath(config)).absolutePath();
    s.usageFile = config.server.usageFile.isEmpty()
        ? QDir(stateDir).filePath(QStringLiteral("usage.json"))
        : config.server.usageFile;
    s.metadataCacheFile = QDir(stateDir).filePath(QStringLiteral("metadata-cache.json"));
    s.cacheMetadata = config.server.cacheMetadata;
    const QString header = config.server.asyncHeader;
    const qsizetype colon = header.indexOf(u':');
    if (colon > 0) {
        s.asyncHeaderName = header.left(colon).trimmed().toLatin1();
        s.asyncHeaderToken = header.mid(colon + 1).trimmed().toLatin1();
    }
    s.userMaxConcurrent = config.server.userMaxConcurrent;
    s.userRequestsPerMinute = config.server.userRequestsPerMinute;
    return s;
}

// ---------------------------------------------------------------------------------------------
// Gateway

Gateway::Gateway(const GatewaySettings &settings, Backend *backend, Clock *clock, QObject *parent)
    : QObject(parent)
    , m_settings(settings)
    , m_backend(backend)
    , m_clock(clock)
    , m_keys(new KeyStore(settings.keysFile, this))
    , m_usage(new UsageTracker(settings.usageFile, clock, this))
    , m_cache(settings.metadataCacheFile)
{
    declareMetrics();
}

Gateway::~Gateway()
{
    flush();
}

void Gateway::declareMetrics()
{
    using T = Metrics::Type;
    Metrics &m = m_metrics;
    m.declare("slullama_requests_total", T::Counter,
              "Requests answered, by route, HTTP status and user (499: client went away).");
    m.declare("slullama_requests_in_flight", T::Gauge, "Requests being handled now.");
    m.declare("slullama_bytes_total", T::Counter,
              "Body bytes: in = request bodies forwarded, out = responses sent, by user.");
    m.declare("slullama_tokens_total", T::Counter,
              "Tokens reported by the model server (prompt, completion), by user.");
    m.declare("slullama_gpu_seconds_total", T::Counter,
              "GPU job seconds attributed to the users who kept the node awake.");
    m.declare("slullama_cold_starts_total", T::Counter, "Boots of the model server job.");
    m.declare("slullama_cold_start_seconds", T::Histogram,
              "Cold-start time by stage: queue_wait (submit to RUNNING), job_start (RUNNING to "
              "tunnel), model_ready (tunnel to healthy), total.",
              coldStartBuckets());
    m.declare("slullama_teardowns_total", T::Counter,
              "Jobs that ended, by reason (idle, shutdown, time_limit, boot_failed, ...).");
    m.declare("slullama_jobs_submitted_total", T::Counter, "Slurm jobs submitted.");
    m.declare("slullama_jobs_failed_total", T::Counter,
              "Boots that failed, by stage (submit, queued, starting).");
    m.declare("slullama_jobs_lost_total", T::Counter,
              "Jobs that ended while serving without the daemon asking, by reason.");
    m.declare("slullama_tunnel_rebuilds_total", T::Counter, "Tunnels rebuilt to a running job.");
    m.declare("slullama_rate_limited_total", T::Counter, "Requests refused with 429, by user.");
    m.declare("slullama_metadata_cache_hits_total", T::Counter,
              "Metadata requests answered from the cache while the node slept, by route.");
    m.declare("slullama_async_refusals_total", T::Counter,
              "Cold requests answered 503 at once because the client asked not to wait.");
    m.declare("slullama_phase", T::Gauge, "1 for the lifecycle's current phase.");
    m.declare("slullama_keys_active", T::Gauge, "Active per-user keys.");
    for (const char *counter : {"slullama_cold_starts_total", "slullama_jobs_submitted_total",
                                "slullama_tunnel_rebuilds_total"})
        m.add(counter, {}, 0); // present from the start, so rate() works from the first scrape
}

void Gateway::start()
{
    m_keys->start();
    if (const VoidResult loaded = m_usage->load(); !loaded)
        qCWarning(lcProxy).noquote() << loaded.error();
    if (m_settings.cacheMetadata)
        m_cache.load();
}

void Gateway::attach(Lifecycle *lifecycle)
{
    m_phase = lifecycle->phase();
    m_usage->setJobHeld(holdsNode(*m_phase));
    connect(lifecycle, &Lifecycle::phaseChanged, this,
            [this, lifecycle](Phase phase) { onPhase(phase, lifecycle->status()); });
    connect(lifecycle, &Lifecycle::statusChanged, this, [this, lifecycle] {
        // Only the tunnel's opening matters here; do not build a status for every request.
        if (m_phase == Phase::Starting && !m_rebuilding && m_tunnelMs < 0)
            onStatus(lifecycle->status());
    });
}

void Gateway::reloadKeys()
{
    m_keys->reload();
}

void Gateway::flush()
{
    m_usage->accrue();
    if (const VoidResult saved = m_usage->flush(); !saved)
        qCWarning(lcProxy).noquote() << saved.error();
}

Phase Gateway::currentPhase() const
{
    return m_phase ? *m_phase : m_backend->status().phase;
}

QByteArray Gateway::normaliseRoute(QByteArrayView path)
{
    static constexpr QByteArrayView exact[] = {
        "/api/generate",    "/api/chat",       "/api/embed",       "/api/embeddings",
        "/api/tags",        "/api/show",       "/api/version",     "/api/ps",
        "/api/pull",        "/api/push",       "/api/create",      "/api/copy",
        "/api/delete",      "/v1/completions", "/v1/embeddings",   "/v1/chat/completions",
        "/v1/models",       "/metrics",        "/slullama/status", "/slullama/wake",
        "/slullama/health",
    };
    for (QByteArrayView known : exact) {
        if (path == known)
            return known.toByteArray();
    }
    if (path.startsWith("/api/blobs/"))
        return "/api/blobs";
    if (path.startsWith("/v1/models/"))
        return "/v1/models";
    return "other";
}

void Gateway::begin(ExchangeRecord &record, const http::RequestHead &head)
{
    record.reset();
    record.active = true;
    record.method = head.method;
    record.path = head.path;
    record.route = normaliseRoute(head.path);
    record.startedMs = m_clock->monotonicMs();
    ++m_inFlight;
}

bool Gateway::authenticate(ExchangeRecord &record, QByteArrayView authorization,
                           const Auth &shared) const
{
    record.identity = Identity();
    record.authenticated = false;
    if (m_keys->hasKeys()) {
        const QByteArrayView presented = bearerValue(authorization);
        if (!presented.isEmpty()) {
            if (auto identity = m_keys->lookup(apiKeyDigest(presented))) {
                record.identity = *identity;
                record.authenticated = true;
                return true;
            }
        }
        // With keys, an unset token does not mean "open": only a key or the token gets in.
        if (!shared.enabled() || !shared.isAuthorized(authorization))
            return false;
        record.identity.user = sharedUserName();
        record.authenticated = true;
        return true;
    }
    if (!shared.isAuthorized(authorization))
        return false;
    // Without keys everyone is the one shared user, who may see everything.
    record.identity.user = sharedUserName();
    record.identity.admin = true;
    record.authenticated = true;
    return true;
}

std::optional<GatewayReply> Gateway::admit(ExchangeRecord &record, const http::RequestHead &head)
{
    const Identity &id = record.identity;
    const bool cacheable
        = m_settings.cacheMetadata && MetadataCache::isCacheable(head.method, head.path);
    std::optional<Phase> phase;
    if (cacheable) {
        phase = currentPhase();
        if (*phase != Phase::Ready) {
            if (auto body = m_cache.lookup(head.path)) {
                m_metrics.add("slullama_metadata_cache_hits_total", {{"route", record.route}});
                return GatewayReply {200, *body, "X-Slullama-Cache: hit\r\n"};
            }
        } else {
            record.capture = true;
        }
    }

    // Limits are for per-user keys; the shared token is one name for many people.
    if (id.keyed) {
        const int concurrent
            = id.maxConcurrent.value_or(id.admin ? 0 : m_settings.userMaxConcurrent);
        const int perMinute
            = id.requestsPerMinute.value_or(id.admin ? 0 : m_settings.userRequestsPerMinute);
        if (concurrent > 0 || perMinute > 0) {
            const LimitDecision decision
                = m_limiter.admit(id.user, concurrent, perMinute, m_clock->monotonicMs());
            if (!decision.allowed) {
                m_metrics.add("slullama_rate_limited_total", {{"user", id.user.toUtf8()}});
                return GatewayReply {
                    429, errorJson(decision.reason),
                    "Retry-After: " + QByteArray::number(decision.retryAfterSeconds) + "\r\n"};
            }
            record.limited = true;
        }
    }

    if (!m_settings.asyncHeaderName.isEmpty()
        && head.headers.hasToken(m_settings.asyncHeaderName, m_settings.asyncHeaderToken)) {
        if (!phase)
            phase = currentPhase();
        if (*phase != Phase::Ready) {
            if (record.limited) {
                m_limiter.release(id.user);
                record.limited = false;
            }
            m_usage->noteUser(id.user);
            m_backend->wake();
            const Status status = m_backend->status();
            double wait = status.lastBootSeconds > 0 ? status.lastBootSeconds : 30;
            if (m_bootStartMs >= 0)
                wait -= double(m_clock->monotonicMs() - m_bootStartMs) / 1000.0;
            int retry = std::clamp(int(std::ceil(wait)), 2, 300);
            const QDateTime start = QDateTime::fromString(status.job.expectedStart, Qt::ISODate);
            if (start.isValid()) {
                const qint64 untilStart = m_clock->currentDateTime().secsTo(start);
                retry = std::clamp(int(std::max<qint64>(retry, untilStart)), 2, 3600);
            }
            QJsonObject body = status.toJson();
            addToStatus(body, record);
            m_metrics.add("slullama_async_refusals_total");
            return GatewayReply {503, QJsonDocument(body).toJson(QJsonDocument::Compact),
                                 "Retry-After: " + QByteArray::number(retry)
                                     + "\r\nPreference-Applied: respond-async\r\n"};
        }
    }

    record.proxied = true;
    record.scanTokens = record.route == "/api/generate" || record.route == "/api/chat"
        || record.route == "/api/embed" || record.route == "/api/embeddings"
        || record.route.startsWith("/v1/");
    m_usage->requestStarted(id.user);
    return std::nullopt;
}

void Gateway::acquired(ExchangeRecord &record, const AcquireResult &result)
{
    record.waitedSeconds += result.waitedSeconds;
}

QList<http::Header> Gateway::responseHeaders(const ExchangeRecord &record) const
{
    if (record.waitedSeconds <= 0)
        return {};
    return {
        http::Header {"X-Slullama-Cold-Start", QByteArray::number(record.waitedSeconds, 'f', 2)}};
}

void Gateway::noteWake(const ExchangeRecord &record)
{
    if (record.authenticated)
        m_usage->noteUser(record.identity.user);
}

void Gateway::addToStatus(QJsonObject &status, const ExchangeRecord &record)
{
    m_usage->accrue();
    const Identity &id = record.identity;
    QJsonObject usage {
        {QStringLiteral("user"), id.user},
        {QStringLiteral("admin"), id.admin},
        {QStringLiteral("users"), m_usage->toJson(id.admin ? QString() : id.user)},
    };
    if (id.keyed) {
        const int concurrent
            = id.maxConcurrent.value_or(id.admin ? 0 : m_settings.userMaxConcurrent);
        const int perMinute
            = id.requestsPerMinute.value_or(id.admin ? 0 : m_settings.userRequestsPerMinute);
        usage.insert(QStringLiteral("limits"),
                     QJsonObject {{QStringLiteral("max_concurrent"), concurrent},
                                  {QStringLiteral("requests_per_minute"), perMinute}});
    }
    status.insert(QStringLiteral("usage"), usage);
    if (id.admin)
        status.insert(QStringLiteral("keys"),
                      QJsonObject {{QStringLiteral("enabled"), m_keys->hasKeys()},
                                   {QStringLiteral("active"), m_keys->activeKeyCount()}});
    if (m_bootStartMs >= 0 || m_runningMs >= 0) {
        const qint64 now = m_clock->monotonicMs();
        const qint64 since = m_bootStartMs >= 0 ? m_bootStartMs : m_runningMs;
        const QString stage = m_runningMs < 0 ? QStringLiteral("queue_wait")
            : m_tunnelMs < 0                  ? QStringLiteral("job_start")
                                              : QStringLiteral("model_ready");
        status.insert(
            QStringLiteral("cold_start"),
            QJsonObject {{QStringLiteral("elapsed_seconds"), double(now - since) / 1000.0},
                         {QStringLiteral("stage"), stage}});
    } else {
        status.insert(QStringLiteral("cold_start"), QJsonValue::Null);
    }
}

QByteArray Gateway::metricsText()
{
    m_metrics.set("slullama_requests_in_flight", {}, m_inFlight);
    m_metrics.clear("slullama_phase");
    const Phase current = currentPhase();
    for (Phase p : {Phase::Sleeping, Phase::Submitting, Phase::Queued, Phase::Starting,
                    Phase::Ready, Phase::Stopping})
        m_metrics.set("slullama_phase", {{"phase", phaseName(p).toLatin1()}}, p == current ? 1 : 0);
    m_metrics.set("slullama_keys_active", {}, m_keys->activeKeyCount());
    m_usage->accrue();
    m_metrics.clear("slullama_gpu_seconds_total");
    for (const QString &user : m_usage->users())
        m_metrics.set("slullama_gpu_seconds_total", {{"user", user.toUtf8()}},
                      m_usage->total(user).gpuSeconds);
    return m_metrics.render();
}

void Gateway::end(ExchangeRecord &record)
{
    if (!record.active)
        return;
    record.active = false;
    --m_inFlight;
    const int status = record.status ? record.status : 499;
    const QByteArray user = record.authenticated ? record.identity.user.toUtf8() : "none";
    m_metrics.add(
        "slullama_requests_total",
        {{"route", record.route}, {"status", QByteArray::number(status)}, {"user", user}});
    if (record.bytesIn > 0)
        m_metrics.add("slullama_bytes_total", {{"direction", "in"}, {"user", user}},
                      double(record.bytesIn));
    if (record.bytesOut > 0)
        m_metrics.add("slullama_bytes_total", {{"direction", "out"}, {"user", user}},
                      double(record.bytesOut));
    if (record.tokens.found()) {
        m_metrics.add("slullama_tokens_total", {{"kind", "prompt"}, {"user", user}},
                      double(record.tokens.promptTokens()));
        m_metrics.add("slullama_tokens_total", {{"kind", "completion"}, {"user", user}},
                      double(record.tokens.completionTokens()));
    }
    if (record.limited) {
        record.limited = false;
        m_limiter.release(record.identity.user);
    }
    if (record.proxied) {
        record.proxied = false;
        UsageCounters delta;
        delta.requests = 1;
        delta.promptTokens = record.tokens.promptTokens();
        delta.completionTokens = record.tokens.completionTokens();
        delta.bytesIn = record.bytesIn;
        delta.bytesOut = record.bytesOut;
        m_usage->requestEnded(record.identity.user, delta);
    }
    if (record.capture && status == 200 && !record.captured.isEmpty())
        m_cache.store(record.path, record.captured);
    record.captured = QByteArray();
}

// ---------------------------------------------------------------------------------------------
// Lifecycle events

void Gateway::onStatus(const Status &status)
{
    if (m_phase == Phase::Starting && !m_rebuilding && m_tunnelMs < 0 && status.tunnelAlive)
        m_tunnelMs = m_clock->monotonicMs();
}

void Gateway::onPhase(Phase to, const Status &status)
{
    const qint64 now = m_clock->monotonicMs();
    const Phase from = m_phase.value_or(Phase::Sleeping);
    m_phase = to;
    m_usage->setJobHeld(holdsNode(to));
    if (from == to)
        return;
    const auto seconds = [](qint64 ms) { return double(std::max<qint64>(0, ms)) / 1000.0; };
    switch (to) {
    case Phase::Submitting:
        m_bootStartMs = now;
        m_runningMs = m_tunnelMs = -1;
        m_rebuilding = false;
        m_jobWasReady = false;
        m_metrics.add("slullama_cold_starts_total");
        break;
    case Phase::Queued:
        if (from == Phase::Submitting)
            m_metrics.add("slullama_jobs_submitted_total");
        break;
    case Phase::Starting:
        if (from == Phase::Ready) {
            m_rebuilding = true;
            m_metrics.add("slullama_tunnel_rebuilds_total");
            break;
        }
        m_runningMs = now;
        m_tunnelMs = status.tunnelAlive ? now : -1;
        if (m_bootStartMs >= 0)
            m_metrics.observe("slullama_cold_start_seconds", {{"stage", "queue_wait"}},
                              seconds(now - m_bootStartMs));
        break;
    case Phase::Ready:
        if (!m_rebuilding && m_runningMs >= 0) {
            const qint64 tunnel = m_tunnelMs >= 0 ? m_tunnelMs : now;
            m_metrics.observe("slullama_cold_start_seconds", {{"stage", "job_start"}},
                              seconds(tunnel - m_runningMs));
            m_metrics.observe("slullama_cold_start_seconds", {{"stage", "model_ready"}},
                              seconds(now - tunnel));
            if (m_bootStartMs >= 0)
                m_metrics.observe("slullama_cold_start_seconds", {{"stage", "total"}},
                                  seconds(now - m_bootStartMs));
        }
        m_rebuilding = false;
        m_jobWasReady = true;
        m_bootStartMs = m_runningMs = m_tunnelMs = -1;
        break;
    case Phase::Stopping:
        break;
    case Phase::Sleeping:
        if (from == Phase::Submitting) {
            m_metrics.add("slullama_jobs_failed_total", {{"stage", "submit"}});
        } else {
            const QByteArray reason = endReasonLabel(status.lastEndReason);
            m_metrics.add("slullama_teardowns_total", {{"reason", reason}});
            if (!m_jobWasReady && reason != "shutdown")
                m_metrics.add("slullama_jobs_failed_total",
                              {{"stage", m_runningMs >= 0 ? "starting" : "queued"}});
            else if (m_jobWasReady && reason != "idle" && reason != "shutdown")
                m_metrics.add("slullama_jobs_lost_total", {{"reason", reason}});
        }
        m_bootStartMs = m_runningMs = m_tunnelMs = -1;
        m_rebuilding = false;
        m_jobWasReady = false;
        break;
    }
}

} // namespace slullama
