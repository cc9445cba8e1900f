#include "processrunner.h"

#include <QPointer>
#include <QProcess>
#include <QTimer>

#ifdef Q_OS_LINUX
#include <csignal>
#include <sys/prctl.h>
#endif

namespace slullama {

QString describeCommand(const QString &program, const QStringList &arguments)
{
    QStringList parts {program};
    for (const QString &arg : arguments)
        parts << (arg.contains(QLatin1Char(' ')) ? QLatin1Char('\'') + arg + QLatin1Char('\'')
                                                 : arg);
    return parts.join(QLatin1Char(' '));
}

namespace {

class QProcessRunner final : public ProcessRunner
{
public:
    void run(const QString &program, const QStringList &arguments, int timeoutMs, QObject *context,
             Callback done) override
    {
        // The process is parented to the context so it dies with it; the callback is guarded
        // the same way.
        auto *process = new QProcess(context);
        auto *timer = new QTimer(process);
        timer->setSingleShot(true);
        auto state = std::make_shared<ProcessResult>();
        auto finished = std::make_shared<bool>(false);
        QPointer<QObject> guard(context);

        auto finish = [process, state, finished, guard, done = std::move(done)]() {
            if (*finished)
                return;
            *finished = true;
            process->deleteLater();
            if (guard)
                done(*state);
        };

        QObject::connect(timer, &QTimer::timeout, process, [process, state]() {
            // Slurm clients hang for MessageTimeout while the controller is down: kill, then
            // report on finished (or errorOccurred) like any other end.
            state->timedOut = true;
            process->kill();
        });
        QObject::connect(
            process, &QProcess::finished, process,
            [process, state, timer, finish](int exitCode, QProcess::ExitStatus status) {
                timer->stop();
                state->exitCode = exitCode;
                state->crashed = status == QProcess::CrashExit && !state->timedOut;
                state->stdoutData = process->readAllStandardOutput();
                state->stderrData = process->readAllStandardError();
                if (state->crashed && state->errorString.isEmpty())
                    state->errorString = process->errorString();
                finish();
            });
        QObject::connect(process, &QProcess::errorOccurred, process,
                         [process, state, timer, finish](QProcess::ProcessError error) {
                             if (error != QProcess::FailedToStart)
                                 return; // finished() follows for the others
                             timer->stop();
                             state->failedToStart = true;
                             state->errorString = process->errorString();
                             // finish from the event loop: run() promises never to call back
                             // synchronously.
                             QTimer::singleShot(0, process, finish);
                         });

        process->setProgram(program);
        process->setArguments(arguments);
        process->setProcessChannelMode(QProcess::SeparateChannels);
#ifdef Q_OS_LINUX
        // An sbatch that outlives a daemon killed with SIGKILL could submit a job after the
        // restarted daemon looked for it; a command dies with the daemon instead.
        process->setChildProcessModifier([]() { ::prctl(PR_SET_PDEATHSIG, SIGKILL); });
#endif
        timer->start(std::max(1, timeoutMs));
        process->start(QIODevice::ReadOnly);
    }
};

} // namespace

std::unique_ptr<ProcessRunner> makeQProcessRunner()
{
    return std::make_unique<QProcessRunner>();
}

} // namespace slullama
