#pragma once

// Usage per user: requests, prompt and completion tokens, bytes, and GPU-job seconds. Persisted
// as JSON (server.usage_file, default usage.json next to the state file), written atomically
// every kSaveIntervalMs while something changed and on flush().
//
// GPU time is attributed to who kept the node: while the job holds the node (starting, ready,
// stopping), each moment is split equally among the users with requests in flight; a moment
// with none (the idle tail before the idle timeout ends the job, a wake without requests) goes
// to the user seen last.

#include "clock.h"
#include "result.h"

#include <QBasicTimer>
#include <QByteArrayView>
#include <QDate>
#include <QHash>
#include <QJsonObject>
#include <QMap>
#include <QObject>
#include <QString>

namespace slullama {

struct UsageCounters
{
    qint64 requests = 0;
    qint64 promptTokens = 0;
    qint64 completionTokens = 0;
    qint64 bytesIn = 0;
    qint64 bytesOut = 0;
    double gpuSeconds = 0;

    void add(const UsageCounters &other);
    bool isZero() const;
    QJsonObject toJson() const;
    static UsageCounters fromJson(const QJsonObject &object);
};

// Finds token counts in a response body as it streams past, without keeping it: Ollama's
// "prompt_eval_count" / "eval_count" (final NDJSON line, or the one JSON object) and OpenAI's
// "usage": {"prompt_tokens", "completion_tokens"} (JSON or the SSE data lines). Feed decoded
// body bytes (not chunk framing). A JSON tokenizer reduced to what it needs: strings (with
// escapes) are skipped whole, so text inside a model's answer never matches.
class TokenScanner final
{
public:
    void feed(QByteArrayView bytes);
    bool found() const { return m_found; }
    qint64 promptTokens() const { return m_prompt; }
    qint64 completionTokens() const { return m_completion; }

private:
    enum class State { Outside, InString, AfterString, AfterColon, InNumber };
    enum class Key { None, Prompt, Completion };
    void endString();

    State m_state = State::Outside;
    bool m_escape = false;
    char m_text[24] = {};
    int m_length = 0; // > sizeof m_text: too long to be a key we want
    Key m_key = Key::None;
    qint64 m_value = 0;
    qint64 m_prompt = 0;
    qint64 m_completion = 0;
    bool m_found = false;
};

class UsageTracker final : public QObject
{
    Q_OBJECT

public:
    UsageTracker(QString path, Clock *clock, QObject *parent = nullptr);
    ~UsageTracker() override;

    // Reads the file (a missing one is fine) and starts the periodic save.
    VoidResult load();
    // Writes now if anything changed (shutdown).
    VoidResult flush();
    QString path() const { return m_path; }

    // The job holds a node (GPU time accrues) or not.
    void setJobHeld(bool held);
    bool jobHeld() const { return m_jobHeld; }
    // A request of `user` is in flight from now on (it keeps the node awake).
    void requestStarted(const QString &user);
    // It ended; `delta` (requests, tokens, bytes) is added to the user's counters.
    void requestEnded(const QString &user, const UsageCounters &delta);
    // A wake (or anything else) by `user` without a request: the next idle time is theirs.
    void noteUser(const QString &user);

    // Brings GPU time up to now (status and metrics call it before reading).
    void accrue();

    QStringList users() const;
    UsageCounters total(const QString &user) const;
    UsageCounters today(const QString &user) const;
    // {"USER": {"total": {...}, "today": {...}}} for one user (`only` set) or all.
    QJsonObject toJson(const QString &only = {}) const;

    static constexpr int kSaveIntervalMs = 30000;
    static constexpr int kKeepDays = 35;

protected:
    void timerEvent(QTimerEvent *event) override;

private:
    struct UserUsage
    {
        UsageCounters total;
        QMap<QDate, UsageCounters> days;
        int active = 0;
    };
    UserUsage &entry(const QString &user);
    void addTo(UserUsage &usage, const UsageCounters &delta);
    QDate todayDate() const;

    QString m_path;
    Clock *m_clock;
    mutable QDate m_today;
    mutable qint64 m_todayValidUntilMs = 0;
    QHash<QString, UserUsage> m_users;
    QString m_lastUser;
    bool m_jobHeld = false;
    qint64 m_accruedAtMs = 0;
    bool m_dirty = false;
    QBasicTimer m_saveTimer;
};

} // namespace slullama
