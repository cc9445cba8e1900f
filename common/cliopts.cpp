#include "cliopts.h"

#include "jobtemplate.h"

#include <QCommandLineParser>
#include <QSet>
#include <QTextStream>

namespace slullama::cli {

namespace {

struct OptionSpec
{
    QStringList names;
    QString valueName;  // empty = a switch
    QString help;
};

// The union of every subcommand's options: QCommandLineParser then accepts them anywhere, and
// allowedOptions() decides which belong to the command.
const QList<OptionSpec> &optionSpecs()
{
    static const QList<OptionSpec> specs = {
        {{QStringLiteral("port")}, QStringLiteral("N"),
         QStringLiteral("serve: port to listen on (server.port); connect/status/wake: the "
                        "daemon's port on the head node (client.server_port)")},
        {{QStringLiteral("token")}, QStringLiteral("T"),
         QStringLiteral("bearer token (server.token and client.token); prefer SLULLAMA_TOKEN, "
                        "command lines are visible to other users")},
        {{QStringLiteral("partition")}, QStringLiteral("P"),
         QStringLiteral("Slurm partition (slurm.partition)")},
        {{QStringLiteral("gres")}, QStringLiteral("G"),
         QStringLiteral("Slurm generic resources (slurm.gres)")},
        {{QStringLiteral("idle-timeout")}, QStringLiteral("M"),
         QStringLiteral("minutes of inactivity before the job is cancelled (slurm.idle_timeout)")},
        {{QStringLiteral("local-port")}, QStringLiteral("N"),
         QStringLiteral("local port of the tunnel (client.local_port)")},
        {{QStringLiteral("config")}, QStringLiteral("PATH"),
         QStringLiteral("config file (default: $SLULLAMA_CONFIG, else "
                        "$XDG_CONFIG_HOME/slullama/config.toml)")},
        {{QStringLiteral("keep-awake")}, QStringLiteral("MINUTES"),
         QStringLiteral("wake: keep the node up at least this long (1 to 1440 minutes)")},
        {{QStringLiteral("admin")}, {},
         QStringLiteral("keys add: the key may see every user's usage in the status")},
        {{QStringLiteral("dry-run")}, {},
         QStringLiteral("print the effective configuration and the rendered job script, then "
                        "exit")},
        {{QStringLiteral("v"), QStringLiteral("verbose")}, {},
         QStringLiteral("debug logging")},
        {{QStringLiteral("h"), QStringLiteral("help")}, {}, QStringLiteral("show this help")},
        {{QStringLiteral("version")}, {}, QStringLiteral("show the version")},
    };
    return specs;
}

QStringList allowedOptions(Program program, Command command)
{
    const QStringList common = {QStringLiteral("help"), QStringLiteral("version"),
                                QStringLiteral("verbose")};
    const QStringList serve = {QStringLiteral("port"),         QStringLiteral("token"),
                               QStringLiteral("partition"),    QStringLiteral("gres"),
                               QStringLiteral("idle-timeout"), QStringLiteral("config"),
                               QStringLiteral("dry-run")};
    if (program == Program::Daemon)
        return common + serve;
    switch (command) {
    case Command::None:
        return common;
    case Command::Serve:
        return common + serve;
    case Command::Connect:
        return common
               + QStringList{QStringLiteral("port"), QStringLiteral("token"),
                             QStringLiteral("local-port"), QStringLiteral("config")};
    case Command::Status:
        return common
               + QStringList{QStringLiteral("port"), QStringLiteral("token"),
                             QStringLiteral("config")};
    case Command::Wake:
        return common
               + QStringList{QStringLiteral("port"), QStringLiteral("token"),
                             QStringLiteral("config"), QStringLiteral("keep-awake")};
    case Command::Keys:
        return common + QStringList{QStringLiteral("config"), QStringLiteral("admin")};
    }
    return common;
}

QString canonicalName(const QString &name)
{
    for (const OptionSpec &spec : optionSpecs()) {
        if (spec.names.contains(name))
            return spec.names.constLast();
    }
    return name;
}

QString spelled(const QString &canonical)
{
    return (canonical.size() == 1 ? QStringLiteral("-") : QStringLiteral("--")) + canonical;
}

QString programName(Program program)
{
    return program == Program::Daemon ? QStringLiteral("slullama-daemon")
                                      : QStringLiteral("slullama");
}

std::optional<Command> commandFromName(const QString &name)
{
    for (Command c :
         {Command::Serve, Command::Connect, Command::Status, Command::Wake, Command::Keys}) {
        if (commandName(c) == name)
            return c;
    }
    return std::nullopt;
}

QString optionsHelp(Program program, Command command)
{
    const QStringList allowed = allowedOptions(program, command);
    QString out;
    for (const OptionSpec &spec : optionSpecs()) {
        if (!allowed.contains(spec.names.constLast()))
            continue;
        QStringList forms;
        for (const QString &name : spec.names)
            forms << spelled(name);
        QString left = forms.join(QStringLiteral(", "));
        if (!spec.valueName.isEmpty())
            left += u' ' + spec.valueName;
        out += QStringLiteral("  ") + left.leftJustified(22) + u' ' + spec.help + u'\n';
    }
    return out;
}

} // namespace

QString commandName(Command command)
{
    switch (command) {
    case Command::Serve:
        return QStringLiteral("serve");
    case Command::Connect:
        return QStringLiteral("connect");
    case Command::Status:
        return QStringLiteral("status");
    case Command::Wake:
        return QStringLiteral("wake");
    case Command::Keys:
        return QStringLiteral("keys");
    case Command::None:
        break;
    }
    return {};
}

QString usageHint(Program program, Command command)
{
    QString help = programName(program);
    if (program == Program::Slullama && command != Command::None)
        help += u' ' + commandName(command);
    return QStringLiteral("see `") + help + QStringLiteral(" --help`");
}

QString helpText(Program program, Command command)
{
    const QString environment = QStringLiteral(
        "\nEnvironment: SLULLAMA_CONFIG, SLULLAMA_TOKEN, SLULLAMA_HOST, SLULLAMA_SERVER_PORT,\n"
        "SLULLAMA_LOCAL_PORT, SLULLAMA_PARTITION, SLULLAMA_GRES, SLULLAMA_IDLE_TIMEOUT,\n"
        "SLULLAMA_OLLAMA_BINARY, SLULLAMA_OLLAMA_PORT. Precedence: defaults < config file <\n"
        "environment < options.\n");
    if (program == Program::Daemon || command == Command::Serve) {
        const QString name = program == Program::Daemon ? QStringLiteral("slullama-daemon")
                                                        : QStringLiteral("slullama serve");
        return QStringLiteral("Usage: ") + name
               + QStringLiteral(" [--port N] [--token T] [--partition P] [--gres G]\n"
                                "       [--idle-timeout M] [--config PATH] [-v] [--dry-run]\n\n"
                                "Run the head-node daemon: an Ollama-compatible endpoint that "
                                "starts a GPU job\nthrough Slurm on the first request and cancels "
                                "it when idle.\n\nOptions:\n")
               + optionsHelp(program, Command::Serve) + environment;
    }
    switch (command) {
    case Command::Connect:
        return QStringLiteral("Usage: slullama connect [user@headnode] [--port N] [--token T] "
                              "[--local-port N]\n        [--config PATH] [-v]\n\n"
                              "Open the tunnel localhost:local_port -> headnode:server_port in "
                              "the foreground;\nCtrl+C closes it. Without user@headnode, "
                              "[client] host is used. Once open, the token\n(--token, "
                              "SLULLAMA_TOKEN or [client] token) is checked with one status "
                              "request.\n\nOptions:\n")
               + optionsHelp(program, command) + environment;
    case Command::Status:
    case Command::Wake: {
        const bool status = command == Command::Status;
        return QStringLiteral("Usage: slullama ") + commandName(command)
               + QStringLiteral(" [HOST] [--port N] [--token T] [--config PATH]\n\n")
               + (status ? QStringLiteral("Print the daemon's status JSON (it does not wake the "
                                          "node).\n")
                         : QStringLiteral("Ask the daemon to start its GPU job now and print "
                                          "its status JSON.\n"))
               + QStringLiteral("Without HOST: the daemon on this machine "
                                "(127.0.0.1:server.port, server.token).\nWith HOST "
                                "([user@]headnode, from a laptop): through an SSH tunnel to HOST,\n"
                                "as `slullama connect` opens one ([client] settings), to "
                                "127.0.0.1:server_port there,\nwith the [client] token. "
                                "Exit status 1 when the daemon cannot be reached.\n\nOptions:\n")
               + optionsHelp(program, command) + environment;
    }
    case Command::Keys:
        return QStringLiteral(
                   "Usage: slullama keys add NAME [--admin] [--config PATH]\n"
                   "       slullama keys revoke NAME [--config PATH]\n"
                   "       slullama keys list [--config PATH]\n\n"
                   "Manage per-user API keys in the keys file ([server] keys_file, default "
                   "keys.toml\nnext to the config file). `add` prints the new key once; only its "
                   "SHA-256 is\nstored. A running daemon picks up changes within seconds; a "
                   "revoked key gets 401.\n\nOptions:\n")
               + optionsHelp(program, command) + environment;
    case Command::None:
    case Command::Serve:
        break;
    }
    return QStringLiteral(
               "Usage: slullama <command> [options]\n\n"
               "Shared Ollama gateway over Slurm: a GPU node that wakes on demand.\n\n"
               "Commands:\n"
               "  serve     run the head-node daemon (same as slullama-daemon)\n"
               "  connect   open the laptop -> head node tunnel in the foreground\n"
               "  status    print the daemon's status JSON\n"
               "  wake      start the GPU job now\n"
               "  keys      add, revoke or list per-user API keys\n\n"
               "Options may come before or after the command; `slullama <command> --help` lists "
               "a\ncommand's options.\n\nOptions:\n")
           + optionsHelp(program, Command::None);
}

Result<Invocation> parseArguments(const QStringList &arguments, Program program)
{
    QCommandLineParser parser;
    parser.setSingleDashWordOptionMode(QCommandLineParser::ParseAsLongOptions);
    for (const OptionSpec &spec : optionSpecs()) {
        if (spec.valueName.isEmpty())
            parser.addOption(QCommandLineOption(spec.names, spec.help));
        else
            parser.addOption(QCommandLineOption(spec.names, spec.help, spec.valueName));
    }

    Invocation inv;
    inv.program = program;
    if (program == Program::Daemon)
        inv.command = Command::Serve;

    if (!parser.parse(arguments)) {
        // Still find the command, so the hint names the right help.
        for (const QString &arg : arguments.mid(1)) {
            if (const auto c = commandFromName(arg); c && program == Program::Slullama) {
                inv.command = *c;
                break;
            }
        }
        QString error = parser.errorText();
        if (error.endsWith(u'.'))
            error.chop(1);
        return makeError(error + QStringLiteral(" (") + usageHint(program, inv.command)
                         + u')');
    }

    QStringList positional = parser.positionalArguments();
    if (program == Program::Slullama && !positional.isEmpty()) {
        const auto c = commandFromName(positional.constFirst());
        if (!c)
            return makeError(QStringLiteral("unknown command \"") + positional.constFirst()
                             + QStringLiteral("\": expected serve, connect, status, wake or keys (")
                             + usageHint(program, Command::None) + u')');
        inv.command = *c;
        positional.removeFirst();
    }

    const QStringList allowed = allowedOptions(program, inv.command);
    for (const QString &name : parser.optionNames()) {
        const QString canonical = canonicalName(name);
        if (!allowed.contains(canonical)) {
            const QString what = inv.command == Command::None || program == Program::Daemon
                                     ? QStringLiteral("needs a command")
                                     : QStringLiteral("is not an option of `slullama ")
                                           + commandName(inv.command) + u'`';
            return makeError(spelled(name) + u' ' + what + QStringLiteral(" (")
                             + usageHint(program, inv.command) + u')');
        }
    }

    const int maxPositional =
        inv.command == Command::Keys ? 2
        : (inv.command == Command::Connect || inv.command == Command::Status
           || inv.command == Command::Wake)
            ? 1
            : 0;
    if (positional.size() > maxPositional)
        return makeError(QStringLiteral("unexpected argument \"") + positional.at(maxPositional)
                         + QStringLiteral("\" (") + usageHint(program, inv.command) + u')');
    if (inv.command == Command::Keys && !parser.isSet(QStringLiteral("help"))) {
        const QString action = positional.value(0);
        const bool needsName = action == u"add" || action == u"revoke";
        if (!needsName && action != u"list")
            return makeError(QStringLiteral("keys: expected add, revoke or list (")
                             + usageHint(program, inv.command) + u')');
        if (needsName != (positional.size() == 2))
            return makeError(QStringLiteral("keys ") + action
                             + (needsName ? QStringLiteral(" needs a NAME (")
                                          : QStringLiteral(" takes no NAME ("))
                             + usageHint(program, inv.command) + u')');
        inv.keysArgs = positional;
        inv.admin = parser.isSet(QStringLiteral("admin"));
        if (inv.admin && action != u"add")
            return makeError(QStringLiteral("--admin only goes with `keys add` (")
                             + usageHint(program, inv.command) + u')');
    } else if (!positional.isEmpty()) {
        inv.host = positional.constFirst();
    }

    inv.help = parser.isSet(QStringLiteral("help"));
    inv.version = parser.isSet(QStringLiteral("version"));
    inv.verbose = parser.isSet(QStringLiteral("verbose"));
    inv.dryRun = parser.isSet(QStringLiteral("dry-run"));
    if (parser.isSet(QStringLiteral("config"))) {
        inv.configPath = parser.value(QStringLiteral("config"));
        if (inv.configPath.isEmpty())
            return makeError(QStringLiteral("--config needs a file path"));
    }

    ConfigOverrides &o = inv.overrides;
    if (parser.isSet(QStringLiteral("port"))) {
        const auto port = parsePort(parser.value(QStringLiteral("port")));
        if (!port)
            return makeError(QStringLiteral("--port: ") + port.error());
        o.port = *port;
    }
    if (parser.isSet(QStringLiteral("local-port"))) {
        const auto port = parsePort(parser.value(QStringLiteral("local-port")));
        if (!port)
            return makeError(QStringLiteral("--local-port: ") + port.error());
        o.localPort = *port;
    }
    if (parser.isSet(QStringLiteral("idle-timeout"))) {
        const auto minutes = parseMinutes(parser.value(QStringLiteral("idle-timeout")));
        if (!minutes)
            return makeError(QStringLiteral("--idle-timeout: ") + minutes.error());
        o.idleTimeoutMinutes = *minutes;
    }
    if (parser.isSet(QStringLiteral("keep-awake"))) {
        bool ok = false;
        const double minutes = parser.value(QStringLiteral("keep-awake")).toDouble(&ok);
        if (!ok || !(minutes > 0) || minutes > 24 * 60)
            return makeError(
                QStringLiteral("--keep-awake: expected minutes, more than 0 and at most 1440"));
        inv.keepAwakeMinutes = minutes;
    }
    if (parser.isSet(QStringLiteral("token")))
        o.token = parser.value(QStringLiteral("token"));
    if (parser.isSet(QStringLiteral("partition")))
        o.partition = parser.value(QStringLiteral("partition"));
    if (parser.isSet(QStringLiteral("gres")))
        o.gres = parser.value(QStringLiteral("gres"));
    // connect's destination is client.host; status/wake's HOST only picks the URL.
    if (inv.command == Command::Connect && !inv.host.isEmpty())
        o.host = inv.host;
    return inv;
}

Result<Config> loadInvocationConfig(const Invocation &invocation, const QProcessEnvironment &env)
{
    return loadConfig(invocation.configPath, env, invocation.overrides);
}

std::optional<int> prepareServe(const Invocation &invocation, const Config &config)
{
    const auto script = renderJobScript(config);
    if (invocation.dryRun) {
        QTextStream err(stderr);
        err << describeConfig(config);
        err.flush();
        if (!script) {
            err << "\n" << programName(invocation.program) << ": " << script.error() << "\n";
            return 1;
        }
        QTextStream out(stdout);
        out << *script;
        return 0;
    }
    if (!script) {
        QTextStream(stderr) << programName(invocation.program) << ": " << script.error()
                            << "\n";
        return 2;
    }
    return std::nullopt;
}

Endpoint apiEndpoint(const Config &config, const QString &host)
{
    Endpoint endpoint;
    QUrl url;
    url.setScheme(QStringLiteral("http"));
    if (host.isEmpty()) {
        url.setHost(QStringLiteral("127.0.0.1"));
        url.setPort(config.server.port);
        endpoint.token = config.server.token.isEmpty() ? config.client.token : config.server.token;
    } else {
        QString name = host.mid(host.lastIndexOf(u'@') + 1);
        if (name.startsWith(u'[') && name.endsWith(u']'))
            name = name.mid(1, name.size() - 2);
        url.setHost(name);
        url.setPort(config.client.serverPort);
        endpoint.token = config.client.token.isEmpty() ? config.server.token : config.client.token;
    }
    endpoint.url = url;
    return endpoint;
}

} // namespace slullama::cli
