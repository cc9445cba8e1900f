#include "config.h"

#include <QFile>
#include <QTemporaryDir>
#include <QTest>

#include <functional>

using namespace slullama;

namespace {

// Every key as text, so data tables can name a key and the value they expect.
#define FIELD(key, expr) {QStringLiteral(key), [](const Config &c) { return expr; }}
QString fieldValue(const Config &c, const QString &key)
{
    static const QHash<QString, std::function<QString(const Config &)>> fields = {
        FIELD("server.port", QString::number(c.server.port)),
        FIELD("server.token", c.server.token),
        FIELD("server.log_dir", c.server.logDir),
        FIELD("server.job_template", c.server.jobTemplate),
        FIELD("server.bind", c.server.bind),
        FIELD("server.boot_timeout", QString::number(c.server.bootTimeout)),
        FIELD("server.max_body_bytes", QString::number(c.server.maxBodyBytes)),
        FIELD("server.max_connections", QString::number(c.server.maxConnections)),
        FIELD("server.header_timeout", QString::number(c.server.headerTimeout)),
        FIELD("server.keepalive_timeout", QString::number(c.server.keepAliveTimeout)),
        FIELD("server.stall_timeout", QString::number(c.server.stallTimeout)),
        FIELD("server.drain_timeout", QString::number(c.server.drainTimeout)),
        FIELD("server.state_file", c.server.stateFile),
        FIELD("slurm.partition", c.slurm.partition),
        FIELD("slurm.gres", c.slurm.gres),
        FIELD("slurm.mem", c.slurm.mem),
        FIELD("slurm.time", c.slurm.time),
        FIELD("slurm.idle_timeout", QString::number(c.slurm.idleTimeoutMinutes)),
        FIELD("slurm.keep_alive", keepAliveName(c.slurm.keepAlive)),
        FIELD("slurm.extra_args", c.slurm.extraArgs.join(u'|')),
        FIELD("slurm.job_name", c.slurm.jobName),
        FIELD("slurm.command_timeout", QString::number(c.slurm.commandTimeout)),
        FIELD("slurm.poll_interval", QString::number(c.slurm.pollInterval)),
        FIELD("ollama.port", QString::number(c.ollama.port)),
        FIELD("ollama.binary", c.ollama.binary),
        FIELD("ollama.models_dir", c.ollama.modelsDir),
        FIELD("ollama.copy_binary", QString::number(c.ollama.copyBinary)),
        FIELD("ollama.copy_source", c.ollama.copySource),
        FIELD("ollama.cleanup_binary", QString::number(c.ollama.cleanupBinary)),
        FIELD("ollama.pre_pull", c.ollama.prePull.join(u'|')),
        FIELD("ssh.port", QString::number(c.ssh.port)),
        FIELD("ssh.identity_file", c.ssh.identityFile),
        FIELD("ssh.options", c.ssh.options.join(u'|')),
        FIELD("ssh.user", c.ssh.user),
        FIELD("ssh.program", c.ssh.program),
        FIELD("client.host", c.client.host),
        FIELD("client.server_port", QString::number(c.client.serverPort)),
        FIELD("client.token", c.client.token),
        FIELD("client.local_port", QString::number(c.client.localPort)),
        FIELD("client.ssh_port", QString::number(c.client.sshPort)),
        FIELD("client.identity_file", c.client.identityFile),
        FIELD("client.known_hosts", c.client.knownHosts),
        FIELD("client.inject_token", QString::number(c.client.injectToken)),
    };
    const auto it = fields.constFind(key);
    if (it == fields.constEnd())
        qFatal("test asks for an unknown key %s", qPrintable(key));
#undef FIELD
    return (*it)(c);
}

QString dataFile(const char *name)
{
    return QStringLiteral(SLULLAMA_TEST_DATA "/config/") + QLatin1String(name);
}

// An environment with a private HOME and nothing else, so the user's real config never leaks in.
QProcessEnvironment cleanEnv(const QString &home)
{
    QProcessEnvironment env;
    env.insert(QStringLiteral("HOME"), home);
    return env;
}

} // namespace

