#pragma once

// Command-line handling shared by `slullama` (serve | connect | status | wake) and
// `slullama-daemon` (the flags of `serve`): one parser, so both accept the same options, before
// or after the subcommand.

#include "config.h"
#include "result.h"

#include <QStringList>
#include <QUrl>

#include <optional>

namespace slullama::cli {

enum class Program { Slullama, Daemon };
enum class Command { None, Serve, Connect, Status, Wake, Keys };

struct Invocation
{
    Program program = Program::Slullama;
    Command command = Command::None;  // Serve for the daemon
    QString configPath;               // --config
    ConfigOverrides overrides;
    bool verbose = false;             // -v / --verbose
    bool dryRun = false;              // serve --dry-run
    bool help = false;
    bool version = false;
    QString host;                     // connect: [user@]headnode; status/wake: HOST
    QStringList keysArgs;             // keys: ACTION [NAME] (add|revoke|list)
    bool admin = false;               // keys add --admin
    double keepAwakeMinutes = 0;      // wake --keep-awake MINUTES (0: a plain wake)
};

// `arguments` as QCoreApplication::arguments() gives them (program name first). An error is a
// usage error: print it with usageHint() and exit 2.
Result<Invocation> parseArguments(const QStringList &arguments, Program program);

QString commandName(Command command);
QString helpText(Program program, Command command);
QString usageHint(Program program, Command command);  // "see `slullama status --help`"

// loadConfig with the invocation's --config, flags and host.
Result<Config> loadInvocationConfig(const Invocation &invocation,
                                    const QProcessEnvironment &env =
                                        QProcessEnvironment::systemEnvironment());

// What `serve` does before the daemon starts: --dry-run prints the effective configuration (to
// stderr) and the rendered job script (to stdout) and gives the exit code (0, or 1 on a template
// error); otherwise the job template is rendered once so that a bad template stops the start
// (exit code 2). Returns nothing when the daemon should start.
std::optional<int> prepareServe(const Invocation &invocation, const Config &config);

// The daemon `slullama status|wake [HOST]` talks to: with no HOST the one on this machine
// (http://127.0.0.1:server.port, server.token), else http://HOST:client.server_port with
// client.token ("user@" in HOST is dropped). A token is only taken from the other section when
// the preferred one is empty. With HOST the CLI does not use the URL: it reaches
// 127.0.0.1:client.server_port on HOST through an SSH tunnel (runRemoteApiCommand).
struct Endpoint
{
    QUrl url;
    QString token;
};
Endpoint apiEndpoint(const Config &config, const QString &host);

} // namespace slullama::cli
