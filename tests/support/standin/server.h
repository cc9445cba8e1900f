#pragma once

// The stand-in model server: an HTTP/1.1 server on one thread that answers like `ollama serve`.

#include "httpparser.h"

#include <QDateTime>
#include <QFile>
#include <QHostAddress>
#include <QList>
#include <QObject>
#include <QStringList>
#include <QTcpServer>
#include <QTimer>

#include <functional>
#include <memory>

class QTcpSocket;

namespace slullama::standin {

inline constexpr char kVersion[] = "0.0.0-standin";

// Everything a test can set through the environment (see README in this folder).
struct Settings
{
    int startupDelayMs = 0;
    int tokenDelayMs = 0;
    int tokens = 8;
    int pullDelayMs = 0;
    QStringList models{QStringLiteral("llama3.2:1b"), QStringLiteral("qwen2.5:0.5b")};
    QString requestLogPath;

    static Settings fromEnvironment();
};

struct ModelInfo
{
    QString name;  // normalised, always with a tag
    QByteArray digest;  // 64 hex digits
    qint64 size = 0;
    QByteArray family;
    QByteArray parameterSize;
    bool embedding = false;
    QDateTime modifiedAt;
};

// "llama3.2" → "llama3.2:latest", as Ollama resolves names.
QString normalizeModelName(const QString &name);

struct Stats
{
    qint64 requests = 0;
    qint64 connectionsOpen = 0;
    qint64 connectionsTotal = 0;
    qint64 streamsActive = 0;     // responses produced over time: streams and delayed answers
    qint64 streamsCompleted = 0;
    qint64 streamsAborted = 0;    // the client went away before the end
};

class Server final : public QObject
{
public:
    explicit Server(Settings settings, QObject *parent = nullptr);
    ~Server() override;

    bool listen(const QHostAddress &address, quint16 port);
    QHostAddress serverAddress() const { return m_server.serverAddress(); }
    quint16 serverPort() const { return m_server.serverPort(); }
    QString errorString() const { return m_server.errorString(); }

    const Settings &settings() const { return m_settings; }
    Stats &stats() { return m_stats; }

    const ModelInfo *findModel(const QString &name) const;
    const QList<ModelInfo> &models() const { return m_models; }
    void addModel(const QString &name);
    bool removeModel(const QString &name);
    void markLoaded(const QString &name);
    QByteArray runningModelsJson();

    void logRequest(const http::RequestHead &head);
    const QByteArray &httpDate();

private:
    void onNewConnection();

    Settings m_settings;
    QTcpServer m_server;
    QList<ModelInfo> m_models;
    QList<std::pair<QString, QDateTime>> m_loaded;  // model, expires at
    Stats m_stats;
    std::unique_ptr<QFile> m_requestLog;
    qint64 m_dateSecond = -1;
    QByteArray m_date;
};

// One client connection: reads requests (keep-alive, pipelining, chunked bodies), hands each to
// the routes and writes the answer, streamed pieces flushed one by one as they are produced.
class Connection final : public QObject
{
public:
    Connection(Server *server, QTcpSocket *socket);
    ~Connection() override;

    const http::RequestHead &head() const { return m_head; }
    const QByteArray &body() const { return m_body; }
    Server &server() { return *m_server; }

    void respond(int status, QByteArrayView contentType, const QByteArray &body);
    void respondJson(int status, const QByteArray &json)
    {
        respond(status, "application/json; charset=utf-8", json);
    }

    struct Stream
    {
        int status = 200;
        QByteArray contentType;
        qint64 contentLength = -1;  // -1: chunked (or until close for HTTP/1.0)
        int count = 0;              // pieces before the final one
        qint64 firstDelayUs = 0;    // before piece 0
        qint64 intervalUs = 0;      // between pieces
        std::function<QByteArray(int index)> piece;
        std::function<QByteArray()> finish;  // the last piece, written after `count` pieces
    };
    void startStream(Stream stream);

    // Answers later (a non-streamed generation that takes time); dropped if the client leaves.
    void respondLater(qint64 delayMs, std::function<void()> respond);

private:
    enum class Phase { Head, Body, Busy };

    void onReadyRead();
    void onDisconnected();
    void process();
    void failRequest(int status, const QByteArray &why);
    QByteArray responseHead(int status, QByteArrayView contentType, qint64 contentLength);
    void write(const QByteArray &data);
    void writePiece(const QByteArray &piece);
    void pump();
    void armTimer(qint64 ms, std::function<void()> fn);
    void finishResponse();
    void endActive(bool completed);

    Server *m_server;
    QTcpSocket *m_socket;
    QByteArray m_in;
    Phase m_phase = Phase::Head;
    http::RequestHead m_head;
    http::BodyFraming m_framing;
    qint64 m_bodyRemaining = 0;
    QByteArray m_body;
    http::ChunkedDecoder m_decoder;
    bool m_keepAlive = true;
    bool m_closed = false;   // the socket is gone
    bool m_closing = false;  // the last answer is written, the socket closes after it
    bool m_processing = false;

    QTimer m_timer;
    std::function<void()> m_onTimer;
    bool m_active = false;  // a stream or a delayed answer is in progress
    bool m_streaming = false;
    bool m_chunkedOut = false;
    bool m_waitingForDrain = false;
    Stream m_stream;
    int m_streamNext = 0;
    qint64 m_streamStartUs = 0;
};

// Routes a complete request (routes.cpp).
void handleRequest(Connection &c);

} // namespace slullama::standin