class TestConfig final : public QObject
{
    Q_OBJECT

private:
    QString writeFile(const QString &name, const QByteArray &content)
    {
        const QString path = m_dir->filePath(name);
        QFile file(path);
        if (!file.open(QIODevice::WriteOnly))
            qFatal("cannot write %s", qPrintable(path));
        file.write(content);
        return path;
    }

    std::unique_ptr<QTemporaryDir> m_dir;

private slots:
    void init()
    {
        m_dir = std::make_unique<QTemporaryDir>();
        QVERIFY(m_dir->isValid());
    }

    void defaults_data()
    {
        QTest::addColumn<QString>("key");
        QTest::addColumn<QString>("expected");
        const auto row = [](const char *key, const char *value) {
            QTest::newRow(key) << QString::fromLatin1(key) << QString::fromLatin1(value);
        };
        // slullama 0.1.3's defaults
        row("server.port", "11435");
        row("server.token", "");
        row("server.log_dir", "/tmp/slullama");
        row("server.job_template", "");
        row("slurm.partition", "gpu");
        row("slurm.gres", "gpu:1");
        row("slurm.mem", "");
        row("slurm.time", "4:00:00");
        row("slurm.idle_timeout", "30");
        row("slurm.keep_alive", "extend");
        row("slurm.extra_args", "");
        row("ollama.port", "11434");
        row("ollama.binary", "ollama");
        row("ollama.models_dir", "");
        row("ollama.copy_binary", "0");
        row("ollama.copy_source", "");
        row("ollama.cleanup_binary", "0");
        row("ollama.pre_pull", "");
        row("client.host", "");
        row("client.server_port", "11435");
        row("client.token", "");
        row("client.local_port", "11434");
        // new keys
        row("server.bind", "0.0.0.0");
        row("server.boot_timeout", "900");
        row("slurm.job_name", "slullama");
        row("ssh.port", "22");
        row("ssh.program", "ssh");
        row("client.ssh_port", "0");
        row("client.inject_token", "1");
    }

    void defaults()
    {
        QFETCH(QString, key);
        QFETCH(QString, expected);
        // No file at the default path: defaults, not an error (0.1.3 crashed here).
        const auto config = loadConfig({}, cleanEnv(m_dir->path()));
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(fieldValue(*config, key), expected);
        QVERIFY(config->sourcePath.isEmpty());
        QVERIFY(config->warnings.isEmpty());
    }

    void seedFileLoadsUnchanged_data()
    {
        QTest::addColumn<QString>("key");
        QTest::addColumn<QString>("expected");
        const auto row = [](const char *key, const char *value) {
            QTest::newRow(key) << QString::fromLatin1(key) << QString::fromUtf8(value);
        };
        row("server.port", "11435");
        row("server.token", "your-shared-secret");
        row("slurm.mem", "64G");
        row("slurm.time", "4:00:00");
        row("slurm.idle_timeout", "30");
        row("slurm.keep_alive", "extend");
        row("slurm.extra_args", "--exclusive|--constraint=a100");
        row("ollama.models_dir", "/shared/models");
        row("ollama.pre_pull", "qwen3.5:9b|llama3.2:3b");
        row("ollama.copy_binary", "1");
        row("ollama.copy_source", "/shared/bin/ollama");
        row("ollama.cleanup_binary", "1");
        row("client.host", "youruser@headnode");
        row("client.token", "your-shared-secret");
        row("client.local_port", "11434");
    }

    void seedFileLoadsUnchanged()
    {
        QFETCH(QString, key);
        QFETCH(QString, expected);
        const QString path = dataFile("seed-0.1.3.toml");
        const auto config = loadConfig(path, cleanEnv(m_dir->path()));
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(fieldValue(*config, key), expected);
        QCOMPARE(config->sourcePath, path);
        QVERIFY2(config->warnings.isEmpty(), qPrintable(config->warnings.join(u'\n')));
    }

