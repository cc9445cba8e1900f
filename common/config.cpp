#include "config.h"

#include "logging.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QHostAddress>
#include <QRegularExpression>

#include <cmath>
#include <functional>
#include <limits>

// Debian's toml++ 3.3 is a shared library built with exceptions only (toml::v3::ex): parse
// errors arrive as toml::parse_error. They are caught right where toml::parse is called and
// turned into Result errors; no exception leaves this file.
#include <toml++/toml.h>

namespace slullama {

namespace {

QString qs(std::string_view text)
{
    return QString::fromUtf8(text.data(), qsizetype(text.size()));
}

QString position(const toml::source_region &region)
{
    if (region.begin.line == 0)
        return {};
    return QString::number(region.begin.line) + u':' + QString::number(region.begin.column);
}

// "file:line:col: key: what" — the one shape every file error has.
QString located(const QString &file, const toml::source_region &region, const QString &key,
                const QString &what)
{
    QString where = file;
    const QString pos = position(region);
    if (!pos.isEmpty())
        where += u':' + pos;
    return where + QStringLiteral(": ") + key + QStringLiteral(": ") + what;
}

QString quoted(const QString &text)
{
    return u'"' + text + u'"';
}

QString describeNode(const toml::node &node)
{
    switch (node.type()) {
    case toml::node_type::string:
        return QStringLiteral("the string ") + quoted(qs(node.as_string()->get()));
    case toml::node_type::integer:
        return QStringLiteral("the integer ") + QString::number(node.as_integer()->get());
    case toml::node_type::floating_point:
        return QStringLiteral("the number ") + QString::number(node.as_floating_point()->get());
    case toml::node_type::boolean:
        return node.as_boolean()->get() ? QStringLiteral("true") : QStringLiteral("false");
    case toml::node_type::array:
        return QStringLiteral("an array");
    case toml::node_type::table:
        return QStringLiteral("a table");
    default:
        return QStringLiteral("a date/time");
    }
}

// ---- value checks: each returns an empty string when fine, else what was expected ----

QString checkSingleLine(const QString &value)
{
    for (const QChar c : value) {
        if (c.unicode() < 0x20 || c.unicode() == 0x7f)
            return QStringLiteral("expected a single line without control characters "
                                  "(it goes into the job script)");
    }
    return {};
}

QString checkNonEmptyLine(const QString &value)
{
    if (value.trimmed().isEmpty())
        return QStringLiteral("expected a non-empty string");
    return checkSingleLine(value);
}

QString checkSlurmTime(const QString &value)
{
    if (!parseSlurmTime(value))
        return QStringLiteral("expected a Slurm time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, "
                              "D-HH:MM:SS or UNLIMITED), got ")
               + quoted(value);
    return {};
}

QString checkKeepAlive(const QString &value)
{
    if (!keepAliveFromName(value))
        return QStringLiteral("expected \"extend\" or \"cancel\", got ") + quoted(value);
    return {};
}

QString checkBind(const QString &value)
{
    QHostAddress address;
    if (!address.setAddress(value))
        return QStringLiteral("expected an IP address to listen on (e.g. \"127.0.0.1\", "
                              "\"0.0.0.0\", \"::\"), got ")
               + quoted(value);
    return {};
}

// server.async_header: "Name: token", e.g. "Prefer: respond-async"; empty turns it off.
QString checkAsyncHeader(const QString &value)
{
    if (value.isEmpty())
        return {};
    static const QRegularExpression shape(
        QStringLiteral("^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \\t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \\t]*$"));
    if (!shape.match(value).hasMatch())
        return QStringLiteral("expected \"Header-Name: token\" (e.g. \"Prefer: respond-async\") or "
                              "\"\", got ")
               + quoted(value);
    return {};
}

QString portRangeText(bool allowZero)
{
    return allowZero ? QStringLiteral("a port number 0..65535 (0 = the job picks a free port)")
                     : QStringLiteral("a port number 1..65535");
}

QString checkPortValue(qint64 value, bool allowZero)
{
    if (value < (allowZero ? 0 : 1) || value > 65535)
        return QStringLiteral("expected ") + portRangeText(allowZero) + QStringLiteral(", got ")
               + QString::number(value);
    return {};
}

enum class Bound { NonNegative, Positive };

QString checkNumber(double value, Bound bound)
{
    if (!std::isfinite(value))
        return QStringLiteral("expected a finite number");
    if (bound == Bound::NonNegative && value < 0)
        return QStringLiteral("expected a number >= 0, got ") + QString::number(value);
    if (bound == Bound::Positive && value <= 0)
        return QStringLiteral("expected a number > 0, got ") + QString::number(value);
    return {};
}

// ---- typed readers for TOML nodes ----


QString readString(const toml::node &node, QString *out,
                   const std::function<QString(const QString &)> &check = {})
{
    if (!node.is_string())
        return QStringLiteral("expected a string, got ") + describeNode(node);
    const QString value = qs(node.as_string()->get());
    if (check) {
        const QString error = check(value);
        if (!error.isEmpty())
            return error;
    }
    *out = value;
    return {};
}

QString readBool(const toml::node &node, bool *out)
{
    if (!node.is_boolean())
        return QStringLiteral("expected true or false, got ") + describeNode(node);
    *out = node.as_boolean()->get();
    return {};
}

QString readPort(const toml::node &node, quint16 *out, bool allowZero)
{
    if (!node.is_integer())
        return QStringLiteral("expected ") + portRangeText(allowZero) + QStringLiteral(", got ")
               + describeNode(node);
    const qint64 value = node.as_integer()->get();
    const QString error = checkPortValue(value, allowZero);
    if (!error.isEmpty())
        return error;
    *out = quint16(value);
    return {};
}

// Integers and floats both: 0.1.3 files have `idle_timeout = 30`, tests want 0.25.
QString readNumber(const toml::node &node, double *out, Bound bound)
{
    double value = 0;
    if (node.is_integer())
        value = double(node.as_integer()->get());
    else if (node.is_floating_point())
        value = node.as_floating_point()->get();
    else
        return QStringLiteral("expected a number, got ") + describeNode(node);
    const QString error = checkNumber(value, bound);
    if (!error.isEmpty())
        return error;
    *out = value;
    return {};
}

template<typename Int>
QString readInteger(const toml::node &node, Int *out, qint64 minimum)
{
    if (!node.is_integer())
        return QStringLiteral("expected an integer, got ") + describeNode(node);
    const qint64 value = node.as_integer()->get();
    if (value < minimum || value > qint64(std::numeric_limits<Int>::max()))
        return QStringLiteral("expected an integer from ") + QString::number(minimum)
               + QStringLiteral(" to ") + QString::number(qint64(std::numeric_limits<Int>::max()))
               + QStringLiteral(", got ") + QString::number(value);
    *out = Int(value);
    return {};
}

struct FileContext
{
    QString file;
    QString key;  // dotted, for messages
};

// Arrays report the bad element with its own position, so this one builds the full message.
QString readStringList(const toml::node &node, QStringList *out, const FileContext &ctx,
                       const std::function<QString(const QString &)> &check = {})
{
    const toml::array *array = node.as_array();
    if (!array)
        return located(ctx.file, node.source(), ctx.key,
                       QStringLiteral("expected an array of strings, got ") + describeNode(node));
    QStringList values;
    for (std::size_t i = 0; i < array->size(); ++i) {
        const toml::node &element = *array->get(i);
        const QString elementKey = ctx.key + u'[' + QString::number(i) + u']';
        if (!element.is_string())
            return located(ctx.file, element.source(), elementKey,
                           QStringLiteral("expected a string, got ") + describeNode(element));
        const QString value = qs(element.as_string()->get());
        if (check) {
            const QString error = check(value);
            if (!error.isEmpty())
                return located(ctx.file, element.source(), elementKey, error);
        }
        values << value;
    }
    *out = values;
    return {};
}

struct KeySpec
{
    const char *name;
    // Returns an error without location ("expected ..."), or a full message when `located` is set.
    std::function<QString(const toml::node &, Config &, const FileContext &)> apply;
    bool errorIsLocated = false;
};

struct SectionSpec
{
    const char *name;
    QList<KeySpec> keys;
};

template<typename Field>
KeySpec key(const char *name, Field field)
{
    return KeySpec{name,
                   [field](const toml::node &node, Config &c, const FileContext &) {
                       return field(node, c);
                   },
                   false};
}

template<typename Field>
KeySpec listKey(const char *name, Field field,
                std::function<QString(const QString &)> check = checkSingleLine)
{
    return KeySpec{name,
                   [field, check](const toml::node &node, Config &c, const FileContext &ctx) {
                       return readStringList(node, field(c), ctx, check);
                   },
                   true};
}

const QList<SectionSpec> &sections()
{
    static const QList<SectionSpec> specs = {
        {"server",
         {
             key("port", [](const toml::node &n, Config &c) {
                 return readPort(n, &c.server.port, false);
             }),
             key("token", [](const toml::node &n, Config &c) {
                 return readString(n, &c.server.token);
             }),
             key("log_dir", [](const toml::node &n, Config &c) {
                 return readString(n, &c.server.logDir, checkNonEmptyLine);
             }),
             key("job_template", [](const toml::node &n, Config &c) {
                 return readString(n, &c.server.jobTemplate, checkSingleLine);
             }),
             key("bind", [](const toml::node &n, Config &c) {
                 return readString(n, &c.server.bind, checkBind);
             }),
             key("boot_timeout", [](const toml::node &n, Config &c) {
                 return readNumber(n, &c.server.bootTimeout, Bound::Positive);
             }),
             key("max_body_bytes", [](const toml::node &n, Config &c) {
                 return readInteger(n, &c.server.maxBodyBytes, 1);
             }),
             key("max_connections", [](const toml::node &n, Config &c) {
                 return readInteger(n, &c.server.maxConnections, 1);
             }),
             key("header_timeout", [](const toml::node &n, Config &c) {
                 return readNumber(n, &c.server.headerTimeout, Bound::Positive);
             }),
             key("keepalive_timeout", [](const toml::node &n, Config &c) {
                 return readNumber(n, &c.server.keepAliveTimeout, Bound::Positive);
             }),
             key("stall_timeout", [](const toml::node &n, Config &c) {
                 return readNumber(n, &c.server.stallTimeout, Bound::Positive);
             }),
             key("drain_timeout", [](const toml::node &n, Config &c) {
                 return readNumber(n, &c.server.drainTimeout, Bound::NonNegative);
             }),
             key("state_file", [](const toml::node &n, Config &c) {
                 return readString(n, &c.server.stateFile, checkSingleLine);
             }),
             key("keys_file", [](const toml::node &n, Config &c) {
                 return readString(n, &c.server.keysFile, checkSingleLine);
             }),
             key("usage_file", [](const toml::node &n, Config &c) {
                 return readString(n, &c.server.usageFile, checkSingleLine);
             }),
             key("cache_metadata", [](const toml::node &n, Config &c) {
                 return readBool(n, &c.server.cacheMetadata);
             }),
             key("async_header", [](const toml::node &n, Config &c) {
                 return readString(n, &c.server.asyncHeader, checkAsyncHeader);
             }),
             key("user_max_concurrent", [](const toml::node &n, Config &c) {
                 return readInteger(n, &c.server.userMaxConcurrent, 0);
             }),
             key("user_requests_per_minute", [](const toml::node &n, Config &c) {
                 return readInteger(n, &c.server.userRequestsPerMinute, 0);
             }),
         }},
        {"slurm",
         {
             key("partition", [](const toml::node &n, Config &c) {
                 return readString(n, &c.slurm.partition, checkSingleLine);
             }),
             key("gres", [](const toml::node &n, Config &c) {
                 return readString(n, &c.slurm.gres, checkSingleLine);
             }),
             key("mem", [](const toml::node &n, Config &c) {
                 return readString(n, &c.slurm.mem, checkSingleLine);
             }),
             key("time", [](const toml::node &n, Config &c) {
                 return readString(n, &c.slurm.time, checkSlurmTime);
             }),
             key("idle_timeout", [](const toml::node &n, Config &c) {
                 return readNumber(n, &c.slurm.idleTimeoutMinutes, Bound::NonNegative);
             }),
             key("keep_alive", [](const toml::node &n, Config &c) {
                 QString name;
                 const QString error = readString(n, &name, checkKeepAlive);
                 if (error.isEmpty())
                     c.slurm.keepAlive = *keepAliveFromName(name);
                 return error;
             }),
             listKey("extra_args", [](Config &c) { return &c.slurm.extraArgs; }),
             key("job_name", [](const toml::node &n, Config &c) {
                 return readString(n, &c.slurm.jobName, checkNonEmptyLine);
             }),
             key("command_timeout", [](const toml::node &n, Config &c) {
                 return readNumber(n, &c.slurm.commandTimeout, Bound::Positive);
             }),
             key("poll_interval", [](const toml::node &n, Config &c) {
                 return readNumber(n, &c.slurm.pollInterval, Bound::Positive);
             }),
             key("handover_lead", [](const toml::node &n, Config &c) {
                 return readNumber(n, &c.slurm.handoverLead, Bound::NonNegative);
             }),
         }},
        {"ollama",
         {
             key("port", [](const toml::node &n, Config &c) {
                 return readPort(n, &c.ollama.port, true);
             }),
             key("binary", [](const toml::node &n, Config &c) {
                 return readString(n, &c.ollama.binary, checkNonEmptyLine);
             }),
             key("models_dir", [](const toml::node &n, Config &c) {
                 return readString(n, &c.ollama.modelsDir, checkSingleLine);
             }),
             key("copy_binary", [](const toml::node &n, Config &c) {
                 return readBool(n, &c.ollama.copyBinary);
             }),
             key("copy_source", [](const toml::node &n, Config &c) {
                 return readString(n, &c.ollama.copySource, checkSingleLine);
             }),
             key("cleanup_binary", [](const toml::node &n, Config &c) {
                 return readBool(n, &c.ollama.cleanupBinary);
             }),
             listKey("pre_pull", [](Config &c) { return &c.ollama.prePull; }, checkNonEmptyLine),
         }},
        {"ssh",
         {
             key("port", [](const toml::node &n, Config &c) {
                 return readPort(n, &c.ssh.port, false);
             }),
             key("identity_file", [](const toml::node &n, Config &c) {
                 return readString(n, &c.ssh.identityFile, checkSingleLine);
             }),
             listKey("options", [](Config &c) { return &c.ssh.options; }, checkNonEmptyLine),
             key("user", [](const toml::node &n, Config &c) {
                 return readString(n, &c.ssh.user, checkSingleLine);
             }),
             key("program", [](const toml::node &n, Config &c) {
                 return readString(n, &c.ssh.program, checkNonEmptyLine);
             }),
             key("interactive", [](const toml::node &n, Config &c) {
                 return readBool(n, &c.ssh.interactive);
             }),
             key("forward_socket", [](const toml::node &n, Config &c) {
                 return readBool(n, &c.ssh.forwardSocket);
             }),
         }},
        {"client",
         {
             key("host", [](const toml::node &n, Config &c) {
                 return readString(n, &c.client.host, checkSingleLine);
             }),
             key("server_port", [](const toml::node &n, Config &c) {
                 return readPort(n, &c.client.serverPort, false);
             }),
             key("token", [](const toml::node &n, Config &c) {
                 return readString(n, &c.client.token);
             }),
             key("local_port", [](const toml::node &n, Config &c) {
                 return readPort(n, &c.client.localPort, false);
             }),
             key("ssh_port", [](const toml::node &n, Config &c) {
                 return readPort(n, &c.client.sshPort, true);
             }),
             key("identity_file", [](const toml::node &n, Config &c) {
                 return readString(n, &c.client.identityFile, checkSingleLine);
             }),
             key("known_hosts", [](const toml::node &n, Config &c) {
                 return readString(n, &c.client.knownHosts, checkSingleLine);
             }),
             key("inject_token", [](const toml::node &n, Config &c) {
                 return readBool(n, &c.client.injectToken);
             }),
         }},
    };
    return specs;
}

QString unknownWarning(const QString &file, const toml::source_region &region, const QString &key,
                       const QString &what)
{
    return located(file, region, key, what);
}

Result<Ok> readSection(const QString &file, const SectionSpec &spec, const toml::table &table,
                   Config &config)
{
    const QString sectionName = QString::fromLatin1(spec.name);
    for (auto &&[name, node] : table) {
        const QString keyName = qs(name.str());
        const QString dotted = sectionName + u'.' + keyName;
        const KeySpec *match = nullptr;
        for (const KeySpec &candidate : spec.keys) {
            if (keyName == QLatin1String(candidate.name)) {
                match = &candidate;
                break;
            }
        }
        if (!match) {
            config.warnings << unknownWarning(
                file, name.source(), dotted,
                QStringLiteral("unknown key, ignored (a typo, or a key of a newer slullama?)"));
            continue;
        }
        const QString error = match->apply(node, config, FileContext{file, dotted});
        if (!error.isEmpty()) {
            if (match->errorIsLocated)
                return makeError(error);
            return makeError(located(file, node.source(), dotted, error));
        }
    }
    return Ok{};
}

QString envError(const QString &variable, const QString &what)
{
    return QStringLiteral("environment variable ") + variable + QStringLiteral(": ") + what;
}

QString flagError(const QString &flag, const QString &what)
{
    return QStringLiteral("option ") + flag + QStringLiteral(": ") + what;
}


QString tomlList(const QStringList &values)
{
    QStringList items;
    for (const QString &v : values)
        items << tomlBasicString(v);
    return u'[' + items.join(QStringLiteral(", ")) + u']';
}

QString tomlNumber(double value)
{
    return QString::number(value, 'g', 15);
}

QString tomlBool(bool value)
{
    return value ? QStringLiteral("true") : QStringLiteral("false");
}

QString maskedToken(const QString &token)
{
    return tomlBasicString(token.isEmpty() ? QString() : QStringLiteral("***"));
}

} // namespace

QString tomlBasicString(const QString &value)
{
    QString out;
    out.reserve(value.size() + 2);
    out += u'"';
    for (const QChar c : value) {
        switch (c.unicode()) {
        case '"':
            out += QStringLiteral("\\\"");
            break;
        case '\\':
            out += QStringLiteral("\\\\");
            break;
        case '\n':
            out += QStringLiteral("\\n");
            break;
        case '\t':
            out += QStringLiteral("\\t");
            break;
        case '\r':
            out += QStringLiteral("\\r");
            break;
        default:
            if (c.unicode() < 0x20 || c.unicode() == 0x7f)
                out += QStringLiteral("\\u%1").arg(c.unicode(), 4, 16, QLatin1Char('0'));
            else
                out += c;
        }
    }
    out += u'"';
    return out;
}

// ---- public helpers ----

QString keepAliveName(KeepAlive keepAlive)
{
    return keepAlive == KeepAlive::Cancel ? QStringLiteral("cancel") : QStringLiteral("extend");
}

std::optional<KeepAlive> keepAliveFromName(const QString &name)
{
    if (name == QLatin1String("extend"))
        return KeepAlive::Extend;
    if (name == QLatin1String("cancel"))
        return KeepAlive::Cancel;
    return std::nullopt;
}

std::optional<qint64> parseSlurmTime(const QString &text)
{
    const QString t = text.trimmed();
    if (t.compare(QLatin1String("UNLIMITED"), Qt::CaseInsensitive) == 0
        || t.compare(QLatin1String("INFINITE"), Qt::CaseInsensitive) == 0)
        return kSlurmTimeUnlimited;
    static const QRegularExpression withDays(
        QStringLiteral("^(\\d{1,6})-(\\d{1,4})(?::(\\d{1,4}))?(?::(\\d{1,4}))?$"));
    static const QRegularExpression plain(
        QStringLiteral("^(\\d{1,9})(?::(\\d{1,4}))?(?::(\\d{1,4}))?$"));
    const auto number = [](const QRegularExpressionMatch &m, int group) -> qint64 {
        return m.captured(group).isEmpty() ? 0 : m.captured(group).toLongLong();
    };
    if (const auto m = withDays.match(t); m.hasMatch()) {
        // D-HH, D-HH:MM, D-HH:MM:SS
        return number(m, 1) * 86400 + number(m, 2) * 3600 + number(m, 3) * 60 + number(m, 4);
    }
    if (const auto m = plain.match(t); m.hasMatch()) {
        if (m.captured(3).isEmpty() && m.captured(2).isEmpty())
            return number(m, 1) * 60;                       // MM
        if (m.captured(3).isEmpty())
            return number(m, 1) * 60 + number(m, 2);        // MM:SS
        return number(m, 1) * 3600 + number(m, 2) * 60 + number(m, 3); // HH:MM:SS
    }
    return std::nullopt;
}

QString formatSlurmTime(qint64 seconds)
{
    if (seconds < 0)
        return QStringLiteral("UNLIMITED");
    const qint64 minutes = (seconds + 59) / 60;
    const qint64 days = minutes / (24 * 60);
    const qint64 hours = (minutes / 60) % 24;
    const qint64 mins = minutes % 60;
    const QString hms = QStringLiteral("%1:%2:00")
                            .arg(hours, 2, 10, QLatin1Char('0'))
                            .arg(mins, 2, 10, QLatin1Char('0'));
    if (days > 0)
        return QString::number(days) + u'-' + hms;
    return hms;
}

Result<quint16> parsePort(const QString &text, bool allowZero)
{
    bool ok = false;
    const qint64 value = text.trimmed().toLongLong(&ok);
    if (!ok)
        return makeError(QStringLiteral("expected ") + portRangeText(allowZero)
                         + QStringLiteral(", got ") + quoted(text));
    const QString error = checkPortValue(value, allowZero);
    if (!error.isEmpty())
        return makeError(error);
    return quint16(value);
}

Result<double> parseMinutes(const QString &text)
{
    bool ok = false;
    const double value = text.trimmed().toDouble(&ok);
    if (!ok)
        return makeError(QStringLiteral("expected a number of minutes (e.g. 30 or 0.5), got ")
                         + quoted(text));
    const QString error = checkNumber(value, Bound::NonNegative);
    if (!error.isEmpty())
        return makeError(error);
    return value;
}

ConfigLocation configLocation(const QString &explicitPath, const QProcessEnvironment &env)
{
    if (!explicitPath.isEmpty())
        return {explicitPath, true, QStringLiteral("--config")};
    const QString fromEnv = env.value(QStringLiteral("SLULLAMA_CONFIG"));
    if (!fromEnv.isEmpty())
        return {fromEnv, true, QStringLiteral("SLULLAMA_CONFIG")};
    QString base = env.value(QStringLiteral("XDG_CONFIG_HOME"));
    // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    if (base.isEmpty() || QDir::isRelativePath(base)) {
        QString home = env.value(QStringLiteral("HOME"));
        if (home.isEmpty())
            home = QDir::homePath();
        base = home + QStringLiteral("/.config");
    }
    return {base + QStringLiteral("/slullama/config.toml"), false,
            QStringLiteral("default path")};
}

