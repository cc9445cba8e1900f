#include "usage.h"

#include "logging.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QSaveFile>
#include <QTimerEvent>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace slullama {

namespace {

bool isJsonSpace(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

constexpr qint64 kMaxCount = qint64(1) << 50;

} // namespace

// ---------------------------------------------------------------------------------------------
// UsageCounters

void UsageCounters::add(const UsageCounters &o)
{
    requests += o.requests;
    promptTokens += o.promptTokens;
    completionTokens += o.completionTokens;
    bytesIn += o.bytesIn;
    bytesOut += o.bytesOut;
    gpuSeconds += o.gpuSeconds;
}

bool UsageCounters::isZero() const
{
    return requests == 0 && promptTokens == 0 && completionTokens == 0 && bytesIn == 0
        && bytesOut == 0 && gpuSeconds == 0;
}

QJsonObject UsageCounters::toJson() const
{
    return QJsonObject {
        {QStringLiteral("requests"), requests},
        {QStringLiteral("prompt_tokens"), promptTokens},
        {QStringLiteral("completion_tokens"), completionTokens},
        {QStringLiteral("bytes_in"), bytesIn},
        {QStringLiteral("bytes_out"), bytesOut},
        // Whole milliseconds are plenty and keep the JSON short.
        {QStringLiteral("gpu_seconds"), std::round(gpuSeconds * 1000.0) / 1000.0},
    };
}

UsageCounters UsageCounters::fromJson(const QJsonObject &o)
{
    const auto integer = [&o](const char *key) {
        const double v = o.value(QLatin1String(key)).toDouble();
        return std::isfinite(v) && v > 0 ? qint64(v) : qint64(0);
    };
    UsageCounters c;
    c.requests = integer("requests");
    c.promptTokens = integer("prompt_tokens");
    c.completionTokens = integer("completion_tokens");
    c.bytesIn = integer("bytes_in");
    c.bytesOut = integer("bytes_out");
    const double gpu = o.value(QLatin1String("gpu_seconds")).toDouble();
    c.gpuSeconds = std::isfinite(gpu) && gpu > 0 ? gpu : 0;
    return c;
}

// ---------------------------------------------------------------------------------------------
// TokenScanner

void TokenScanner::endString()
{
    m_key = Key::None;
    if (m_length > int(sizeof m_text))
        return;
    const QByteArrayView text(m_text, m_length);
    if (text == "prompt_eval_count" || text == "prompt_tokens")
        m_key = Key::Prompt;
    else if (text == "eval_count" || text == "completion_tokens")
        m_key = Key::Completion;
}

void TokenScanner::feed(QByteArrayView bytes)
{
    const char *p = bytes.data();
    const char *const end = p + bytes.size();
    while (p < end) {
        switch (m_state) {
        case State::Outside: {
            const void *quote = std::memchr(p, '"', size_t(end - p));
            if (!quote)
                return;
            p = static_cast<const char *>(quote) + 1;
            m_state = State::InString;
            m_escape = false;
            m_length = 0;
            break;
        }
        case State::InString: {
            const char c = *p++;
            if (m_escape) {
                m_escape = false;
                m_length = int(sizeof m_text) + 1; // keys we want have no escapes
            } else if (c == '\\') {
                m_escape = true;
            } else if (c == '"') {
                endString();
                m_state = State::AfterString;
            } else if (m_length < int(sizeof m_text)) {
                m_text[m_length++] = c;
            } else {
                m_length = int(sizeof m_text) + 1;
            }
            break;
        }
        case State::AfterString:
            if (isJsonSpace(*p)) {
                ++p;
            } else if (*p == ':' && m_key != Key::None) {
                ++p;
                m_state = State::AfterColon;
            } else {
                m_state = State::Outside; // this byte is looked at again there
            }
            break;
        case State::AfterColon:
            if (isJsonSpace(*p)) {
                ++p;
            } else if (*p >= '0' && *p <= '9') {
                m_value = *p++ - '0';
                m_state = State::InNumber;
            } else {
                m_state = State::Outside;
            }
            break;
        case State::InNumber:
            if (*p >= '0' && *p <= '9') {
                if (m_value < kMaxCount)
                    m_value = m_value * 10 + (*p - '0');
                ++p;
            } else {
                // The last value seen wins: a response carries each count once, at its end.
                (m_key == Key::Prompt ? m_prompt : m_completion) = m_value;
                m_found = true;
                m_state = State::Outside;
            }
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// UsageTracker

UsageTracker::UsageTracker(QString path, Clock *clock, QObject *parent)
    : QObject(parent), m_path(std::move(path)), m_clock(clock)
{
    m_accruedAtMs = m_clock->monotonicMs();
}

UsageTracker::~UsageTracker()
{
    accrue();
    if (const VoidResult saved = flush(); !saved)
        qCWarning(lcProxy).noquote() << saved.error();
}

VoidResult UsageTracker::load()
{
    m_saveTimer.start(kSaveIntervalMs, Qt::CoarseTimer, this);
    QFile file(m_path);
    if (!file.exists())
        return Ok {};
    if (!file.open(QIODevice::ReadOnly))
        return makeError(QStringLiteral("cannot read usage file %1: %2 - counting from zero")
                             .arg(m_path, file.errorString()));
    QJsonParseError error;
    const QJsonDocument doc = QJsonDocument::fromJson(file.readAll(), &error);
    if (!doc.isObject())
        return makeError(QStringLiteral("usage file %1 is not valid JSON (%2) - counting from "
                                        "zero; the file is replaced at the next save")
                             .arg(m_path, error.errorString()));
    const QJsonObject users = doc.object().value(QStringLiteral("users")).toObject();
    for (auto it = users.begin(); it != users.end(); ++it) {
        const QJsonObject u = it.value().toObject();
        UserUsage &usage = entry(it.key());
        usage.total = UsageCounters::fromJson(u.value(QStringLiteral("total")).toObject());
        const QJsonObject days = u.value(QStringLiteral("days")).toObject();
        for (auto d = days.begin(); d != days.end(); ++d) {
            const QDate date = QDate::fromString(d.key(), Qt::ISODate);
            if (date.isValid())
                usage.days.insert(date, UsageCounters::fromJson(d.value().toObject()));
        }
    }
    m_lastUser = doc.object().value(QStringLiteral("last_user")).toString();
    return Ok {};
}

VoidResult UsageTracker::flush()
{
    if (!m_dirty)
        return Ok {};
    QJsonObject users;
    const QDate oldest = todayDate().addDays(-kKeepDays);
    for (auto it = m_users.begin(); it != m_users.end(); ++it) {
        QJsonObject days;
        for (auto d = it->days.begin(); d != it->days.end(); ++d) {
            if (d.key() >= oldest)
                days.insert(d.key().toString(Qt::ISODate), d->toJson());
        }
        users.insert(it.key(),
                     QJsonObject {{QStringLiteral("total"), it->total.toJson()},
                                  {QStringLiteral("days"), days}});
    }
    const QJsonObject root {
        {QStringLiteral("version"), 1},
        {QStringLiteral("written"), m_clock->currentDateTime().toUTC().toString(Qt::ISODate)},
        {QStringLiteral("last_user"), m_lastUser},
        {QStringLiteral("users"), users},
    };
    QDir().mkpath(QFileInfo(m_path).absolutePath());
    QSaveFile file(m_path);
    if (!file.open(QIODevice::WriteOnly)
        || file.write(QJsonDocument(root).toJson(QJsonDocument::Indented)) < 0 || !file.commit())
        return makeError(
            QStringLiteral("cannot write usage file %1: %2").arg(m_path, file.errorString()));
    m_dirty = false;
    return Ok {};
}

QDate UsageTracker::todayDate() const
{
    // Every request ends here, and a local date costs a time-zone conversion: keep it until the
    // next local midnight, or a minute at most so a changed wall clock is followed soon.
    const qint64 now = m_clock->monotonicMs();
    if (m_today.isValid() && now < m_todayValidUntilMs)
        return m_today;
    const QDateTime local = m_clock->currentDateTime().toLocalTime();
    m_today = local.date();
    const qint64 toMidnight = local.msecsTo(QDateTime(m_today.addDays(1), QTime(0, 0)));
    m_todayValidUntilMs = now + std::clamp<qint64>(toMidnight, 0, 60 * 1000);
    return m_today;
}

UsageTracker::UserUsage &UsageTracker::entry(const QString &user)
{
    return m_users[user];
}

void UsageTracker::addTo(UserUsage &usage, const UsageCounters &delta)
{
    usage.total.add(delta);
    usage.days[todayDate()].add(delta);
    m_dirty = true;
}

void UsageTracker::accrue()
{
    const qint64 now = m_clock->monotonicMs();
    const qint64 elapsed = now - m_accruedAtMs;
    m_accruedAtMs = now;
    if (!m_jobHeld || elapsed <= 0)
        return;
    QList<UserUsage *> holders;
    for (UserUsage &usage : m_users) {
        if (usage.active > 0)
            holders.append(&usage);
    }
    const double seconds = double(elapsed) / 1000.0;
    UsageCounters share;
    if (!holders.isEmpty()) {
        share.gpuSeconds = seconds / double(holders.size());
        for (UserUsage *usage : holders)
            addTo(*usage, share);
    } else if (!m_lastUser.isEmpty()) {
        share.gpuSeconds = seconds;
        addTo(entry(m_lastUser), share);
    }
}

void UsageTracker::setJobHeld(bool held)
{
    accrue();
    m_jobHeld = held;
}

void UsageTracker::requestStarted(const QString &user)
{
    accrue();
    ++entry(user).active;
    m_lastUser = user;
}

void UsageTracker::requestEnded(const QString &user, const UsageCounters &delta)
{
    accrue();
    UserUsage &usage = entry(user);
    usage.active = std::max(0, usage.active - 1);
    if (!delta.isZero())
        addTo(usage, delta);
    m_lastUser = user;
}

void UsageTracker::noteUser(const QString &user)
{
    accrue();
    entry(user);
    m_lastUser = user;
}

QStringList UsageTracker::users() const
{
    QStringList names = m_users.keys();
    names.sort();
    return names;
}

UsageCounters UsageTracker::total(const QString &user) const
{
    return m_users.value(user).total;
}

UsageCounters UsageTracker::today(const QString &user) const
{
    return m_users.value(user).days.value(todayDate());
}

QJsonObject UsageTracker::toJson(const QString &only) const
{
    QJsonObject out;
    for (auto it = m_users.begin(); it != m_users.end(); ++it) {
        if (!only.isEmpty() && it.key() != only)
            continue;
        out.insert(it.key(),
                   QJsonObject {{QStringLiteral("total"), it->total.toJson()},
                                {QStringLiteral("today"), today(it.key()).toJson()},
                                {QStringLiteral("active_requests"), it->active}});
    }
    if (!only.isEmpty() && !out.contains(only))
        out.insert(only,
                   QJsonObject {{QStringLiteral("total"), UsageCounters().toJson()},
                                {QStringLiteral("today"), UsageCounters().toJson()},
                                {QStringLiteral("active_requests"), 0}});
    return out;
}

void UsageTracker::timerEvent(QTimerEvent *event)
{
    if (event->timerId() != m_saveTimer.timerId()) {
        QObject::timerEvent(event);
        return;
    }
    accrue();
    if (const VoidResult saved = flush(); !saved)
        qCWarning(lcProxy).noquote() << saved.error();
}

} // namespace slullama
