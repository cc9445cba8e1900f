#pragma once

// One request/response exchange between a client socket and the model server: writes the
// rewritten request head, streams the request body by its framing, then relays the response as
// it arrives (each NDJSON line / SSE event goes out when it comes in), watching only enough of
// its framing to know where it ends. Back-pressure both ways: a side is read only while the
// other side's write buffer is below a threshold.

#include "backend.h"
#include "httpparser.h"

#include <QBasicTimer>
#include <QByteArray>
#include <QElapsedTimer>
#include <QObject>
#include <QString>

#include <vector>

QT_BEGIN_NAMESPACE
class QTcpSocket;
QT_END_NAMESPACE

namespace slullama {

// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
// ones a Connection header names. Never forwarded in either direction.
void removeHopByHopHeaders(http::Headers &headers);

// The head sent to the model server: hop-by-hop headers and Authorization removed, Host set to
// the upstream, X-Forwarded-For / X-Forwarded-Proto added, Expect handled by the proxy.
QByteArray forwardedRequestHead(const http::RequestHead &head, const http::BodyFraming &framing,
                                const Upstream &upstream, QByteArrayView clientAddress);

// Sees a response as it goes to the client, e.g. for usage accounting (docs/TEAM.md). Called
// synchronously from the relay: must be cheap and must not touch the sockets.
class ResponseTap
{
public:
    virtual ~ResponseTap() = default;
    // The final head as sent; its Transfer-Encoding says whether the body bytes are chunked.
    virtual void responseHead(const http::ResponseHead &head, qsizetype headBytes) = 0;
    // Body bytes exactly as written to the client.
    virtual void responseBody(QByteArrayView bytes) = 0;
};

// Idle keep-alive connections to the model server, reused by later requests: saves a TCP
// handshake (through the ssh tunnel: a new channel) and two sockets per request.
class UpstreamPool final : public QObject
{
public:
    explicit UpstreamPool(QObject *parent = nullptr);
    ~UpstreamPool() override;

    // An idle, still-open connection to `upstream` (same boot generation), or nullptr.
    // The caller takes ownership.
    QTcpSocket *take(const Upstream &upstream);
    // Keeps `socket` (connected, between responses) for reuse; it may be dropped instead.
    void put(const Upstream &upstream, QTcpSocket *socket);
    int idleCount() const;

    int maxIdlePerUpstream = 512;
    int idleTimeoutMs = 20000;

protected:
    void timerEvent(QTimerEvent *event) override;

private:
    struct Idle
    {
        QTcpSocket *socket;
        qint64 since;
    };
    struct Entry
    {
        Upstream upstream;
        std::vector<Idle> idle;
    };
    Entry *find(const Upstream &upstream);
    void drop(QTcpSocket *socket);

    std::vector<Entry> m_entries;
    QBasicTimer m_sweep;
    QElapsedTimer m_clock;
};

class UpstreamRelay final : public QObject
{
    Q_OBJECT

public:
    struct Request
    {
        QByteArray head; // from forwardedRequestHead()
        QByteArray method;
        http::BodyFraming framing;
        bool clientKeepAlive = true;
        bool clientHttp10 = false;
        bool expectContinue = false;
        qint64 maxBodyBytes = 0; // 0 = no limit
        int stallTimeoutMs = 120000; // client sends no body / reads no response for this long
        int connectTimeoutMs = 10000;
        UpstreamPool *pool = nullptr; // reuse idle upstream connections when set
        ResponseTap *tap = nullptr; // optional observer of the response
        QList<http::Header> extraResponseHeaders; // set on the response head to the client
    };

    enum class End {
        Complete, // response relayed in full; keepClient() tells if the client stays open
        ClientGone, // client disconnected or stalled; the upstream request was aborted
        ConnectFailed, // upstream unreachable or closed before any response byte; nothing sent
        UpstreamBroken, // upstream failed after the response began; the client must be closed
        BadGateway, // upstream sent an invalid response head; nothing sent yet: answer 502
        BodyTooLarge, // request body over the limit; nothing sent yet: answer 413
        BadRequestBody, // malformed chunked request body; nothing sent yet: answer 400
    };
    Q_ENUM(End)

    // `clientBuffer` holds request bytes already read from the client after the head; the relay
    // reads it from the front without removing anything (see bufferConsumed()).
    UpstreamRelay(QTcpSocket *client, QByteArray *clientBuffer, Request request,
                  QObject *parent = nullptr);
    ~UpstreamRelay() override;

    void start(const Upstream &upstream);

    // Called by the owner for the client socket's signals.
    void clientReadable();
    void clientWritten();
    void clientGone();

    bool responseStarted() const { return m_responseStarted; }
    // True once request bytes were taken from the client socket itself: the request can no
    // longer be replayed on a fresh upstream connection.
    bool consumedClientSocket() const { return m_consumedSocket; }
    qsizetype bufferConsumed() const { return m_inPos; }
    qint64 requestBodyBytes() const { return m_requestBodyBytes; }
    bool keepClient() const { return m_keepClient; }
    bool isFinished() const { return m_finished; }

signals:
    void finished(slullama::UpstreamRelay::End end, const QString &detail);

protected:
    void timerEvent(QTimerEvent *event) override;

private:
    void openUpstream();
    void attachUpstream();
    void restartOnFreshConnection();
    void onConnected();
    void onUpstreamReadable();
    void onUpstreamWritten();
    void onUpstreamClosed(const QString &reason);
    void pumpRequest();
    void pumpResponse();
    void processResponse(const char *data, qsizetype size);
    bool processResponseHead();
    void processResponseBody(const char *data, qsizetype size);
    void writeToClient(const char *data, qsizetype size);
    void updateStallTimer();
    void finish(End end, const QString &detail = {});

    QTcpSocket *m_client;
    QTcpSocket *m_upstream = nullptr;
    QByteArray *m_in;
    qsizetype m_inPos = 0;
    Request m_request;
    Upstream m_target;

    // request side
    http::ChunkedDecoder m_requestDecoder;
    qint64 m_requestRemaining = 0;
    qint64 m_requestBodyBytes = 0;
    bool m_requestDone = false;
    bool m_consumedSocket = false;

    // response side
    QByteArray m_responseHead; // until the head is complete
    http::BodyFraming m_responseFraming;
    http::ChunkedDecoder m_responseDecoder;
    QByteArray m_decoded; // only when de-chunking for an HTTP/1.0 client
    qint64 m_responseRemaining = 0;
    bool m_headDone = false;
    bool m_dechunk = false;
    bool m_gotUpstreamBytes = false;
    bool m_responseStarted = false;
    bool m_responseDone = false;
    bool m_upstreamEof = false;
    QString m_upstreamEofReason;

    bool m_connected = false;
    bool m_reused = false; // the upstream connection came from the pool
    bool m_upstreamKeepAlive = false;
    bool m_upstreamExtraBytes = false;
    bool m_sentContinue = false;
    bool m_keepClient = false;
    bool m_finished = false;
    QBasicTimer m_stallTimer;
    QBasicTimer m_connectTimer;
};

} // namespace slullama
