#pragma once

// Test doubles for the lifecycle's side effects: Slurm commands (scripted answers, recorded
// calls), time (advanced by hand), the ssh tunnel and the health probe. Shared by
// tst_slurmclient and tst_lifecycle.

#include "backend.h"
#include "clock.h"
#include "healthprobe.h"
#include "nodetunnel.h"
#include "processrunner.h"

#include <QPointer>
#include <QStringList>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace slullama::test {

inline ProcessResult exitWith(int code, const QByteArray &out = {}, const QByteArray &err = {})
{
    ProcessResult r;
    r.exitCode = code;
    r.stdoutData = out;
    r.stderrData = err;
    return r;
}

inline ProcessResult timedOut()
{
    ProcessResult r;
    r.timedOut = true;
    r.exitCode = 9;
    return r;
}

inline ProcessResult notFound()
{
    ProcessResult r;
    r.failedToStart = true;
    r.errorString = QStringLiteral("execvp: No such file or directory");
    return r;
}

// Calls stay pending until flush() answers them from the scripted responses (or answer() does),
// so a test decides exactly when Slurm "replies" — and can leave a command hanging.
class FakeProcessRunner final : public ProcessRunner
{
public:
    struct Call
    {
        QString program;
        QStringList arguments;
        int timeoutMs = 0;
        QPointer<QObject> context;
        Callback done;
        bool answered = false;
        QString line() const { return (QStringList {program} + arguments).join(QLatin1Char(' ')); }
    };

    void run(const QString &program, const QStringList &arguments, int timeoutMs, QObject *context,
             Callback done) override
    {
        auto call = std::make_shared<Call>();
        call->program = program;
        call->arguments = arguments;
        call->timeoutMs = timeoutMs;
        call->context = context;
        call->done = std::move(done);
        calls.push_back(call);
    }

    // Commands starting with `prefix` (program + args joined by spaces) get `result`; a later
    // respond() for the same prefix replaces it. `once`: used for one answer, then falls back.
    void respond(const QString &prefix, const ProcessResult &result, bool once = false)
    {
        if (once) {
            m_once.push_back({prefix, result});
            return;
        }
        for (auto &rule : m_rules) {
            if (rule.first == prefix) {
                rule.second = result;
                return;
            }
        }
        m_rules.push_back({prefix, result});
    }

    std::optional<ProcessResult> responseFor(const QString &line, bool consume)
    {
        for (auto it = m_once.begin(); it != m_once.end(); ++it) {
            if (line.startsWith(it->first)) {
                ProcessResult r = it->second;
                if (consume)
                    m_once.erase(it);
                return r;
            }
        }
        // Longest prefix wins, so a specific rule overrides a general one.
        const std::pair<QString, ProcessResult> *best = nullptr;
        for (const auto &rule : m_rules) {
            if (line.startsWith(rule.first) && (!best || rule.first.size() > best->first.size()))
                best = &rule;
        }
        if (best)
            return best->second;
        return std::nullopt;
    }

    // Answers pending calls that have a response; returns how many.
    int flush()
    {
        int answered = 0;
        for (int round = 0; round < 100; ++round) {
            bool progress = false;
            // Answering can add calls: iterate by index over a growing vector.
            for (size_t i = 0; i < calls.size(); ++i) {
                auto call = calls[i];
                if (call->answered || isHeld(call->line()))
                    continue;
                auto response = responseFor(call->line(), true);
                if (!response)
                    continue;
                deliver(call, *response);
                ++answered;
                progress = true;
            }
            if (!progress)
                break;
        }
        return answered;
    }

    // Answers the oldest pending call starting with `prefix`; false if none.
    bool answer(const QString &prefix, const ProcessResult &result)
    {
        for (auto &call : calls) {
            if (!call->answered && call->line().startsWith(prefix)) {
                deliver(call, result);
                return true;
            }
        }
        return false;
    }

    int count(const QString &prefix) const
    {
        int n = 0;
        for (const auto &call : calls)
            n += call->line().startsWith(prefix) ? 1 : 0;
        return n;
    }

    int pending(const QString &prefix = {}) const
    {
        int n = 0;
        for (const auto &call : calls)
            n += (!call->answered && call->line().startsWith(prefix)) ? 1 : 0;
        return n;
    }

    QStringList lines() const
    {
        QStringList out;
        for (const auto &call : calls)
            out << call->line();
        return out;
    }

    std::vector<std::shared_ptr<Call>> calls;
    // Commands starting with one of these stay pending through flush() (answer() still works):
    // a command that hangs while everything else goes on.
    QStringList held;

private:
    bool isHeld(const QString &line) const
    {
        for (const QString &prefix : held) {
            if (line.startsWith(prefix))
                return true;
        }
        return false;
    }

    static void deliver(const std::shared_ptr<Call> &call, const ProcessResult &result)
    {
        call->answered = true;
        if (call->context)
            call->done(result);
    }

