#pragma once

// The daemon's small state file, so a restarted daemon adopts its job instead of submitting a
// second one. JSON, written atomically (QSaveFile).

#include "config.h"
#include "result.h"

#include <QDateTime>
#include <QString>

#include <optional>

namespace slullama {

struct SavedState
{
    QString jobId;
    QString node;
    QDateTime since; // when the job was submitted
    QString phase; // phaseName() at the time of writing
    qint64 daemonPid = 0;
    // Written before sbatch runs (phase "submitting", no job id yet), so a daemon killed while
    // sbatch ran finds the job by name and submit token instead of submitting a second one.
    QString jobName;
    QString submitToken;
    // Walltime hand-over: the other live job (the successor while it boots, or the old job while
    // it drains), so a restart cancels it instead of orphaning it.
    QString otherJobId;
    // The successor's submit token while its sbatch runs (no job id yet): a restart then cancels
    // the job of that name carrying it instead of orphaning it.
    QString otherSubmitToken;
    // A wake's keep-awake promise (wall clock, UTC; invalid: none), so a restarted daemon that
    // adopts the job keeps it.
    QDateTime awakeUntil;

    bool operator==(const SavedState &) const = default;
};

class StateStore final
{
public:
    explicit StateStore(QString path);

    // server.state_file, or <log_dir>/daemon-state.json.
    static QString defaultPath(const Config &config);

    QString path() const { return m_path; }
    // No file → nullopt (not an error); unreadable or corrupt → error.
    Result<std::optional<SavedState>> load() const;
    VoidResult save(const SavedState &state) const;
    VoidResult clear() const;

private:
    QString m_path;
};

} // namespace slullama
