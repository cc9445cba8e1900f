#include "jobtemplate.h"

#include <QFile>
#include <QStringList>

#include <algorithm>

namespace slullama {

namespace {

// `$$` is the template's literal `$`; everything with a single `$` is a template variable.
const char kBuiltInTemplate[] = R"TEMPLATE(#!/bin/bash
#SBATCH --job-name=${job_name}
${partition_directive}
${gres_directive}
#SBATCH --time=${time}
#SBATCH --output=${log_dir}/slullama-%j.log
${extra_sbatch}

# Rendered by slullama from its built-in job template.
# Ollama listens on 127.0.0.1 only: the head node reaches it through an SSH tunnel, so other
# users of this node cannot go around the gateway's token.

ollama_pid=
cleanup() {
    trap - EXIT TERM INT
    if [ -n "$$ollama_pid" ]; then
        kill "$$ollama_pid" 2>/dev/null
        wait "$$ollama_pid" 2>/dev/null
    fi
    ${cleanup_commands}
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

${copy_commands}
${models_env}

port=${ollama_port}
if [ "$$port" = 0 ]; then
    # ollama.port = 0: pick a free port on this node and report it in the job's comment.
    # Below the kernel's ephemeral range: a port some outgoing connection uses locally refuses
    # connections (so it looks free) but cannot be listened on.
    ephemeral_low=32768
    read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    [ "$$ephemeral_low" -gt 21024 ] 2>/dev/null || ephemeral_low=32768
    for attempt in $$(seq 1 100); do
        candidate=$$((20000 + RANDOM % (ephemeral_low - 20000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$$candidate") 2>/dev/null; then
            port=$$candidate
            break
        fi
    done
    scontrol update JobId="$$SLURM_JOB_ID" Comment="slullama_port=$$port" || true
fi
export OLLAMA_HOST="127.0.0.1:$$port"

echo "slullama: starting ollama on $$OLLAMA_HOST (job $$SLURM_JOB_ID on $$(hostname))"
${ollama_binary} serve &
ollama_pid=$$!

# Wait until the server accepts connections; bash's /dev/tcp, as compute nodes may lack curl.
ready=0
for attempt in $$(seq 1 1200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$$port") 2>/dev/null; then
        ready=1
        break
    fi
    if ! kill -0 "$$ollama_pid" 2>/dev/null; then
        echo "slullama: ollama exited before it answered on port $$port" >&2
        exit 1
    fi
    sleep 0.5
done
if [ "$$ready" != 1 ]; then
    echo "slullama: ollama did not answer on port $$port within 600 s" >&2
    exit 1
fi
echo "slullama: ollama is ready on port $$port"

${pull_commands}

wait "$$ollama_pid"
)TEMPLATE";

bool isIdentStart(QChar c)
{
    const char16_t u = c.unicode();
    return u == '_' || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z');
}

bool isIdentChar(QChar c)
{
    return isIdentStart(c) || (c.unicode() >= '0' && c.unicode() <= '9');
}

bool isSafeShellChar(QChar c)
{
    const char16_t u = c.unicode();
    return isIdentChar(c) || u == '.' || u == '/' || u == ':' || u == '=' || u == '@' || u == '%'
           || u == '+' || u == ',' || u == '-';
}

QString lineColumn(const QString &text, qsizetype index)
{
    qsizetype line = 1;
    qsizetype lineStart = 0;
    for (qsizetype i = 0; i < index; ++i) {
        if (text.at(i) == u'\n') {
            ++line;
            lineStart = i + 1;
        }
    }
    return QString::number(line) + u':' + QString::number(index - lineStart + 1);
}

QString templateError(const QString &name, const QString &text, qsizetype index,
                      const QString &what)
{
    return name + u':' + lineColumn(text, index) + QStringLiteral(": ") + what;
}

const char kDollarHint[] = " (write $$ for a literal $, ${name} or $name for a variable)";

} // namespace

QString builtInJobTemplate()
{
    return QString::fromUtf8(kBuiltInTemplate);
}

QString shellWord(const QString &value)
{
    if (value.isEmpty())
        return QStringLiteral("\"\"");
    if (std::all_of(value.begin(), value.end(), isSafeShellChar))
        return value;

    QString prefix;
    QString rest = value;
    if (rest == QLatin1String("~"))
        return rest;
    if (rest.startsWith(QLatin1String("~/"))) {
        prefix = QStringLiteral("~/");
        rest = rest.mid(2);
        if (std::all_of(rest.begin(), rest.end(), isSafeShellChar))
            return prefix + rest;
    }
    QString out = prefix + u'"';
    for (qsizetype i = 0; i < rest.size(); ++i) {
        const QChar c = rest.at(i);
        if (c == u'"' || c == u'\\' || c == u'`') {
            out += u'\\';
            out += c;
        } else if (c == u'$') {
            const bool variable =
                i + 1 < rest.size() && (isIdentStart(rest.at(i + 1)) || rest.at(i + 1) == u'{');
            out += variable ? QStringLiteral("$") : QStringLiteral("\\$");
        } else {
            out += c;
        }
    }
    return out + u'"';
}

QMap<QString, QString> jobTemplateVariables(const Config &config)
{
    QMap<QString, QString> v;
    const SlurmConfig &slurm = config.slurm;
    const OllamaConfig &ollama = config.ollama;

    v[QStringLiteral("job_name")] = slurm.jobName;
    v[QStringLiteral("partition")] = slurm.partition;
    v[QStringLiteral("gres")] = slurm.gres;
    v[QStringLiteral("time")] = slurm.time;
    v[QStringLiteral("log_dir")] = config.server.logDir;
    v[QStringLiteral("ollama_port")] = QString::number(ollama.port);

    // Empty partition/gres mean "the cluster's default" / "no generic resources": an empty
    // `--gres=` line would make sbatch refuse the job.
    v[QStringLiteral("partition_directive")] =
        slurm.partition.isEmpty()
            ? QStringLiteral("# no --partition (slurm.partition is empty): the default partition")
            : QStringLiteral("#SBATCH --partition=") + slurm.partition;
    v[QStringLiteral("gres_directive")] =
        slurm.gres.isEmpty() ? QStringLiteral("# no --gres (slurm.gres is empty)")
                             : QStringLiteral("#SBATCH --gres=") + slurm.gres;

    QStringList extra;
    if (!slurm.mem.isEmpty())
        extra << QStringLiteral("#SBATCH --mem=") + slurm.mem;
    for (const QString &arg : slurm.extraArgs)
        extra << QStringLiteral("#SBATCH ") + arg;
    v[QStringLiteral("extra_sbatch")] = extra.join(u'\n');

    QString binary = shellWord(ollama.binary);
    if (ollama.copyBinary) {
        const QString source = ollama.copySource.isEmpty()
                                   ? QStringLiteral("\"$(command -v ") + shellWord(ollama.binary)
                                         + QStringLiteral(")\"")
                                   : shellWord(ollama.copySource);
        v[QStringLiteral("copy_commands")] = QStringLiteral(
            "# ollama.copy_binary: a copy of the binary for this job, named after its id\n"
            "SLULLAMA_OLLAMA_BIN=\"${TMPDIR:-/tmp}/slullama-ollama-${SLURM_JOB_ID}\"\n"
            "cp -- ") + source + QStringLiteral(
            " \"$SLULLAMA_OLLAMA_BIN\" || { echo \"slullama: cannot copy the ollama binary\" >&2; "
            "exit 1; }\n"
            "chmod u+x \"$SLULLAMA_OLLAMA_BIN\"");
        binary = QStringLiteral("\"$SLULLAMA_OLLAMA_BIN\"");
    } else {
        v[QStringLiteral("copy_commands")] =
            QStringLiteral("# no binary copy (ollama.copy_binary is off)");
    }
    v[QStringLiteral("ollama_binary")] = binary;

    v[QStringLiteral("cleanup_commands")] =
        ollama.copyBinary && ollama.cleanupBinary
            ? QStringLiteral("rm -f -- \"$SLULLAMA_OLLAMA_BIN\"")
            : QStringLiteral("# no binary cleanup (ollama.cleanup_binary is off)");

    v[QStringLiteral("models_env")] =
        ollama.modelsDir.isEmpty()
            ? QStringLiteral("# OLLAMA_MODELS not set: ollama's default models directory")
            : QStringLiteral("export OLLAMA_MODELS=") + shellWord(ollama.modelsDir);

    if (ollama.prePull.isEmpty()) {
        v[QStringLiteral("pull_commands")] =
            QStringLiteral("# no models to pre-pull (ollama.pre_pull is empty)");
    } else {
        QStringList pulls;
        for (const QString &model : ollama.prePull) {
            const QString word = shellWord(model);
            pulls << binary + QStringLiteral(" pull ") + word
                         + QStringLiteral(" || echo \"slullama: could not pull\" ") + word
                         + QStringLiteral(" >&2");
        }
        v[QStringLiteral("pull_commands")] = pulls.join(u'\n');
    }
    return v;
}

Result<QString> substituteTemplate(const QString &text, const QMap<QString, QString> &variables,
                                   const QString &templateName)
{
    QString out;
    out.reserve(text.size() + text.size() / 2);
    const qsizetype n = text.size();
    qsizetype i = 0;
    while (i < n) {
        const qsizetype dollar = text.indexOf(u'$', i);
        if (dollar < 0) {
            out += QStringView(text).mid(i);
            break;
        }
        out += QStringView(text).mid(i, dollar - i);
        const qsizetype next = dollar + 1;
        if (next < n && text.at(next) == u'$') {
            out += u'$';
            i = next + 1;
            continue;
        }
        QString name;
        qsizetype end = next;
        if (next < n && isIdentStart(text.at(next))) {
            while (end < n && isIdentChar(text.at(end)))
                ++end;
            name = text.mid(next, end - next);
        } else if (next < n && text.at(next) == u'{') {
            qsizetype j = next + 1;
            if (j < n && isIdentStart(text.at(j))) {
                while (j < n && isIdentChar(text.at(j)))
                    ++j;
                if (j < n && text.at(j) == u'}') {
                    name = text.mid(next + 1, j - next - 1);
                    end = j + 1;
                }
            }
            if (name.isEmpty())
                return makeError(templateError(
                    templateName, text, dollar,
                    QStringLiteral("invalid placeholder: ${ must be followed by a name and }")
                        + QLatin1String(kDollarHint)));
        } else {
            return makeError(templateError(templateName, text, dollar,
                                           QStringLiteral("invalid placeholder: a lone $")
                                               + QLatin1String(kDollarHint)));
        }
        const auto it = variables.constFind(name);
        if (it == variables.constEnd())
            return makeError(templateError(
                templateName, text, dollar,
                QStringLiteral("unknown template variable ") + name
                    + QStringLiteral(" (known: ") + variables.keys().join(QStringLiteral(", "))
                    + QStringLiteral("; write $$ for a literal $)")));
        out += *it;
        i = end;
    }
    return out;
}

Result<QString> renderJobTemplate(const Config &config, const QString &templateText,
                                  const QString &templateName)
{
    return substituteTemplate(templateText, jobTemplateVariables(config), templateName);
}

Result<QString> renderJobScript(const Config &config)
{
    const QString path = config.server.jobTemplate;
    if (path.isEmpty())
        return renderJobTemplate(config, builtInJobTemplate(),
                                 QStringLiteral("built-in job template"));
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly))
        return makeError(QStringLiteral("server.job_template: cannot read ") + path
                         + QStringLiteral(": ") + file.errorString());
    return renderJobTemplate(config, QString::fromUtf8(file.readAll()), path);
}

} // namespace slullama