Result<Config> parseConfig(const QByteArray &tomlText, const QString &sourceName,
                           const Config &base)
{
    Config config = base;
    toml::table root;
    try {
        const std::string source = sourceName.toStdString();
        root = toml::parse(std::string_view(tomlText.constData(), std::size_t(tomlText.size())),
                           std::string_view(source));
    } catch (const toml::parse_error &error) {
        QString where = sourceName;
        const QString pos = position(error.source());
        if (!pos.isEmpty())
            where += u':' + pos;
        return makeError(where + QStringLiteral(": TOML syntax error: ")
                         + qs(error.description()));
    }

    for (auto &&[name, node] : root) {
        const QString sectionName = qs(name.str());
        const SectionSpec *spec = nullptr;
        for (const SectionSpec &candidate : sections()) {
            if (sectionName == QLatin1String(candidate.name)) {
                spec = &candidate;
                break;
            }
        }
        if (!spec) {
            config.warnings << unknownWarning(
                sourceName, name.source(), sectionName,
                node.is_table()
                    ? QStringLiteral("unknown section, ignored")
                    : QStringLiteral("unknown top-level key, ignored (keys belong in [server], "
                                     "[slurm], [ollama], [ssh] or [client])"));
            continue;
        }
        const toml::table *table = node.as_table();
        if (!table)
            return makeError(located(sourceName, node.source(), sectionName,
                                     QStringLiteral("expected a section (table), got ")
                                         + describeNode(node)));
        const Result<Ok> status = readSection(sourceName, *spec, *table, config);
        if (!status)
            return makeError(status.error());
    }
    config.sourcePath = sourceName;
    return config;
}