    void allKeys_data()
    {
        QTest::addColumn<QString>("key");
        QTest::addColumn<QString>("expected");
        const auto row = [](const char *key, const char *value) {
            QTest::newRow(key) << QString::fromLatin1(key) << QString::fromUtf8(value);
        };
        row("server.port", "18080");
        row("server.log_dir", "/var/tmp/slullama logs");
        row("server.bind", "127.0.0.1");
        row("server.boot_timeout", "120.5");
        row("server.max_body_bytes", "1048576");
        row("server.max_connections", "64");
        row("server.header_timeout", "5");
        row("server.keepalive_timeout", "12.5");
        row("server.stall_timeout", "45");
        row("server.drain_timeout", "0");
        row("server.state_file", "/var/tmp/slullama/state.json");
        row("slurm.partition", "cpu");
        row("slurm.gres", "");
        row("slurm.time", "1-00:00:00");
        row("slurm.idle_timeout", "0.25");
        row("slurm.keep_alive", "cancel");
        row("slurm.job_name", "team-llm");
        row("slurm.command_timeout", "7");
        row("slurm.poll_interval", "0.2");
        row("ollama.port", "0");
        row("ollama.binary", "/opt/ollama dir/bin/ollama");
        row("ssh.port", "2222");
        row("ssh.identity_file", "/home/u/.ssh/id_node");
        row("ssh.options", "StrictHostKeyChecking=accept-new|ConnectTimeout=5");
        row("ssh.user", "svc");
        row("ssh.program", "/usr/bin/ssh");
        row("client.server_port", "18081");
        row("client.token", "laptop-token");
        row("client.local_port", "11500");
        row("client.ssh_port", "2022");
        row("client.identity_file", "/home/me/.ssh/id_ed25519");
        row("client.known_hosts", "/home/me/.ssh/known_hosts2");
        row("client.inject_token", "0");
    }

    void allKeys()
    {
        QFETCH(QString, key);
        QFETCH(QString, expected);
        const auto config = loadConfig(dataFile("all-keys.toml"), cleanEnv(m_dir->path()));
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(fieldValue(*config, key), expected);
        QVERIFY2(config->warnings.isEmpty(), qPrintable(config->warnings.join(u'\n')));
    }

    void environment_data()
    {
        QTest::addColumn<QString>("variable");
        QTest::addColumn<QString>("value");
        QTest::addColumn<QString>("key");
        const auto row = [](const char *name, const char *var, const char *value, const char *key) {
            QTest::newRow(name) << QString::fromLatin1(var) << QString::fromLatin1(value)
                                << QString::fromLatin1(key);
        };
        row("token->server", "SLULLAMA_TOKEN", "t0k", "server.token");
        row("token->client", "SLULLAMA_TOKEN", "t0k", "client.token");
        row("host", "SLULLAMA_HOST", "me@hn", "client.host");
        row("server port->server", "SLULLAMA_SERVER_PORT", "12000", "server.port");
        row("server port->client", "SLULLAMA_SERVER_PORT", "12000", "client.server_port");
        row("local port", "SLULLAMA_LOCAL_PORT", "12001", "client.local_port");
        row("partition", "SLULLAMA_PARTITION", "big", "slurm.partition");
        row("gres", "SLULLAMA_GRES", "gpu:a100:2", "slurm.gres");
        row("idle timeout int", "SLULLAMA_IDLE_TIMEOUT", "5", "slurm.idle_timeout");
        row("idle timeout float", "SLULLAMA_IDLE_TIMEOUT", "0.5", "slurm.idle_timeout");
        row("ollama binary", "SLULLAMA_OLLAMA_BINARY", "/opt/o/ollama", "ollama.binary");
        row("ollama port", "SLULLAMA_OLLAMA_PORT", "12002", "ollama.port");
    }

