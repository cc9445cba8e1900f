#pragma once

// Runs short external commands (sbatch, scontrol, scancel) asynchronously with a hard timeout.
// An interface so the lifecycle's unit tests can script Slurm's answers.

#include <QByteArray>
#include <QObject>
#include <QString>
#include <QStringList>

#include <functional>
#include <memory>

namespace slullama {

struct ProcessResult
{
    int exitCode = -1;
    QByteArray stdoutData;
    QByteArray stderrData;
    bool timedOut = false; // killed after the timeout
    bool failedToStart = false; // e.g. program not found; see errorString
    bool crashed = false; // ended by a signal
    QString errorString;

    bool succeeded() const { return !timedOut && !failedToStart && !crashed && exitCode == 0; }
};

class ProcessRunner
{
public:
    using Callback = std::function<void(const ProcessResult &)>;

    virtual ~ProcessRunner() = default;

    // Starts `program` with `arguments` (no shell). `done` is called exactly once, from the event
    // loop, unless `context` is destroyed first. A command still running after `timeoutMs` is
    // killed and reported with timedOut = true.
    virtual void run(const QString &program, const QStringList &arguments, int timeoutMs,
                     QObject *context, Callback done)
        = 0;
};

// The real one: QProcess, killed on timeout, never a blocking wait.
std::unique_ptr<ProcessRunner> makeQProcessRunner();

// "sbatch --parsable /x/job.sh" for logs and error messages.
QString describeCommand(const QString &program, const QStringList &arguments);

} // namespace slullama
