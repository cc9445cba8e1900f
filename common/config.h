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
    double drainTimeout = 30;               // seconds streams may finish after SIGTERM
    QString stateFile;                      // empty = <log_dir>/daemon-state.json
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

// new: the head node -> compute node hop (OpenSSH `ssh -N -L`).
struct SshConfig
{
    quint16 port = 22;
    QString identityFile;                   // empty = ssh's default keys
    QStringList options;                    // extra `-o` options
    QString user;                           // empty = current user
    QString program = QStringLiteral("ssh");
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

} // namespace slullama
