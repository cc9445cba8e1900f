#pragma once

// The engine of slullama-loadgen: N keep-alive HTTP/1.1 connections (raw QTcpSocket, one event
// loop) that together send M requests and record per-request outcomes. QNetworkAccessManager is
// avoided on purpose: it opens at most 6 connections per host, which would hide exactly the
// concurrency the daemon must handle.

#include <QByteArray>
#include <QByteArrayView>
#include <QElapsedTimer>
#include <QJsonObject>
#include <QList>
#include <QMap>
#include <QObject>
#include <QString>

#include <functional>
#include <utility>

namespace slullama::loadgen {

struct Options
{
    QString host = QStringLiteral("127.0.0.1");
    quint16 port = 80;
    QByteArray target = "/"; // path and query
    QByteArray hostHeader; // "host:port"
    QByteArray method = "GET";
    QByteArray body;
    bool hasBody = false;
    QList<std::pair<QByteArray, QByteArray>> headers;
    int concurrency = 1;
    qint64 requests = 1;
    bool stream = false; // count body lines (NDJSON lines, SSE `data:` lines) as chunks
    int minChunks = 0; // a response with fewer lines is an error ("short_stream")
    QList<int> expectStatus; // empty: any 2xx
    int timeoutMs = 60000; // per request, from sending to the end of the body
};

// Called for every complete body line (without the line end) of every response, with the
// CLOCK_REALTIME time in µs at which the bytes holding its end were read. This is where a
// per-chunk delay measurement (against the stand-in's `t_us`) plugs in.
using LineObserver = std::function<void(QByteArrayView line, qint64 arrivalUs)>;

struct Summary
{
    qint64 requests = 0;
    qint64 ok = 0;
    qint64 failed = 0;
    QMap<QString, qint64> errors; // kind -> count
    QMap<int, qint64> statuses; // HTTP status -> count (every response received)
    QList<double> latenciesMs; // request sent -> body complete, successful requests
    QList<double> firstByteMs; // request sent -> first response byte, successful requests
    qint64 chunks = 0;
    qint64 bytes = 0; // body bytes after de-chunking
    qint64 connections = 0;
    double elapsedSeconds = 0;
    QStringList errorSamples; // the first few error messages

    QJsonObject toJson() const;
    QString toText() const;
};

class Worker;

class LoadRun final : public QObject
{
    Q_OBJECT

public:
    explicit LoadRun(Options options, QObject *parent = nullptr);
    ~LoadRun() override;

    void setLineObserver(LineObserver observer) { m_observer = std::move(observer); }
    void start();
    const Summary &summary() const { return m_summary; }
    bool succeeded() const { return m_summary.failed == 0 && m_summary.ok == m_summary.requests; }

signals:
    void finished();

private:
    friend class Worker;

    struct Outcome
    {
        int status = 0; // 0: no response
        QString errorKind; // empty: success
        QString errorText;
        double latencyMs = 0;
        double firstByteMs = -1;
        qint64 chunks = 0;
        qint64 bytes = 0;
    };

    bool takeRequest();
    void record(const Outcome &outcome);
    void workerDone();
    bool statusExpected(int status) const;

    Options m_options;
    QByteArray m_request;
    LineObserver m_observer;
    QList<Worker *> m_workers;
    qint64 m_issued = 0;
    int m_running = 0;
    QElapsedTimer m_clock;
    Summary m_summary;
};

} // namespace slullama::loadgen
