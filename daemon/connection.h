#pragma once

// One client connection: reads request heads (with limits and a header timeout), answers the
// daemon's own routes, checks the token, holds proxied requests on the backend, hands them to
// an UpstreamRelay, and keeps the connection alive for the next request. Requests on one
// connection are handled one at a time (pipelining-safe).

#include "auth.h"
#include "backend.h"
#include "exchangerecord.h"
#include "httpparser.h"
#include "upstreamrelay.h"

#include <QBasicTimer>
#include <QByteArray>
#include <QObject>
#include <QString>

QT_BEGIN_NAMESPACE
class QTcpSocket;
QT_END_NAMESPACE

namespace slullama {

struct ServerConfig;
class Gateway;

// Everything the HTTP side needs to know, in the units it uses.
struct ProxySettings
{
    QString bind = QStringLiteral("0.0.0.0");
    quint16 port = 11435;
    QString token;
    qint64 maxBodyBytes = 256LL * 1024 * 1024;
    int maxConnections = 4096;
    int headerTimeoutMs = 30000; // a request head must be complete this long after its first byte
    int keepAliveTimeoutMs = 75000; // an idle connection between requests is closed after this
    int stallTimeoutMs = 120000; // a client that sends no body / reads no response for this long
    int lingerTimeoutMs = 2000; // after a final response, unread client bytes are drained this long
    http::Limits limits;

    static ProxySettings fromConfig(const ServerConfig &server);
};

// State shared by all connections of one server.
struct ProxyShared
{
    ProxySettings settings;
    Auth auth;
    Backend *backend = nullptr;
    UpstreamPool *pool = nullptr;
    Gateway *gateway = nullptr; // keys, usage, limits, metrics (docs/TEAM.md); optional
    bool draining = false;
    int activeExchanges = 0;
};

class Connection final : public QObject
{
    Q_OBJECT

public:
    Connection(qintptr socketDescriptor, ProxyShared *shared, QObject *parent = nullptr);
    ~Connection() override;

    bool isValid() const { return m_state != State::Closed; }
    // Between requests with nothing received: safe to close without losing anything.
    bool isIdle() const;
    bool inExchange() const { return m_inExchange; }
    // Drain: close now if idle, else after the current exchange.
    void closeWhenIdle();
    void abort();

signals:
    void closed(slullama::Connection *connection);
    void exchangeEnded();

protected:
    void timerEvent(QTimerEvent *event) override;

private:
    enum class State { ReadingHead, Acquiring, Relaying, Closing, Lingering, Closed };

    void onReadyRead();
    void onBytesWritten();
    void onDisconnected();
    void processInput();
    bool readHeadBytes();
    bool headTerminatorSeen();
    void handleRequest(http::RequestHead head);
    void handleOwnRoute();
    void startAcquire();
    void onAcquired(quint64 attempt, const AcquireResult &result);
    void startRelay(const Upstream &upstream);
    void onRelayFinished(UpstreamRelay::End end, const QString &detail);
    void respond(int status, const QByteArray &body, bool keepAlive,
                 const QByteArray &extraHeaders = {},
                 QByteArrayView contentType = "application/json");
    bool authorized();
    QByteArray statusBody();
    void handleMetrics();
    void respondError(int status, const QString &message, bool keepAlive = false,
                      const QByteArray &extraHeaders = {});
    bool requestBodyPending() const;
    bool skipRequestBody();
    // POST /slullama/wake: waits for a small body (the keep-awake duration), then answers.
    void continueWake();
    void endExchange(bool keepAlive);
    void leaveExchange();
    void releaseHold();
    void closeGracefully();
    void startLingering();
    void markClosed();
    void armIdleTimer();

    ProxyShared *m_shared;
    QTcpSocket *m_socket;
    QByteArray m_clientAddress;
    QByteArray m_in;
    qsizetype m_scanned = 0;
    State m_state = State::ReadingHead;
    bool m_headStarted = false;
    bool m_processing = false;

    http::RequestHead m_head;
    http::BodyFraming m_framing;
    bool m_inExchange = false;
    bool m_retried = false;
    bool m_ticketPending = false;
    bool m_holding = false;
    bool m_closeAfterExchange = false;
    bool m_wakeBodyWait = false; // in State::Acquiring: reading the wake's body, not acquiring
    Backend::Ticket m_ticket = 0;
    quint64 m_attempt = 0;
    Upstream m_upstream;
    UpstreamRelay *m_relay = nullptr;
    ExchangeRecord m_record; // for the gateway
    QBasicTimer m_timer;
};

} // namespace slullama