    void environment()
    {
        QFETCH(QString, variable);
        QFETCH(QString, value);
        QFETCH(QString, key);
        // The file sets something else; the environment wins over it.
        const QString path = writeFile(
            QStringLiteral("c.toml"),
            "[server]\nport = 1000\ntoken = \"file\"\n[slurm]\npartition = \"f\"\ngres = \"f\"\n"
            "idle_timeout = 1\n[ollama]\nbinary = \"f\"\nport = 1001\n[client]\nhost = \"f\"\n"
            "server_port = 1002\ntoken = \"file\"\nlocal_port = 1003\n");
        QProcessEnvironment env = cleanEnv(m_dir->path());
        env.insert(variable, value);
        const auto config = loadConfig(path, env);
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(fieldValue(*config, key), value);
    }

    void emptyEnvironmentVariableIsUnset()
    {
        QProcessEnvironment env = cleanEnv(m_dir->path());
        env.insert(QStringLiteral("SLULLAMA_SERVER_PORT"), QString());
        env.insert(QStringLiteral("SLULLAMA_TOKEN"), QString());
        const auto config = loadConfig({}, env);
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(config->server.port, quint16(11435));
        QVERIFY(config->server.token.isEmpty());
    }

    void environmentErrors_data()
    {
        QTest::addColumn<QString>("variable");
        QTest::addColumn<QString>("value");
        QTest::addColumn<QString>("expected");
        QTest::newRow("server port text") << QStringLiteral("SLULLAMA_SERVER_PORT")
                                          << QStringLiteral("abc") << QStringLiteral("1..65535");
        QTest::newRow("server port range") << QStringLiteral("SLULLAMA_SERVER_PORT")
                                           << QStringLiteral("65536") << QStringLiteral("65536");
        QTest::newRow("local port zero") << QStringLiteral("SLULLAMA_LOCAL_PORT")
                                         << QStringLiteral("0") << QStringLiteral("1..65535");
        QTest::newRow("ollama port range") << QStringLiteral("SLULLAMA_OLLAMA_PORT")
                                           << QStringLiteral("-1") << QStringLiteral("0..65535");
        QTest::newRow("idle timeout text") << QStringLiteral("SLULLAMA_IDLE_TIMEOUT")
                                           << QStringLiteral("soon") << QStringLiteral("minutes");
        QTest::newRow("idle timeout negative") << QStringLiteral("SLULLAMA_IDLE_TIMEOUT")
                                               << QStringLiteral("-2") << QStringLiteral(">= 0");
        QTest::newRow("partition newline") << QStringLiteral("SLULLAMA_PARTITION")
                                           << QStringLiteral("gpu\n#SBATCH --x")
                                           << QStringLiteral("single line");
    }

    void environmentErrors()
    {
        QFETCH(QString, variable);
        QFETCH(QString, value);
        QFETCH(QString, expected);
        QProcessEnvironment env = cleanEnv(m_dir->path());
        env.insert(variable, value);
        const auto config = loadConfig({}, env);
        QVERIFY(!config.hasValue());
        QVERIFY2(config.error().contains(variable), qPrintable(config.error()));
        QVERIFY2(config.error().contains(expected), qPrintable(config.error()));
    }

    void precedence_data()
    {
        QTest::addColumn<bool>("withEnv");
        QTest::addColumn<bool>("withFlag");
        QTest::addColumn<QString>("expectedPartition");
        QTest::addColumn<QString>("expectedPort");
        QTest::newRow("file only") << false << false << QStringLiteral("file")
                                   << QStringLiteral("2001");
        QTest::newRow("env over file") << true << false << QStringLiteral("env")
                                       << QStringLiteral("2002");
        QTest::newRow("flag over env") << true << true << QStringLiteral("flag")
                                       << QStringLiteral("2003");
        QTest::newRow("flag over file") << false << true << QStringLiteral("flag")
                                        << QStringLiteral("2003");
    }

