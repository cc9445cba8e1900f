#include "slurmclient.h"

#include "logging.h"

#include <QRegularExpression>

#include <algorithm>

namespace slullama {

namespace {

bool isUnset(const QString &value)
{
    return value.isEmpty() || value == u"(null)" || value == u"None" || value == u"Unknown"
        || value == u"N/A";
}

// "gpu[01-03,07],cpu1" → "gpu01"; "vm" → "vm".
QString firstHost(const QString &nodeList)
{
    if (isUnset(nodeList))
        return {};
    int depth = 0;
    int end = nodeList.size();
    for (int i = 0; i < nodeList.size(); ++i) {
        const QChar c = nodeList.at(i);
        if (c == u'[')
            ++depth;
        else if (c == u']')
            --depth;
        else if (c == u',' && depth == 0) {
            end = i;
            break;
        }
    }
    const QString first = nodeList.left(end);
    const qsizetype open = first.indexOf(u'[');
    if (open < 0)
        return first;
    const QString prefix = first.left(open);
    QString range = first.mid(open + 1);
    range.chop(range.endsWith(u']') ? 1 : 0);
    QString head = range.section(u',', 0, 0).section(u'-', 0, 0);
    return prefix + head;
}

QString trimmedText(const QByteArray &data)
{
    return QString::fromLocal8Bit(data).trimmed();
}

} // namespace

// The node goes to ssh as its destination argument: it must be a host name, never something
// ssh would take for an option ("-oProxyCommand=...") or several words. Slurm's node names
// always pass; garbled output gives no node (found by tests/fuzz/fuzz_slurm).
static bool isHostName(const QString &name)
{
    const auto plain = [](QChar c) { return c.unicode() < 128 && c.isLetterOrNumber(); };
    if (name.isEmpty() || !plain(name.front()))
        return false;
    return std::all_of(name.cbegin(), name.cend(),
                       [&](QChar c) { return plain(c) || c == u'.' || c == u'-' || c == u'_'; });
}

QString JobInfo::node() const
{
    const QString host = isUnset(batchHost) ? firstHost(nodeList) : batchHost;
    return isHostName(host) ? host : QString();
}

bool JobInfo::isPending() const
{
    static const QStringList pending = {
        QStringLiteral("PENDING"),      QStringLiteral("CONFIGURING"),   QStringLiteral("REQUEUED"),
        QStringLiteral("REQUEUE_HOLD"), QStringLiteral("REQUEUE_FED"),   QStringLiteral("RESIZING"),
        QStringLiteral("SUSPENDED"),    QStringLiteral("RESV_DEL_HOLD"), QStringLiteral("STOPPED"),
    };
    return exists && pending.contains(state);
}

bool JobInfo::isRunning() const
{
    return exists && state == u"RUNNING";
}

bool JobInfo::hasEnded() const
{
    return !exists || (!isPending() && !isRunning());
}

QString JobInfo::endDescription() const
{
    if (!exists)
        return QStringLiteral("job no longer known to Slurm");
    QString text = state;
    if (!isUnset(reason))
        text += QStringLiteral(" (") + reason + QLatin1Char(')');
    return text;
}

std::optional<qint64> JobInfo::secondsLeft() const
{
    const auto limit = slurm::parseDuration(timeLimit);
    const auto run = slurm::parseDuration(runTime);
    if (!limit || !run)
        return std::nullopt;
    return std::max<qint64>(0, *limit - *run);
}

namespace slurm {

Result<QString> parseSbatchParsable(const QByteArray &stdoutData)
{
    // Warnings may precede the id on other lines; the id is the last non-empty line.
    const QStringList lines = QString::fromLocal8Bit(stdoutData).split(u'\n', Qt::SkipEmptyParts);
    for (auto it = lines.crbegin(); it != lines.crend(); ++it) {
        const QString line = it->trimmed();
        if (line.isEmpty())
            continue;
        const QString id = line.section(u';', 0, 0).trimmed();
        static const QRegularExpression jobId(QStringLiteral("^\\d+(_\\d+)?$"));
        if (jobId.match(id).hasMatch())
            return id;
        break;
    }
    return makeError(QStringLiteral("sbatch printed no job id (output: \"%1\")")
                         .arg(trimmedText(stdoutData).left(200)));
}

QHash<QString, QString> parseKeyValueLine(const QString &line)
{
    static const QRegularExpression keyPattern(QStringLiteral("^[A-Za-z][A-Za-z0-9_:/]*$"));
    QHash<QString, QString> values;
    QString lastKey;
    const QStringList tokens = line.split(u' ', Qt::SkipEmptyParts);
    for (const QString &token : tokens) {
        const qsizetype eq = token.indexOf(u'=');
        if (eq > 0) {
            const QString key = token.left(eq);
            if (keyPattern.match(key).hasMatch()) {
                lastKey = key;
                values.insert(key, token.mid(eq + 1));
                continue;
            }
        }
        // A value with spaces (a Comment, a path): belongs to the previous key.
        if (!lastKey.isEmpty())
            values[lastKey] += QLatin1Char(' ') + token;
    }
    return values;
}

Result<JobInfo> parseShowJob(const QByteArray &stdoutData)
{
    const QStringList lines = QString::fromLocal8Bit(stdoutData).split(u'\n', Qt::SkipEmptyParts);
    for (const QString &raw : lines) {
        const QString line = raw.trimmed();
        if (!line.startsWith(QStringLiteral("JobId=")))
            continue;
        const QHash<QString, QString> kv = parseKeyValueLine(line);
        JobInfo info;
        info.id = kv.value(QStringLiteral("JobId"));
        info.state = kv.value(QStringLiteral("JobState"));
        info.reason = kv.value(QStringLiteral("Reason"));
        info.nodeList = kv.value(QStringLiteral("NodeList"));
        info.batchHost = kv.value(QStringLiteral("BatchHost"));
        info.timeLimit = kv.value(QStringLiteral("TimeLimit"));
        info.runTime = kv.value(QStringLiteral("RunTime"));
        info.startTime = kv.value(QStringLiteral("StartTime"));
        info.endTime = kv.value(QStringLiteral("EndTime"));
        info.comment = kv.value(QStringLiteral("Comment"));
        info.exitCode = kv.value(QStringLiteral("ExitCode"));
        // "CANCELLED by 1000" is printed as JobState=CANCELLED Reason=None; keep only the word.
        info.state = info.state.section(u' ', 0, 0);
        if (info.id.isEmpty() || info.state.isEmpty())
            return makeError(QStringLiteral("scontrol show job printed no JobId/JobState"));
        return info;
    }
    return makeError(QStringLiteral("scontrol show job printed no job (output: \"%1\")")
                         .arg(trimmedText(stdoutData).left(200)));
}

std::optional<qint64> parseDuration(const QString &textIn)
{
    const QString text = textIn.trimmed();
    // At most 9 digits a field: longer numbers would overflow qint64 below (found by
    // tests/fuzz/fuzz_slurm); Slurm's own durations are far shorter.
    static const QRegularExpression pattern(
        QStringLiteral("^(?:(\\d{1,9})-)?(\\d{1,9})(?::(\\d{1,9}))?(?::(\\d{1,9}))?$"));
    const auto m = pattern.match(text);
    if (!m.hasMatch())
        return std::nullopt;
    const bool hasDays = m.capturedLength(1) > 0;
    const qint64 days = hasDays ? m.captured(1).toLongLong() : 0;
    const qint64 a = m.captured(2).toLongLong();
    const bool hasB = m.capturedLength(3) > 0;
    const bool hasC = m.capturedLength(4) > 0;
    const qint64 b = m.captured(3).toLongLong();
    const qint64 c = m.captured(4).toLongLong();
    qint64 seconds = 0;
    if (hasDays) {
        // D-HH, D-HH:MM, D-HH:MM:SS
        seconds = a * 3600 + (hasB ? b * 60 : 0) + (hasC ? c : 0);
    } else if (hasC) {
        seconds = a * 3600 + b * 60 + c; // HH:MM:SS
    } else if (hasB) {
        seconds = a * 60 + b; // MM:SS
    } else {
        seconds = a * 60; // MM
    }
    return days * 86400 + seconds;
}

QString formatDuration(qint64 seconds)
{
    if (seconds < 0)
        seconds = 0;
    const qint64 days = seconds / 86400;
    const qint64 h = (seconds / 3600) % 24;
    const qint64 m = (seconds / 60) % 60;
    const qint64 s = seconds % 60;
    const QString hms = QStringLiteral("%1:%2:%3")
                            .arg(h)
                            .arg(m, 2, 10, QLatin1Char('0'))
                            .arg(s, 2, 10, QLatin1Char('0'));
    if (days > 0)
        return QStringLiteral("%1-%2:%3:%4")
            .arg(days)
            .arg(h, 2, 10, QLatin1Char('0'))
            .arg(m, 2, 10, QLatin1Char('0'))
            .arg(s, 2, 10, QLatin1Char('0'));
    return hms;
}

QList<JobSummary> parseSqueueJobs(const QByteArray &stdoutData)
{
    static const QRegularExpression jobId(QStringLiteral("^\\d+(_\\d+)?$"));
    QList<JobSummary> jobs;
    const QStringList lines = QString::fromLocal8Bit(stdoutData).split(u'\n', Qt::SkipEmptyParts);
    for (const QString &raw : lines) {
        const QString line = raw.trimmed();
        const qsizetype first = line.indexOf(u'|');
        const qsizetype second = first < 0 ? -1 : line.indexOf(u'|', first + 1);
        if (second < 0)
            continue;
        JobSummary job;
        job.id = line.left(first);
        job.state = line.mid(first + 1, second - first - 1);
        job.comment = line.mid(second + 1); // free text: may itself contain '|'
        if (!jobId.match(job.id).hasMatch() || job.state.isEmpty())
            continue;
        jobs.append(job);
    }
    return jobs;
}

std::optional<quint16> reportedPort(const QString &comment)
{
    static const QRegularExpression pattern(
        QStringLiteral("(?:^|[\\s,;])slullama_port=(\\d{1,5})\\b"));
    const auto m = pattern.match(comment);
    if (!m.hasMatch())
        return std::nullopt;
    const int port = m.captured(1).toInt();
    if (port < 1 || port > 65535)
        return std::nullopt;
    return quint16(port);
}

bool isInvalidJobId(const QByteArray &stderrData)
{
    return stderrData.contains("Invalid job id specified");
}

bool isPermissionDenied(const QByteArray &stderrData)
{
    return stderrData.contains("Access/permission denied") || stderrData.contains("Access denied")
        || stderrData.contains("Permission denied");
}

QString unavailableReason(const QByteArray &stderrData)
{
    // Slurm's own texts (slurm_errno.c and the munge plugin, 22.05) for conditions that pass.
    static constexpr const char *authentication[] = {"Munge encode failed",
                                                     "Munge decode failed",
                                                     "Protocol authentication error",
                                                     "has authentication error",
                                                     "Invalid authentication credential",
                                                     "Failed to connect to authentication agent"};
    static constexpr const char *controller[] = {"Unable to contact slurm controller",
                                                 "Slurm controller not responding",
                                                 "Socket timed out on send/recv operation",
                                                 "Zero Bytes were transmitted or received",
                                                 "Communication connection failure",
                                                 "Communication shutdown failure",
                                                 "Message send failure",
                                                 "Message receive failure",
                                                 "Transport endpoint is not connected",
                                                 "Connection refused",
                                                 "Connection timed out",
                                                 "Slurm backup controller in standby mode",
                                                 "Controller is in standby mode"};
    static constexpr const char *busy[] = {"Resource temporarily unavailable", "temporarily unable",
                                           "temporarily disabled", "try again", "queue full"};
    const auto any = [](const QByteArray &text, const auto &needles) {
        return std::any_of(std::begin(needles), std::end(needles),
                           [&](const char *needle) { return text.contains(needle); });
    };
    const auto reason = [&](const QByteArray &text) -> QString {
        if (any(text, authentication))
            return QStringLiteral("Slurm authentication failed");
        if (any(text, controller))
            return QStringLiteral("Slurm controller unreachable");
        if (any(text, busy))
            return QStringLiteral("Slurm temporarily unavailable");
        return {};
    };
    const QByteArray text = stderrData.trimmed();
    // The last line is Slurm's verdict; earlier ones may be hiccups it retried past, and an
    // explicit refusal there ("Batch job submission failed: Invalid account ...") wins.
    const QByteArray verdict = text.mid(text.lastIndexOf('\n') + 1);
    if (const QString said = reason(verdict); !said.isEmpty())
        return said;
    if (verdict.contains("submission failed"))
        return {};
    return reason(text);
}

} // namespace slurm

SlurmClient::SlurmClient(const SlurmConfig &config, ProcessRunner *runner)
    : m_config(config), m_runner(runner)
{ }

int SlurmClient::timeoutMs() const
{
    return int(std::clamp(m_config.commandTimeout, 0.1, 3600.0) * 1000);
}

SlurmOutcome SlurmClient::outcomeOf(const QString &program, const QStringList &args,
                                    const ProcessResult &result) const
{
    if (result.failedToStart) {
        return {SlurmFailure::NotFound,
                QStringLiteral("%1 could not be started (%2): is Slurm's client installed and "
                               "%1 on PATH?")
                    .arg(program, result.errorString)};
    }
    if (result.timedOut) {
        // What the command said before it hung tells munge trouble from a stopped controller.
        const QString said = trimmedText(result.stderrData).split(u'\n').last().trimmed();
        QString headline = slurm::unavailableReason(result.stderrData);
        if (headline.isEmpty())
            headline = QStringLiteral("Slurm controller unreachable");
        return {
            SlurmFailure::Unreachable,
            QStringLiteral("%1 (%2 did not answer within %3 s%4)")
                .arg(headline, program)
                .arg(m_config.commandTimeout)
                .arg(said.isEmpty() ? QString() : QStringLiteral("; it said: ") + said.left(300))};
    }
    if (result.succeeded())
        return {};
    QString text = trimmedText(result.stderrData);
    if (text.isEmpty())
        text = trimmedText(result.stdoutData);
    if (text.isEmpty())
        text = result.crashed ? result.errorString : QStringLiteral("no message");
    if (const QString headline = slurm::unavailableReason(result.stderrData); !headline.isEmpty()) {
        // One line for the status and the log; Slurm's lines mostly name the command already.
        QStringList lines = text.split(u'\n', Qt::SkipEmptyParts);
        for (QString &line : lines)
            line = line.trimmed();
        QString words = lines.join(QStringLiteral("; "));
        if (!words.startsWith(program + u':'))
            words = program + QStringLiteral(": ") + words;
        return {SlurmFailure::Unreachable,
                QStringLiteral("%1 (%2)").arg(headline, words.left(600))};
    }
    const SlurmFailure kind = slurm::isPermissionDenied(result.stderrData)
        ? SlurmFailure::PermissionDenied
        : SlurmFailure::Refused;
    return {kind,
            QStringLiteral("%1 failed (exit %2): %3")
                .arg(describeCommand(program, args))
                .arg(result.exitCode)
                .arg(text)};
}

void SlurmClient::submit(const QString &scriptPath, QObject *context, SubmitCallback done,
                         const QString &comment)
{
    const QString program = QStringLiteral("sbatch");
    QStringList args {QStringLiteral("--parsable")};
    if (!comment.isEmpty())
        args << QStringLiteral("--comment=") + comment;
    args << scriptPath;
    qCDebug(lcSlurm).noquote() << "running" << describeCommand(program, args);
    m_runner->run(program, args, timeoutMs(), context,
                  [this, program, args, done = std::move(done)](const ProcessResult &r) {
                      SlurmOutcome outcome = outcomeOf(program, args, r);
                      if (!outcome.ok())
                          return done(outcome, QString());
                      auto id = slurm::parseSbatchParsable(r.stdoutData);
                      if (!id)
                          return done({SlurmFailure::BadOutput, id.error()}, QString());
                      done(outcome, *id);
                  });
}

void SlurmClient::listJobs(const QString &jobName, QObject *context, ListCallback done)
{
    const QString program = QStringLiteral("squeue");
    const QStringList args {QStringLiteral("--me"), QStringLiteral("-h"),
                            QStringLiteral("--name=") + jobName, QStringLiteral("-o"),
                            QStringLiteral("%i|%T|%k")};
    qCDebug(lcSlurm).noquote() << "running" << describeCommand(program, args);
    m_runner->run(program, args, timeoutMs(), context,
                  [this, program, args, done = std::move(done)](const ProcessResult &r) {
                      const SlurmOutcome outcome = outcomeOf(program, args, r);
                      if (!outcome.ok())
                          return done(outcome, {});
                      done(outcome, slurm::parseSqueueJobs(r.stdoutData));
                  });
}

void SlurmClient::showJob(const QString &jobId, QObject *context, JobCallback done)
{
    const QString program = QStringLiteral("scontrol");
    const QStringList args {QStringLiteral("show"), QStringLiteral("job"), QStringLiteral("-o"),
                            jobId};
    m_runner->run(program, args, timeoutMs(), context,
                  [this, program, args, jobId, done = std::move(done)](const ProcessResult &r) {
                      if (!r.timedOut && !r.failedToStart && r.exitCode != 0
                          && slurm::isInvalidJobId(r.stderrData)) {
                          JobInfo gone;
                          gone.id = jobId;
                          gone.exists = false;
                          return done({}, gone);
                      }
                      SlurmOutcome outcome = outcomeOf(program, args, r);
                      if (!outcome.ok())
                          return done(outcome, JobInfo {});
                      auto info = slurm::parseShowJob(r.stdoutData);
                      if (!info)
                          return done({SlurmFailure::BadOutput, info.error()}, JobInfo {});
                      done(outcome, *info);
                  });
}

void SlurmClient::cancel(const QString &jobId, QObject *context, DoneCallback done)
{
    const QString program = QStringLiteral("scancel");
    const QStringList args {jobId};
    qCDebug(lcSlurm).noquote() << "running" << describeCommand(program, args);
    m_runner->run(program, args, timeoutMs(), context,
                  [this, program, args, done = std::move(done)](const ProcessResult &r) {
                      if (!r.timedOut && !r.failedToStart && r.exitCode != 0
                          && slurm::isInvalidJobId(r.stderrData))
                          return done({});
                      done(outcomeOf(program, args, r));
                  });
}

void SlurmClient::setTimeLimit(const QString &jobId, qint64 minutes, QObject *context,
                               DoneCallback done)
{
    const QString program = QStringLiteral("scontrol");
    const QStringList args {QStringLiteral("update"), QStringLiteral("JobId=") + jobId,
                            QStringLiteral("TimeLimit=") + QString::number(minutes)};
    qCDebug(lcSlurm).noquote() << "running" << describeCommand(program, args);
    m_runner->run(program, args, timeoutMs(), context,
                  [this, program, args, done = std::move(done)](const ProcessResult &r) {
                      done(outcomeOf(program, args, r));
                  });
}

} // namespace slullama