Result<Config> applyEnvironment(Config config, const QProcessEnvironment &env)
{
    // An empty variable counts as unset: CI systems often define variables they leave empty.
    const auto get = [&env](const char *name) -> std::optional<QString> {
        const QString value = env.value(QLatin1String(name));
        if (value.isEmpty())
            return std::nullopt;
        return value;
    };

    if (const auto v = get("SLULLAMA_TOKEN")) {
        config.server.token = *v;
        config.client.token = *v;
    }
    if (const auto v = get("SLULLAMA_HOST")) {
        if (const QString e = checkSingleLine(*v); !e.isEmpty())
            return makeError(envError(QStringLiteral("SLULLAMA_HOST (client.host)"), e));
        config.client.host = *v;
    }
    if (const auto v = get("SLULLAMA_SERVER_PORT")) {
        const auto port = parsePort(*v);
        if (!port)
            return makeError(envError(
                QStringLiteral("SLULLAMA_SERVER_PORT (server.port, client.server_port)"),
                port.error()));
        config.server.port = *port;
        config.client.serverPort = *port;
    }
    if (const auto v = get("SLULLAMA_LOCAL_PORT")) {
        const auto port = parsePort(*v);
        if (!port)
            return makeError(
                envError(QStringLiteral("SLULLAMA_LOCAL_PORT (client.local_port)"), port.error()));
        config.client.localPort = *port;
    }
    if (const auto v = get("SLULLAMA_PARTITION")) {
        if (const QString e = checkSingleLine(*v); !e.isEmpty())
            return makeError(envError(QStringLiteral("SLULLAMA_PARTITION (slurm.partition)"), e));
        config.slurm.partition = *v;
    }
    if (const auto v = get("SLULLAMA_GRES")) {
        if (const QString e = checkSingleLine(*v); !e.isEmpty())
            return makeError(envError(QStringLiteral("SLULLAMA_GRES (slurm.gres)"), e));
        config.slurm.gres = *v;
    }
    if (const auto v = get("SLULLAMA_IDLE_TIMEOUT")) {
        const auto minutes = parseMinutes(*v);
        if (!minutes)
            return makeError(envError(QStringLiteral("SLULLAMA_IDLE_TIMEOUT (slurm.idle_timeout)"),
                                      minutes.error()));
        config.slurm.idleTimeoutMinutes = *minutes;
    }
    if (const auto v = get("SLULLAMA_OLLAMA_BINARY")) {
        if (const QString e = checkNonEmptyLine(*v); !e.isEmpty())
            return makeError(
                envError(QStringLiteral("SLULLAMA_OLLAMA_BINARY (ollama.binary)"), e));
        config.ollama.binary = *v;
    }
    if (const auto v = get("SLULLAMA_OLLAMA_PORT")) {
        const auto port = parsePort(*v, true);
        if (!port)
            return makeError(
                envError(QStringLiteral("SLULLAMA_OLLAMA_PORT (ollama.port)"), port.error()));
        config.ollama.port = *port;
    }
    // systemd's StateDirectory= (e.g. /var/lib/slullama): the state file belongs there, not in
    // log_dir, when the configuration names none. The first entry if systemd lists several.
    if (const auto v = get("STATE_DIRECTORY"); v && config.server.stateFile.isEmpty()) {
        const QString dir = v->section(u':', 0, 0);
        if (!dir.isEmpty())
            config.server.stateFile = dir + QStringLiteral("/daemon-state.json");
    }
    return config;
}

