#include "upstreamrelay.h"

#include "logging.h"
#include "unixconnect.h"

#include <QHostAddress>
#include <QTcpSocket>
#include <QTimer>
#include <QTimerEvent>

#include <array>

#include <unistd.h>

namespace slullama {

namespace {

// Above this many unsent bytes on one side, the other side is not read (back-pressure).
constexpr qint64 kHighWater = 256 * 1024;
constexpr qint64 kSocketReadBuffer = 256 * 1024;
// Bytes of a response head we accept from the model server (it is trusted, but not unbounded).
constexpr qsizetype kMaxResponseHead = 256 * 1024;

// One shared scratch buffer: every read is written on before the next read, and everything
// runs on one thread, so streams do not each carry a buffer of their own.
char *scratch()
{
    static std::array<char, 64 * 1024> buffer;
    return buffer.data();
}
constexpr qint64 kScratchSize = 64 * 1024;

const http::Limits &responseLimits()
{
    static const http::Limits limits {kMaxResponseHead, 64 * 1024, 512};
    return limits;
}

} // namespace

void removeHopByHopHeaders(http::Headers &headers)
{
    // Names listed in Connection are hop-by-hop too.
    for (const QByteArray &value : headers.values("connection")) {
        for (const QByteArray &token : value.split(',')) {
            const QByteArray name = token.trimmed();
            if (!name.isEmpty())
                headers.remove(name);
        }
    }
    static constexpr QByteArrayView names[] = {
        "connection",          "keep-alive", "proxy-connection", "proxy-authenticate",
        "proxy-authorization", "te",         "trailer",          "upgrade",
    };
    for (QByteArrayView name : names)
        headers.remove(name);
}

QByteArray forwardedRequestHead(const http::RequestHead &head, const http::BodyFraming &framing,
                                const Upstream &upstream, QByteArrayView clientAddress)
{
    http::RequestHead out = head;
    out.versionMinor = 1;
    removeHopByHopHeaders(out.headers);
    out.headers.remove("authorization");
    // The proxy answers Expect itself (100 Continue once the upstream is there).
    out.headers.remove("expect");
    // A chunked body wins over Content-Length; forwarding both would let the two ends
    // disagree on where the body ends (request smuggling).
    if (framing.kind == http::BodyFraming::Chunked)
        out.headers.remove("content-length");
    out.headers.set("Host", upstream.host.toLatin1() + ':' + QByteArray::number(upstream.port));
    QByteArray forwardedFor = out.headers.value("x-forwarded-for");
    if (forwardedFor.isEmpty())
        forwardedFor = clientAddress.toByteArray();
    else
        forwardedFor += ", " + clientAddress.toByteArray();
    out.headers.set("X-Forwarded-For", forwardedFor);
    out.headers.set("X-Forwarded-Proto", "http");
    return http::serialize(out);
}

UpstreamPool::UpstreamPool(QObject *parent) : QObject(parent)
{
    m_clock.start();
}

UpstreamPool::~UpstreamPool()
{
    for (Entry &entry : m_entries) {
        for (Idle &idle : entry.idle) {
            idle.socket->disconnect(this);
            idle.socket->abort();
        }
    }
}

UpstreamPool::Entry *UpstreamPool::find(const Upstream &upstream)
{
    for (Entry &entry : m_entries) {
        if (entry.upstream.port == upstream.port && entry.upstream.generation == upstream.generation
            && entry.upstream.host == upstream.host
            && entry.upstream.localSocket == upstream.localSocket)
            return &entry;
    }
    return nullptr;
}

QTcpSocket *UpstreamPool::take(const Upstream &upstream)
{
    Entry *entry = find(upstream);
    while (entry && !entry->idle.empty()) {
        QTcpSocket *socket = entry->idle.back().socket;
        entry->idle.pop_back();
        socket->disconnect(this);
        // Bytes or EOF while idle mean the server is done with this connection.
        if (socket->state() == QAbstractSocket::ConnectedState && socket->bytesAvailable() == 0)
            return socket;
        socket->abort();
        socket->deleteLater();
    }
    return nullptr;
}

void UpstreamPool::put(const Upstream &upstream, QTcpSocket *socket)
{
    Entry *entry = find(upstream);
    if (!entry) {
        // A new boot generation makes the old connections useless: forget them.
        for (Entry &old : m_entries) {
            if (old.upstream.host == upstream.host && old.upstream.port == upstream.port
                && old.upstream.localSocket == upstream.localSocket) {
                for (Idle &idle : old.idle) {
                    idle.socket->disconnect(this);
                    idle.socket->abort();
                    idle.socket->deleteLater();
                }
                old.idle.clear();
                old.upstream = upstream;
                entry = &old;
                break;
            }
        }
        if (!entry) {
            m_entries.push_back(Entry {upstream, {}});
            entry = &m_entries.back();
        }
    }
    if (int(entry->idle.size()) >= maxIdlePerUpstream
        || socket->state() != QAbstractSocket::ConnectedState) {
        socket->abort();
        socket->deleteLater();
        return;
    }
    socket->setParent(this);
    connect(socket, &QTcpSocket::disconnected, this, [this, socket] { drop(socket); });
    connect(socket, &QTcpSocket::readyRead, this, [this, socket] { drop(socket); });
    entry->idle.push_back(Idle {socket, m_clock.elapsed()});
    if (!m_sweep.isActive())
        m_sweep.start(std::max(1000, idleTimeoutMs / 4), Qt::CoarseTimer, this);
}

void UpstreamPool::drop(QTcpSocket *socket)
{
    for (Entry &entry : m_entries) {
        for (auto it = entry.idle.begin(); it != entry.idle.end(); ++it) {
            if (it->socket == socket) {
                entry.idle.erase(it);
                socket->disconnect(this);
                socket->abort();
                socket->deleteLater();
                return;
            }
        }
    }
}

int UpstreamPool::idleCount() const
{
    int n = 0;
    for (const Entry &entry : m_entries)
        n += int(entry.idle.size());
    return n;
}

void UpstreamPool::timerEvent(QTimerEvent *event)
{
    if (event->timerId() != m_sweep.timerId()) {
        QObject::timerEvent(event);
        return;
    }
    const qint64 now = m_clock.elapsed();
    bool any = false;
    for (Entry &entry : m_entries) {
        auto &idle = entry.idle;
        // Oldest first: they were pushed in order.
        auto keepFrom = idle.begin();
        while (keepFrom != idle.end() && now - keepFrom->since >= idleTimeoutMs) {
            keepFrom->socket->disconnect(this);
            keepFrom->socket->close();
            keepFrom->socket->deleteLater();
            ++keepFrom;
        }
        idle.erase(idle.begin(), keepFrom);
        any = any || !idle.empty();
    }
    if (!any)
        m_sweep.stop();
}

UpstreamRelay::UpstreamRelay(QTcpSocket *client, QByteArray *clientBuffer, Request request,
                             QObject *parent)
    : QObject(parent), m_client(client), m_in(clientBuffer), m_request(std::move(request))
{
    switch (m_request.framing.kind) {
    case http::BodyFraming::Length:
        m_requestRemaining = m_request.framing.length;
        m_requestDone = m_requestRemaining == 0;
        break;
    case http::BodyFraming::Chunked:
        break;
    default:
        m_requestDone = true;
        break;
    }
}

UpstreamRelay::~UpstreamRelay()
{
    if (m_upstream) {
        m_upstream->disconnect(this);
        m_upstream->abort();
    }
}

void UpstreamRelay::start(const Upstream &upstream)
{
    m_target = upstream;
    if (m_request.pool) {
        if (QTcpSocket *socket = m_request.pool->take(upstream)) {
            m_upstream = socket;
            m_upstream->setParent(this);
            m_reused = true;
            attachUpstream();
            onConnected();
            return;
        }
    }
    openUpstream();
}

void UpstreamRelay::openUpstream()
{
    m_upstream = new QTcpSocket(this);
    m_upstream->setReadBufferSize(kSocketReadBuffer);
    attachUpstream();
    if (!m_connectTimer.isActive()) // a busy-socket retry keeps the first deadline
        m_connectTimer.start(m_request.connectTimeoutMs, Qt::CoarseTimer, this);
    if (m_target.localSocket.isEmpty()) {
        m_upstream->connectToHost(QHostAddress(m_target.host), m_target.port);
        return;
    }
    QString error;
    bool busy = false;
    const int fd = connectUnixSocket(m_target.localSocket, &error, &busy);
    if (busy) {
        // The listen backlog is full (a burst of connects); TCP would queue the SYN, so wait a
        // little and try again until the connect timeout.
        QTimer::singleShot(5, this, [this] {
            if (m_finished || m_connected || !m_upstream)
                return;
            m_upstream->disconnect(this);
            m_upstream->deleteLater();
            openUpstream();
        });
        return;
    }
    if (fd < 0 || !m_upstream->setSocketDescriptor(fd, QAbstractSocket::ConnectedState)) {
        if (fd >= 0) {
            ::close(fd);
            error = m_upstream->errorString();
        }
        // Like a refused TCP connect (reported from the event loop, never inside start()): the
        // caller's retry and failure report take over.
        QMetaObject::invokeMethod(
            this,
            [this, error] {
                onUpstreamClosed(QStringLiteral("connection refused (%1)").arg(error));
            },
            Qt::QueuedConnection);
        return;
    }
    onConnected();
}

void UpstreamRelay::attachUpstream()
{
    connect(m_upstream, &QTcpSocket::connected, this, &UpstreamRelay::onConnected);
    connect(m_upstream, &QTcpSocket::readyRead, this, &UpstreamRelay::onUpstreamReadable);
    connect(m_upstream, &QTcpSocket::bytesWritten, this, &UpstreamRelay::onUpstreamWritten);
    connect(m_upstream, &QTcpSocket::disconnected, this,
            [this] { onUpstreamClosed(QStringLiteral("the model server closed the connection")); });
    connect(m_upstream, &QTcpSocket::errorOccurred, this, [this](QAbstractSocket::SocketError e) {
        if (e == QAbstractSocket::RemoteHostClosedError)
            return; // disconnected() follows
        onUpstreamClosed(m_upstream->errorString());
    });
}

void UpstreamRelay::restartOnFreshConnection()
{
    // A pooled connection the server had already closed: nothing was answered and the whole
    // request is still in the buffer, so send it again on a new connection.
    m_upstream->disconnect(this);
    m_upstream->abort();
    m_upstream->deleteLater();
    m_upstream = nullptr;
    m_reused = false;
    m_connected = false;
    m_inPos = 0;
    m_requestDecoder = http::ChunkedDecoder();
    m_requestBodyBytes = 0;
    m_requestRemaining
        = m_request.framing.kind == http::BodyFraming::Length ? m_request.framing.length : 0;
    m_requestDone = m_request.framing.kind != http::BodyFraming::Chunked && m_requestRemaining == 0;
    m_responseHead.clear();
    m_gotUpstreamBytes = false;
    m_upstreamEof = false;
    m_upstreamEofReason.clear();
    openUpstream();
}

void UpstreamRelay::onConnected()
{
    m_connectTimer.stop();
    m_connected = true;
    if (!m_reused)
        m_upstream->setSocketOption(QAbstractSocket::LowDelayOption, 1);
    m_upstream->write(m_request.head);
    // The client waited for permission to send its body; the upstream is there now.
    if (m_request.expectContinue && !m_requestDone && !m_request.clientHttp10 && !m_sentContinue) {
        m_sentContinue = true;
        m_client->write("HTTP/1.1 100 Continue\r\n\r\n");
    }
    pumpRequest();
    if (m_finished)
        return;
    m_upstream->flush();
    if (m_finished)
        return;
    if (m_request.expectContinue)
        m_client->flush();
    updateStallTimer();
}

void UpstreamRelay::clientReadable()
{
    if (m_finished || !m_connected)
        return;
    pumpRequest();
    if (m_finished)
        return;
    m_upstream->flush();
    if (!m_finished)
        updateStallTimer();
}

void UpstreamRelay::clientWritten()
{
    if (m_finished)
        return;
    if (m_headDone || m_upstreamEof)
        pumpResponse();
    if (!m_finished)
        updateStallTimer();
}

void UpstreamRelay::clientGone()
{
    if (m_finished)
        return;
    // Abort at once so the model server sees the disconnect and stops generating.
    finish(End::ClientGone, QStringLiteral("client disconnected"));
}

void UpstreamRelay::onUpstreamWritten()
{
    if (m_finished || m_requestDone)
        return;
    if (m_upstream->bytesToWrite() < kHighWater) {
        pumpRequest();
        if (!m_finished)
            updateStallTimer();
    }
}

void UpstreamRelay::pumpRequest()
{
    while (!m_requestDone && !m_finished) {
        if (m_upstream->bytesToWrite() >= kHighWater)
            return; // resumed from onUpstreamWritten()

        const char *data;
        qsizetype size;
        bool fromSocket = false;
        if (m_inPos < m_in->size()) {
            data = m_in->constData() + m_inPos;
            size = m_in->size() - m_inPos;
        } else {
            const qint64 n = m_client->read(scratch(), kScratchSize);
            if (n <= 0)
                return;
            data = scratch();
            size = n;
            fromSocket = true;
            m_consumedSocket = true;
        }

        qsizetype take = size;
        if (m_request.framing.kind == http::BodyFraming::Length) {
            take = qsizetype(std::min<qint64>(size, m_requestRemaining));
            m_requestRemaining -= take;
            m_requestDone = m_requestRemaining == 0;
        } else {
            const auto step = m_requestDecoder.feed(QByteArrayView(data, size));
            if (step.error) {
                finish(End::BadRequestBody, QString::fromLatin1(step.errorText));
                return;
            }
            take = step.consumed;
            m_requestDone = step.done;
        }
        m_requestBodyBytes += take;
        if (m_request.maxBodyBytes > 0 && m_requestBodyBytes > m_request.maxBodyBytes) {
            finish(
                End::BodyTooLarge,
                QStringLiteral("request body is larger than %1 bytes").arg(m_request.maxBodyBytes));
            return;
        }
        if (take > 0)
            m_upstream->write(data, take);

        if (fromSocket) {
            // Bytes after the body are the next pipelined request: keep them for the owner.
            if (take < size)
                m_in->append(data + take, size - take);
            m_inPos = m_in->size() - (size - take);
        } else {
            m_inPos += take;
        }
    }
}

void UpstreamRelay::onUpstreamReadable()
{
    if (m_finished)
        return;
    pumpResponse();
    if (!m_finished)
        updateStallTimer();
}

void UpstreamRelay::pumpResponse()
{
    bool wrote = false;
    while (!m_finished && !m_responseDone) {
        if (m_client->bytesToWrite() >= kHighWater)
            break; // resumed from clientWritten()
        const qint64 n = m_upstream->read(scratch(), kScratchSize);
        if (n <= 0)
            break;
        m_gotUpstreamBytes = true;
        processResponse(scratch(), n);
        wrote = true;
    }
    if (m_finished)
        return;
    if (wrote)
        m_client->flush();
    if (m_finished || m_responseDone)
        return;
    if (m_upstreamEof && m_upstream->bytesAvailable() == 0) {
        // Everything the upstream sent has been handled and it is gone.
        if (m_headDone && m_responseFraming.kind == http::BodyFraming::UntilClose) {
            m_responseDone = true;
            m_keepClient = false;
            finish(End::Complete);
        } else if (!m_gotUpstreamBytes) {
            finish(End::ConnectFailed, m_upstreamEofReason);
        } else if (!m_responseStarted) {
            finish(End::BadGateway,
                   QStringLiteral("the model server closed the connection "
                                  "in the middle of the response head"));
        } else {
            finish(End::UpstreamBroken, m_upstreamEofReason);
        }
    }
}

void UpstreamRelay::processResponse(const char *data, qsizetype size)
{
    if (m_headDone) {
        processResponseBody(data, size);
        return;
    }
    m_responseHead.append(data, size);
    while (!m_headDone && !m_finished) {
        if (!processResponseHead())
            return;
    }
}

// Returns true when it made progress and should be called again (after a 1xx head).
bool UpstreamRelay::processResponseHead()
{
    auto parsed = http::parseResponseHead(m_responseHead, responseLimits());
    if (parsed.state == http::ParseState::Incomplete)
        return false;
    if (parsed.state == http::ParseState::Error) {
        finish(End::BadGateway,
               QStringLiteral("invalid response from the model server: %1")
                   .arg(QString::fromLatin1(parsed.error)));
        return false;
    }
    http::ResponseHead &head = parsed.head;
    if (head.status >= 100 && head.status < 200) {
        // Informational: forward to HTTP/1.1 clients, then wait for the final head.
        m_responseHead.remove(0, parsed.consumed);
        if (head.status == 101) {
            finish(End::BadGateway, QStringLiteral("the model server switched protocols"));
            return false;
        }
        if (!m_request.clientHttp10) {
            removeHopByHopHeaders(head.headers);
            const QByteArray out = http::serialize(head);
            m_client->write(out);
        }
        return true;
    }

    m_responseFraming = http::responseBodyFraming(m_request.method, head);
    if (m_responseFraming.kind == http::BodyFraming::Invalid) {
        finish(End::BadGateway,
               QStringLiteral("invalid response framing from the model server: %1")
                   .arg(QString::fromLatin1(m_responseFraming.error)));
        return false;
    }
    const bool chunked = m_responseFraming.kind == http::BodyFraming::Chunked;
    m_dechunk = chunked && m_request.clientHttp10;
    m_keepClient = m_request.clientKeepAlive
        && m_responseFraming.kind != http::BodyFraming::UntilClose && !m_dechunk;

    m_upstreamKeepAlive = head.versionMinor >= 1 && !head.headers.hasToken("connection", "close")
        && m_responseFraming.kind != http::BodyFraming::UntilClose;

    const bool keepTrailer = chunked && !m_dechunk;
    const QByteArray trailer = keepTrailer ? head.headers.value("trailer") : QByteArray();
    removeHopByHopHeaders(head.headers);
    if (!trailer.isEmpty())
        head.headers.set("Trailer", trailer);
    if (m_dechunk)
        head.headers.remove("transfer-encoding");
    if (!m_keepClient)
        head.headers.set("Connection", "close");
    else if (m_request.clientHttp10)
        head.headers.set("Connection", "keep-alive");
    head.versionMinor = 1;
    for (const http::Header &extra : m_request.extraResponseHeaders)
        head.headers.set(extra.name, extra.value);

    const QByteArray out = http::serialize(head);
    m_headDone = true;
    m_responseStarted = true;
    m_client->write(out);
    if (m_request.tap)
        m_request.tap->responseHead(head, out.size());

    const QByteArray rest = m_responseHead.mid(parsed.consumed);
    m_responseHead = QByteArray();
    if (m_responseFraming.kind == http::BodyFraming::Length)
        m_responseRemaining = m_responseFraming.length;
    if (m_responseFraming.kind == http::BodyFraming::None
        || (m_responseFraming.kind == http::BodyFraming::Length && m_responseRemaining == 0)) {
        m_responseDone = true;
        finish(End::Complete);
        return false;
    }
    if (!rest.isEmpty())
        processResponseBody(rest.constData(), rest.size());
    return false;
}

void UpstreamRelay::processResponseBody(const char *data, qsizetype size)
{
    switch (m_responseFraming.kind) {
    case http::BodyFraming::Length: {
        const qsizetype take = qsizetype(std::min<qint64>(size, m_responseRemaining));
        m_upstreamExtraBytes = m_upstreamExtraBytes || take < size;
        writeToClient(data, take);
        m_responseRemaining -= take;
        if (m_responseRemaining == 0) {
            m_responseDone = true;
            finish(End::Complete);
        }
        break;
    }
    case http::BodyFraming::Chunked: {
        http::ChunkedDecoder::Step step;
        if (m_dechunk) {
            m_decoded.resize(0);
            step = m_responseDecoder.feed(QByteArrayView(data, size), &m_decoded);
            writeToClient(m_decoded.constData(), m_decoded.size());
        } else {
            step = m_responseDecoder.feed(QByteArrayView(data, size));
            writeToClient(data, step.consumed);
        }
        m_upstreamExtraBytes = m_upstreamExtraBytes || (step.done && step.consumed < size);
        if (step.error) {
            // No fake terminator: the client must see that the body is incomplete.
            finish(End::UpstreamBroken,
                   QStringLiteral("invalid chunked response from the "
                                  "model server: %1")
                       .arg(QString::fromLatin1(step.errorText)));
        } else if (step.done) {
            m_responseDone = true;
            finish(End::Complete);
        }
        break;
    }
    case http::BodyFraming::UntilClose:
        writeToClient(data, size);
        break;
    default:
        break;
    }
}

void UpstreamRelay::writeToClient(const char *data, qsizetype size)
{
    if (size > 0) {
        m_client->write(data, size);
        if (m_request.tap)
            m_request.tap->responseBody(QByteArrayView(data, size));
    }
}

void UpstreamRelay::onUpstreamClosed(const QString &reason)
{
    if (m_finished || m_upstreamEof)
        return;
    m_connectTimer.stop();
    if (!m_connected) {
        finish(End::ConnectFailed, reason);
        return;
    }
    m_upstreamEof = true;
    m_upstreamEofReason = reason;
    // Relay what is still buffered; pumpResponse() decides how the exchange ends.
    pumpResponse();
    if (!m_finished)
        updateStallTimer();
}

void UpstreamRelay::updateStallTimer()
{
    // Only the client can stall us: by not sending the body it announced, or by not reading.
    const bool waitingForBody = m_connected && !m_requestDone
        && m_upstream->bytesToWrite() < kHighWater && m_inPos >= m_in->size();
    const bool waitingForReader = m_client->bytesToWrite() >= kHighWater;
    if (waitingForBody || waitingForReader)
        m_stallTimer.start(m_request.stallTimeoutMs, Qt::CoarseTimer, this);
    else
        m_stallTimer.stop();
}

void UpstreamRelay::timerEvent(QTimerEvent *event)
{
    if (event->timerId() == m_connectTimer.timerId()) {
        m_connectTimer.stop();
        if (!m_connected && !m_finished)
            finish(End::ConnectFailed, QStringLiteral("timed out connecting to the model server"));
    } else if (event->timerId() == m_stallTimer.timerId()) {
        m_stallTimer.stop();
        if (!m_finished)
            finish(End::ClientGone,
                   QStringLiteral("client stalled for %1 ms").arg(m_request.stallTimeoutMs));
    } else {
        QObject::timerEvent(event);
    }
}

void UpstreamRelay::finish(End end, const QString &detail)
{
    if (m_finished)
        return;
    if (end == End::ConnectFailed && m_reused && !m_consumedSocket && m_upstream) {
        restartOnFreshConnection();
        return;
    }
    m_finished = true;
    m_stallTimer.stop();
    m_connectTimer.stop();
    if (m_upstream) {
        m_upstream->disconnect(this);
        const bool reusable = end == End::Complete && m_request.pool && m_upstreamKeepAlive
            && m_requestDone && m_responseDone && !m_upstreamEof && !m_upstreamExtraBytes
            && m_upstream->bytesAvailable() == 0 && m_upstream->bytesToWrite() == 0
            && m_upstream->state() == QAbstractSocket::ConnectedState;
        if (reusable) {
            m_request.pool->put(m_target, m_upstream);
            m_upstream = nullptr;
        } else if (end == End::Complete) {
            m_upstream->close(); // a FIN is enough
        } else {
            m_upstream->abort(); // reset, so generation stops now
        }
    }
    if (!m_requestDone && end == End::Complete)
        m_keepClient = false; // the rest of the request body is still on the wire
    emit finished(end, detail);
}

} // namespace slullama
