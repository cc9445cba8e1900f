#include "statestore.h"

#include <QFile>
#include <QTemporaryDir>
#include <QTest>

using namespace slullama;

class TestStateStore final : public QObject
{
    Q_OBJECT

private slots:
    void defaultPath();
    void stateDirectoryFromSystemd();
    void missingFileIsNoState();
    void roundTrip();
    void olderFileLoads();
    void overwriteAndClear();
    void corruptFileIsAnError();
    void unwritableDirectoryIsAnError();
};

void TestStateStore::defaultPath()
{
    Config config;
    config.server.logDir = QStringLiteral("/var/tmp/sl");
    QCOMPARE(StateStore::defaultPath(config), QStringLiteral("/var/tmp/sl/daemon-state.json"));
    config.server.stateFile = QStringLiteral("/run/x.json");
    QCOMPARE(StateStore::defaultPath(config), QStringLiteral("/run/x.json"));
}

void TestStateStore::stateDirectoryFromSystemd()
{
    Config config;
    config.server.logDir = QStringLiteral("/var/tmp/sl");
    QProcessEnvironment env;
    env.insert(QStringLiteral("STATE_DIRECTORY"), QStringLiteral("/var/lib/slullama:/var/lib/x"));
    auto withEnv = applyEnvironment(config, env);
    QVERIFY(withEnv);
    QCOMPARE(StateStore::defaultPath(*withEnv),
             QStringLiteral("/var/lib/slullama/daemon-state.json"));
    // An explicit state_file wins over systemd's directory.
    config.server.stateFile = QStringLiteral("/run/x.json");
    withEnv = applyEnvironment(config, env);
    QVERIFY(withEnv);
    QCOMPARE(StateStore::defaultPath(*withEnv), QStringLiteral("/run/x.json"));
    // Unset (or empty): log_dir as before.
    config.server.stateFile.clear();
    env.insert(QStringLiteral("STATE_DIRECTORY"), QString());
    withEnv = applyEnvironment(config, env);
    QVERIFY(withEnv);
    QCOMPARE(StateStore::defaultPath(*withEnv), QStringLiteral("/var/tmp/sl/daemon-state.json"));
}

void TestStateStore::missingFileIsNoState()
{
    QTemporaryDir dir;
    StateStore store(dir.filePath(QStringLiteral("none.json")));
    const auto loaded = store.load();
    QVERIFY2(loaded, qPrintable(loaded.error()));
    QVERIFY(!loaded->has_value());
    QVERIFY(store.clear()); // removing nothing is fine
}

void TestStateStore::roundTrip()
{
    QTemporaryDir dir;
    // The directory is created on first save.
    StateStore store(dir.filePath(QStringLiteral("sub/dir/state.json")));
    SavedState state;
    state.jobId = QStringLiteral("4242");
    state.node = QStringLiteral("gpu07");
    state.since = QDateTime(QDate(2026, 3, 4), QTime(5, 6, 7, 89), Qt::UTC);
    state.phase = QStringLiteral("ready");
    state.daemonPid = 1234;
    state.jobName = QStringLiteral("slullama-x");
    state.submitToken = QStringLiteral("abc123");
    state.otherJobId = QStringLiteral("4243");
    state.otherSubmitToken = QStringLiteral("def456");
    state.awakeUntil = QDateTime(QDate(2026, 3, 4), QTime(7, 36, 7, 500), Qt::UTC);
    const auto saved = store.save(state);
    QVERIFY2(saved, qPrintable(saved.error()));
    const auto loaded = store.load();
    QVERIFY2(loaded, qPrintable(loaded.error()));
    QVERIFY(loaded->has_value());
    QCOMPARE(loaded->value().jobId, state.jobId);
    QCOMPARE(loaded->value().node, state.node);
    QCOMPARE(loaded->value().since, state.since);
    QCOMPARE(loaded->value().phase, state.phase);
    QCOMPARE(loaded->value().daemonPid, state.daemonPid);
    QCOMPARE(loaded->value(), state);

    QFile raw(store.path());
    QVERIFY(raw.open(QIODevice::ReadOnly));
    const QByteArray json = raw.readAll();
    QVERIFY(json.contains("\"job_id\": \"4242\""));
    QVERIFY(json.contains("\"awake_until\": \"2026-03-04T07:36:07.500Z\""));
    QVERIFY(json.contains("\"other_submit_token\": \"def456\""));

    // A local time is the same instant in the file.
    state.awakeUntil = state.awakeUntil.toOffsetFromUtc(3600);
    QVERIFY(store.save(state));
    QCOMPARE(store.load()->value().awakeUntil,
             QDateTime(QDate(2026, 3, 4), QTime(7, 36, 7, 500), Qt::UTC));
}

// A state file of a version without keep-awake and successor tokens.
void TestStateStore::olderFileLoads()
{
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("state.json"));
    QFile file(path);
    QVERIFY(file.open(QIODevice::WriteOnly));
    file.write(R"({"job_id": "77", "node": "gpu01", "since": "2026-01-02T03:04:05.000Z",
                   "phase": "ready", "pid": 99, "other_job_id": "78"})");
    file.close();
    const auto loaded = StateStore(path).load();
    QVERIFY2(loaded, qPrintable(loaded.error()));
    QVERIFY(loaded->has_value());
    const SavedState state = loaded->value();
    QCOMPARE(state.jobId, QStringLiteral("77"));
    QCOMPARE(state.otherJobId, QStringLiteral("78"));
    QCOMPARE(state.phase, QStringLiteral("ready"));
    QVERIFY(!state.awakeUntil.isValid());
    QVERIFY(state.otherSubmitToken.isEmpty());
    // Saved again, it stays without the keys.
    QVERIFY(StateStore(path).save(state));
    QVERIFY(file.open(QIODevice::ReadOnly));
    const QByteArray json = file.readAll();
    QVERIFY(!json.contains("awake_until"));
    QVERIFY(!json.contains("other_submit_token"));
}

void TestStateStore::overwriteAndClear()
{
    QTemporaryDir dir;
    StateStore store(dir.filePath(QStringLiteral("state.json")));
    SavedState a;
    a.jobId = QStringLiteral("1");
    QVERIFY(store.save(a));
    SavedState b;
    b.jobId = QStringLiteral("2");
    QVERIFY(store.save(b));
    QCOMPARE(store.load()->value().jobId, QStringLiteral("2"));
    QVERIFY(store.clear());
    QVERIFY(!QFile::exists(store.path()));
    QVERIFY(!store.load()->has_value());
}

void TestStateStore::corruptFileIsAnError()
{
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("state.json"));
    QFile file(path);
    QVERIFY(file.open(QIODevice::WriteOnly));
    file.write("{ not json");
    file.close();
    const auto loaded = StateStore(path).load();
    QVERIFY(!loaded);
    QVERIFY(loaded.error().contains(path));
}

void TestStateStore::unwritableDirectoryIsAnError()
{
    QTemporaryDir dir;
    // A regular file where the directory should be: fails for root too.
    const QString blocker = dir.filePath(QStringLiteral("file"));
    QFile file(blocker);
    QVERIFY(file.open(QIODevice::WriteOnly));
    file.close();
    StateStore store(blocker + QStringLiteral("/state.json"));
    SavedState state;
    state.jobId = QStringLiteral("9");
    const auto saved = store.save(state);
    QVERIFY(!saved);
    QVERIFY(saved.error().contains(blocker));
}

QTEST_GUILESS_MAIN(TestStateStore)
#include "tst_statestore.moc"
