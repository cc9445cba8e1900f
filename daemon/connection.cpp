#include "connection.h"

#include "config.h"
#include "gateway.h"
#include "logging.h"

#include <QHostAddress>
#include <QJsonDocument>
#include <QJsonObject>
#include <QPointer>
#include <QTcpSocket>
#include <QTimerEvent>

#include <sys/socket.h>
#include <unistd.h>

#include <cmath>

namespace slullama {

namespace {

constexpr qint64 kSocketReadBuffer = 256 * 1024;

int toMs(double seconds, int fallback)
{
    if (!(seconds > 0) || !std::isfinite(seconds))
        return fallback;
    return int(std::min(seconds * 1000.0, 24.0 * 3600 * 1000));
}

QByteArray errorJson(const QString &message)
{
    return QJsonDocument(QJsonObject {{QStringLiteral("error"), message}})
        .toJson(QJsonDocument::Compact);
}

constexpr qint64 kMaxWakeBody = 16 * 1024;
constexpr double kMaxKeepAwakeMinutes = 24 * 60;
// A 503 is for what passes: a restarted slurmctld or munged, a daemon restart. Clients that
// honour Retry-After come back then rather than hammering a Slurm that is down.
constexpr int kRetryAfterSeconds = 30;

// The wake's keep-awake minutes from `?minutes=N` or a JSON body {"keep_awake_minutes": N};
// 0 when neither is given.
Result<double> keepAwakeMinutes(const QByteArray &query, const QByteArray &body)
{
    std::optional<double> minutes;
    for (const QByteArray &pair : query.split('&')) {
        if (!pair.startsWith("minutes="))
            continue;
        bool ok = false;
        const double value = pair.mid(8).toDouble(&ok);
        if (!ok)
            return makeError(QStringLiteral("minutes is not a number"));
        minutes = value;
    }
    if (!body.trimmed().isEmpty()) {
        QJsonParseError error;
        const QJsonDocument document = QJsonDocument::fromJson(body, &error);
        if (error.error != QJsonParseError::NoError || !document.isObject())
            return makeError(QStringLiteral("the wake body must be a JSON object"));
        const QJsonValue value = document.object().value(QLatin1String("keep_awake_minutes"));
        if (!value.isUndefined() && !value.isNull()) {
            if (!value.isDouble())
                return makeError(QStringLiteral("keep_awake_minutes must be a number"));
            minutes = value.toDouble();
        }
    }
    if (!minutes)
        return 0.0;
    if (!std::isfinite(*minutes) || *minutes <= 0 || *minutes > kMaxKeepAwakeMinutes)
        return makeError(QStringLiteral("keep-awake minutes must be more than 0 and at most %1")
                             .arg(kMaxKeepAwakeMinutes));
    return *minutes;
}

} // namespace

ProxySettings ProxySettings::fromConfig(const ServerConfig &server)
{
    ProxySettings s;
    s.bind = server.bind;
    s.port = server.port;
    s.token = server.token;
    s.maxBodyBytes = server.maxBodyBytes;
    s.maxConnections = server.maxConnections;
    s.headerTimeoutMs = toMs(server.headerTimeout, s.headerTimeoutMs);
    s.keepAliveTimeoutMs = toMs(server.keepAliveTimeout, s.keepAliveTimeoutMs);
    s.stallTimeoutMs = toMs(server.stallTimeout, s.stallTimeoutMs);
    return s;
}

Connection::Connection(qintptr socketDescriptor, ProxyShared *shared, QObject *parent)
    : QObject(parent), m_shared(shared), m_socket(new QTcpSocket(this))
{
    if (!m_socket->setSocketDescriptor(socketDescriptor)) {
        ::close(int(socketDescriptor));
        m_state = State::Closed;
        return;
    }
    m_socket->setSocketOption(QAbstractSocket::LowDelayOption, 1);
    m_socket->setReadBufferSize(kSocketReadBuffer);
    const QHostAddress peer = m_socket->peerAddress();
    bool isV4 = false;
    const quint32 v4 = peer.toIPv4Address(&isV4);
    m_clientAddress = (isV4 ? QHostAddress(v4) : peer).toString().toLatin1();

    connect(m_socket, &QTcpSocket::readyRead, this, &Connection::onReadyRead);
    connect(m_socket, &QTcpSocket::bytesWritten, this, &Connection::onBytesWritten);
    connect(m_socket, &QTcpSocket::disconnected, this, &Connection::onDisconnected);
    connect(m_socket, &QTcpSocket::errorOccurred, this, [this](QAbstractSocket::SocketError e) {
        // RemoteHostClosedError is followed by disconnected(); other errors may not be.
        if (e != QAbstractSocket::RemoteHostClosedError
            && m_socket->state() == QAbstractSocket::UnconnectedState)
            onDisconnected();
    });
    armIdleTimer();
}

Connection::~Connection()
{
    if (m_state != State::Closed) {
        m_socket->disconnect(this);
        m_socket->abort();
        markClosed();
    }
}

bool Connection::isIdle() const
{
    return m_state == State::ReadingHead && m_in.isEmpty() && !m_headStarted;
}

void Connection::closeWhenIdle()
{
    m_closeAfterExchange = true;
    if (m_state == State::ReadingHead && !m_inExchange)
        closeGracefully();
}

void Connection::abort()
{
    if (m_state == State::Closed)
        return;
    m_socket->abort();
    markClosed();
}

void Connection::armIdleTimer()
{
    if (m_state == State::ReadingHead && m_in.isEmpty())
        m_timer.start(m_shared->settings.keepAliveTimeoutMs, Qt::CoarseTimer, this);
}

void Connection::onReadyRead()
{
    switch (m_state) {
    case State::ReadingHead:
        processInput();
        break;
    case State::Relaying:
        if (m_relay)
            m_relay->clientReadable();
        break;
    case State::Closing:
    case State::Lingering:
        m_socket->skip(m_socket->bytesAvailable());
        break;
    case State::Acquiring:
        if (m_wakeBodyWait) {
            continueWake();
            break;
        }
        // The body waits in the socket buffer until the upstream is there; when that buffer
        // is full, TCP flow control holds the client.
        break;
    case State::Closed:
        break;
    }
}

void Connection::onBytesWritten()
{
    if (m_state == State::Relaying) {
        if (m_relay)
            m_relay->clientWritten();
    } else if (m_state == State::Closing && m_socket->bytesToWrite() == 0) {
        startLingering();
    }
}

void Connection::onDisconnected()
{
    if (m_state == State::Closed)
        return;
    markClosed();
}

void Connection::processInput()
{
    if (m_processing)
        return;
    m_processing = true;
    const http::Limits &limits = m_shared->settings.limits;
    while (m_state == State::ReadingHead) {
        readHeadBytes();
        if (m_in.isEmpty())
            break;
        if (!m_headStarted) {
            // Slowloris guard: the whole head must arrive within the header timeout.
            m_headStarted = true;
            m_timer.start(m_shared->settings.headerTimeoutMs, Qt::CoarseTimer, this);
        }
        if (!headTerminatorSeen()) {
            if (m_in.size() > limits.maxHeadBytes)
                respondError(431,
                             QStringLiteral("request head is larger than %1 bytes")
                                 .arg(limits.maxHeadBytes));
            break;
        }
        auto parsed = http::parseRequestHead(m_in, limits);
        if (parsed.state == http::ParseState::Incomplete) {
            if (m_in.size() > limits.maxHeadBytes)
                respondError(431,
                             QStringLiteral("request head is larger than %1 bytes")
                                 .arg(limits.maxHeadBytes));
            break;
        }
        if (parsed.state == http::ParseState::Error) {
            qCDebug(lcProxy) << "bad request from" << m_clientAddress << parsed.errorStatus
                             << parsed.error;
            respondError(parsed.errorStatus ? parsed.errorStatus : 400,
                         QString::fromLatin1(parsed.error));
            break;
        }
        m_in.remove(0, parsed.consumed);
        m_scanned = 0;
        handleRequest(std::move(parsed.head));
    }
    m_processing = false;
}

bool Connection::readHeadBytes()
{
    const qint64 available = m_socket->bytesAvailable();
    // Never hold more than one head's worth: a flood of header bytes is refused, not stored.
    const qint64 room = m_shared->settings.limits.maxHeadBytes + 1 - m_in.size();
    if (available <= 0 || room <= 0)
        return false;
    const qsizetype old = m_in.size();
    const qint64 want = std::min(available, room);
    m_in.resize(old + want);
    const qint64 got = m_socket->read(m_in.data() + old, want);
    m_in.resize(old + std::max<qint64>(got, 0));
    return got > 0;
}

bool Connection::headTerminatorSeen()
{
    // Look only at new bytes (and three before), so a head sent byte by byte costs O(n).
    const qsizetype from = std::max<qsizetype>(0, m_scanned - 3);
    const bool seen = m_in.indexOf("\n\r\n", from) >= 0 || m_in.indexOf("\n\n", from) >= 0;
    if (!seen)
        m_scanned = m_in.size();
    return seen;
}

void Connection::handleRequest(http::RequestHead head)
{
    m_head = std::move(head);
    m_timer.stop();
    m_headStarted = false;
    m_retried = false;
    m_inExchange = true;
    ++m_shared->activeExchanges;
    if (m_shared->gateway)
        m_shared->gateway->begin(m_record, m_head);
    qCDebug(lcProxy) << m_clientAddress << m_head.method << m_head.path;

    m_framing = http::requestBodyFraming(m_head);
    if (m_framing.kind == http::BodyFraming::Invalid) {
        respondError(400, QString::fromLatin1(m_framing.error));
        return;
    }
    if (m_framing.kind == http::BodyFraming::UntilClose) {
        respondError(400, QStringLiteral("a request body needs Content-Length or chunked"));
        return;
    }

    if (m_head.path.startsWith("/slullama/")) {
        handleOwnRoute();
        return;
    }
    if (m_head.path == "/metrics" && m_shared->gateway) {
        handleMetrics();
        return;
    }
    if (!authorized()) {
        respondError(401, QStringLiteral("missing or invalid token"), skipRequestBody(),
                     "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if (m_framing.kind == http::BodyFraming::Length
        && m_framing.length > m_shared->settings.maxBodyBytes) {
        respondError(413,
                     QStringLiteral("request body is larger than %1 bytes")
                         .arg(m_shared->settings.maxBodyBytes));
        return;
    }
    if (m_shared->gateway) {
        if (const auto reply = m_shared->gateway->admit(m_record, m_head)) {
            respond(reply->status, reply->body, skipRequestBody(), reply->headers);
            return;
        }
    }
    startAcquire();
}

bool Connection::authorized()
{
    const QByteArray authorization = m_head.headers.value("authorization");
    if (m_shared->gateway)
        return m_shared->gateway->authenticate(m_record, authorization, m_shared->auth);
    return m_shared->auth.isAuthorized(authorization);
}

QByteArray Connection::statusBody()
{
    QJsonObject status = m_shared->backend->status().toJson();
    if (m_shared->gateway)
        m_shared->gateway->addToStatus(status, m_record);
    return QJsonDocument(status).toJson(QJsonDocument::Compact);
}

void Connection::handleMetrics()
{
    if (!authorized()) {
        respondError(401, QStringLiteral("missing or invalid token"), skipRequestBody(),
                     "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if (m_head.method != "GET" && m_head.method != "HEAD") {
        respondError(405, QStringLiteral("use GET"), skipRequestBody(), "Allow: GET, HEAD\r\n");
        return;
    }
    respond(200, m_shared->gateway->metricsText(), skipRequestBody(), {},
            "text/plain; version=0.0.4; charset=utf-8");
}

void Connection::handleOwnRoute()
{
    const QByteArray &path = m_head.path;
    const QByteArray &method = m_head.method;
    const bool isGet = method == "GET" || method == "HEAD";
    const bool known
        = path == "/slullama/health" || path == "/slullama/status" || path == "/slullama/wake";
    if (path == "/slullama/health") {
        if (!isGet) {
            respondError(405, QStringLiteral("use GET"), skipRequestBody(), "Allow: GET, HEAD\r\n");
            return;
        }
        respond(200, QByteArrayLiteral("{\"status\":\"ok\"}"), skipRequestBody());
        return;
    }
    // Admin routes follow the same rule as proxied requests.
    if (!authorized()) {
        respondError(401, QStringLiteral("missing or invalid token"), skipRequestBody(),
                     "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if (!known) {
        respondError(404, QStringLiteral("no such route: %1").arg(QString::fromLatin1(path)),
                     skipRequestBody());
        return;
    }
    if (path == "/slullama/status") {
        if (!isGet) {
            respondError(405, QStringLiteral("use GET"), skipRequestBody(), "Allow: GET, HEAD\r\n");
            return;
        }
        respond(200, statusBody(), skipRequestBody());
        return;
    }
    // /slullama/wake
    if (method != "POST") {
        respondError(405, QStringLiteral("use POST"), skipRequestBody(), "Allow: POST\r\n");
        return;
    }
    if (m_framing.kind == http::BodyFraming::Chunked
        || (m_framing.kind == http::BodyFraming::Length && m_framing.length > kMaxWakeBody)) {
        respondError(m_framing.kind == http::BodyFraming::Chunked ? 411 : 413,
                     QStringLiteral("the wake body must have a Content-Length of at most %1")
                         .arg(kMaxWakeBody));
        return;
    }
    m_state = State::Acquiring;
    m_wakeBodyWait = true;
    m_timer.start(m_shared->settings.headerTimeoutMs, Qt::CoarseTimer, this);
    continueWake();
}

void Connection::continueWake()
{
    const qint64 length = m_framing.kind == http::BodyFraming::Length ? m_framing.length : 0;
    if (m_in.size() < length) {
        const qint64 want = std::min<qint64>(m_socket->bytesAvailable(), length - m_in.size());
        if (want > 0)
            m_in += m_socket->read(want);
        if (m_in.size() < length)
            return; // onReadyRead() calls again
    }
    m_wakeBodyWait = false;
    m_timer.stop();
    const QByteArray body = m_in.left(length);
    m_in.remove(0, length);
    m_framing = {};
    const auto minutes = keepAwakeMinutes(m_head.query, body);
    if (!minutes) {
        respondError(400, minutes.error(), true);
        return;
    }
    if (*minutes > 0)
        m_shared->backend->wakeFor(*minutes);
    else
        m_shared->backend->wake();
    if (m_shared->gateway)
        m_shared->gateway->noteWake(m_record);
    respond(202, statusBody(), true);
}

void Connection::startAcquire()
{
    m_state = State::Acquiring;
    const quint64 attempt = ++m_attempt;
    m_ticketPending = true;
    QPointer<Connection> self(this);
    const Backend::Ticket ticket
        = m_shared->backend->acquire([self, attempt](const AcquireResult &result) {
              if (self)
                  self->onAcquired(attempt, result);
          });
    if (m_ticketPending && attempt == m_attempt)
        m_ticket = ticket; // else it was answered synchronously
}

void Connection::onAcquired(quint64 attempt, const AcquireResult &result)
{
    if (attempt != m_attempt || !m_ticketPending)
        return;
    m_ticketPending = false;
    if (m_shared->gateway)
        m_shared->gateway->acquired(m_record, result);
    if (m_state != State::Acquiring) {
        // Cannot happen while the backend honours cancel(); keep the accounting right anyway.
        if (result.ok)
            m_shared->backend->release(result.upstream.generation);
        return;
    }
    if (!result.ok) {
        qCDebug(lcProxy) << "acquire failed:" << result.httpStatus << result.message;
        respondError(result.httpStatus > 0 ? result.httpStatus : 503, result.message,
                     skipRequestBody());
        return;
    }
    m_holding = true;
    startRelay(result.upstream);
}

void Connection::startRelay(const Upstream &upstream)
{
    m_state = State::Relaying;
    m_upstream = upstream;
    UpstreamRelay::Request request;
    request.head = forwardedRequestHead(m_head, m_framing, upstream, m_clientAddress);
    request.method = m_head.method;
    request.framing = m_framing;
    request.clientKeepAlive = m_head.keepAlive() && !m_shared->draining && !m_closeAfterExchange;
    request.clientHttp10 = m_head.versionMinor == 0;
    request.expectContinue
        = m_head.headers.value("expect").compare("100-continue", Qt::CaseInsensitive) == 0;
    request.maxBodyBytes = m_shared->settings.maxBodyBytes;
    request.stallTimeoutMs = m_shared->settings.stallTimeoutMs;
    request.pool = m_shared->pool;
    if (m_shared->gateway) {
        request.tap = &m_record;
        request.extraResponseHeaders = m_shared->gateway->responseHeaders(m_record);
    }
    m_relay = new UpstreamRelay(m_socket, &m_in, std::move(request), this);
    connect(m_relay, &UpstreamRelay::finished, this, &Connection::onRelayFinished);
    m_relay->start(upstream);
}

void Connection::onRelayFinished(UpstreamRelay::End end, const QString &detail)
{
    UpstreamRelay *relay = m_relay;
    m_relay = nullptr;
    if (!relay)
        return;
    relay->deleteLater();
    m_record.bytesIn += relay->requestBodyBytes();
    const bool closed = m_state == State::Closed;
    if (closed || end == UpstreamRelay::End::ClientGone) {
        qCDebug(lcProxy) << m_clientAddress << "client gone:" << detail;
        if (closed)
            endExchange(false);
        else
            abort(); // markClosed() releases and ends the exchange
        return;
    }
    m_state = State::ReadingHead; // not reading yet: endExchange/respond decide what follows
    switch (end) {
    case UpstreamRelay::End::Complete:
        m_in.remove(0, relay->bufferConsumed());
        m_scanned = 0;
        endExchange(relay->keepClient());
        break;
    case UpstreamRelay::End::ConnectFailed:
        qCWarning(lcProxy) << "model server unreachable:" << detail;
        m_shared->backend->reportUpstreamFailure(m_upstream.generation, detail);
        releaseHold();
        if (!m_retried && !relay->consumedClientSocket()) {
            // Nothing reached the client and the request is still whole: try once more on what
            // the lifecycle offers now (it may rebuild the tunnel or boot a fresh job).
            m_retried = true;
            startAcquire();
        } else {
            respondError(502, QStringLiteral("the model server is unreachable: %1").arg(detail),
                         !relay->consumedClientSocket() && skipRequestBody());
        }
        break;
    case UpstreamRelay::End::UpstreamBroken:
        qCWarning(lcProxy) << "model server failed mid-response:" << detail;
        m_shared->backend->reportUpstreamFailure(m_upstream.generation, detail);
        endExchange(false);
        break;
    case UpstreamRelay::End::BadGateway:
        qCWarning(lcProxy) << "bad response from the model server:" << detail;
        respondError(502, detail);
        break;
    case UpstreamRelay::End::BodyTooLarge:
        respondError(413, detail);
        break;
    case UpstreamRelay::End::BadRequestBody:
        respondError(400, detail);
        break;
    case UpstreamRelay::End::ClientGone:
        break;
    }
}

bool Connection::requestBodyPending() const
{
    return m_framing.kind == http::BodyFraming::Chunked
        || (m_framing.kind == http::BodyFraming::Length && m_framing.length > 0);
}

bool Connection::skipRequestBody()
{
    // A body we do not forward can be skipped only if it is already here; otherwise the
    // connection closes after the answer.
    if (!requestBodyPending())
        return true;
    if (m_framing.kind == http::BodyFraming::Length && m_in.size() >= m_framing.length) {
        m_in.remove(0, m_framing.length);
        m_framing = {};
        return true;
    }
    return false;
}

void Connection::respond(int status, const QByteArray &body, bool keepAlive,
                         const QByteArray &extraHeaders, QByteArrayView contentType)
{
    keepAlive = keepAlive && m_head.keepAlive() && !m_shared->draining && !m_closeAfterExchange
        && m_inExchange;
    QByteArray out;
    out.reserve(160 + extraHeaders.size() + body.size());
    out += "HTTP/1.1 " + QByteArray::number(status) + ' ' + http::reasonPhrase(status)
        + "\r\nContent-Type: " + contentType.toByteArray()
        + "\r\nContent-Length: " + QByteArray::number(body.size())
        + "\r\n";
    out += extraHeaders;
    if (!keepAlive)
        out += "Connection: close\r\n";
    out += "\r\n";
    if (m_head.method != "HEAD" || !m_inExchange)
        out += body;
    m_record.status = status;
    m_record.bytesOut += out.size();
    m_socket->write(out);
    endExchange(keepAlive);
}

void Connection::respondError(int status, const QString &message, bool keepAlive,
                              const QByteArray &extraHeaders)
{
    QByteArray headers = extraHeaders;
    if (status == 503 && !headers.toLower().contains("retry-after:"))
        headers += "Retry-After: " + QByteArray::number(kRetryAfterSeconds) + "\r\n";
    respond(status, errorJson(message), keepAlive, headers);
}

void Connection::releaseHold()
{
    if (m_holding) {
        m_holding = false;
        m_shared->backend->release(m_upstream.generation);
    }
}

// The bookkeeping of one request/response exchange ending, whether it completed or the client
// went away: counted once, reported to the gateway once.
void Connection::leaveExchange()
{
    if (!m_inExchange)
        return;
    m_inExchange = false;
    --m_shared->activeExchanges;
    if (m_shared->gateway)
        m_shared->gateway->end(m_record);
    emit exchangeEnded();
}

void Connection::endExchange(bool keepAlive)
{
    releaseHold();
    leaveExchange();
    if (m_state == State::Closed)
        return;
    if (!keepAlive || m_shared->draining || m_closeAfterExchange) {
        closeGracefully();
        return;
    }
    m_state = State::ReadingHead;
    m_headStarted = false;
    m_framing = {};
    m_socket->flush();
    if (m_state != State::ReadingHead)
        return; // the flush found the client gone
    armIdleTimer();
    processInput();
}

void Connection::closeGracefully()
{
    if (m_state == State::Closing || m_state == State::Lingering || m_state == State::Closed)
        return;
    m_timer.stop();
    m_state = State::Closing;
    if (m_socket->state() != QAbstractSocket::ConnectedState) {
        markClosed();
        return;
    }
    m_socket->flush();
    if (m_state != State::Closing)
        return;
    if (m_socket->bytesToWrite() == 0) {
        startLingering();
    } else {
        // A client that never reads its final answer is not kept forever.
        m_timer.start(m_shared->settings.stallTimeoutMs, Qt::CoarseTimer, this);
    }
}

void Connection::startLingering()
{
    // Half-close and drain what the client still sends: closing with unread bytes would reset
    // the connection and could destroy the answer (e.g. a 413) before the client read it.
    m_state = State::Lingering;
    ::shutdown(int(m_socket->socketDescriptor()), SHUT_WR);
    m_socket->skip(m_socket->bytesAvailable());
    m_timer.start(m_shared->settings.lingerTimeoutMs, Qt::CoarseTimer, this);
}

void Connection::markClosed()
{
    if (m_state == State::Closed)
        return;
    m_state = State::Closed;
    m_timer.stop();
    if (m_ticketPending) {
        m_ticketPending = false;
        m_shared->backend->cancel(m_ticket);
    }
    if (m_relay && !m_relay->isFinished())
        m_relay->clientGone(); // → onRelayFinished → release
    releaseHold();
    leaveExchange();
    emit closed(this);
}

void Connection::timerEvent(QTimerEvent *event)
{
    if (event->timerId() != m_timer.timerId()) {
        QObject::timerEvent(event);
        return;
    }
    m_timer.stop();
    if (m_wakeBodyWait) {
        m_wakeBodyWait = false;
        respondError(408, QStringLiteral("the wake body did not arrive in time"));
        return;
    }
    switch (m_state) {
    case State::ReadingHead:
        if (m_headStarted || !m_in.isEmpty()) {
            qCDebug(lcProxy) << m_clientAddress << "request head timeout";
            respondError(408,
                         QStringLiteral("request head not complete within %1 ms")
                             .arg(m_shared->settings.headerTimeoutMs));
        } else {
            closeGracefully(); // idle keep-alive connection
        }
        break;
    case State::Closing:
    case State::Lingering:
        abort();
        break;
    default:
        break;
    }
}

} // namespace slullama
