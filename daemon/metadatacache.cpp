#include "metadatacache.h"

#include "logging.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSaveFile>

namespace slullama {

MetadataCache::MetadataCache(QString path) : m_path(std::move(path)) { }

bool MetadataCache::isCacheable(QByteArrayView method, QByteArrayView path)
{
    return (method == "GET" || method == "HEAD") && (path == "/api/version" || path == "/api/tags");
}

void MetadataCache::load()
{
    QFile file(m_path);
    if (!file.open(QIODevice::ReadOnly))
        return;
    const QJsonObject root = QJsonDocument::fromJson(file.read(8 * kMaxBodyBytes)).object();
    for (auto it = root.begin(); it != root.end(); ++it) {
        const QByteArray path = it.key().toUtf8();
        const QJsonValue body = it.value();
        if (isCacheable("GET", path) && body.isObject())
            m_bodies.insert(path, QJsonDocument(body.toObject()).toJson(QJsonDocument::Compact));
    }
}

std::optional<QByteArray> MetadataCache::lookup(const QByteArray &path) const
{
    const auto it = m_bodies.find(path);
    if (it == m_bodies.end())
        return std::nullopt;
    return *it;
}

void MetadataCache::store(const QByteArray &path, const QByteArray &body)
{
    if (!isCacheable("GET", path) || body.size() > kMaxBodyBytes)
        return;
    // UIs poll these routes many times a second; the answer is nearly always the same bytes.
    QByteArray &last = m_lastRaw[path];
    if (last == body)
        return;
    last = body;
    const QJsonDocument doc = QJsonDocument::fromJson(body);
    if (!doc.isObject())
        return; // not what Ollama answers: do not serve it later
    const QByteArray compact = doc.toJson(QJsonDocument::Compact);
    if (m_bodies.value(path) == compact)
        return;
    m_bodies.insert(path, compact);
    QJsonObject root;
    for (auto it = m_bodies.begin(); it != m_bodies.end(); ++it)
        root.insert(QString::fromUtf8(it.key()), QJsonDocument::fromJson(it.value()).object());
    QDir().mkpath(QFileInfo(m_path).absolutePath());
    QSaveFile file(m_path);
    if (!file.open(QIODevice::WriteOnly) || file.write(QJsonDocument(root).toJson()) < 0
        || !file.commit())
        qCWarning(lcProxy).noquote()
            << "cannot write the metadata cache" << m_path << ":" << file.errorString();
}

} // namespace slullama
