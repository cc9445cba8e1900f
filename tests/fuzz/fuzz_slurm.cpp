// What Slurm's commands print (sbatch --parsable, scontrol show job -o, squeue, error texts): the
// daemon parses it on every poll, so no output — truncated, garbled, a new Slurm version's — may
// crash it, and every derived value stays in range.

#include "config.h"
#include "fuzzcheck.h"
#include "slurmclient.h"

#include <cstddef>
#include <cstdint>

using namespace slullama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const QByteArray bytes(reinterpret_cast<const char *>(data), qsizetype(size));
    const QString text = QString::fromUtf8(bytes);

    const auto jobId = slurm::parseSbatchParsable(bytes);
    if (jobId) {
        FUZZ_CHECK(!jobId->isEmpty());
        FUZZ_CHECK(!jobId->contains(u';') && !jobId->contains(u'\n'));
    }

    (void)slurm::parseKeyValueLine(text);
    const auto job = slurm::parseShowJob(bytes);
    if (job) {
        (void)job->node();
        (void)job->isPending();
        (void)job->isRunning();
        (void)job->hasEnded();
        (void)job->endDescription();
        (void)job->secondsLeft();
        FUZZ_CHECK(!(job->isRunning() && job->isPending()));
        // The node becomes ssh's destination argument: a plain host name or nothing.
        const QString node = job->node();
        FUZZ_CHECK(node.isEmpty()
                   || (!node.startsWith(u'-') && !node.contains(u',') && !node.contains(u' ')
                       && !node.contains(u'\n')));
    }
    for (const JobSummary &summary : slurm::parseSqueueJobs(bytes)) {
        FUZZ_CHECK(!summary.id.isEmpty());
        FUZZ_CHECK(!summary.id.contains(u'|') && !summary.state.contains(u'|'));
        if (const auto port = slurm::reportedPort(summary.comment))
            FUZZ_CHECK(*port > 0);
    }
    if (const auto port = slurm::reportedPort(text))
        FUZZ_CHECK(*port > 0);
    (void)slurm::isInvalidJobId(bytes);
    (void)slurm::isPermissionDenied(bytes);

    // Durations: whatever parses formats back to the same number of seconds.
    for (const QString &candidate : {text, text.trimmed()}) {
        if (const auto seconds = slurm::parseDuration(candidate)) {
            FUZZ_CHECK(*seconds >= 0);
            if (*seconds < qint64(1) << 40) // formatDuration's days may outgrow the parser's
                FUZZ_CHECK(slurm::parseDuration(slurm::formatDuration(*seconds)) == seconds);
        }
        if (const auto seconds = parseSlurmTime(candidate)) {
            FUZZ_CHECK(*seconds >= 0 || *seconds == kSlurmTimeUnlimited);
            const auto back = parseSlurmTime(formatSlurmTime(*seconds));
            FUZZ_CHECK(back.has_value());
            // formatSlurmTime rounds up to whole minutes.
            FUZZ_CHECK(*seconds == kSlurmTimeUnlimited
                           ? *back == kSlurmTimeUnlimited
                           : *back >= *seconds && *back - *seconds < 60);
        }
    }
    return 0;
}