    void precedence()
    {
        QFETCH(bool, withEnv);
        QFETCH(bool, withFlag);
        QFETCH(QString, expectedPartition);
        QFETCH(QString, expectedPort);
        const QString path = writeFile(QStringLiteral("p.toml"),
                                       "[server]\nport = 2001\n[slurm]\npartition = \"file\"\n");
        QProcessEnvironment env = cleanEnv(m_dir->path());
        if (withEnv) {
            env.insert(QStringLiteral("SLULLAMA_PARTITION"), QStringLiteral("env"));
            env.insert(QStringLiteral("SLULLAMA_SERVER_PORT"), QStringLiteral("2002"));
        }
        ConfigOverrides overrides;
        if (withFlag) {
            overrides.partition = QStringLiteral("flag");
            overrides.port = 2003;
        }
        const auto config = loadConfig(path, env, overrides);
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(config->slurm.partition, expectedPartition);
        QCOMPARE(QString::number(config->server.port), expectedPort);
        // The file set only server.port; the variable and the flag set both ports.
        if (withEnv || withFlag)
            QCOMPARE(QString::number(config->client.serverPort), expectedPort);
        else
            QCOMPARE(config->client.serverPort, quint16(11435));
    }

    void overridesSetEverything()
    {
        ConfigOverrides o;
        o.port = 3000;
        o.token = QStringLiteral("flagtoken");
        o.partition = QStringLiteral("p");
        o.gres = QStringLiteral("g");
        o.idleTimeoutMinutes = 0.1;
        o.host = QStringLiteral("u@h");
        o.localPort = 3001;
        const auto config = loadConfig({}, cleanEnv(m_dir->path()), o);
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(config->server.port, quint16(3000));
        QCOMPARE(config->client.serverPort, quint16(3000));
        QCOMPARE(config->server.token, QStringLiteral("flagtoken"));
        QCOMPARE(config->client.token, QStringLiteral("flagtoken"));
        QCOMPARE(config->slurm.partition, QStringLiteral("p"));
        QCOMPARE(config->slurm.gres, QStringLiteral("g"));
        QCOMPARE(config->slurm.idleTimeoutMinutes, 0.1);
        QCOMPARE(config->client.host, QStringLiteral("u@h"));
        QCOMPARE(config->client.localPort, quint16(3001));
    }

    void path_data()
    {
        QTest::addColumn<bool>("flag");
        QTest::addColumn<bool>("envVar");
        QTest::addColumn<bool>("xdg");
        QTest::addColumn<QString>("expectedPartition");
        QTest::newRow("--config wins") << true << true << true << QStringLiteral("flag");
        QTest::newRow("SLULLAMA_CONFIG next") << false << true << true << QStringLiteral("env");
        QTest::newRow("XDG_CONFIG_HOME") << false << false << true << QStringLiteral("xdg");
        QTest::newRow("HOME/.config") << false << false << false << QStringLiteral("home");
    }

    void path()
    {
        QFETCH(bool, flag);
        QFETCH(bool, envVar);
        QFETCH(bool, xdg);
        QFETCH(QString, expectedPartition);
        QVERIFY(QDir(m_dir->path()).mkpath(QStringLiteral("xdg/slullama")));
        QVERIFY(QDir(m_dir->path()).mkpath(QStringLiteral("home/.config/slullama")));
        const QString flagPath = writeFile(QStringLiteral("flag.toml"),
                                           "[slurm]\npartition = \"flag\"\n");
        const QString envPath = writeFile(QStringLiteral("env.toml"),
                                          "[slurm]\npartition = \"env\"\n");
        writeFile(QStringLiteral("xdg/slullama/config.toml"), "[slurm]\npartition = \"xdg\"\n");
        writeFile(QStringLiteral("home/.config/slullama/config.toml"),
                  "[slurm]\npartition = \"home\"\n");
        QProcessEnvironment env = cleanEnv(m_dir->filePath(QStringLiteral("home")));
        if (envVar)
            env.insert(QStringLiteral("SLULLAMA_CONFIG"), envPath);
        if (xdg)
            env.insert(QStringLiteral("XDG_CONFIG_HOME"), m_dir->filePath(QStringLiteral("xdg")));
        const auto config = loadConfig(flag ? flagPath : QString(), env);
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(config->slurm.partition, expectedPartition);
    }

