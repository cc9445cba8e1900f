#include "clientconfigwriter.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QRegularExpression>
#include <QSaveFile>

#include <utility>
#include <vector>

namespace slullama {

namespace {

const QRegularExpression &tableHeader()
{
    // [table] or [[array]] with an optional trailing comment.
    static const QRegularExpression re(
        QStringLiteral(R"(^\s*\[\[?\s*([^\]]*?)\s*\]\]?\s*(#.*)?$)"));
    return re;
}

const QRegularExpression &keyLine()
{
    static const QRegularExpression re(QStringLiteral(R"(^(\s*)([A-Za-z0-9_-]+|"[^"]*")\s*=)"));
    return re;
}

// The length of the value that starts at `from` (after the '='): a quoted string up to its
// closing quote, or a bare value up to a comment. What follows (spaces, # comment) is kept.
qsizetype valueEnd(const QString &line, qsizetype from)
{
    qsizetype i = from;
    while (i < line.size() && (line[i] == QLatin1Char(' ') || line[i] == QLatin1Char('\t')))
        ++i;
    if (i < line.size() && line[i] == QLatin1Char('"')) {
        for (++i; i < line.size(); ++i) {
            if (line[i] == QLatin1Char('\\'))
                ++i;
            else if (line[i] == QLatin1Char('"'))
                return i + 1;
        }
        return line.size();
    }
    if (i < line.size() && line[i] == QLatin1Char('\'')) {
        const qsizetype close = line.indexOf(QLatin1Char('\''), i + 1);
        return close < 0 ? line.size() : close + 1;
    }
    const qsizetype hash = line.indexOf(QLatin1Char('#'), i);
    qsizetype end = hash < 0 ? line.size() : hash;
    while (end > i && line[end - 1].isSpace())
        --end;
    return end;
}

QString unquoteKey(QString key)
{
    if (key.size() >= 2 && key.startsWith(QLatin1Char('"')))
        return key.mid(1, key.size() - 2);
    return key;
}

} // namespace

QString withClientSection(const QString &original, const ClientConfig &client)
{
    std::vector<std::pair<QString, QString>> values {
        {QStringLiteral("host"), tomlBasicString(client.host)},
        {QStringLiteral("server_port"), QString::number(client.serverPort)},
        {QStringLiteral("token"), tomlBasicString(client.token)},
        {QStringLiteral("local_port"), QString::number(client.localPort)},
    };
    std::vector<bool> written(values.size(), false);

    const QString newline
        = original.contains(QStringLiteral("\r\n")) ? QStringLiteral("\r\n") : QStringLiteral("\n");
    QStringList lines = original.split(QLatin1Char('\n'));
    const bool trailingNewline = original.isEmpty() || original.endsWith(QLatin1Char('\n'));
    if (trailingNewline && !lines.isEmpty())
        lines.removeLast();
    for (QString &line : lines) {
        if (line.endsWith(QLatin1Char('\r')))
            line.chop(1);
    }

    qsizetype sectionStart = -1; // index of the [client] header line
    qsizetype lastKey = -1; // last key line inside it
    for (qsizetype i = 0; i < lines.size(); ++i) {
        const auto header = tableHeader().match(lines[i]);
        if (header.hasMatch()) {
            if (sectionStart >= 0)
                break;
            if (header.captured(1) == QLatin1String("client")
                && !lines[i].trimmed().startsWith(QStringLiteral("[[")))
                sectionStart = i;
            continue;
        }
        if (sectionStart < 0)
            continue;
        const auto key = keyLine().match(lines[i]);
        if (!key.hasMatch())
            continue;
        lastKey = i;
        const QString name = unquoteKey(key.captured(2));
        for (size_t k = 0; k < values.size(); ++k) {
            if (values[k].first != name || written[k])
                continue;
            const qsizetype valueStart = key.capturedEnd(0);
            const qsizetype end = valueEnd(lines[i], valueStart);
            lines[i] = lines[i].left(valueStart) + QLatin1Char(' ') + values[k].second
                + lines[i].mid(end);
            written[k] = true;
        }
    }

    QStringList missing;
    for (size_t k = 0; k < values.size(); ++k) {
        if (!written[k])
            missing << values[k].first + QStringLiteral(" = ") + values[k].second;
    }
    if (sectionStart < 0) {
        if (!lines.isEmpty() && !lines.last().trimmed().isEmpty())
            lines << QString();
        lines << QStringLiteral("[client]") << missing;
    } else if (!missing.isEmpty()) {
        const qsizetype at = (lastKey >= 0 ? lastKey : sectionStart) + 1;
        for (qsizetype k = 0; k < missing.size(); ++k)
            lines.insert(at + k, missing[k]);
    }
    return lines.join(newline) + newline;
}

Result<Ok> writeClientSection(const QString &path, const ClientConfig &client)
{
    QString original;
    QFile in(path);
    const bool existed = in.exists();
    if (existed) {
        if (!in.open(QIODevice::ReadOnly))
            return makeError(QStringLiteral("Cannot read %1: %2").arg(path, in.errorString()));
        original = QString::fromUtf8(in.readAll());
        in.close();
    }
    const QString dir = QFileInfo(path).absolutePath();
    if (!QDir().mkpath(dir))
        return makeError(QStringLiteral("Cannot create %1").arg(dir));

    // QSaveFile keeps an existing file's permissions.
    QSaveFile out(path);
    if (!out.open(QIODevice::WriteOnly))
        return makeError(QStringLiteral("Cannot write %1: %2").arg(path, out.errorString()));
    // A new file, or one that will hold a token and others can read: the owner's only.
    const QFileDevice::Permissions others = QFileDevice::ReadGroup | QFileDevice::WriteGroup
        | QFileDevice::ExeGroup | QFileDevice::ReadOther | QFileDevice::WriteOther
        | QFileDevice::ExeOther;
    const bool exposed = existed && (QFile::permissions(path) & others);
    if (!existed || (exposed && !client.token.isEmpty()))
        out.setPermissions(QFileDevice::ReadOwner | QFileDevice::WriteOwner);
    out.write(withClientSection(original, client).toUtf8());
    if (!out.commit())
        return makeError(QStringLiteral("Cannot write %1: %2").arg(path, out.errorString()));
    return Ok {};
}

} // namespace slullama