    std::vector<std::pair<QString, ProcessResult>> m_rules;
    std::vector<std::pair<QString, ProcessResult>> m_once;
};

class FakeClock final : public Clock
{
public:
    qint64 monotonicMs() const override { return m_now; }
    QDateTime currentDateTime() const override { return m_base.addMSecs(m_now); }

    TimerId startTimer(qint64 ms, QObject *context, std::function<void()> fn) override
    {
        const TimerId id = m_nextId++;
        m_timers.emplace(id, Timer {m_now + std::max<qint64>(0, ms), context, std::move(fn)});
        return id;
    }

    void stopTimer(TimerId id) override { m_timers.erase(id); }

    // Moves time forward, firing due timers in order (ties: the one started first).
    void advance(qint64 ms)
    {
        const qint64 target = m_now + ms;
        for (;;) {
            auto next = m_timers.end();
            for (auto it = m_timers.begin(); it != m_timers.end(); ++it) {
                if (it->second.due <= target
                    && (next == m_timers.end() || it->second.due < next->second.due))
                    next = it;
            }
            if (next == m_timers.end())
                break;
            Timer timer = std::move(next->second);
            m_timers.erase(next);
            m_now = std::max(m_now, timer.due);
            if (timer.context)
                timer.fn();
        }
        m_now = target;
    }

    int armedTimers() const { return int(m_timers.size()); }

private:
    struct Timer
    {
        qint64 due = 0;
        QPointer<QObject> context;
        std::function<void()> fn;
    };
    qint64 m_now = 1000000;
    QDateTime m_base = QDateTime(QDate(2026, 1, 2), QTime(3, 4, 5), Qt::UTC);
    std::map<TimerId, Timer> m_timers;
    TimerId m_nextId = 1;
};

class FakeNodeTunnel final : public NodeTunnel
{
public:
    quint16 open(const QString &node, quint16 remotePort, ExitCallback onExit,
                 QString *error) override
    {
        ++opens;
        lastNode = node;
        lastRemotePort = remotePort;
        if (failOpen) {
            if (error)
                *error = QStringLiteral("cannot start ssh");
            return 0;
        }
        m_onExit = std::move(onExit);
        m_port = quint16(40000 + opens);
        return m_port;
    }
    void close() override
    {
        if (m_port)
            ++closes;
        m_port = 0;
        m_onExit = nullptr;
    }
    bool isOpen() const override { return m_port != 0; }
    quint16 localPort() const override { return m_port; }

    // The ssh process ends by itself.
    void die(const QString &reason)
    {
        auto onExit = std::move(m_onExit);
        m_onExit = nullptr;
        m_port = 0;
        if (onExit)
            onExit(reason);
    }

    int opens = 0;
    int closes = 0;
    bool failOpen = false;
    QString lastNode;
    quint16 lastRemotePort = 0;

private:
    ExitCallback m_onExit;
    quint16 m_port = 0;
};

// Checks stay pending until flush(), which answers them with `healthy`.
class FakeHealthProbe final : public HealthProbe
{
public:
    void check(const QString &host, quint16 port, int timeoutMs, QObject *context,
               Callback done) override
    {
        ++checks;
        lastTimeoutMs = timeoutMs;
        lastHost = host;
        lastPort = port;
        m_pending.push_back({QPointer<QObject>(context), std::move(done)});
    }
    int flush()
    {
        auto pending = std::exchange(m_pending, {});
        for (auto &[context, done] : pending) {
            if (context)
                done(healthy,
                     healthy ? QStringLiteral("HTTP/1.1 200 OK")
                             : QStringLiteral("connection refused"));
        }
        return int(pending.size());
    }

    bool healthy = true;
    int checks = 0;
    QString lastHost;
    quint16 lastPort = 0;
    int lastTimeoutMs = 0;

private:
    std::vector<std::pair<QPointer<QObject>, Callback>> m_pending;
};

// Collects what acquire() callbacks receive.
struct Outcome
{
    std::vector<AcquireResult> results;
    Backend::Callback callback()
    {
        return [this](const AcquireResult &r) { results.push_back(r); };
    }
};

// Lets every scripted answer arrive and every zero-delay timer fire; `beforeRound` runs ahead of
// each round (for a rig that keeps its scontrol answers current).
inline void settleFakes(FakeProcessRunner &runner, FakeHealthProbe &probe, FakeClock &clock,
                        const std::function<void()> &beforeRound = {})
{
    for (int i = 0; i < 1000; ++i) {
        if (beforeRound)
            beforeRound();
        const int n = runner.flush() + probe.flush();
        clock.advance(0);
        if (n == 0)
            break;
    }
}

// Lets `ms` pass in steps of `step`, settling after each.
inline void advanceSettling(FakeClock &clock, qint64 ms, qint64 step,
                            const std::function<void()> &settle)
{
    settle();
    for (qint64 t = 0; t < ms; t += step) {
        clock.advance(std::min(step, ms - t));
        settle();
    }
}

} // namespace slullama::test
