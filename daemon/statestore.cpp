#include "statestore.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSaveFile>

namespace slullama {

StateStore::StateStore(QString path) : m_path(std::move(path)) { }

QString StateStore::defaultPath(const Config &config)
{
    if (!config.server.stateFile.isEmpty())
        return config.server.stateFile;
    return QDir(config.server.logDir).filePath(QStringLiteral("daemon-state.json"));
}

Result<std::optional<SavedState>> StateStore::load() const
{
    QFile file(m_path);
    if (!file.exists())
        return std::optional<SavedState> {};
    if (!file.open(QIODevice::ReadOnly))
        return makeError(
            QStringLiteral("cannot read state file %1: %2").arg(m_path, file.errorString()));
    QJsonParseError parseError;
    const QJsonDocument doc = QJsonDocument::fromJson(file.read(64 * 1024), &parseError);
    if (!doc.isObject())
        return makeError(QStringLiteral("state file %1 is not valid JSON: %2")
                             .arg(m_path, parseError.errorString()));
    const QJsonObject o = doc.object();
    SavedState state;
    state.jobId = o.value(QStringLiteral("job_id")).toString();
    state.node = o.value(QStringLiteral("node")).toString();
    state.since
        = QDateTime::fromString(o.value(QStringLiteral("since")).toString(), Qt::ISODateWithMs);
    state.phase = o.value(QStringLiteral("phase")).toString();
    state.daemonPid = o.value(QStringLiteral("pid")).toInteger();
    state.jobName = o.value(QStringLiteral("job_name")).toString();
    state.submitToken = o.value(QStringLiteral("submit_token")).toString();
    state.otherJobId = o.value(QStringLiteral("other_job_id")).toString();
    state.otherSubmitToken = o.value(QStringLiteral("other_submit_token")).toString();
    // Files of older versions have no awake_until: no promise.
    if (const QString awake = o.value(QStringLiteral("awake_until")).toString(); !awake.isEmpty())
        state.awakeUntil = QDateTime::fromString(awake, Qt::ISODateWithMs).toUTC();
    return std::optional<SavedState>(state);
}

VoidResult StateStore::save(const SavedState &state) const
{
    const QFileInfo info(m_path);
    if (!QDir().mkpath(info.absolutePath()))
        return makeError(QStringLiteral("cannot create directory %1 for the state file")
                             .arg(info.absolutePath()));
    QJsonObject o;
    o.insert(QStringLiteral("job_id"), state.jobId);
    o.insert(QStringLiteral("node"), state.node);
    o.insert(QStringLiteral("since"), state.since.toString(Qt::ISODateWithMs));
    o.insert(QStringLiteral("phase"), state.phase);
    o.insert(QStringLiteral("pid"), state.daemonPid);
    if (!state.jobName.isEmpty())
        o.insert(QStringLiteral("job_name"), state.jobName);
    if (!state.submitToken.isEmpty())
        o.insert(QStringLiteral("submit_token"), state.submitToken);
    if (!state.otherJobId.isEmpty())
        o.insert(QStringLiteral("other_job_id"), state.otherJobId);
    if (!state.otherSubmitToken.isEmpty())
        o.insert(QStringLiteral("other_submit_token"), state.otherSubmitToken);
    if (state.awakeUntil.isValid())
        o.insert(QStringLiteral("awake_until"),
                 state.awakeUntil.toUTC().toString(Qt::ISODateWithMs));
    QSaveFile file(m_path);
    if (!file.open(QIODevice::WriteOnly))
        return makeError(
            QStringLiteral("cannot write state file %1: %2").arg(m_path, file.errorString()));
    const QByteArray bytes = QJsonDocument(o).toJson(QJsonDocument::Indented);
    // flush() first: Qt 6.4's commit() succeeds after a failed (ENOSPC) write, leaving an empty
    // file in place of the state.
    if (file.write(bytes) != bytes.size() || !file.flush() || !file.commit())
        return makeError(
            QStringLiteral("cannot write state file %1: %2").arg(m_path, file.errorString()));
    return Ok {};
}

VoidResult StateStore::clear() const
{
    QFile file(m_path);
    if (file.exists() && !file.remove())
        return makeError(
            QStringLiteral("cannot remove state file %1: %2").arg(m_path, file.errorString()));
    return Ok {};
}

} // namespace slullama
