#include "statusmodel.h"

#include <QJsonDocument>
#include <QJsonParseError>
#include <QJsonValue>

#include <cmath>

namespace slullama {

namespace {

struct PhaseEntry
{
    Phase phase;
    const char *name;
};

constexpr PhaseEntry kPhases[] = {
    {Phase::Sleeping, "sleeping"}, {Phase::Submitting, "submitting"}, {Phase::Queued, "queued"},
    {Phase::Starting, "starting"}, {Phase::Ready, "ready"},           {Phase::Stopping, "stopping"},
};

// Absent values are null, as 0.1.3 reported a job it did not have.
QJsonValue stringOrNull(const QString &value)
{
    return value.isEmpty() ? QJsonValue(QJsonValue::Null) : QJsonValue(value);
}

QString readString(const QJsonObject &object, const char *key)
{
    const QJsonValue value = object.value(QLatin1String(key));
    if (value.isString())
        return value.toString();
    // Job ids arrive as numbers from some producers.
    if (value.isDouble())
        return QString::number(value.toDouble(), 'f', 0);
    return {};
}

// 0.1.3 computed some of these from float clocks; whole seconds are enough.
qint64 readInteger(const QJsonObject &object, const char *key, qint64 fallback)
{
    const QJsonValue value = object.value(QLatin1String(key));
    if (!value.isDouble())
        return fallback;
    const double d = value.toDouble();
    // Converting a double beyond qint64's range is undefined behaviour; any server on the port
    // can send 1e300 (found by tests/fuzz/fuzz_status).
    constexpr double kRange = 9.0e18;
    return std::isfinite(d) && d > -kRange && d < kRange ? qint64(std::floor(d)) : fallback;
}

double readDouble(const QJsonObject &object, const char *key, double fallback)
{
    const QJsonValue value = object.value(QLatin1String(key));
    return value.isDouble() ? value.toDouble() : fallback;
}

} // namespace

QString phaseName(Phase phase)
{
    for (const PhaseEntry &entry : kPhases) {
        if (entry.phase == phase)
            return QString::fromLatin1(entry.name);
    }
    return QStringLiteral("sleeping");
}

std::optional<Phase> phaseFromName(const QString &name)
{
    for (const PhaseEntry &entry : kPhases) {
        if (name == QLatin1String(entry.name))
            return entry.phase;
    }
    return std::nullopt;
}

QJsonObject Status::toJson() const
{
    QJsonObject jobObject {
        {QStringLiteral("id"), stringOrNull(job.id)},
        {QStringLiteral("state"), stringOrNull(job.state)},
        {QStringLiteral("node"), stringOrNull(job.node)},
        {QStringLiteral("time_left"), stringOrNull(job.timeLeft)},
        {QStringLiteral("pending_reason"), stringOrNull(job.pendingReason)},
        {QStringLiteral("expected_start"), stringOrNull(job.expectedStart)},
    };
    QJsonObject configObject {
        {QStringLiteral("partition"), partition},
        {QStringLiteral("gres"), gres},
        {QStringLiteral("ollama_port"), ollamaPort},
        {QStringLiteral("keep_alive"), keepAlive},
    };
    QJsonObject lastBoot {
        {QStringLiteral("at"),
         lastBootAt.isValid() ? QJsonValue(lastBootAt.toUTC().toString(Qt::ISODate))
                              : QJsonValue(QJsonValue::Null)},
        {QStringLiteral("seconds"),
         lastBootSeconds >= 0 ? QJsonValue(lastBootSeconds) : QJsonValue(QJsonValue::Null)},
    };
    QJsonValue handoverValue(QJsonValue::Null);
    if (handover.active()) {
        handoverValue = QJsonObject {
            {QStringLiteral("stage"), handover.stage},
            {QStringLiteral("successor_job_id"), stringOrNull(handover.successorJobId)},
            {QStringLiteral("state"), stringOrNull(handover.successorState)},
            {QStringLiteral("node"), stringOrNull(handover.successorNode)},
            {QStringLiteral("old_job_id"), stringOrNull(handover.oldJobId)},
            {QStringLiteral("message"), stringOrNull(handover.message)},
        };
    }
    return QJsonObject {
        {QStringLiteral("version"), version},
        {QStringLiteral("uptime_seconds"), uptimeSeconds},
        {QStringLiteral("request_count"), requestCount},
        {QStringLiteral("idle_seconds"), idleSeconds},
        {QStringLiteral("idle_timeout_minutes"), idleTimeoutMinutes},
        {QStringLiteral("tunnel_alive"), tunnelAlive},
        {QStringLiteral("job"), jobObject},
        {QStringLiteral("config"), configObject},
        {QStringLiteral("phase"), phaseName(phase)},
        {QStringLiteral("keep_alive_effective"), keepAliveEffective},
        {QStringLiteral("active_requests"), activeRequests},
        {QStringLiteral("seconds_until_sleep"), secondsUntilSleep},
        {QStringLiteral("last_error"), stringOrNull(lastError)},
        {QStringLiteral("last_end_reason"), stringOrNull(lastEndReason)},
        {QStringLiteral("last_boot"), lastBoot},
        {QStringLiteral("handover"), handoverValue},
        {QStringLiteral("awake_until"),
         awakeUntil.isValid() ? QJsonValue(awakeUntil.toUTC().toString(Qt::ISODate))
                              : QJsonValue(QJsonValue::Null)},
    };
}

Result<Status> Status::fromJson(const QByteArray &json)
{
    QJsonParseError parseError;
    const QJsonDocument document = QJsonDocument::fromJson(json, &parseError);
    if (parseError.error != QJsonParseError::NoError)
        return makeError(QStringLiteral("status is not valid JSON: ") + parseError.errorString()
                         + QStringLiteral(" at offset ") + QString::number(parseError.offset));
    if (!document.isObject())
        return makeError(QStringLiteral("status is not a JSON object"));
    const QJsonObject root = document.object();
    // Anything else answering on the port (Ollama itself, another service) is not a status.
    if (!root.contains(QLatin1String("uptime_seconds")) && !root.contains(QLatin1String("phase")))
        return makeError(
            QStringLiteral("not a slullama status: neither uptime_seconds nor phase is present"));

    Status s;
    s.version = readString(root, "version");
    s.uptimeSeconds = readInteger(root, "uptime_seconds", 0);
    s.requestCount = readInteger(root, "request_count", 0);
    s.idleSeconds = readInteger(root, "idle_seconds", -1);
    s.idleTimeoutMinutes = readDouble(root, "idle_timeout_minutes", s.idleTimeoutMinutes);
    s.tunnelAlive = root.value(QLatin1String("tunnel_alive")).toBool(false);

    const QJsonObject job = root.value(QLatin1String("job")).toObject();
    s.job.id = readString(job, "id");
    s.job.state = readString(job, "state");
    s.job.node = readString(job, "node");
    s.job.timeLeft = readString(job, "time_left");
    s.job.pendingReason = readString(job, "pending_reason");
    s.job.expectedStart = readString(job, "expected_start");

    const QJsonObject config = root.value(QLatin1String("config")).toObject();
    s.partition = readString(config, "partition");
    s.gres = readString(config, "gres");
    s.ollamaPort = int(readInteger(config, "ollama_port", 0));
    s.keepAlive = readString(config, "keep_alive");

    const QString phase = readString(root, "phase");
    if (const auto known = phaseFromName(phase)) {
        s.phase = *known;
    } else {
        // A 0.1.3 daemon has no phase (and a newer one may have more): derive it from the job.
        if (s.job.state == QLatin1String("RUNNING"))
            s.phase = s.tunnelAlive ? Phase::Ready : Phase::Starting;
        else if (s.job.state == QLatin1String("PENDING"))
            s.phase = Phase::Queued;
        else
            s.phase = Phase::Sleeping;
    }
    s.keepAliveEffective = readString(root, "keep_alive_effective");
    if (s.keepAliveEffective.isEmpty())
        s.keepAliveEffective = s.keepAlive;
    s.activeRequests = int(readInteger(root, "active_requests", 0));
    s.secondsUntilSleep = readInteger(root, "seconds_until_sleep", -1);
    s.lastError = readString(root, "last_error");
    s.lastEndReason = readString(root, "last_end_reason");

    const QJsonObject lastBoot = root.value(QLatin1String("last_boot")).toObject();
    const QString at = readString(lastBoot, "at");
    if (!at.isEmpty())
        s.lastBootAt = QDateTime::fromString(at, Qt::ISODate);
    s.lastBootSeconds = readDouble(lastBoot, "seconds", -1);
    if (const QString until = readString(root, "awake_until"); !until.isEmpty())
        s.awakeUntil = QDateTime::fromString(until, Qt::ISODate);

    const QJsonObject handover = root.value(QLatin1String("handover")).toObject();
    s.handover.stage = readString(handover, "stage");
    s.handover.successorJobId = readString(handover, "successor_job_id");
    s.handover.successorState = readString(handover, "state");
    s.handover.successorNode = readString(handover, "node");
    s.handover.oldJobId = readString(handover, "old_job_id");
    s.handover.message = readString(handover, "message");

    const QJsonObject usage = root.value(QLatin1String("usage")).toObject();
    s.usageToday.user = readString(usage, "user");
    if (!s.usageToday.user.isEmpty()) {
        const QJsonObject today = usage.value(QLatin1String("users"))
                                      .toObject()
                                      .value(s.usageToday.user)
                                      .toObject()
                                      .value(QLatin1String("today"))
                                      .toObject();
        s.usageToday.present = true;
        s.usageToday.requests = readInteger(today, "requests", 0);
        s.usageToday.promptTokens = readInteger(today, "prompt_tokens", 0);
        s.usageToday.completionTokens = readInteger(today, "completion_tokens", 0);
        s.usageToday.gpuSeconds = readDouble(today, "gpu_seconds", 0);
    }
    return s;
}

} // namespace slullama
