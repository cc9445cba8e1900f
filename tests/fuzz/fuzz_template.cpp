// server.job_template files: substituteTemplate follows string.Template rules on any text — an
// unknown variable or a bad `$` is an error with a position, never a crash or a half-rendered
// script; text without `$` comes out unchanged.

#include "fuzzcheck.h"
#include "jobtemplate.h"

#include <cstddef>
#include <cstdint>

using namespace slullama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const QString text = QString::fromUtf8(reinterpret_cast<const char *>(data), qsizetype(size));
    // Values with `$` in them must be inserted literally, not substituted again.
    const QMap<QString, QString> variables {
        {QStringLiteral("partition"), QStringLiteral("gpu")},
        {QStringLiteral("job_name"), QStringLiteral("slullama")},
        {QStringLiteral("ollama_port"), QStringLiteral("11434")},
        {QStringLiteral("a"), QStringLiteral("$b ${b} $$")},
        {QStringLiteral("b"), QString()},
        {QStringLiteral("_x1"), QStringLiteral("\n#SBATCH --x\n")},
    };
    const auto rendered = substituteTemplate(text, variables, QStringLiteral("fuzz.sh"));
    if (!rendered) {
        FUZZ_CHECK(rendered.error().contains(QStringLiteral("fuzz.sh")));
        FUZZ_CHECK(text.contains(u'$'));
        return 0;
    }
    if (!text.contains(u'$'))
        FUZZ_CHECK(*rendered == text);
    return 0;
}