    void missingExplicitFileIsAnError_data()
    {
        QTest::addColumn<bool>("viaFlag");
        QTest::newRow("--config") << true;
        QTest::newRow("SLULLAMA_CONFIG") << false;
    }

    void missingExplicitFileIsAnError()
    {
        QFETCH(bool, viaFlag);
        const QString missing = m_dir->filePath(QStringLiteral("nope.toml"));
        QProcessEnvironment env = cleanEnv(m_dir->path());
        if (!viaFlag)
            env.insert(QStringLiteral("SLULLAMA_CONFIG"), missing);
        const auto config = loadConfig(viaFlag ? missing : QString(), env);
        QVERIFY(!config.hasValue());
        QVERIFY2(config.error().contains(missing), qPrintable(config.error()));
        QVERIFY2(config.error().contains(viaFlag ? QStringLiteral("--config")
                                                 : QStringLiteral("SLULLAMA_CONFIG")),
                 qPrintable(config.error()));
        QVERIFY2(config.error().contains(QStringLiteral("does not exist")),
                 qPrintable(config.error()));
    }

    void fileErrors_data()
    {
        QTest::addColumn<QByteArray>("toml");
        QTest::addColumn<QString>("key");
        QTest::addColumn<QString>("position");
        QTest::addColumn<QString>("expected");
        const auto row = [](const char *name, const char *toml, const char *key, const char *pos,
                            const char *expected) {
            QTest::newRow(name) << QByteArray(toml) << QString::fromLatin1(key)
                                << QString::fromLatin1(pos) << QString::fromUtf8(expected);
        };
        row("port wrong type", "[server]\nport = \"abc\"\n", "server.port", ":2:8",
            "expected a port number 1..65535, got the string \"abc\"");
        row("port out of range", "[server]\nport = 70000\n", "server.port", ":2:8",
            "got 70000");
        row("port zero", "[server]\nport = 0\n", "server.port", ":2:8", "1..65535");
        row("client port zero", "[client]\nlocal_port = 0\n", "client.local_port", ":2:14",
            "1..65535");
        row("ssh port", "[ssh]\nport = 99999\n", "ssh.port", ":2:8", "got 99999");
        row("inject_token wrong type", "[client]\ninject_token = \"no\"\n", "client.inject_token",
            ":2:16", "expected");
        row("ollama port negative", "[ollama]\nport = -5\n", "ollama.port", ":2:8",
            "0..65535");
        row("unknown keep_alive", "[slurm]\nkeep_alive = \"sometimes\"\n", "slurm.keep_alive",
            ":2:14", "expected \"extend\" or \"cancel\", got \"sometimes\"");
        row("unparsable time", "[slurm]\ntime = \"4 hours\"\n", "slurm.time", ":2:8",
            "expected a Slurm time limit");
        row("time wrong type", "[slurm]\ntime = 240\n", "slurm.time", ":2:8",
            "expected a string, got the integer 240");
        row("negative idle", "[slurm]\nidle_timeout = -1\n", "slurm.idle_timeout", ":2:16",
            "expected a number >= 0");
        row("idle as string", "[slurm]\nidle_timeout = \"30\"\n", "slurm.idle_timeout", ":2:16",
            "expected a number");
        row("boot timeout zero", "[server]\nboot_timeout = 0\n", "server.boot_timeout", ":2:16",
            "expected a number > 0");
        row("negative drain", "[server]\ndrain_timeout = -0.5\n", "server.drain_timeout",
            ":2:17", ">= 0");
        row("command timeout", "[slurm]\ncommand_timeout = -3\n", "slurm.command_timeout",
            ":2:19", "> 0");
        row("max connections", "[server]\nmax_connections = 0\n", "server.max_connections",
            ":2:19", "from 1");
        row("bool wrong type", "[ollama]\ncopy_binary = \"yes\"\n", "ollama.copy_binary", ":2:15",
            "expected true or false");
        row("array element", "[slurm]\nextra_args = [\"--exclusive\", 3]\n",
            "slurm.extra_args[1]", ":2:30", "expected a string");
        row("array wrong type", "[ollama]\npre_pull = \"qwen\"\n", "ollama.pre_pull", ":2:12",
            "expected an array of strings");
        row("newline into script", "[slurm]\npartition = \"gpu\\n#SBATCH --exclusive\"\n",
            "slurm.partition", ":2:13", "single line");
        row("bad bind", "[server]\nbind = \"everywhere\"\n", "server.bind", ":2:8",
            "expected an IP address");
        row("empty binary", "[ollama]\nbinary = \"\"\n", "ollama.binary", ":2:10",
            "non-empty");
        row("section not a table", "server = 5\n", "server", ":1:10", "expected a section");
        row("syntax error", "[slurm]\npartition = \"gpu\"\ntime = \n", "TOML syntax error",
            ":3:", "");
        row("duplicate key", "[slurm]\ngres = \"a\"\ngres = \"b\"\n", "TOML syntax error", ":3:",
            "");
    }