Result<Config> applyOverrides(Config config, const ConfigOverrides &o)
{
    if (o.port) {
        if (const QString e = checkPortValue(*o.port, false); !e.isEmpty())
            return makeError(flagError(QStringLiteral("--port"), e));
        config.server.port = *o.port;
        config.client.serverPort = *o.port;
    }
    if (o.token) {
        config.server.token = *o.token;
        config.client.token = *o.token;
    }
    if (o.partition) {
        if (const QString e = checkSingleLine(*o.partition); !e.isEmpty())
            return makeError(flagError(QStringLiteral("--partition"), e));
        config.slurm.partition = *o.partition;
    }
    if (o.gres) {
        if (const QString e = checkSingleLine(*o.gres); !e.isEmpty())
            return makeError(flagError(QStringLiteral("--gres"), e));
        config.slurm.gres = *o.gres;
    }
    if (o.idleTimeoutMinutes) {
        if (const QString e = checkNumber(*o.idleTimeoutMinutes, Bound::NonNegative);
            !e.isEmpty())
            return makeError(flagError(QStringLiteral("--idle-timeout"), e));
        config.slurm.idleTimeoutMinutes = *o.idleTimeoutMinutes;
    }
    if (o.host) {
        if (const QString e = checkSingleLine(*o.host); !e.isEmpty())
            return makeError(flagError(QStringLiteral("host"), e));
        config.client.host = *o.host;
    }
    if (o.localPort) {
        if (const QString e = checkPortValue(*o.localPort, false); !e.isEmpty())
            return makeError(flagError(QStringLiteral("--local-port"), e));
        config.client.localPort = *o.localPort;
    }
    return config;
}

