#include "keysfile.h"

#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QRandomGenerator>
#include <QRegularExpression>
#include <QSaveFile>

#include <array>

// Debian's toml++ reports syntax errors as exceptions only; they are caught right at the parse
// call, as in config.cpp.
#include <toml++/toml.h>

namespace slullama {

namespace {

QString qs(std::string_view text)
{
    return QString::fromUtf8(text.data(), qsizetype(text.size()));
}

QString where(const QString &source, const toml::source_region &region)
{
    if (region.begin.line == 0)
        return source;
    return source + u':' + QString::number(region.begin.line) + u':'
        + QString::number(region.begin.column);
}

QDateTime readTime(const toml::node &node)
{
    if (const auto *s = node.as_string())
        return QDateTime::fromString(qs(s->get()), Qt::ISODate);
    return {};
}

QString tomlQuoted(const QString &value)
{
    QString out = QStringLiteral("\"");
    for (const QChar c : value) {
        if (c == u'"' || c == u'\\')
            out += u'\\';
        out += c;
    }
    return out + u'"';
}

QString isoUtc(const QDateTime &time)
{
    return time.toUTC().toString(Qt::ISODate);
}

} // namespace

const ApiKey *KeysFile::find(const QString &name) const
{
    for (const ApiKey &key : keys) {
        if (key.name == name)
            return &key;
    }
    return nullptr;
}

ApiKey *KeysFile::find(const QString &name)
{
    for (ApiKey &key : keys) {
        if (key.name == name)
            return &key;
    }
    return nullptr;
}

QString effectiveKeysFile(const Config &config, const QProcessEnvironment &env)
{
    const QString base = config.sourcePath.isEmpty()
        ? QFileInfo(configLocation(QString(), env).path).absolutePath()
        : QFileInfo(config.sourcePath).absolutePath();
    const QString &file = config.server.keysFile;
    if (file.isEmpty())
        return QDir(base).filePath(QStringLiteral("keys.toml"));
    return QDir::cleanPath(QDir(base).absoluteFilePath(file));
}

bool isValidKeyName(const QString &name)
{
    static const QRegularExpression shape(QStringLiteral("^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"));
    return shape.match(name).hasMatch();
}

QString generateApiKey()
{
    std::array<quint32, 8> words {};
    QRandomGenerator::system()->fillRange(words.data(), words.size());
    const QByteArray bytes(reinterpret_cast<const char *>(words.data()),
                           qsizetype(words.size() * sizeof(quint32)));
    return QLatin1String(kApiKeyPrefix)
        + QString::fromLatin1(
               bytes.toBase64(QByteArray::Base64UrlEncoding | QByteArray::OmitTrailingEquals));
}

QByteArray apiKeyDigest(QByteArrayView key)
{
    return QCryptographicHash::hash(key, QCryptographicHash::Sha256);
}

Result<KeysFile> parseKeysFile(const QByteArray &text, const QString &sourceName)
{
    toml::table root;
    try {
        const std::string source = sourceName.toStdString();
        root = toml::parse(std::string_view(text.constData(), std::size_t(text.size())),
                           std::string_view(source));
    } catch (const toml::parse_error &error) {
        return makeError(where(sourceName, error.source()) + QStringLiteral(": TOML syntax error: ")
                         + qs(error.description()));
    }
    KeysFile file;
    for (auto &&[topName, topNode] : root) {
        if (topName.str() != "keys" || !topNode.is_table())
            return makeError(where(sourceName, topName.source())
                             + QStringLiteral(": expected only [keys.\"NAME\"] tables, got ")
                             + qs(topName.str()));
        for (auto &&[keyName, entryNode] : *topNode.as_table()) {
            const QString name = qs(keyName.str());
            const QString at = where(sourceName, keyName.source());
            const toml::table *entry = entryNode.as_table();
            if (!entry)
                return makeError(at + QStringLiteral(": keys.%1: expected a table").arg(name));
            if (!isValidKeyName(name))
                return makeError(at
                                 + QStringLiteral(": keys.%1: a name is letters, digits and . _ @ "
                                                  "- (at most 64)")
                                       .arg(name));
            ApiKey key;
            key.name = name;
            for (auto &&[field, value] : *entry) {
                const QString f = qs(field.str());
                const QString fieldAt = where(sourceName, field.source())
                    + QStringLiteral(": keys.") + name + u'.' + f + QStringLiteral(": ");
                if (f == u"sha256") {
                    const auto *s = value.as_string();
                    const QByteArray hex = s ? qs(s->get()).toLatin1() : QByteArray();
                    const QByteArray digest = QByteArray::fromHex(hex);
                    if (hex.size() != 64 || digest.size() != 32 || digest.toHex() != hex.toLower())
                        return makeError(fieldAt + QStringLiteral("expected 64 hex digits"));
                    key.sha256 = digest;
                } else if (f == u"created" || f == u"revoked") {
                    const QDateTime time = readTime(value);
                    if (!time.isValid())
                        return makeError(fieldAt
                                         + QStringLiteral("expected an ISO 8601 time string"));
                    (f == u"created" ? key.created : key.revoked) = time;
                } else if (f == u"admin") {
                    if (!value.is_boolean())
                        return makeError(fieldAt + QStringLiteral("expected true or false"));
                    key.admin = value.as_boolean()->get();
                } else if (f == u"max_concurrent" || f == u"requests_per_minute") {
                    if (!value.is_integer() || value.as_integer()->get() < 0
                        || value.as_integer()->get() > 1000000)
                        return makeError(fieldAt + QStringLiteral("expected an integer >= 0"));
                    (f == u"max_concurrent" ? key.maxConcurrent : key.requestsPerMinute)
                        = int(value.as_integer()->get());
                } else {
                    return makeError(fieldAt + QStringLiteral("unknown field"));
                }
            }
            if (key.sha256.isEmpty())
                return makeError(at + QStringLiteral(": keys.%1: sha256 is missing").arg(name));
            file.keys.append(key);
        }
    }
    return file;
}

Result<KeysFile> loadKeysFile(const QString &path)
{
    QFile file(path);
    if (!file.exists())
        return KeysFile {};
    if (!file.open(QIODevice::ReadOnly))
        return makeError(
            QStringLiteral("cannot read keys file %1: %2").arg(path, file.errorString()));
    return parseKeysFile(file.read(16 * 1024 * 1024), path);
}

QByteArray serializeKeysFile(const KeysFile &file)
{
    QString out = QStringLiteral(
        "# slullama API keys, managed with `slullama keys add|revoke|list`.\n"
        "# Only SHA-256 digests are stored. The daemon picks up changes within seconds.\n");
    for (const ApiKey &key : file.keys) {
        out += QStringLiteral("\n[keys.") + tomlQuoted(key.name) + QStringLiteral("]\n");
        out += QStringLiteral("sha256 = \"") + QString::fromLatin1(key.sha256.toHex())
            + QStringLiteral("\"\n");
        if (key.created.isValid())
            out += QStringLiteral("created = ") + tomlQuoted(isoUtc(key.created)) + u'\n';
        out += QStringLiteral("admin = ")
            + (key.admin ? QStringLiteral("true") : QStringLiteral("false")) + u'\n';
        if (key.isRevoked())
            out += QStringLiteral("revoked = ") + tomlQuoted(isoUtc(key.revoked)) + u'\n';
        if (key.maxConcurrent)
            out += QStringLiteral("max_concurrent = ") + QString::number(*key.maxConcurrent)
                + u'\n';
        if (key.requestsPerMinute)
            out += QStringLiteral("requests_per_minute = ")
                + QString::number(*key.requestsPerMinute) + u'\n';
    }
    return out.toUtf8();
}

VoidResult saveKeysFile(const QString &path, const KeysFile &file)
{
    const QFileInfo info(path);
    if (!QDir().mkpath(info.absolutePath()))
        return makeError(QStringLiteral("cannot create the directory %1").arg(info.absolutePath()));
    QSaveFile out(path);
    if (!out.open(QIODevice::WriteOnly))
        return makeError(
            QStringLiteral("cannot write keys file %1: %2").arg(path, out.errorString()));
    // Before any content is written, so the digests are never readable by others.
    out.setPermissions(QFileDevice::ReadOwner | QFileDevice::WriteOwner);
    out.write(serializeKeysFile(file));
    if (!out.commit())
        return makeError(
            QStringLiteral("cannot write keys file %1: %2").arg(path, out.errorString()));
    return Ok {};
}

Result<QString> addKey(const QString &path, const QString &name, bool admin, const QDateTime &now)
{
    if (!isValidKeyName(name))
        return makeError(QStringLiteral("\"%1\" is not a valid key name: use letters, digits and "
                                        ". _ @ - (at most 64, starting with a letter or digit)")
                             .arg(name));
    auto loaded = loadKeysFile(path);
    if (!loaded)
        return makeError(loaded.error());
    KeysFile file = std::move(loaded).value();
    ApiKey *existing = file.find(name);
    if (existing && !existing->isRevoked())
        return makeError(QStringLiteral("%1 already has a key in %2: revoke it first "
                                        "(`slullama keys revoke %1`) or pick another name")
                             .arg(name, path));
    const QString secret = generateApiKey();
    ApiKey key;
    key.name = name;
    key.sha256 = apiKeyDigest(secret.toLatin1());
    key.created = now.toUTC();
    key.admin = admin;
    if (existing)
        *existing = key;
    else
        file.keys.append(key);
    if (const VoidResult saved = saveKeysFile(path, file); !saved)
        return makeError(saved.error());
    return secret;
}

VoidResult revokeKey(const QString &path, const QString &name, const QDateTime &now)
{
    auto loaded = loadKeysFile(path);
    if (!loaded)
        return makeError(loaded.error());
    KeysFile file = std::move(loaded).value();
    ApiKey *key = file.find(name);
    if (!key)
        return makeError(QStringLiteral("no key named %1 in %2").arg(name, path));
    if (key->isRevoked())
        return Ok {}; // revoking twice is not an error: the key is dead either way
    key->revoked = now.toUTC();
    return saveKeysFile(path, file);
}

QString formatKeyList(const KeysFile &file)
{
    int width = 4;
    for (const ApiKey &key : file.keys)
        width = std::max(width, int(key.name.size()));
    QString out = QStringLiteral("NAME").leftJustified(width + 2)
        + QStringLiteral("CREATED               ADMIN  REVOKED\n");
    for (const ApiKey &key : file.keys) {
        out += key.name.leftJustified(width + 2)
            + (key.created.isValid() ? isoUtc(key.created) : QStringLiteral("-")).leftJustified(22)
            + (key.admin ? QStringLiteral("yes") : QStringLiteral("no")).leftJustified(7)
            + (key.isRevoked() ? isoUtc(key.revoked) : QStringLiteral("-")) + u'\n';
    }
    return out;
}

} // namespace slullama
