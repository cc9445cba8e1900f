#pragma once

#include "result.h"

#include <QProcessEnvironment>
#include <QString>
#include <QStringList>

#include <optional>

namespace slullama {

// The effective configuration. Sections and keys of slullama 0.1.3 keep their names and
// defaults; keys marked "new" are ours and are documented in README.md.

enum class KeepAlive { Extend, Cancel };

struct ServerConfig
{
    quint16 port = 11435;
    QString token;                          // empty = no auth (as 0.1.3)
    QString logDir = QStringLiteral("/tmp/slullama");
    QString jobTemplate;                    // empty = built-in template
    // new
    QString bind = QStringLiteral("0.0.0.0");  // 0.1.3 listened on all interfaces
    double bootTimeout = 900;               // seconds a request may wait for a cold start
    qint64 maxBodyBytes = 256LL * 1024 * 1024;
    int maxConnections = 4096;
    double headerTimeout = 30;              // seconds to send a complete request head
    double keepAliveTimeout = 75;           // seconds an idle client connection stays open
    double stallTimeout = 120;              // seconds a client may send no announced body / read nothing
    double drainTimeout = 30;               // seconds streams may finish after SIGTERM
    QString stateFile;                      // empty = <log_dir>/daemon-state.json
    // new: per-user keys, usage, limits, cold-start behaviour (docs/TEAM.md)
    QString keysFile;                       // empty = keys.toml next to the config file
    QString usageFile;                      // empty = usage.json next to the state file
    bool cacheMetadata = true;              // answer /api/version, /api/tags from cache while asleep
    QString asyncHeader = QStringLiteral("Prefer: respond-async"); // "Name: token"; empty = off
    int userMaxConcurrent = 0;              // per key; 0 = no limit
    int userRequestsPerMinute = 0;          // per key; 0 = no limit

    QString effectiveStateFile() const
    {
        return stateFile.isEmpty() ? logDir + QStringLiteral("/daemon-state.json") : stateFile;
    }
};

struct SlurmConfig
{
    QString partition = QStringLiteral("gpu");
    QString gres = QStringLiteral("gpu:1");
    QString mem;
    QString time = QStringLiteral("4:00:00");
    double idleTimeoutMinutes = 30;         // fractions allowed (0.25 = 15 s)
    KeepAlive keepAlive = KeepAlive::Extend;
    QStringList extraArgs;
    // new
    QString jobName = QStringLiteral("slullama");
    double commandTimeout = 20;             // seconds any Slurm command may take
    double pollInterval = 1;                // seconds between job state polls while booting
    // Minimum seconds before the time limit at which a job in use that cannot be extended gets
    // a successor submitted (the last boot x 1.5 when longer); 0 = no hand-over.
    double handoverLead = 300;
};

struct OllamaConfig
{
    quint16 port = 11434;                   // on the compute node
    QString binary = QStringLiteral("ollama");
    QString modelsDir;
    bool copyBinary = false;
    QString copySource;
    bool cleanupBinary = false;
    QStringList prePull;
};

// new: the head node -> compute node hop (OpenSSH `ssh -L`, see daemon/nodetunnel.h).
struct SshConfig
{
    quint16 port = 22;
    QString identityFile;                   // empty = ssh's default keys
    QStringList options;                    // extra `-o` options
    QString user;                           // empty = current user
    QString program = QStringLiteral("ssh");
    // true: the forward rides a pty session running a remote sleeper (sshd sets TCP_NODELAY only
    // for interactive sessions); false: plain `ssh -N`, for nodes that refuse ptys or shells
    bool interactive = true;
    // true: the tunnel's head-node end is a Unix socket in a 0700 directory only the daemon's
    // user can open; false: a TCP port on 127.0.0.1, which every head-node user can reach
    bool forwardSocket = true;
};

struct ClientConfig
{
    QString host;                           // user@headnode
    quint16 serverPort = 11435;
    QString token;
    quint16 localPort = 11434;
    // new: the laptop -> head node hop (libssh)
    quint16 sshPort = 0;                    // 0 = from ~/.ssh/config, else 22
    QString identityFile;                   // empty = agent and ~/.ssh/config / default keys
    QString knownHosts;                     // empty = ~/.ssh/known_hosts
    // new: the tunnel adds "Authorization: Bearer <token>" to requests that carry none, so
    // tools that know nothing of tokens work through it (only when token is set)
    bool injectToken = true;
};

struct Config
{
    ServerConfig server;
    SlurmConfig slurm;
    OllamaConfig ollama;
    SshConfig ssh;
    ClientConfig client;

