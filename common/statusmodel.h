#pragma once

// The daemon's status as one value type, with its JSON form. The daemon fills it, serves it
// at /slullama/status; the CLI prints it and the tray reads it — one parser, one writer.

#include "result.h"

#include <QByteArray>
#include <QDateTime>
#include <QJsonObject>
#include <QString>

namespace slullama {

// The lifecycle phase. Its lower-case name is what `phase` says in the JSON.
enum class Phase { Sleeping, Submitting, Queued, Starting, Ready, Stopping };
QString phaseName(Phase phase);
std::optional<Phase> phaseFromName(const QString &name);

struct JobStatus
{
    QString id; // empty when there is no job
    QString state; // Slurm's JobState (PENDING, RUNNING, ...) or empty
    QString node;
    QString timeLeft; // Slurm's form, e.g. "3:59:12"; empty if unknown
    QString pendingReason; // Slurm's Reason while PENDING (e.g. "Resources")
    QString expectedStart; // ISO 8601 when Slurm has an estimate, else empty
};

// A walltime hand-over in progress (or its last outcome): the successor job and the old one.
struct HandoverStatus
{
    // "submitting", "booting" (successor), "draining" (old job finishing its streams),
    // "retiring" (old job being cancelled), "failed"; empty: no hand-over
    QString stage;
    QString successorJobId;
    QString successorState; // Slurm's JobState of the successor
    QString successorNode;
    QString oldJobId;
    QString message; // why it failed, or what it waits for
    bool active() const { return !stage.isEmpty(); }
};

// The asking user's own counters for today, from the gateway's `usage` block (docs/TEAM.md);
// read only (the gateway writes that block itself).
struct UsageSummary
{
    bool present = false;
    QString user;
    qint64 requests = 0;
    qint64 promptTokens = 0;
    qint64 completionTokens = 0;
    double gpuSeconds = 0;
};

struct Status
{
    // Fields slullama 0.1.3 reported, same JSON names.
    QString version;
    qint64 uptimeSeconds = 0;
    qint64 requestCount = 0;
    qint64 idleSeconds = -1; // -1 before first use
    double idleTimeoutMinutes = 30;
    bool tunnelAlive = false;
    JobStatus job;
    QString partition;
    QString gres;
    int ollamaPort = 0;
    QString keepAlive; // as configured: "extend" | "cancel"

    // New fields.
    Phase phase = Phase::Sleeping;
    QString keepAliveEffective; // "cancel" when extend was refused by Slurm
    int activeRequests = 0;
    qint64 secondsUntilSleep = -1; // -1 when not counting down (asleep, or requests active)
    QString lastError;
    QString lastEndReason; // why the last job ended (idle, cancelled outside, time limit...)
    QDateTime lastBootAt; // invalid if never
    double lastBootSeconds = -1;
    QDateTime awakeUntil; // JSON `awake_until`: a wake's "keep awake until"; invalid (null) if none
    HandoverStatus handover; // JSON `handover`: null when none
    UsageSummary usageToday; // parsed from `usage` if present; not written by toJson()

    QJsonObject toJson() const;
    static Result<Status> fromJson(const QByteArray &json);
};

} // namespace slullama
