#include "auth.h"
#include "gateway.h"
#include "lifecyclefakes.h"
#include "metrics.h"

#include <QRegularExpression>
#include <QTemporaryDir>
#include <QTest>

#include <map>

using namespace slullama;
using slullama::test::FakeClock;

namespace {

// A parser of the Prometheus text exposition format 0.0.4, as strict as a scraper: every
// sample line must be `name{labels} value`, every family needs TYPE before its samples, label
// values are unescaped. Samples are keyed by `name{a="x",b="y"}` with labels sorted.
struct Exposition
{
    std::map<QString, double> samples;
    std::map<QString, QString> types;
    QString error;

    double value(const QString &key) const
    {
        const auto it = samples.find(key);
        return it == samples.end() ? -1 : it->second;
    }
    bool has(const QString &key) const { return samples.count(key) > 0; }
};

Exposition parseExposition(const QByteArray &text)
{
    Exposition out;
    static const QRegularExpression nameRe(QStringLiteral("^[a-zA-Z_:][a-zA-Z0-9_:]*$"));
    static const QRegularExpression labelRe(
        QStringLiteral("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"(,|$)"));
    if (!text.endsWith('\n')) {
        out.error = QStringLiteral("no final newline");
        return out;
    }
    for (const QByteArray &rawLine : text.split('\n')) {
        const QString line = QString::fromUtf8(rawLine);
        if (line.isEmpty())
            continue;
        if (line.startsWith(u'#')) {
            const QStringList parts = line.split(u' ');
            if (parts.size() >= 4 && parts[1] == u"TYPE")
                out.types[parts[2]] = parts[3];
            else if (parts.size() < 3 || parts[1] != u"HELP")
                out.error = QStringLiteral("bad comment: ") + line;
            continue;
        }
        const qsizetype space = line.lastIndexOf(u' ');
        if (space < 0) {
            out.error = QStringLiteral("no value: ") + line;
            return out;
        }
        QString series = line.left(space);
        bool ok = false;
        const QString valueText = line.mid(space + 1);
        double value = valueText == u"+Inf" ? qInf() : valueText.toDouble(&ok);
        if (!ok && valueText != u"+Inf") {
            out.error = QStringLiteral("bad value: ") + line;
            return out;
        }
        QString name = series;
        QStringList labels;
        const qsizetype brace = series.indexOf(u'{');
        if (brace >= 0) {
            if (!series.endsWith(u'}')) {
                out.error = QStringLiteral("bad labels: ") + line;
                return out;
            }
            name = series.left(brace);
            const QString body = series.mid(brace + 1, series.size() - brace - 2);
            qsizetype at = 0;
            while (at < body.size()) {
                const auto m = labelRe.match(body, at, QRegularExpression::NormalMatch,
                                             QRegularExpression::AnchorAtOffsetMatchOption);
                if (!m.hasMatch()) {
                    out.error = QStringLiteral("bad label at %1: ").arg(at) + line;
                    return out;
                }
                QString v = m.captured(2);
                v.replace(QStringLiteral("\\\""), QStringLiteral("\""))
                    .replace(QStringLiteral("\\n"), QStringLiteral("\n"))
                    .replace(QStringLiteral("\\\\"), QStringLiteral("\\"));
                labels << m.captured(1) + QStringLiteral("=\"") + v + u'"';
                at = m.capturedEnd(0);
            }
        }
        if (!nameRe.match(name).hasMatch()) {
            out.error = QStringLiteral("bad name: ") + line;
            return out;
        }
        QString family = name;
        for (const char *suffix : {"_bucket", "_sum", "_count"}) {
            if (name.endsWith(QLatin1String(suffix))
                && out.types.count(name.chopped(int(qstrlen(suffix)))))
                family = name.chopped(int(qstrlen(suffix)));
        }
        if (!out.types.count(family)) {
            out.error = QStringLiteral("sample before its TYPE: ") + line;
            return out;
        }
        labels.sort();
        const QString key = labels.isEmpty() ? name : name + u'{' + labels.join(u',') + u'}';
        if (out.samples.count(key)) {
            out.error = QStringLiteral("duplicate series: ") + key;
            return out;
        }
        out.samples[key] = value;
    }
    return out;
}

class FakeBackend final : public Backend
{
public:
    Ticket acquire(Callback) override { return 1; }
    void cancel(Ticket) override { }
    void release() override { }
    void reportUpstreamFailure(quint64, const QString &) override { }
    void wake() override { ++wakes; }
    Status status() const override { return status_; }
    Status status_;
    int wakes = 0;
};

http::RequestHead head(const QByteArray &method, const QByteArray &path,
                       const QByteArray &authorization = {})
{
    http::RequestHead h;
    h.method = method;
    h.target = path;
    h.path = path;
    if (!authorization.isEmpty())
        h.headers.add("Authorization", authorization);
    return h;
}

} // namespace

class TestMetrics final : public QObject
{
    Q_OBJECT

private slots:
    void renderAndParse();
    void gatewayTraffic();
    void coldStartStages();
};

void TestMetrics::renderAndParse()
{
    Metrics m;
    m.declare("t_total", Metrics::Type::Counter, "A counter.");
    m.declare("t_seconds", Metrics::Type::Histogram, "A histogram.", {1, 5});
    m.add("t_total", {{"user", "a\"b\\c\nd"}}, 2);
    m.add("t_total", {{"user", "a\"b\\c\nd"}});
    m.observe("t_seconds", {{"stage", "x"}}, 0.5);
    m.observe("t_seconds", {{"stage", "x"}}, 3);
    m.observe("t_seconds", {{"stage", "x"}}, 60);
    const Exposition e = parseExposition(m.render());
    QVERIFY2(e.error.isEmpty(), qPrintable(e.error));
    QCOMPARE(e.types.at(QStringLiteral("t_total")), QStringLiteral("counter"));
    QCOMPARE(e.types.at(QStringLiteral("t_seconds")), QStringLiteral("histogram"));
    QCOMPARE(e.value(QStringLiteral("t_total{user=\"a\"b\\c\nd\"}")), 3.0);
    // Buckets are cumulative and end with +Inf == _count.
    QCOMPARE(e.value(QStringLiteral("t_seconds_bucket{le=\"1\",stage=\"x\"}")), 1.0);
    QCOMPARE(e.value(QStringLiteral("t_seconds_bucket{le=\"5\",stage=\"x\"}")), 2.0);
    QCOMPARE(e.value(QStringLiteral("t_seconds_bucket{le=\"+Inf\",stage=\"x\"}")), 3.0);
    QCOMPARE(e.value(QStringLiteral("t_seconds_count{stage=\"x\"}")), 3.0);
    QCOMPARE(e.value(QStringLiteral("t_seconds_sum{stage=\"x\"}")), 63.5);
}

void TestMetrics::gatewayTraffic()
{
    QTemporaryDir dir;
    const QString keys = dir.filePath(QStringLiteral("keys.toml"));
    const QString aliceKey = *addKey(keys, QStringLiteral("alice"), false);
    GatewaySettings settings;
    settings.keysFile = keys;
    settings.usageFile = dir.filePath(QStringLiteral("usage.json"));
    settings.metadataCacheFile = dir.filePath(QStringLiteral("cache.json"));
    FakeClock clock;
    FakeBackend backend;
    Gateway gateway(settings, &backend, &clock);
    gateway.start();
    gateway.onPhase(Phase::Ready, backend.status_);
    const Auth shared(QStringLiteral("shared-token"));

    // Three generate requests by alice, with token counts in the streamed answer.
    for (int i = 0; i < 3; ++i) {
        ExchangeRecord r;
        const auto h = head("POST", "/api/generate", "Bearer " + aliceKey.toLatin1());
        gateway.begin(r, h);
        QVERIFY(gateway.authenticate(r, h.headers.value("authorization"), shared));
        QVERIFY(!gateway.admit(r, h));
        http::ResponseHead response;
        response.headers.add("Transfer-Encoding", "chunked");
        r.responseHead(response, 100);
        r.responseBody(http::encodeChunk("{\"done\":false}\n"));
        r.responseBody(http::encodeChunk("{\"done\":true,\"prompt_eval_count\":10,"
                                         "\"eval_count\":20}\n"));
        r.responseBody(http::lastChunk());
        r.bytesIn = 50;
        gateway.end(r);
    }
    // A refused key, and a shared-token status call.
    {
        ExchangeRecord r;
        const auto h = head("POST", "/api/chat", "Bearer sk-slullama-wrong");
        gateway.begin(r, h);
        QVERIFY(!gateway.authenticate(r, h.headers.value("authorization"), shared));
        r.status = 401;
        gateway.end(r);
    }
    {
        ExchangeRecord r;
        const auto h = head("GET", "/slullama/status", "Bearer shared-token");
        gateway.begin(r, h);
        QVERIFY(gateway.authenticate(r, h.headers.value("authorization"), shared));
        QCOMPARE(r.identity.user, QStringLiteral("shared"));
        QVERIFY(!r.identity.admin); // keys exist: the shared token is not an admin
        r.status = 200;
        gateway.end(r);
    }
    // One still in flight; unknown routes are one label.
    ExchangeRecord open;
    gateway.begin(open, head("GET", "/some/thing?x=1"));

    const Exposition e = parseExposition(gateway.metricsText());
    QVERIFY2(e.error.isEmpty(), qPrintable(e.error));
    QCOMPARE(e.value(QStringLiteral(
                 "slullama_requests_total{route=\"/api/generate\",status=\"200\",user=\"alice\"}")),
             3.0);
    QCOMPARE(e.value(QStringLiteral(
                 "slullama_requests_total{route=\"/api/chat\",status=\"401\",user=\"none\"}")),
             1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_requests_total{route=\"/slullama/status\","
                                    "status=\"200\",user=\"shared\"}")),
             1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_requests_in_flight")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_tokens_total{kind=\"prompt\",user=\"alice\"}")),
             30.0);
    QCOMPARE(e.value(QStringLiteral("slullama_tokens_total{kind=\"completion\",user=\"alice\"}")),
             60.0);
    QCOMPARE(e.value(QStringLiteral("slullama_bytes_total{direction=\"in\",user=\"alice\"}")),
             150.0);
    QVERIFY(e.value(QStringLiteral("slullama_bytes_total{direction=\"out\",user=\"alice\"}"))
            > 300.0);
    QCOMPARE(e.value(QStringLiteral("slullama_phase{phase=\"ready\"}")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_phase{phase=\"sleeping\"}")), 0.0);
    QCOMPARE(e.value(QStringLiteral("slullama_keys_active")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_cold_starts_total")), 0.0);

    // Usage agrees.
    QCOMPARE(gateway.usage().total(QStringLiteral("alice")).requests, qint64(3));
    QCOMPARE(gateway.usage().total(QStringLiteral("alice")).completionTokens, qint64(60));
    gateway.end(open);
}

void TestMetrics::coldStartStages()
{
    QTemporaryDir dir;
    GatewaySettings settings;
    settings.keysFile = dir.filePath(QStringLiteral("keys.toml"));
    settings.usageFile = dir.filePath(QStringLiteral("usage.json"));
    settings.metadataCacheFile = dir.filePath(QStringLiteral("cache.json"));
    FakeClock clock;
    FakeBackend backend;
    Gateway gateway(settings, &backend, &clock);
    gateway.start();
    Status s;
    gateway.onPhase(Phase::Sleeping, s);

    // Boot 1: 1 s submit, 30 s queued, 2 s to the tunnel, 4 s to healthy; idle teardown.
    gateway.onPhase(Phase::Submitting, s);
    clock.advance(1000);
    gateway.onPhase(Phase::Queued, s);
    clock.advance(30000);
    gateway.onPhase(Phase::Starting, s);
    clock.advance(2000);
    s.tunnelAlive = true;
    gateway.onStatus(s);
    clock.advance(4000);
    gateway.onPhase(Phase::Ready, s);
    // The tunnel breaks and is rebuilt: not a cold start.
    gateway.onPhase(Phase::Starting, s);
    gateway.onPhase(Phase::Ready, s);
    gateway.onPhase(Phase::Stopping, s);
    s.lastEndReason = QStringLiteral("idle");
    gateway.onPhase(Phase::Sleeping, s);

    // Boot 2: sbatch refused.
    gateway.onPhase(Phase::Submitting, s);
    gateway.onPhase(Phase::Sleeping, s);

    // Boot 3: ready, then the job hits its time limit.
    s.tunnelAlive = false;
    gateway.onPhase(Phase::Submitting, s);
    gateway.onPhase(Phase::Queued, s);
    gateway.onPhase(Phase::Starting, s);
    gateway.onPhase(Phase::Ready, s);
    s.lastEndReason = QStringLiteral("time limit reached (TIMEOUT)");
    gateway.onPhase(Phase::Sleeping, s);

    // Boot 4: the job dies before it is ready.
    gateway.onPhase(Phase::Submitting, s);
    gateway.onPhase(Phase::Queued, s);
    s.lastEndReason = QStringLiteral("job failed (FAILED, exit 1:0)");
    gateway.onPhase(Phase::Sleeping, s);

    const Exposition e = parseExposition(gateway.metricsText());
    QVERIFY2(e.error.isEmpty(), qPrintable(e.error));
    QCOMPARE(e.value(QStringLiteral("slullama_cold_starts_total")), 4.0);
    QCOMPARE(e.value(QStringLiteral("slullama_jobs_submitted_total")), 3.0);
    QCOMPARE(e.value(QStringLiteral("slullama_tunnel_rebuilds_total")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_jobs_failed_total{stage=\"submit\"}")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_jobs_failed_total{stage=\"queued\"}")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_jobs_lost_total{reason=\"time_limit\"}")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_teardowns_total{reason=\"idle\"}")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_teardowns_total{reason=\"time_limit\"}")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_teardowns_total{reason=\"job_ended\"}")), 1.0);
    QCOMPARE(e.value(QStringLiteral("slullama_cold_start_seconds_count{stage=\"total\"}")), 2.0);
    QCOMPARE(e.value(QStringLiteral("slullama_cold_start_seconds_sum{stage=\"queue_wait\"}")),
             31.0);
    QCOMPARE(e.value(QStringLiteral("slullama_cold_start_seconds_sum{stage=\"job_start\"}")), 2.0);
    QCOMPARE(e.value(QStringLiteral("slullama_cold_start_seconds_sum{stage=\"model_ready\"}")),
             4.0);
    QCOMPARE(e.value(QStringLiteral("slullama_cold_start_seconds_sum{stage=\"total\"}")), 37.0);
    QCOMPARE(
        e.value(QStringLiteral("slullama_cold_start_seconds_bucket{le=\"60\",stage=\"total\"}")),
        2.0);
    QCOMPARE(
        e.value(QStringLiteral("slullama_cold_start_seconds_bucket{le=\"5\",stage=\"total\"}")),
        1.0);
}

QTEST_GUILESS_MAIN(TestMetrics)
#include "tst_metrics.moc"
