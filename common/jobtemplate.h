#pragma once

// The sbatch job script: slullama 0.1.3's template variables and Python string.Template rules
// (`${name}`, `$name`, `$$` -> `$`), with errors found before a job reaches the queue.

#include "config.h"
#include "result.h"

#include <QMap>
#include <QString>

namespace slullama {

// The built-in template (bash). Ollama listens on 127.0.0.1 only; the copied binary lives under
// a path with the real $SLURM_JOB_ID.
QString builtInJobTemplate();

// The values of the template variables for `config`: the seed's eleven (partition, gres, time,
// log_dir, extra_sbatch, copy_commands, ollama_port, models_env, cleanup_commands, ollama_binary,
// pull_commands) plus job_name, partition_directive and gres_directive. Values that are shell
// words (ollama_binary, paths, model names) are already quoted for bash where needed.
QMap<QString, QString> jobTemplateVariables(const Config &config);

// Substitutes `variables` into `templateText` with string.Template rules. An unknown variable or
// an invalid `$` is an error naming `templateName`, line and column.
Result<QString> substituteTemplate(const QString &templateText,
                                   const QMap<QString, QString> &variables,
                                   const QString &templateName);

Result<QString> renderJobTemplate(const Config &config, const QString &templateText,
                                  const QString &templateName);

// Reads server.job_template when set (an unreadable file is an error), else uses the built-in
// template, and renders it.
Result<QString> renderJobScript(const Config &config);

// A word for bash: returned unchanged when it has only safe characters, else double-quoted with
// `"`, `\` and backquotes escaped. `$NAME`/`${NAME}` and a leading `~/` are left to the shell on
// the compute node, as 0.1.3's plain substitution did (e.g. models_dir = "$SCRATCH/models").
QString shellWord(const QString &value);

} // namespace slullama
