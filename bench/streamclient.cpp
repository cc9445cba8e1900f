// slullama-bench-streams: opens C concurrent HTTP streams of the stand-in's
// `/standin/stream?n=N&delay_us=D` (directly, or through a proxy/tunnel) and reports, as one JSON
// object: how many completed, errors, total chunks and chunks/s, and the per-chunk delay
// (arrival - t_us, both CLOCK_REALTIME µs; the stand-in stamps each line as it writes it).
// A proxy's added delay is its delay distribution minus the direct one, on the same machine.
//
// wrk does request rates and latency; this covers what it cannot: many long streams at once and
// per-chunk timing. One thread, Qt's event loop; each read is stamped once, before parsing, so
// a batch of lines read together shares one arrival time.

#include <QCommandLineParser>
#include <QCoreApplication>
#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTcpSocket>
#include <QTextStream>
#include <QTimer>
#include <QUrl>

#include <algorithm>
#include <ctime>
#include <memory>
#include <vector>

#include <sys/resource.h>

namespace {

qint64 realtimeUs()
{
    timespec ts {};
    clock_gettime(CLOCK_REALTIME, &ts);
    return qint64(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

struct Totals
{
    int completed = 0;
    int errors = 0;
    qint64 chunks = 0;
    std::vector<qint64> delays; // µs, every chunk of every stream (when recorded)
    std::vector<qint64> firstByteUs;
    QJsonArray errorSamples;
};

class Stream final : public QObject
{
public:
    Stream(const QUrl &url, const QByteArray &request, int expected, bool recordDelays,
           Totals *totals, std::function<void()> onDone, QObject *parent)
        : QObject(parent)
        , m_url(url)
        , m_request(request)
        , m_expected(expected)
        , m_record(recordDelays)
        , m_totals(totals)
        , m_onDone(std::move(onDone))
    { }

    void start()
    {
        m_socket = new QTcpSocket(this);
        m_socket->setSocketOption(QAbstractSocket::LowDelayOption, 1);
        connect(m_socket, &QTcpSocket::connected, this, [this] {
            m_sentAt.start();
            m_socket->write(m_request);
        });
        connect(m_socket, &QTcpSocket::readyRead, this, &Stream::onReadyRead);
        connect(m_socket, &QTcpSocket::disconnected, this, [this] {
            if (!m_done)
                fail(QStringLiteral("closed after %1 of %2 chunks").arg(m_count).arg(m_expected));
        });
        connect(m_socket, &QTcpSocket::errorOccurred, this, [this] {
            if (!m_done && m_socket->error() != QAbstractSocket::RemoteHostClosedError)
                fail(m_socket->errorString());
        });
        m_socket->connectToHost(m_url.host(), quint16(m_url.port(80)));
    }

    void abortNow(const QString &why)
    {
        if (!m_done)
            fail(why);
    }
    bool isDone() const { return m_done; }

private:
    enum class Body { Head, ChunkSize, ChunkData, ChunkCrlf, Raw, Done };

    void onReadyRead()
    {
        const qint64 now = realtimeUs();
        if (!m_gotByte) {
            m_gotByte = true;
            m_totals->firstByteUs.push_back(m_sentAt.nsecsElapsed() / 1000);
        }
        const QByteArray data = m_socket->readAll();
        qsizetype pos = 0;
        while (pos < data.size() && !m_done) {
            switch (m_state) {
            case Body::Head: {
                m_buf.append(data.constData() + pos, data.size() - pos);
                pos = data.size();
                const qsizetype end = m_buf.indexOf("\r\n\r\n");
                if (end < 0)
                    break;
                const QByteArray head = m_buf.left(end).toLower();
                const QByteArray rest = m_buf.mid(end + 4);
                m_buf.clear();
                if (!head.startsWith("http/1.1 200") && !head.startsWith("http/1.0 200"))
                    return fail(QString::fromLatin1(head.left(head.indexOf('\r'))));
                m_state = head.contains("transfer-encoding: chunked") ? Body::ChunkSize : Body::Raw;
                feedBody(rest, now);
                break;
            }
            default:
                feedBody(QByteArray::fromRawData(data.constData() + pos, data.size() - pos), now);
                pos = data.size();
            }
        }
    }

    void feedBody(const QByteArray &data, qint64 now)
    {
        qsizetype pos = 0;
        while (pos < data.size() && !m_done) {
            switch (m_state) {
            case Body::Raw:
                line(data.constData() + pos, data.size() - pos, now);
                pos = data.size();
                break;
            case Body::ChunkSize: {
                const qsizetype nl = data.indexOf('\n', pos);
                if (nl < 0) {
                    m_sizeLine.append(data.constData() + pos, data.size() - pos);
                    return;
                }
                m_sizeLine.append(data.constData() + pos, nl - pos);
                pos = nl + 1;
                bool ok = false;
                m_chunkLeft = m_sizeLine.trimmed().split(';').first().toLongLong(&ok, 16);
                m_sizeLine.clear();
                if (!ok)
                    return fail(QStringLiteral("bad chunk size"));
                if (m_chunkLeft == 0)
                    return finish();
                m_state = Body::ChunkData;
                break;
            }
            case Body::ChunkData: {
                const qsizetype take = qMin<qsizetype>(m_chunkLeft, data.size() - pos);
                line(data.constData() + pos, take, now);
                pos += take;
                m_chunkLeft -= take;
                if (m_chunkLeft == 0)
                    m_state = Body::ChunkCrlf;
                break;
            }
            case Body::ChunkCrlf: {
                const qsizetype nl = data.indexOf('\n', pos);
                if (nl < 0)
                    return;
                pos = nl + 1;
                m_state = Body::ChunkSize;
                break;
            }
            default:
                return;
            }
        }
    }

    // Body bytes: split into NDJSON lines, each line's t_us against this read's arrival time.
    void line(const char *p, qsizetype n, qint64 now)
    {
        const char *end = p + n;
        while (p < end) {
            const char *nl = static_cast<const char *>(memchr(p, '\n', size_t(end - p)));
            if (!nl) {
                m_line.append(p, end - p);
                return;
            }
            m_line.append(p, nl - p);
            p = nl + 1;
            const qsizetype at = m_line.indexOf("\"t_us\":");
            if (at >= 0) {
                const qint64 sent = std::strtoll(m_line.constData() + at + 7, nullptr, 10);
                ++m_count;
                if (m_record)
                    m_totals->delays.push_back(now - sent);
            }
            m_line.clear();
        }
        if (m_state == Body::Raw && m_count >= m_expected)
            finish();
    }

    void finish()
    {
        m_done = true;
        m_totals->chunks += m_count;
        if (m_count == m_expected) {
            ++m_totals->completed;
        } else {
            ++m_totals->errors;
            note(QStringLiteral("got %1 of %2 chunks").arg(m_count).arg(m_expected));
        }
        m_socket->abort();
        m_onDone();
    }

    void fail(const QString &why)
    {
        if (m_done)
            return;
        m_done = true;
        m_totals->chunks += m_count;
        ++m_totals->errors;
        note(why);
        m_socket->abort();
        m_onDone();
    }

    void note(const QString &why)
    {
        if (m_totals->errorSamples.size() < 5)
            m_totals->errorSamples.append(why);
    }

    QUrl m_url;
    QByteArray m_request;
    int m_expected;
    bool m_record;
    Totals *m_totals;
    std::function<void()> m_onDone;
    QTcpSocket *m_socket = nullptr;
    QElapsedTimer m_sentAt;
    bool m_gotByte = false;
    bool m_done = false;
    Body m_state = Body::Head;
    QByteArray m_buf;
    QByteArray m_sizeLine;
    QByteArray m_line;
    qint64 m_chunkLeft = 0;
    int m_count = 0;
};

QJsonObject percentiles(std::vector<qint64> v)
{
    QJsonObject o;
    if (v.empty())
        return o;
    std::sort(v.begin(), v.end());
    auto at = [&](double q) { return double(v[size_t(q * double(v.size() - 1) + 0.5)]); };
    o[QStringLiteral("min")] = double(v.front());
    o[QStringLiteral("p50")] = at(0.50);
    o[QStringLiteral("p90")] = at(0.90);
    o[QStringLiteral("p99")] = at(0.99);
    o[QStringLiteral("p999")] = at(0.999);
    o[QStringLiteral("max")] = double(v.back());
    o[QStringLiteral("count")] = double(v.size());
    return o;
}

} // namespace

int main(int argc, char *argv[])
{
    QCoreApplication app(argc, argv);
    QCommandLineParser cli;
    cli.setApplicationDescription(QStringLiteral(
        "Concurrent NDJSON streams from the stand-in's /standin/stream; prints a JSON summary."));
    cli.addHelpOption();
    const QCommandLineOption urlOpt(QStringLiteral("url"), QStringLiteral("Base URL."),
                                    QStringLiteral("url"));
    const QCommandLineOption tokenOpt(QStringLiteral("token"), QStringLiteral("Bearer token."),
                                      QStringLiteral("token"));
    const QCommandLineOption streamsOpt(QStringLiteral("streams"),
                                        QStringLiteral("Concurrent streams."),
                                        QStringLiteral("count"), QStringLiteral("1"));
    const QCommandLineOption nOpt(QStringLiteral("n"), QStringLiteral("Chunks per stream."),
                                  QStringLiteral("count"), QStringLiteral("1000"));
    const QCommandLineOption delayOpt(QStringLiteral("delay-us"),
                                      QStringLiteral("Pause between chunks (µs)."),
                                      QStringLiteral("us"), QStringLiteral("0"));
    const QCommandLineOption padOpt(QStringLiteral("pad"), QStringLiteral("Padding per line."),
                                    QStringLiteral("bytes"), QStringLiteral("0"));
    const QCommandLineOption timeoutOpt(QStringLiteral("timeout"),
                                        QStringLiteral("Give up after this many seconds."),
                                        QStringLiteral("s"), QStringLiteral("120"));
    const QCommandLineOption noDelaysOpt(QStringLiteral("no-delays"),
                                         QStringLiteral("Do not keep per-chunk delays."));
    cli.addOptions({urlOpt, tokenOpt, streamsOpt, nOpt, delayOpt, padOpt, timeoutOpt, noDelaysOpt});
    cli.process(app);

    const QUrl url(cli.value(urlOpt));
    if (!url.isValid() || url.host().isEmpty()) {
        QTextStream(stderr) << "slullama-bench-streams: --url http://HOST:PORT is required\n";
        return 2;
    }
    const int streams = cli.value(streamsOpt).toInt();
    const int n = cli.value(nOpt).toInt();

    // Each stream is one descriptor here; the default soft limit (1024) is too low for 2000.
    rlimit limit {};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }

    QByteArray request = "GET /standin/stream?n=" + QByteArray::number(n)
        + "&delay_us=" + cli.value(delayOpt).toLatin1() + "&pad=" + cli.value(padOpt).toLatin1()
        + " HTTP/1.1\r\nHost: " + url.authority().toLatin1() + "\r\n";
    if (cli.isSet(tokenOpt))
        request += "Authorization: Bearer " + cli.value(tokenOpt).toLatin1() + "\r\n";
    request += "\r\n";

    Totals totals;
    if (!cli.isSet(noDelaysOpt))
        totals.delays.reserve(size_t(streams) * size_t(n));
    std::vector<Stream *> all;
    int finished = 0;
    QElapsedTimer wall;
    QElapsedTimer firstChunkWall;
    auto done = [&] {
        if (++finished == streams)
            QTimer::singleShot(0, &app, [&] { app.exit(0); });
    };
    for (int i = 0; i < streams; ++i)
        all.push_back(new Stream(url, request, n, !cli.isSet(noDelaysOpt), &totals, done, &app));

    QTimer giveUp;
    giveUp.setSingleShot(true);
    QObject::connect(&giveUp, &QTimer::timeout, &app, [&] {
        for (Stream *s : all)
            s->abortNow(QStringLiteral("timeout"));
    });
    giveUp.start(int(cli.value(timeoutOpt).toDouble() * 1000));
    wall.start();
    for (Stream *s : all)
        s->start();
    if (streams > 0)
        app.exec();
    const double seconds = double(wall.nsecsElapsed()) / 1e9;

    QJsonObject out;
    out[QStringLiteral("url")] = url.toString();
    out[QStringLiteral("streams")] = streams;
    out[QStringLiteral("n")] = n;
    out[QStringLiteral("delay_us")] = cli.value(delayOpt).toDouble();
    out[QStringLiteral("completed")] = totals.completed;
    out[QStringLiteral("errors")] = totals.errors;
    out[QStringLiteral("error_samples")] = totals.errorSamples;
    out[QStringLiteral("chunks")] = double(totals.chunks);
    out[QStringLiteral("seconds")] = seconds;
    out[QStringLiteral("chunks_per_s")] = seconds > 0 ? double(totals.chunks) / seconds : 0.0;
    out[QStringLiteral("delay_us_stats")] = percentiles(std::move(totals.delays));
    out[QStringLiteral("first_byte_us")] = percentiles(std::move(totals.firstByteUs));
    QTextStream(stdout) << QJsonDocument(out).toJson(QJsonDocument::Compact) << "\n";
    return totals.errors == 0 ? 0 : 1;
}
