#include "jobtemplate.h"

#include <QFile>
#include <QProcess>
#include <QTcpServer>
#include <QTemporaryDir>
#include <QTest>

using namespace slullama;

namespace {

QMap<QString, QString> smallVariables()
{
    return {{QStringLiteral("a"), QStringLiteral("A")},
            {QStringLiteral("a_b"), QStringLiteral("AB")},
            {QStringLiteral("port"), QStringLiteral("11434")}};
}

// Every option away from its default.
Config allOptionsConfig()
{
    Config c;
    c.server.logDir = QStringLiteral("/scratch/logs");
    c.slurm.partition = QStringLiteral("big");
    c.slurm.gres = QStringLiteral("gpu:a100:2");
    c.slurm.mem = QStringLiteral("64G");
    c.slurm.time = QStringLiteral("1-00:00:00");
    c.slurm.extraArgs = {QStringLiteral("--exclusive"), QStringLiteral("--account=team")};
    c.slurm.jobName = QStringLiteral("team-llm");
    c.ollama.port = 12345;
    c.ollama.binary = QStringLiteral("/opt/my tools/ollama");
    c.ollama.modelsDir = QStringLiteral("$SCRATCH/models");
    c.ollama.copyBinary = true;
    c.ollama.copySource = QStringLiteral("/shared/bin/ollama");
    c.ollama.cleanupBinary = true;
    c.ollama.prePull = {QStringLiteral("qwen3.5:9b"), QStringLiteral("odd name;rm -rf x")};
    return c;
}

bool bashSyntaxOk(const QString &script, QString *error)
{
    QProcess bash;
    bash.start(QStringLiteral("/bin/bash"), {QStringLiteral("-n")});
    if (!bash.waitForStarted())
        return false;
    bash.write(script.toUtf8());
    bash.closeWriteChannel();
    bash.waitForFinished();
    *error = QString::fromUtf8(bash.readAllStandardError());
    return bash.exitStatus() == QProcess::NormalExit && bash.exitCode() == 0;
}

} // namespace

