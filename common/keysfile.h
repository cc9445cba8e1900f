#pragma once

// Per-user API keys: the keys file (`[server] keys_file`, default keys.toml next to the config
// file) and what `slullama keys add|revoke|list` does with it. Only SHA-256 digests of the keys
// are stored: a key is 32 random bytes, so a fast hash is as good as a slow one here, and the
// file can be read without learning any key.
//
//   [keys."alice"]
//   sha256 = "<64 hex digits>"
//   created = "2024-05-01T10:00:00Z"
//   admin = false                  # optional
//   revoked = "2024-06-01T08:00:00Z" # set by `keys revoke`; the key gets 401 from then on
//   max_concurrent = 2             # optional, overrides [server] user_max_concurrent
//   requests_per_minute = 60       # optional, overrides [server] user_requests_per_minute

#include "config.h"
#include "result.h"

#include <QByteArray>
#include <QDateTime>
#include <QList>
#include <QString>

#include <optional>

namespace slullama {

// Every generated key starts with this, so a leaked key is recognisable (secret scanners).
inline constexpr char kApiKeyPrefix[] = "sk-slullama-";

struct ApiKey
{
    QString name;
    QByteArray sha256; // raw 32-byte digest of the whole key text
    QDateTime created;
    QDateTime revoked; // invalid = active
    bool admin = false;
    std::optional<int> maxConcurrent;
    std::optional<int> requestsPerMinute;

    bool isRevoked() const { return revoked.isValid(); }
};

struct KeysFile
{
    QList<ApiKey> keys;

    const ApiKey *find(const QString &name) const;
    ApiKey *find(const QString &name);
};

// server.keys_file made absolute (relative to the config file's directory), or keys.toml next
// to the config file (the default config path's directory when no file was read).
QString effectiveKeysFile(const Config &config,
                          const QProcessEnvironment &env
                          = QProcessEnvironment::systemEnvironment());

// Letters, digits and . _ @ -, starting with a letter or digit, at most 64 characters: names
// appear in logs, metrics labels and the status JSON.
bool isValidKeyName(const QString &name);

// A fresh key: kApiKeyPrefix + base64url of 32 bytes from QRandomGenerator::system().
QString generateApiKey();
QByteArray apiKeyDigest(QByteArrayView key);

// `sourceName` is used in messages. Unknown keys inside an entry are errors (a typo in
// `revoked` must not leave a key active).
Result<KeysFile> parseKeysFile(const QByteArray &toml, const QString &sourceName);
// A missing file is an empty KeysFile, not an error.
Result<KeysFile> loadKeysFile(const QString &path);
QByteArray serializeKeysFile(const KeysFile &file);
// Atomic replace (QSaveFile), mode 0600, creating the directory if needed.
VoidResult saveKeysFile(const QString &path, const KeysFile &file);

// The operations of `slullama keys`. addKey returns the new key (shown once, never stored).
// A name that has an active key is refused; a revoked one is replaced.
Result<QString> addKey(const QString &path, const QString &name, bool admin,
                       const QDateTime &now = QDateTime::currentDateTimeUtc());
VoidResult revokeKey(const QString &path, const QString &name,
                     const QDateTime &now = QDateTime::currentDateTimeUtc());
// NAME CREATED ADMIN REVOKED, one line per key; never the digests.
QString formatKeyList(const KeysFile &file);

} // namespace slullama
