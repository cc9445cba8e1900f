#include "loadrun.h"

#include "httpparser.h"

#include <QJsonArray>
#include <QTcpSocket>
#include <QTimer>

#include <algorithm>
#include <cmath>
#include <ctime>

namespace slullama::loadgen {

namespace {

constexpr int kMaxErrorSamples = 8;

qint64 realtimeUs()
{
    timespec ts {};
    clock_gettime(CLOCK_REALTIME, &ts);
    return qint64(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

double percentile(QList<double> sorted, double q)
{
    if (sorted.isEmpty())
        return 0;
    const qsizetype rank = qsizetype(std::ceil(q * double(sorted.size())));
    return sorted.at(std::clamp<qsizetype>(rank - 1, 0, sorted.size() - 1));
}

QJsonObject distribution(QList<double> values)
{
    std::sort(values.begin(), values.end());
    double sum = 0;
    for (double v : values)
        sum += v;
    auto round3 = [](double v) { return std::round(v * 1000.0) / 1000.0; };
    return QJsonObject {
        {QStringLiteral("count"), values.size()},
        {QStringLiteral("min"), round3(values.isEmpty() ? 0 : values.first())},
        {QStringLiteral("mean"), round3(values.isEmpty() ? 0 : sum / double(values.size()))},
        {QStringLiteral("p50"), round3(percentile(values, 0.50))},
        {QStringLiteral("p90"), round3(percentile(values, 0.90))},
        {QStringLiteral("p99"), round3(percentile(values, 0.99))},
        {QStringLiteral("max"), round3(values.isEmpty() ? 0 : values.last())},
    };
}

} // namespace

// One client connection. Sends one request at a time and reuses the connection while the
// server keeps it alive.
class Worker final : public QObject
{
public:
    explicit Worker(LoadRun *run) : QObject(run), m_run(run)
    {
        m_timer.setSingleShot(true);
        connect(&m_timer, &QTimer::timeout, this, [this] {
            fail(QStringLiteral("timeout"),
                 QStringLiteral("no complete answer within %1 ms").arg(m_run->m_options.timeoutMs));
        });
    }

    void next()
    {
        if (!m_run->takeRequest()) {
            dropSocket();
            m_phase = Phase::Finished;
            m_run->workerDone();
            return;
        }
        m_retried = false;
        begin();
    }

private:
    enum class Phase { Idle, Connecting, Head, Body, Finished };

    void begin()
    {
        m_buf.clear();
        m_line.clear();
        m_chunks = 0;
        m_bytes = 0;
        m_firstByteNs = -1;
        m_head = {};
        m_framing = {};
        m_decoder = http::ChunkedDecoder();
        ++m_serial;
        m_started.start();
        m_timer.start(m_run->m_options.timeoutMs);
        if (m_socket && m_socket->state() == QAbstractSocket::ConnectedState) {
            m_reused = true;
            send();
            return;
        }
        dropSocket();
        m_reused = false;
        m_socket = new QTcpSocket(this);
        ++m_run->m_summary.connections;
        connect(m_socket, &QTcpSocket::connected, this, [this] {
            m_socket->setSocketOption(QAbstractSocket::LowDelayOption, 1);
            send();
        });
        connect(m_socket, &QTcpSocket::readyRead, this, &Worker::onReadyRead);
        connect(m_socket, &QTcpSocket::errorOccurred, this, &Worker::onSocketError);
        m_phase = Phase::Connecting;
        m_socket->connectToHost(m_run->m_options.host, m_run->m_options.port);
    }

    void send()
    {
        m_phase = Phase::Head;
        m_started.restart();
        m_socket->write(m_run->m_request);
    }

    void onReadyRead()
    {
        if (m_phase != Phase::Head && m_phase != Phase::Body) {
            m_socket->skip(m_socket->bytesAvailable()); // nothing was asked
            return;
        }
        const QByteArray data = m_socket->readAll();
        if (data.isEmpty())
            return;
        if (m_firstByteNs < 0)
            m_firstByteNs = m_started.nsecsElapsed();
        m_arrivalUs = realtimeUs();
        m_buf += data;
        parse();
    }

    void parse()
    {
        while (!m_buf.isEmpty()) {
            if (m_phase == Phase::Head) {
                http::Limits limits;
                limits.requireHost = false;
                auto parsed = http::parseResponseHead(m_buf, limits);
                if (parsed.state == http::ParseState::Incomplete)
                    return;
                if (parsed.state == http::ParseState::Error)
                    return fail(QStringLiteral("protocol"),
                                QStringLiteral("bad response head: ")
                                    + QString::fromLatin1(parsed.error));
                m_buf.remove(0, parsed.consumed);
                if (parsed.head.status >= 100 && parsed.head.status < 200)
                    continue; // interim (100 Continue)
                m_head = std::move(parsed.head);
                m_framing = http::responseBodyFraming(m_run->m_options.method, m_head);
                if (m_framing.kind == http::BodyFraming::Invalid)
                    return fail(QStringLiteral("protocol"),
                                QStringLiteral("bad response framing: ")
                                    + QString::fromLatin1(m_framing.error));
                m_remaining = m_framing.length;
                m_phase = Phase::Body;
                if (m_framing.kind == http::BodyFraming::None
                    || (m_framing.kind == http::BodyFraming::Length && m_remaining == 0))
                    return complete();
                continue;
            }
            if (m_phase != Phase::Body)
                return;
            switch (m_framing.kind) {
            case http::BodyFraming::Length: {
                const qint64 take = std::min<qint64>(m_remaining, m_buf.size());
                addBody(QByteArrayView(m_buf).first(take));
                m_buf.remove(0, take);
                m_remaining -= take;
                if (m_remaining == 0)
                    return complete();
                break;
            }
            case http::BodyFraming::Chunked: {
                QByteArray out;
                const auto step = m_decoder.feed(m_buf, &out);
                m_buf.remove(0, step.consumed);
                addBody(out);
                if (step.error)
                    return fail(QStringLiteral("protocol"),
                                QStringLiteral("bad chunked body: ")
                                    + QString::fromLatin1(step.errorText));
                if (step.done)
                    return complete();
                if (step.consumed == 0)
                    return;
                break;
            }
            case http::BodyFraming::UntilClose:
                addBody(m_buf);
                m_buf.clear();
                break;
            default:
                return complete();
            }
        }
    }

    void addBody(QByteArrayView data)
    {
        m_bytes += data.size();
        if (!m_run->m_options.stream && !m_run->m_observer)
            return;
        while (!data.isEmpty()) {
            const qsizetype nl = data.indexOf('\n');
            if (nl < 0) {
                m_line += data;
                return;
            }
            m_line += data.first(nl);
            data = data.sliced(nl + 1);
            endLine();
        }
    }

    void endLine()
    {
        if (m_line.endsWith('\r'))
            m_line.chop(1);
        if (!m_line.isEmpty()) {
            ++m_chunks;
            if (m_run->m_observer)
                m_run->m_observer(m_line, m_arrivalUs);
        }
        m_line.clear();
    }

    void complete()
    {
        endLine();
        m_timer.stop();
        LoadRun::Outcome outcome;
        outcome.status = m_head.status;
        outcome.latencyMs = double(m_started.nsecsElapsed()) / 1e6;
        outcome.firstByteMs = double(m_firstByteNs) / 1e6;
        outcome.chunks = m_chunks;
        outcome.bytes = m_bytes;
        if (!m_run->statusExpected(m_head.status)) {
            outcome.errorKind = QStringLiteral("status");
            outcome.errorText = QStringLiteral("HTTP %1 %2")
                                    .arg(m_head.status)
                                    .arg(QString::fromUtf8(m_head.reason));
        } else if (m_run->m_options.minChunks > 0 && m_chunks < m_run->m_options.minChunks) {
            outcome.errorKind = QStringLiteral("short_stream");
            outcome.errorText = QStringLiteral("%1 lines, expected at least %2")
                                    .arg(m_chunks)
                                    .arg(m_run->m_options.minChunks);
        }
        const bool keep = m_framing.kind != http::BodyFraming::UntilClose
            && m_head.versionMinor >= 1 && !m_head.headers.hasToken("connection", "close")
            && m_buf.isEmpty();
        m_phase = Phase::Idle;
        if (!keep)
            dropSocket();
        m_run->record(outcome);
        next();
    }

    void onSocketError(QAbstractSocket::SocketError error)
    {
        QTcpSocket *const socket = m_socket;
        const quint64 serial = m_serial;
        if ((m_phase == Phase::Head || m_phase == Phase::Body) && socket->bytesAvailable() > 0) {
            // Take what is still buffered before judging the close.
            onReadyRead();
            if (serial != m_serial || m_phase == Phase::Finished) {
                // That completed the request; the next one may already sit on this dead socket.
                if (m_socket == socket) {
                    dropSocket();
                    if (m_phase == Phase::Head)
                        begin();
                }
                return;
            }
        }
        switch (m_phase) {
        case Phase::Connecting:
            return fail(QStringLiteral("connect"), m_socket->errorString());
        case Phase::Head:
            if (error == QAbstractSocket::RemoteHostClosedError && m_firstByteNs < 0 && m_reused
                && !m_retried) {
                // The server closed an idle keep-alive connection as we reused it: the request
                // never reached it, so send it again on a fresh connection (as browsers do).
                m_retried = true;
                dropSocket();
                return begin();
            }
            return fail(QStringLiteral("closed"),
                        QStringLiteral("connection closed before the answer was complete: ")
                            + m_socket->errorString());
        case Phase::Body:
            if (m_framing.kind == http::BodyFraming::UntilClose
                && error == QAbstractSocket::RemoteHostClosedError)
                return complete();
            return fail(
                QStringLiteral("closed"),
                QStringLiteral("connection closed mid-body (HTTP %1, %2 lines, %3 bytes): %4")
                    .arg(m_head.status)
                    .arg(m_chunks)
                    .arg(m_bytes)
                    .arg(m_socket->errorString()));
        case Phase::Idle:
        case Phase::Finished:
            dropSocket(); // an idle keep-alive connection closed by the server
            return;
        }
    }

    void fail(const QString &kind, const QString &text)
    {
        m_timer.stop();
        LoadRun::Outcome outcome;
        outcome.status = m_phase == Phase::Body ? m_head.status : 0;
        outcome.errorKind = kind;
        outcome.errorText = text;
        outcome.latencyMs = double(m_started.nsecsElapsed()) / 1e6;
        outcome.chunks = m_chunks;
        outcome.bytes = m_bytes;
        m_phase = Phase::Idle;
        dropSocket();
        m_run->record(outcome);
        // From the event loop: a failure inside a socket signal must not recurse into a new
        // connection attempt on the same stack.
        QTimer::singleShot(0, this, [this] { next(); });
    }

    void dropSocket()
    {
        if (!m_socket)
            return;
        m_socket->disconnect(this);
        m_socket->abort();
        m_socket->deleteLater();
        m_socket = nullptr;
    }

    LoadRun *m_run;
    QTcpSocket *m_socket = nullptr;
    QTimer m_timer;
    quint64 m_serial = 0; // one per attempt: tells a finished request from the next one
    Phase m_phase = Phase::Idle;
    QElapsedTimer m_started;
    qint64 m_firstByteNs = -1;
    qint64 m_arrivalUs = 0;
    bool m_reused = false;
    bool m_retried = false;

    QByteArray m_buf;
    http::ResponseHead m_head;
    http::BodyFraming m_framing;
    http::ChunkedDecoder m_decoder;
    qint64 m_remaining = 0;
    QByteArray m_line;
    qint64 m_chunks = 0;
    qint64 m_bytes = 0;
};

LoadRun::LoadRun(Options options, QObject *parent) : QObject(parent), m_options(std::move(options))
{
    QByteArray r = m_options.method + ' ' + m_options.target
        + " HTTP/1.1\r\nHost: " + m_options.hostHeader + "\r\nUser-Agent: slullama-loadgen\r\n";
    bool hasContentType = false;
    for (const auto &[name, value] : std::as_const(m_options.headers)) {
        r += name + ": " + value + "\r\n";
        hasContentType = hasContentType || name.compare("content-type", Qt::CaseInsensitive) == 0;
    }
    if (m_options.hasBody) {
        if (!hasContentType)
            r += "Content-Type: application/json\r\n";
        r += "Content-Length: " + QByteArray::number(m_options.body.size()) + "\r\n";
    }
    r += "\r\n";
    if (m_options.hasBody)
        r += m_options.body;
    m_request = r;
    m_summary.requests = m_options.requests;
}

LoadRun::~LoadRun() = default;

void LoadRun::start()
{
    m_clock.start();
    const qint64 workers = std::min<qint64>(m_options.concurrency, m_options.requests);
    if (workers <= 0) {
        QTimer::singleShot(0, this, &LoadRun::finished);
        return;
    }
    m_running = int(workers);
    for (qint64 i = 0; i < workers; ++i)
        m_workers.append(new Worker(this));
    for (Worker *worker : std::as_const(m_workers))
        worker->next();
}

bool LoadRun::takeRequest()
{
    if (m_issued >= m_options.requests)
        return false;
    ++m_issued;
    return true;
}

bool LoadRun::statusExpected(int status) const
{
    if (m_options.expectStatus.isEmpty())
        return status >= 200 && status < 300;
    return m_options.expectStatus.contains(status);
}

void LoadRun::record(const Outcome &outcome)
{
    if (outcome.status > 0)
        ++m_summary.statuses[outcome.status];
    m_summary.chunks += outcome.chunks;
    m_summary.bytes += outcome.bytes;
    if (outcome.errorKind.isEmpty()) {
        ++m_summary.ok;
        m_summary.latenciesMs.append(outcome.latencyMs);
        m_summary.firstByteMs.append(outcome.firstByteMs);
        return;
    }
    ++m_summary.failed;
    ++m_summary.errors[outcome.errorKind];
    if (m_summary.errorSamples.size() < kMaxErrorSamples)
        m_summary.errorSamples.append(outcome.errorKind + QStringLiteral(": ") + outcome.errorText);
}

void LoadRun::workerDone()
{
    if (--m_running > 0)
        return;
    m_summary.elapsedSeconds = double(m_clock.nsecsElapsed()) / 1e9;
    QTimer::singleShot(0, this, &LoadRun::finished);
}

QJsonObject Summary::toJson() const
{
    QJsonObject errorsObject;
    for (auto it = errors.cbegin(); it != errors.cend(); ++it)
        errorsObject.insert(it.key(), it.value());
    QJsonObject statusObject;
    for (auto it = statuses.cbegin(); it != statuses.cend(); ++it)
        statusObject.insert(QString::number(it.key()), it.value());
    const double rate = elapsedSeconds > 0 ? double(ok + failed) / elapsedSeconds : 0;
    return QJsonObject {
        {QStringLiteral("requests"), requests},
        {QStringLiteral("ok"), ok},
        {QStringLiteral("failed"), failed},
        {QStringLiteral("errors"), errorsObject},
        {QStringLiteral("statuses"), statusObject},
        {QStringLiteral("latency_ms"), distribution(latenciesMs)},
        {QStringLiteral("first_byte_ms"), distribution(firstByteMs)},
        {QStringLiteral("chunks"), chunks},
        {QStringLiteral("bytes"), bytes},
        {QStringLiteral("connections"), connections},
        {QStringLiteral("elapsed_s"), std::round(elapsedSeconds * 1000.0) / 1000.0},
        {QStringLiteral("req_per_s"), std::round(rate * 10.0) / 10.0},
        {QStringLiteral("error_samples"), QJsonArray::fromStringList(errorSamples)},
    };
}

QString Summary::toText() const
{
    const QJsonObject j = toJson();
    const QJsonObject lat = j.value(QStringLiteral("latency_ms")).toObject();
    QString text = QStringLiteral("%1/%2 ok, %3 failed in %4 s (%5 req/s), %6 connections\n")
                       .arg(ok)
                       .arg(requests)
                       .arg(failed)
                       .arg(j.value(QStringLiteral("elapsed_s")).toDouble())
                       .arg(j.value(QStringLiteral("req_per_s")).toDouble())
                       .arg(connections);
    text += QStringLiteral("latency ms: p50 %1  p90 %2  p99 %3  max %4\n")
                .arg(lat.value(QStringLiteral("p50")).toDouble())
                .arg(lat.value(QStringLiteral("p90")).toDouble())
                .arg(lat.value(QStringLiteral("p99")).toDouble())
                .arg(lat.value(QStringLiteral("max")).toDouble());
    text += QStringLiteral("chunks %1, body bytes %2\n").arg(chunks).arg(bytes);
    for (auto it = statuses.cbegin(); it != statuses.cend(); ++it)
        text += QStringLiteral("status %1: %2\n").arg(it.key()).arg(it.value());
    for (auto it = errors.cbegin(); it != errors.cend(); ++it)
        text += QStringLiteral("error %1: %2\n").arg(it.key()).arg(it.value());
    for (const QString &sample : errorSamples)
        text += QStringLiteral("  e.g. ") + sample + u'\n';
    return text;
}

} // namespace slullama::loadgen