    void fileErrors()
    {
        QFETCH(QByteArray, toml);
        QFETCH(QString, key);
        QFETCH(QString, position);
        QFETCH(QString, expected);
        const QString path = writeFile(QStringLiteral("bad.toml"), toml);
        const auto config = loadConfig(path, cleanEnv(m_dir->path()));
        QVERIFY(!config.hasValue());
        const QString &error = config.error();
        QVERIFY2(error.startsWith(path + position), qPrintable(error));
        QVERIFY2(error.contains(key), qPrintable(error));
        QVERIFY2(error.contains(expected), qPrintable(error));
    }

    void unknownKeysWarn()
    {
        const QString path = writeFile(QStringLiteral("w.toml"),
                                       "top = 1\n[server]\nport = 1234\nprot = 1\n"
                                       "[future]\nthing = true\n");
        const auto config = loadConfig(path, cleanEnv(m_dir->path()));
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(config->server.port, quint16(1234));
        QCOMPARE(config->warnings.size(), 3);
        const QString top = config->warnings.filter(QStringLiteral(": top:")).value(0);
        QVERIFY2(top.startsWith(path + QStringLiteral(":1:1: top: unknown top-level key")),
                 qPrintable(config->warnings.join(u'\n')));
        const QString prot = config->warnings.filter(QStringLiteral("server.prot")).value(0);
        QVERIFY2(prot.startsWith(path + QStringLiteral(":4:1: server.prot: unknown key")),
                 qPrintable(config->warnings.join(u'\n')));
        QCOMPARE(config->warnings.filter(QStringLiteral("future: unknown section")).size(), 1);
    }

    void idleTimeoutIntOrFloat_data()
    {
        QTest::addColumn<QByteArray>("value");
        QTest::addColumn<double>("expected");
        QTest::newRow("int") << QByteArray("30") << 30.0;
        QTest::newRow("float") << QByteArray("0.25") << 0.25;
        QTest::newRow("zero") << QByteArray("0") << 0.0;
    }

    void idleTimeoutIntOrFloat()
    {
        QFETCH(QByteArray, value);
        QFETCH(double, expected);
        const auto config = parseConfig("[slurm]\nidle_timeout = " + value + '\n',
                                        QStringLiteral("x.toml"));
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        QCOMPARE(config->slurm.idleTimeoutMinutes, expected);
    }

