// config.toml as any user may write it: parseConfig never crashes, and what it accepts survives
// describeConfig → parseConfig unchanged (what `serve --dry-run` promises), and renders a job
// script with the built-in template or fails with a message.

#include "config.h"
#include "fuzzcheck.h"
#include "jobtemplate.h"

#include <cstddef>
#include <cstdint>

using namespace slullama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const QByteArray text(reinterpret_cast<const char *>(data), qsizetype(size));
    const auto parsed = parseConfig(text, QStringLiteral("fuzz.toml"));
    if (!parsed) {
        FUZZ_CHECK(parsed.error().startsWith(QStringLiteral("fuzz.toml")));
        return 0;
    }
    const Config &config = *parsed;
    const QString described = describeConfig(config);
    const auto again = parseConfig(described.toUtf8(), QStringLiteral("fuzz.toml"));
    if (!again) {
        std::fprintf(stderr, "describeConfig output does not parse: %s\n--- output:\n%s\n",
                     qPrintable(again.error()), qPrintable(described));
        FUZZ_CHECK(again.hasValue());
    }
    FUZZ_CHECK(again->warnings.isEmpty());
    if (describeConfig(*again) != described) {
        std::fprintf(stderr, "describeConfig changes on a round trip:\n%s\n---\n%s\n",
                     qPrintable(described), qPrintable(describeConfig(*again)));
        FUZZ_CHECK(describeConfig(*again) == described);
    }

    Config noFile = config;
    noFile.server.jobTemplate.clear(); // no file reads from fuzzed paths
    const auto script = renderJobTemplate(noFile, builtInJobTemplate(), QStringLiteral("built-in"));
    FUZZ_CHECK(script.hasValue() || !script.error().isEmpty());
    return 0;
}
