#pragma once

// sbatch / scontrol / scancel through a ProcessRunner, each with config.slurm.commandTimeout.
// Parsing is in pure functions (namespace slurm) so it can be table-tested with captured output
// and fuzzed.

#include "config.h"
#include "processrunner.h"
#include "result.h"

#include <QHash>
#include <QObject>
#include <QString>

#include <functional>
#include <optional>

namespace slullama {

// What `scontrol show job -o` says about a job. Fields are Slurm's text, unparsed.
struct JobInfo
{
    QString id;
    QString state; // JobState: PENDING, RUNNING, CANCELLED, ...
    QString reason; // Reason: None, Resources, Priority, NonZeroExitCode, ...
    QString nodeList; // NodeList: "(null)" while pending
    QString batchHost;
    QString timeLimit; // e.g. "4:00:00", "1-00:00:00", "UNLIMITED"
    QString runTime; // e.g. "00:01:02"
    QString startTime; // ISO-like, "Unknown" when unknown
    QString endTime;
    QString comment; // "(null)" when unset
    QString exitCode; // "0:0"
    bool exists = true; // false: Slurm no longer knows the job ("Invalid job id specified")

    // The node to tunnel to: BatchHost, else the first host of NodeList; empty if none.
    QString node() const;
    bool isPending() const; // queued: PENDING, CONFIGURING, REQUEUED, SUSPENDED, ...
    bool isRunning() const; // RUNNING
    bool hasEnded() const; // gone, or any terminal / completing state
    // A human reason for a job that ended: "CANCELLED", "TIMEOUT", "FAILED (NonZeroExitCode)"...
    QString endDescription() const;
    // Seconds left before the time limit (TimeLimit - RunTime), if both are known.
    std::optional<qint64> secondsLeft() const;
};

// One line of `squeue --me -h -o '%i|%T|%k'`: a live job of ours.
struct JobSummary
{
    QString id;
    QString state;
    QString comment;

    bool operator==(const JobSummary &) const = default;
};

namespace slurm {

// "1234" or "1234;cluster" (sbatch --parsable) → "1234".
Result<QString> parseSbatchParsable(const QByteArray &stdoutData);
// One line of `scontrol show job -o` → Key=Value map. Values may contain spaces only in the
// last-known free-text keys (Comment, Command, WorkDir, StdOut...), so a token without '='
// continues the previous value.
QHash<QString, QString> parseKeyValueLine(const QString &line);
// `scontrol show job -o` output (first job line) → JobInfo.
Result<JobInfo> parseShowJob(const QByteArray &stdoutData);
// Slurm durations: "MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS" → seconds;
// "UNLIMITED"/"INFINITE"/"NOT_SET"/invalid → nullopt.
std::optional<qint64> parseDuration(const QString &text);
// parseDuration for a text that is read far more often than it changes.
struct CachedDuration
{
    std::optional<qint64> parse(const QString &text)
    {
        if (text != m_text) {
            m_text = text;
            m_seconds = parseDuration(text);
        }
        return m_seconds;
    }

private:
    QString m_text;
    std::optional<qint64> m_seconds;
};
// Seconds → "D-HH:MM:SS" or "H:MM:SS", as squeue prints.
QString formatDuration(qint64 seconds);
// `squeue -h -o '%i|%T|%k'` output → jobs (lines that are not id|state|comment are skipped).
QList<JobSummary> parseSqueueJobs(const QByteArray &stdoutData);
// The port a job reported in its comment as "slullama_port=N" (the built-in template does that
// with ollama.port = 0), if any.
std::optional<quint16> reportedPort(const QString &comment);
bool isInvalidJobId(const QByteArray &stderrData);
bool isPermissionDenied(const QByteArray &stderrData);
// Slurm could not be asked, for a reason that passes (controller down, busy or in standby, munge
// down, a network hiccup): a headline such as "Slurm controller unreachable". Empty when Slurm
// answered and refused (invalid partition, account, QOS, limits), which a retry will not change.
QString unavailableReason(const QByteArray &stderrData);

} // namespace slurm

// What went wrong with one Slurm command, so callers can answer 502 vs 503.
enum class SlurmFailure {
    None,
    Unreachable, // Slurm unavailable for now (timed out, controller down, munge): HTTP 503
    NotFound, // the program could not be started (not on PATH): HTTP 502
    Refused, // non-zero exit (invalid partition, ...): HTTP 502, message = Slurm's stderr
    PermissionDenied, // "Access/permission denied" (e.g. raising TimeLimit as a user)
    BadOutput, // exit 0 but output we cannot parse
};

struct SlurmOutcome
{
    SlurmFailure failure = SlurmFailure::None;
    QString message; // what failed, in Slurm's words where there are any
    bool ok() const { return failure == SlurmFailure::None; }
};

class SlurmClient final
{
public:
    using SubmitCallback = std::function<void(const SlurmOutcome &, const QString &jobId)>;
    using JobCallback = std::function<void(const SlurmOutcome &, const JobInfo &)>;
    using DoneCallback = std::function<void(const SlurmOutcome &)>;
    using ListCallback = std::function<void(const SlurmOutcome &, const QList<JobSummary> &)>;

    SlurmClient(const SlurmConfig &config, ProcessRunner *runner);

    // sbatch --parsable [--comment=COMMENT] SCRIPT (the script carries the #SBATCH directives).
    void submit(const QString &scriptPath, QObject *context, SubmitCallback done,
                const QString &comment = {});
    // squeue --me -h --name=NAME -o '%i|%T|%k': our live jobs of that name.
    void listJobs(const QString &jobName, QObject *context, ListCallback done);
    // scontrol show job -o JOB. A job Slurm no longer knows is ok with info.exists = false.
    void showJob(const QString &jobId, QObject *context, JobCallback done);
    // scancel JOB. A job Slurm no longer knows counts as cancelled.
    void cancel(const QString &jobId, QObject *context, DoneCallback done);
    // scontrol update JobId=JOB TimeLimit=MINUTES.
    void setTimeLimit(const QString &jobId, qint64 minutes, QObject *context, DoneCallback done);

private:
    int timeoutMs() const;
    SlurmOutcome outcomeOf(const QString &program, const QStringList &args,
                           const ProcessResult &result) const;

    SlurmConfig m_config;
    ProcessRunner *m_runner;
};

} // namespace slullama