class TestJobTemplate final : public QObject
{
    Q_OBJECT

private slots:
    void substitution_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<QString>("expected");
        const auto row = [](const char *name, const char *text, const char *expected) {
            QTest::newRow(name) << QString::fromUtf8(text) << QString::fromUtf8(expected);
        };
        row("braced", "x${a}y", "xAy");
        row("named", "x $a y", "x A y");
        row("named is greedy", "$a_b", "AB");
        row("named stops at non-identifier", "$a-b", "A-b");
        row("braced next to letters", "${a}bc", "Abc");
        row("dollar dollar", "cost $$5", "cost $5");
        row("escaped variable", "$$a", "$a");
        row("escaped braces", "$${a}", "${a}");
        row("escape then variable", "$$$a", "$A");
        row("bash pid", "pid=$$!", "pid=$!");
        row("no placeholders", "plain text\n", "plain text\n");
        row("empty", "", "");
        row("adjacent", "$a$a${a}", "AAA");
    }

    void substitution()
    {
        QFETCH(QString, text);
        QFETCH(QString, expected);
        const auto result = substituteTemplate(text, smallVariables(), QStringLiteral("t.sh"));
        QVERIFY2(result.hasValue(), qPrintable(result.error()));
        QCOMPARE(*result, expected);
    }

    void errors_data()
    {
        QTest::addColumn<QString>("text");
        QTest::addColumn<QString>("position");
        QTest::addColumn<QString>("expected");
        const auto row = [](const char *name, const char *text, const char *pos,
                            const char *expected) {
            QTest::newRow(name) << QString::fromUtf8(text) << QString::fromLatin1(pos)
                                << QString::fromUtf8(expected);
        };
        row("unknown braced", "line one\n  ${nope}\n", "t.sh:2:3: ",
            "unknown template variable nope");
        row("unknown named", "echo $HOME\n", "t.sh:1:6: ", "unknown template variable HOME");
        row("lone dollar at end", "price: $", "t.sh:1:8: ", "a lone $");
        row("dollar space", "a\nb\nc $ d", "t.sh:3:3: ", "a lone $");
        row("dollar digit", "$1", "t.sh:1:1: ", "a lone $");
        row("dollar paren", "x=$(date)", "t.sh:1:3: ", "a lone $");
        row("unclosed brace", "${a", "t.sh:1:1: ", "${ must be followed by a name and }");
        row("empty braces", "${}", "t.sh:1:1: ", "${ must be followed by a name and }");
        row("bash default", "${a:-x}", "t.sh:1:1: ", "${ must be followed by a name and }");
        row("digit in braces", "${1a}", "t.sh:1:1: ", "${ must be");
    }

    void errors()
    {
        QFETCH(QString, text);
        QFETCH(QString, position);
        QFETCH(QString, expected);
        const auto result = substituteTemplate(text, smallVariables(), QStringLiteral("t.sh"));
        QVERIFY(!result.hasValue());
        QVERIFY2(result.error().startsWith(position), qPrintable(result.error()));
        QVERIFY2(result.error().contains(expected), qPrintable(result.error()));
        QVERIFY2(result.error().contains(QStringLiteral("$$")), qPrintable(result.error()));
    }

    void variables_data()
    {
        QTest::addColumn<bool>("allOptions");
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("expected");
        const auto row = [](bool all, const char *name, const char *expected) {
            QTest::addRow("%s %s", all ? "all" : "default", name)
                << all << QString::fromLatin1(name) << QString::fromUtf8(expected);
        };
        row(false, "job_name", "slullama");
        row(false, "partition", "gpu");
        row(false, "gres", "gpu:1");
        row(false, "time", "4:00:00");
        row(false, "log_dir", "/tmp/slullama");
        row(false, "extra_sbatch", "");
        row(false, "copy_commands", "# no binary copy (ollama.copy_binary is off)");
        row(false, "ollama_port", "11434");
        row(false, "models_env", "# OLLAMA_MODELS not set: ollama's default models directory");
        row(false, "cleanup_commands", "# no binary cleanup (ollama.cleanup_binary is off)");
        row(false, "ollama_binary", "ollama");
        row(false, "pull_commands", "# no models to pre-pull (ollama.pre_pull is empty)");
        row(false, "partition_directive", "#SBATCH --partition=gpu");
        row(false, "gres_directive", "#SBATCH --gres=gpu:1");

        row(true, "job_name", "team-llm");
        row(true, "partition", "big");
        row(true, "gres", "gpu:a100:2");
        row(true, "time", "1-00:00:00");
        row(true, "log_dir", "/scratch/logs");
        row(true, "extra_sbatch", "#SBATCH --mem=64G\n#SBATCH --exclusive\n#SBATCH --account=team");
        row(true, "copy_commands",
            "# ollama.copy_binary: a copy of the binary for this job, named after its id\n"
            "SLULLAMA_OLLAMA_BIN=\"${TMPDIR:-/tmp}/slullama-ollama-${SLURM_JOB_ID}\"\n"
            "cp -- /shared/bin/ollama \"$SLULLAMA_OLLAMA_BIN\" || { echo \"slullama: cannot copy "
            "the ollama binary\" >&2; exit 1; }\n"
            "chmod u+x \"$SLULLAMA_OLLAMA_BIN\"");
        row(true, "ollama_port", "12345");
        row(true, "models_env", "export OLLAMA_MODELS=\"$SCRATCH/models\"");
        row(true, "cleanup_commands", "rm -f -- \"$SLULLAMA_OLLAMA_BIN\"");
        row(true, "ollama_binary", "\"$SLULLAMA_OLLAMA_BIN\"");
        row(true, "pull_commands",
            "\"$SLULLAMA_OLLAMA_BIN\" pull qwen3.5:9b || echo \"slullama: could not pull\" "
            "qwen3.5:9b >&2\n"
            "\"$SLULLAMA_OLLAMA_BIN\" pull \"odd name;rm -rf x\" || echo \"slullama: could not "
            "pull\" \"odd name;rm -rf x\" >&2");
        row(true, "partition_directive", "#SBATCH --partition=big");
        row(true, "gres_directive", "#SBATCH --gres=gpu:a100:2");
    }

    void variables()
    {
        QFETCH(bool, allOptions);
        QFETCH(QString, name);
        QFETCH(QString, expected);
        const Config config = allOptionsConfig();
        const auto rendered = renderJobTemplate(allOptions ? config : Config(),
                                                QStringLiteral("<${") + name
                                                    + QStringLiteral("}>"),
                                                QStringLiteral("t.sh"));
        QVERIFY2(rendered.hasValue(), qPrintable(rendered.error()));
        QCOMPARE(*rendered, u'<' + expected + u'>');
    }

    void seedVariablesAllKnown()
    {
        const auto vars = jobTemplateVariables(Config());
        for (const char *name :
             {"partition", "gres", "time", "log_dir", "extra_sbatch", "copy_commands",
              "ollama_port", "models_env", "cleanup_commands", "ollama_binary", "pull_commands",
              "job_name"})
            QVERIFY2(vars.contains(QLatin1String(name)), name);
    }

    void copyWithoutSourceUsesBinary()
    {
        Config c;
        c.ollama.copyBinary = true;
        const auto vars = jobTemplateVariables(c);
        QVERIFY2(vars.value(QStringLiteral("copy_commands"))
                     .contains(QStringLiteral("cp -- \"$(command -v ollama)\"")),
                 qPrintable(vars.value(QStringLiteral("copy_commands"))));
        // cleanup_binary off: the copy stays.
        QVERIFY(!vars.value(QStringLiteral("cleanup_commands")).contains(QStringLiteral("rm ")));
    }

    void emptyGresOmitsDirective()
    {
        Config c;
        c.slurm.gres.clear();
        const auto script = renderJobScript(c);
        QVERIFY2(script.hasValue(), qPrintable(script.error()));
        QVERIFY(!script->contains(QStringLiteral("#SBATCH --gres")));
        QVERIFY(script->contains(QStringLiteral("#SBATCH --partition=gpu\n")));
    }

    void shellWord_data()
    {
        QTest::addColumn<QString>("value");
        QTest::addColumn<QString>("expected");
        const auto row = [](const char *name, const char *value, const char *expected) {
            QTest::newRow(name) << QString::fromUtf8(value) << QString::fromUtf8(expected);
        };
        row("plain", "/usr/bin/ollama", "/usr/bin/ollama");
        row("model", "qwen3.5:9b", "qwen3.5:9b");
        row("empty", "", "\"\"");
        row("space", "/opt/my tools/ollama", "\"/opt/my tools/ollama\"");
        row("quotes and backslash", "a\"b\\c", "\"a\\\"b\\\\c\"");
        row("backquote", "a`id`", "\"a\\`id\\`\"");
        row("command substitution", "$(id)", "\"\\$(id)\"");
        row("variable kept", "$SCRATCH/m", "\"$SCRATCH/m\"");
        row("braced variable kept", "${SCRATCH}/m", "\"${SCRATCH}/m\"");
        row("trailing dollar", "a$", "\"a\\$\"");
        row("semicolon", "a;b", "\"a;b\"");
        row("tilde safe rest", "~/models", "~/models");
        row("tilde with space", "~/my models", "~/\"my models\"");
    }

    void shellWord()
    {
        QFETCH(QString, value);
        QFETCH(QString, expected);
        QCOMPARE(slullama::shellWord(value), expected);
    }

    // The word bash actually sees, for values without variables.
    void shellWordRoundTripsThroughBash_data()
    {
        QTest::addColumn<QString>("value");
        QTest::newRow("space") << QStringLiteral("a b");
        QTest::newRow("quotes") << QStringLiteral("it's \"x\"");
        QTest::newRow("injection") << QStringLiteral("x; touch /tmp/pwned-$(id -u) `id`");
        QTest::newRow("backslash") << QStringLiteral("a\\b");
    }

    void shellWordRoundTripsThroughBash()
    {
        QFETCH(QString, value);
        QProcess bash;
        bash.start(QStringLiteral("/bin/bash"),
                   {QStringLiteral("-c"),
                    QStringLiteral("printf %s ") + slullama::shellWord(value)});
        QVERIFY(bash.waitForFinished());
        QCOMPARE(QString::fromUtf8(bash.readAllStandardOutput()), value);
    }

    void builtInDefault()
    {
        const auto script = renderJobScript(Config());
        QVERIFY2(script.hasValue(), qPrintable(script.error()));
        const QString &s = *script;
        QVERIFY(s.startsWith(QStringLiteral("#!/bin/bash\n#SBATCH --job-name=slullama\n")));
        for (const char *line :
             {"#SBATCH --partition=gpu\n", "#SBATCH --gres=gpu:1\n", "#SBATCH --time=4:00:00\n",
              "#SBATCH --output=/tmp/slullama/slullama-%j.log\n", "\nport=11434\n",
              "export OLLAMA_HOST=\"127.0.0.1:$port\"\n", "\nollama serve &\n",
              "trap cleanup EXIT\n", "wait \"$ollama_pid\"\n",
              "(exec 3<>\"/dev/tcp/127.0.0.1/$port\")"}) {
            QVERIFY2(s.contains(QString::fromLatin1(line)), line);
        }
        QVERIFY(!s.contains(QStringLiteral("0.0.0.0")));
        QVERIFY(!s.contains(QStringLiteral("--mem")));
        QVERIFY(!s.contains(QStringLiteral("SLULLAMA_OLLAMA_BIN")));
        // Every #SBATCH line comes before the first command, or sbatch ignores it.
        const qsizetype lastDirective = s.lastIndexOf(QStringLiteral("#SBATCH"));
        const qsizetype firstCommand = s.indexOf(QStringLiteral("\nollama_pid="));
        QVERIFY(lastDirective < firstCommand);
        QString error;
        QVERIFY2(bashSyntaxOk(s, &error), qPrintable(error));
    }

    void builtInAllOptions()
    {
        const auto script = renderJobScript(allOptionsConfig());
        QVERIFY2(script.hasValue(), qPrintable(script.error()));
        const QString &s = *script;
        for (const char *line :
             {"#SBATCH --job-name=team-llm\n", "#SBATCH --partition=big\n",
              "#SBATCH --gres=gpu:a100:2\n", "#SBATCH --time=1-00:00:00\n",
              "#SBATCH --output=/scratch/logs/slullama-%j.log\n", "#SBATCH --mem=64G\n",
              "#SBATCH --exclusive\n", "#SBATCH --account=team\n",
              "slullama-ollama-${SLURM_JOB_ID}\"\n", "export OLLAMA_MODELS=\"$SCRATCH/models\"\n",
              "\nport=12345\n", "\n\"$SLULLAMA_OLLAMA_BIN\" serve &\n",
              "    rm -f -- \"$SLULLAMA_OLLAMA_BIN\"\n",
              "\"$SLULLAMA_OLLAMA_BIN\" pull qwen3.5:9b"}) {
            QVERIFY2(s.contains(QString::fromLatin1(line)), line);
        }
        QString error;
        QVERIFY2(bashSyntaxOk(s, &error), qPrintable(error));
    }

    void customTemplateFile()
    {
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("my job.sh"));
        QFile file(path);
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write("#!/bin/bash\n#SBATCH -p ${partition}\necho $$SLURM_JOB_ID\n"
                   "$ollama_binary serve\n");
        file.close();
        Config c;
        c.server.jobTemplate = path;
        const auto script = renderJobScript(c);
        QVERIFY2(script.hasValue(), qPrintable(script.error()));
        QCOMPARE(*script,
                 QStringLiteral("#!/bin/bash\n#SBATCH -p gpu\necho $SLURM_JOB_ID\nollama serve\n"));

        QVERIFY(file.open(QIODevice::WriteOnly | QIODevice::Truncate));
        file.write("#!/bin/bash\necho ok\necho $SLURM_JOB_ID\n");
        file.close();
        const auto bad = renderJobScript(c);
        QVERIFY(!bad.hasValue());
        QVERIFY2(bad.error().startsWith(path + QStringLiteral(":3:6: unknown template variable "
                                                              "SLURM_JOB_ID")),
                 qPrintable(bad.error()));
    }

    void missingTemplateFile()
    {
        Config c;
        c.server.jobTemplate = QStringLiteral("/nonexistent/slullama/job.sh");
        const auto script = renderJobScript(c);
        QVERIFY(!script.hasValue());
        QVERIFY2(script.error().contains(QStringLiteral("server.job_template")),
                 qPrintable(script.error()));
        QVERIFY2(script.error().contains(c.server.jobTemplate), qPrintable(script.error()));
    }

    // Runs the rendered built-in script with a stand-in `ollama` (a shell script) and a port
    // this test holds open: it must copy the binary under the job id, export OLLAMA_HOST on
    // 127.0.0.1, wait for the port, pull each model, and on SIGTERM stop the server and remove
    // the copy.
    void builtInScriptRuns()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString fake = dir.filePath(QStringLiteral("fake ollama"));
        const QString record = dir.filePath(QStringLiteral("record.txt"));
        {
            QFile f(fake);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(QStringLiteral(
                        "#!/bin/bash\n"
                        "case \"$1\" in\n"
                        "  serve) echo \"serve $OLLAMA_HOST $OLLAMA_MODELS\" >> '%1';"
                        " exec sleep 60 ;;\n"
                        "  pull) echo \"pull $2\" >> '%1' ;;\n"
                        "esac\n")
                        .arg(record)
                        .toUtf8());
        }
        QTcpServer listener;  // stands for ollama's port; the kernel accepts for us
        QVERIFY(listener.listen(QHostAddress::LocalHost));

        Config c;
        c.server.logDir = dir.path();
        c.ollama.port = listener.serverPort();
        c.ollama.binary = QStringLiteral("/nonexistent/ollama");
        c.ollama.copyBinary = true;
        c.ollama.copySource = fake;
        c.ollama.cleanupBinary = true;
        c.ollama.modelsDir = dir.filePath(QStringLiteral("models dir"));
        c.ollama.prePull = {QStringLiteral("m1:latest"), QStringLiteral("m 2")};
        const auto script = renderJobScript(c);
        QVERIFY2(script.hasValue(), qPrintable(script.error()));

        QProcess job;
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert(QStringLiteral("SLURM_JOB_ID"), QStringLiteral("4242"));
        env.insert(QStringLiteral("TMPDIR"), dir.path());
        job.setProcessEnvironment(env);
        job.start(QStringLiteral("/bin/bash"), {QStringLiteral("-c"), *script});
        QVERIFY(job.waitForStarted());

        const auto recordText = [&record] {
            QFile f(record);
            return f.open(QIODevice::ReadOnly) ? QString::fromUtf8(f.readAll()) : QString();
        };
        const QString copy = dir.filePath(QStringLiteral("slullama-ollama-4242"));
        QTRY_VERIFY_WITH_TIMEOUT(recordText().contains(QStringLiteral("pull m 2")), 20000);
        QVERIFY(QFile::exists(copy));
        const QString expectedServe = QStringLiteral("serve 127.0.0.1:")
                                      + QString::number(c.ollama.port) + u' '
                                      + c.ollama.modelsDir + u'\n';
        // The listener above already accepts, so the script may pull before the fake server
        // has written its own line: check the serve line, and the pulls in their order.
        QTRY_VERIFY_WITH_TIMEOUT(recordText().contains(expectedServe), 20000);
        QCOMPARE(QString(recordText()).remove(expectedServe),
                 QStringLiteral("pull m1:latest\npull m 2\n"));
        QCOMPARE(job.state(), QProcess::Running);

        job.terminate();
        QVERIFY(job.waitForFinished(20000));
        QCOMPARE(job.exitCode(), 143);
        QVERIFY(!QFile::exists(copy));
    }
};

QTEST_GUILESS_MAIN(TestJobTemplate)
#include "tst_jobtemplate.moc"
