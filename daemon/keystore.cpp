#include "keystore.h"

#include "auth.h"
#include "logging.h"

#include <QDir>
#include <QFileInfo>
#include <QFileSystemWatcher>
#include <QTimerEvent>

namespace slullama {

KeyStore::KeyStore(QString path, QObject *parent)
    : QObject(parent), m_path(std::move(path)), m_watcher(new QFileSystemWatcher(this))
{
    connect(m_watcher, &QFileSystemWatcher::fileChanged, this,
            [this] { m_debounce.start(kDebounceMs, this); });
    connect(m_watcher, &QFileSystemWatcher::directoryChanged, this,
            [this] { m_debounce.start(kDebounceMs, this); });
}

KeyStore::~KeyStore() = default;

void KeyStore::start()
{
    reload();
    m_poll.start(kPollMs, Qt::CoarseTimer, this);
}

int KeyStore::activeKeyCount() const
{
    int n = 0;
    for (const ApiKey &key : m_file.keys)
        n += key.isRevoked() ? 0 : 1;
    return n;
}

void KeyStore::reload()
{
    m_debounce.stop();
    rewatch();
    m_fingerprint = fingerprint();
    auto loaded = loadKeysFile(m_path);
    if (!loaded) {
        qCWarning(lcProxy).noquote()
            << loaded.error() << "- keeping the" << m_file.keys.size() << "keys loaded before";
        return;
    }
    const bool wasKeyed = hasKeys();
    m_file = std::move(loaded).value();
    qCInfo(lcProxy).noquote() << "keys file" << m_path << ":" << activeKeyCount() << "active,"
                              << m_file.keys.size() - activeKeyCount() << "revoked";
    if (wasKeyed && !hasKeys())
        qCWarning(lcProxy).noquote() << "the keys file names no keys any more: per-user keys "
                                        "are off, only the shared token (if any) is checked";
    emit reloaded();
}

std::optional<Identity> KeyStore::lookup(QByteArrayView digest) const
{
    const ApiKey *found = nullptr;
    for (const ApiKey &key : m_file.keys) {
        // No early exit: the time spent does not depend on which key (if any) matches.
        const bool same = constantTimeEquals(digest, key.sha256);
        if (same && !key.isRevoked())
            found = &key;
    }
    if (!found)
        return std::nullopt;
    Identity identity;
    identity.user = found->name;
    identity.admin = found->admin;
    identity.keyed = true;
    identity.maxConcurrent = found->maxConcurrent;
    identity.requestsPerMinute = found->requestsPerMinute;
    return identity;
}

void KeyStore::rewatch()
{
    // A replaced file drops out of the watch; watch it again (and its directory, for creation).
    const QFileInfo info(m_path);
    const QString dir = info.absolutePath();
    if (!m_watcher->directories().contains(dir) && info.dir().exists())
        m_watcher->addPath(dir);
    if (!m_watcher->files().contains(m_path) && info.exists())
        m_watcher->addPath(m_path);
}

QString KeyStore::fingerprint() const
{
    const QFileInfo info(m_path);
    if (!info.exists())
        return {};
    return QString::number(info.lastModified().toMSecsSinceEpoch()) + u'/'
        + QString::number(info.size()) + u'/'
        + QString::number(info.metadataChangeTime().toMSecsSinceEpoch());
}

void KeyStore::timerEvent(QTimerEvent *event)
{
    if (event->timerId() == m_debounce.timerId()) {
        reload();
    } else if (event->timerId() == m_poll.timerId()) {
        rewatch();
        if (fingerprint() != m_fingerprint)
            reload();
    } else {
        QObject::timerEvent(event);
    }
}

} // namespace slullama
