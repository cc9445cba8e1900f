#pragma once

// Answers for the metadata routes that do not need the GPU (GET /api/version, /api/tags),
// remembered from the last time the model server answered them, so a UI polling them does not
// wake the node. Persisted next to the usage file, so a restarted daemon still has them.

#include <QByteArray>
#include <QHash>
#include <QString>

#include <optional>

namespace slullama {

class MetadataCache final
{
public:
    explicit MetadataCache(QString path);

    static bool isCacheable(QByteArrayView method, QByteArrayView path);
    static constexpr qsizetype kMaxBodyBytes = 1024 * 1024;

    void load();
    std::optional<QByteArray> lookup(const QByteArray &path) const;
    // A 200 answer of the model server. Written to disk when it changed.
    void store(const QByteArray &path, const QByteArray &body);

private:
    QString m_path;
    QHash<QByteArray, QByteArray> m_bodies;  // compact JSON, as stored
    QHash<QByteArray, QByteArray> m_lastRaw; // as the model server last sent them
};

} // namespace slullama