    QString sourcePath;                     // the file it was read from; empty = defaults only
    QStringList warnings;                   // e.g. unknown keys: reported, not fatal
};

// Command-line flags. Each one set wins over the file and the environment. Like the environment
// variables, `port` and `token` serve both roles: the daemon's own (server.*) and the one the
// laptop talks to (client.*), so `serve --port` and `connect --port` mean what 0.1.3 meant.
struct ConfigOverrides
{
    std::optional<quint16> port;             // server.port and client.server_port
    std::optional<QString> token;            // server.token and client.token
    std::optional<QString> partition;        // slurm.partition
    std::optional<QString> gres;             // slurm.gres
    std::optional<double> idleTimeoutMinutes;// slurm.idle_timeout
    std::optional<QString> host;             // client.host
    std::optional<quint16> localPort;        // client.local_port
};

// Which file loadConfig reads: `explicitPath` (--config), else SLULLAMA_CONFIG, else
// $XDG_CONFIG_HOME/slullama/config.toml (XDG_CONFIG_HOME defaults to $HOME/.config).
struct ConfigLocation
{
    QString path;
    bool isExplicit = false;  // from --config or SLULLAMA_CONFIG: it must exist
    QString origin;           // "--config", "SLULLAMA_CONFIG" or "default path"
};
ConfigLocation configLocation(const QString &explicitPath, const QProcessEnvironment &env);

// Loads the effective configuration: defaults < file < environment < overrides. Every value is
// checked; the first bad one fails the whole load with a message naming the file (or variable,
// or flag), the dotted key, line:column where known, and what was expected. Unknown keys and
// sections only add to Config::warnings.
Result<Config> loadConfig(const QString &explicitPath,
                          const QProcessEnvironment &env = QProcessEnvironment::systemEnvironment(),
                          const ConfigOverrides &overrides = {});

// The file step alone: parses TOML text over `base` (defaults when omitted). `sourceName` is
// used in messages. Neither the environment nor overrides are applied.
Result<Config> parseConfig(const QByteArray &tomlText, const QString &sourceName,
                           const Config &base = Config());

// The environment and override steps alone, on top of `config`.
Result<Config> applyEnvironment(Config config, const QProcessEnvironment &env);
Result<Config> applyOverrides(Config config, const ConfigOverrides &overrides);

// The effective configuration as TOML (all sections and keys, token shown as "***" when set), for
// `serve --dry-run`. Parsing it again gives the same configuration except for the tokens.
QString describeConfig(const Config &config);

QString keepAliveName(KeepAlive keepAlive);
std::optional<KeepAlive> keepAliveFromName(const QString &name);

// Slurm time limits: "MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS", or
// "UNLIMITED"/"INFINITE" (any case). Returns seconds, kSlurmTimeUnlimited for no limit, or
// nothing when the text is not a Slurm time.
inline constexpr qint64 kSlurmTimeUnlimited = -1;
std::optional<qint64> parseSlurmTime(const QString &text);
// Seconds as Slurm's D-HH:MM:SS (or HH:MM:SS below a day), rounded up to whole minutes as Slurm
// keeps them; kSlurmTimeUnlimited gives "UNLIMITED".
QString formatSlurmTime(qint64 seconds);

// Value checks shared by the file, environment and command-line steps. They return the value, or
// an error saying what was expected (without naming the key: the caller does that).
Result<quint16> parsePort(const QString &text, bool allowZero = false);
Result<double> parseMinutes(const QString &text);

// `value` as a TOML basic string, quoted and escaped (shared by describeConfig and the tray's
// [client] writer).
QString tomlBasicString(const QString &value);

} // namespace slullama
