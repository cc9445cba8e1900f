#pragma once

// The daemon's view of the keys file: loaded at start, reloaded when the file changes (a watch
// on the file and on its directory, since editors and QSaveFile replace the file; plus a slow
// stat poll for filesystems that do not report changes, e.g. NFS) and on reload() (SIGHUP).
// A file that fails to parse keeps the keys loaded before and says so in the log.

#include "keysfile.h"

#include <QBasicTimer>
#include <QByteArrayView>
#include <QDateTime>
#include <QObject>
#include <QString>

#include <optional>

QT_BEGIN_NAMESPACE
class QFileSystemWatcher;
QT_END_NAMESPACE

namespace slullama {

// Who a request is, once authenticated.
struct Identity
{
    QString user; // key name, or "shared" for the shared token / an open daemon
    bool admin = false;
    bool keyed = false; // authenticated by a per-user key
    std::optional<int> maxConcurrent; // per-key overrides of the [server] limits
    std::optional<int> requestsPerMinute;
};

inline const QString &sharedUserName()
{
    static const QString name = QStringLiteral("shared");
    return name;
}

class KeyStore final : public QObject
{
    Q_OBJECT

public:
    explicit KeyStore(QString path, QObject *parent = nullptr);
    ~KeyStore() override;

    // Loads the file and starts watching it.
    void start();
    // Reads the file again now (SIGHUP).
    void reload();

    QString path() const { return m_path; }
    // Keys mode: the file names at least one key (revoked ones count). Then every request needs
    // a key or the shared token, even when no token is set.
    bool hasKeys() const { return !m_file.keys.isEmpty(); }
    int activeKeyCount() const;
    // The active key whose digest is `digest` (SHA-256 of the presented bearer value). Every
    // key is compared, in constant time each, whatever matches.
    std::optional<Identity> lookup(QByteArrayView digest) const;

    static constexpr int kDebounceMs = 100;
    static constexpr int kPollMs = 2000;

signals:
    void reloaded();

protected:
    void timerEvent(QTimerEvent *event) override;

private:
    void rewatch();
    QString fingerprint() const;

    QString m_path;
    KeysFile m_file;
    QFileSystemWatcher *m_watcher;
    QBasicTimer m_debounce;
    QBasicTimer m_poll;
    QString m_fingerprint;
};

} // namespace slullama