Result<Config> loadConfig(const QString &explicitPath, const QProcessEnvironment &env,
                          const ConfigOverrides &overrides)
{
    const ConfigLocation location = configLocation(explicitPath, env);
    Config config;
    QFile file(location.path);
    const QFileInfo info(location.path);
    if (!info.exists()) {
        if (location.isExplicit)
            return makeError(QStringLiteral("config file ") + location.path
                             + QStringLiteral(" (from ") + location.origin
                             + QStringLiteral(") does not exist"));
        qCDebug(lcConfig) << "no config file at" << location.path << "- using defaults";
    } else {
        if (info.isDir())
            return makeError(QStringLiteral("config file ") + location.path
                             + QStringLiteral(" is a directory, expected a TOML file"));
        if (!file.open(QIODevice::ReadOnly))
            return makeError(QStringLiteral("config file ") + location.path
                             + QStringLiteral(": cannot read: ") + file.errorString());
        auto parsed = parseConfig(file.readAll(), location.path, config);
        if (!parsed)
            return parsed;
        config = std::move(parsed).value();
    }

    auto withEnv = applyEnvironment(std::move(config), env);
    if (!withEnv)
        return withEnv;
    return applyOverrides(std::move(withEnv).value(), overrides);
}

QString describeConfig(const Config &c)
{
    QString out;
    const auto line = [&out](const char *key, const QString &value) {
        out += QLatin1String(key) + QStringLiteral(" = ") + value + u'\n';
    };
    out += QStringLiteral("# effective configuration: ")
           + (c.sourcePath.isEmpty() ? QStringLiteral("defaults (no config file)")
                                     : QStringLiteral("defaults < ") + c.sourcePath)
           + QStringLiteral(" < environment < command line\n");

    out += QStringLiteral("\n[server]\n");
    line("port", QString::number(c.server.port));
    line("token", maskedToken(c.server.token));
    line("log_dir", tomlBasicString(c.server.logDir));
    line("job_template", tomlBasicString(c.server.jobTemplate));
    line("bind", tomlBasicString(c.server.bind));
    line("boot_timeout", tomlNumber(c.server.bootTimeout));
    line("max_body_bytes", QString::number(c.server.maxBodyBytes));
    line("max_connections", QString::number(c.server.maxConnections));
    line("header_timeout", tomlNumber(c.server.headerTimeout));
    line("keepalive_timeout", tomlNumber(c.server.keepAliveTimeout));
    line("stall_timeout", tomlNumber(c.server.stallTimeout));
    line("drain_timeout", tomlNumber(c.server.drainTimeout));
    line("state_file", tomlBasicString(c.server.stateFile));
    line("keys_file", tomlBasicString(c.server.keysFile));
    line("usage_file", tomlBasicString(c.server.usageFile));
    line("cache_metadata", c.server.cacheMetadata ? QStringLiteral("true") : QStringLiteral("false"));
    line("async_header", tomlBasicString(c.server.asyncHeader));
    line("user_max_concurrent", QString::number(c.server.userMaxConcurrent));
    line("user_requests_per_minute", QString::number(c.server.userRequestsPerMinute));

    out += QStringLiteral("\n[slurm]\n");
    line("partition", tomlBasicString(c.slurm.partition));
    line("gres", tomlBasicString(c.slurm.gres));
    line("mem", tomlBasicString(c.slurm.mem));
    line("time", tomlBasicString(c.slurm.time));
    line("idle_timeout", tomlNumber(c.slurm.idleTimeoutMinutes));
    line("keep_alive", tomlBasicString(keepAliveName(c.slurm.keepAlive)));
    line("extra_args", tomlList(c.slurm.extraArgs));
    line("job_name", tomlBasicString(c.slurm.jobName));
    line("command_timeout", tomlNumber(c.slurm.commandTimeout));
    line("poll_interval", tomlNumber(c.slurm.pollInterval));
    line("handover_lead", tomlNumber(c.slurm.handoverLead));

    out += QStringLiteral("\n[ollama]\n");
    line("port", QString::number(c.ollama.port));
    line("binary", tomlBasicString(c.ollama.binary));
    line("models_dir", tomlBasicString(c.ollama.modelsDir));
    line("copy_binary", tomlBool(c.ollama.copyBinary));
    line("copy_source", tomlBasicString(c.ollama.copySource));
    line("cleanup_binary", tomlBool(c.ollama.cleanupBinary));
    line("pre_pull", tomlList(c.ollama.prePull));

    out += QStringLiteral("\n[ssh]\n");
    line("port", QString::number(c.ssh.port));
    line("identity_file", tomlBasicString(c.ssh.identityFile));
    line("options", tomlList(c.ssh.options));
    line("user", tomlBasicString(c.ssh.user));
    line("program", tomlBasicString(c.ssh.program));
    line("interactive", tomlBool(c.ssh.interactive));
    line("forward_socket", tomlBool(c.ssh.forwardSocket));

    out += QStringLiteral("\n[client]\n");
    line("host", tomlBasicString(c.client.host));
    line("server_port", QString::number(c.client.serverPort));
    line("token", maskedToken(c.client.token));
    line("local_port", QString::number(c.client.localPort));
    line("ssh_port", QString::number(c.client.sshPort));
    line("identity_file", tomlBasicString(c.client.identityFile));
    line("known_hosts", tomlBasicString(c.client.knownHosts));
    line("inject_token", tomlBool(c.client.injectToken));
    return out;
}

} // namespace slullama
