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
    QSaveFile file(m_path);
    if (!file.open(QIODevice::WriteOnly))
        return makeError(
            QStringLiteral("cannot write state file %1: %2").arg(m_path, file.errorString()));
    file.write(QJsonDocument(o).toJson(QJsonDocument::Indented));
    if (!file.commit())
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