    void slurmTime_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<qint64>("seconds");  // -2: not a Slurm time
        QTest::newRow("MM") << QStringLiteral("90") << qint64(90 * 60);
        QTest::newRow("MM:SS") << QStringLiteral("5:30") << qint64(330);
        QTest::newRow("HH:MM:SS") << QStringLiteral("4:00:00") << qint64(4 * 3600);
        QTest::newRow("D-HH") << QStringLiteral("2-12") << qint64(2 * 86400 + 12 * 3600);
        QTest::newRow("D-HH:MM") << QStringLiteral("1-02:30") << qint64(86400 + 2 * 3600 + 1800);
        QTest::newRow("D-HH:MM:SS") << QStringLiteral("1-00:00:10") << qint64(86410);
        QTest::newRow("UNLIMITED") << QStringLiteral("UNLIMITED") << kSlurmTimeUnlimited;
        QTest::newRow("infinite") << QStringLiteral("infinite") << kSlurmTimeUnlimited;
        QTest::newRow("words") << QStringLiteral("4 hours") << qint64(-2);
        QTest::newRow("empty") << QString() << qint64(-2);
        QTest::newRow("too many colons") << QStringLiteral("1:2:3:4") << qint64(-2);
        QTest::newRow("day only dash") << QStringLiteral("1-") << qint64(-2);
        QTest::newRow("negative") << QStringLiteral("-5") << qint64(-2);
    }

    void slurmTime()
    {
        QFETCH(QString, text);
        QFETCH(qint64, seconds);
        const auto parsed = parseSlurmTime(text);
        if (seconds == -2) {
            QVERIFY(!parsed.has_value());
        } else {
            QVERIFY(parsed.has_value());
            QCOMPARE(*parsed, seconds);
        }
    }

    void formatSlurmTime_data()
    {
        QTest::addColumn<qint64>("seconds");
        QTest::addColumn<QString>("expected");
        QTest::newRow("4h") << qint64(4 * 3600) << QStringLiteral("04:00:00");
        QTest::newRow("round up") << qint64(61) << QStringLiteral("00:02:00");
        QTest::newRow("days") << qint64(86400 + 3600 + 60) << QStringLiteral("1-01:01:00");
        QTest::newRow("unlimited") << kSlurmTimeUnlimited << QStringLiteral("UNLIMITED");
    }

    void formatSlurmTime()
    {
        QFETCH(qint64, seconds);
        QFETCH(QString, expected);
        QCOMPARE(slullama::formatSlurmTime(seconds), expected);
        if (seconds >= 0)
            QCOMPARE(*parseSlurmTime(expected), (seconds + 59) / 60 * 60);
    }

    void describeMasksTokens()
    {
        const auto config = loadConfig(dataFile("seed-0.1.3.toml"), cleanEnv(m_dir->path()));
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        const QString text = describeConfig(*config);
        QVERIFY(!text.contains(QStringLiteral("your-shared-secret")));
        QCOMPARE(text.count(QStringLiteral("token = \"***\"")), 2);

        const auto defaults = loadConfig({}, cleanEnv(m_dir->path()));
        QCOMPARE(describeConfig(*defaults).count(QStringLiteral("token = \"\"")), 2);
    }

    void describeRoundTrips_data()
    {
        QTest::addColumn<QString>("file");
        QTest::newRow("seed") << dataFile("seed-0.1.3.toml");
        QTest::newRow("all keys") << dataFile("all-keys.toml");
    }

    void describeRoundTrips()
    {
        QFETCH(QString, file);
        const auto config = loadConfig(file, cleanEnv(m_dir->path()));
        QVERIFY2(config.hasValue(), qPrintable(config.error()));
        const QString text = describeConfig(*config);
        const auto again = parseConfig(text.toUtf8(), QStringLiteral("described.toml"));
        QVERIFY2(again.hasValue(), qPrintable(again.error() + u'\n' + text));
        QVERIFY2(again->warnings.isEmpty(), qPrintable(again->warnings.join(u'\n')));
        const auto body = [](const QString &t) { return t.section(u'\n', 1); };
        QCOMPARE(body(describeConfig(*again)), body(text));
    }
};

QTEST_GUILESS_MAIN(TestConfig)
#include "tst_config.moc"
