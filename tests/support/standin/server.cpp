#include "server.h"

#include "jsonwriter.h"

#include <QCryptographicHash>
#include <QElapsedTimer>
#include <QLocale>
#include <QTcpSocket>

#include <chrono>

namespace slullama::standin {

namespace {

constexpr qint64 kMaxBodyBytes = 256 * 1024 * 1024;
constexpr qint64 kHighWater = 1024 * 1024;  // stop producing while this much waits to be sent
constexpr qint64 kLowWater = 256 * 1024;
constexpr int kBurst = 32;  // pieces written per event-loop turn when nothing waits between them

int envInt(const char *name, int fallback)
{
    bool ok = false;
    const int v = qEnvironmentVariableIntValue(name, &ok);
    return ok && v >= 0 ? v : fallback;
}

qint64 monotonicUs()
{
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

} // namespace

Settings Settings::fromEnvironment()
{
    Settings s;
    s.startupDelayMs = envInt("STANDIN_STARTUP_DELAY_MS", s.startupDelayMs);
    s.tokenDelayMs = envInt("STANDIN_TOKEN_DELAY_MS", s.tokenDelayMs);
    s.tokens = envInt("STANDIN_TOKENS", s.tokens);
    s.pullDelayMs = envInt("STANDIN_PULL_DELAY_MS", s.pullDelayMs);
    if (qEnvironmentVariableIsSet("STANDIN_MODELS")) {
        s.models.clear();
        const QStringList names = qEnvironmentVariable("STANDIN_MODELS").split(u',');
        for (const QString &n : names) {
            if (!n.trimmed().isEmpty())
                s.models.append(n.trimmed());
        }
    }
    s.requestLogPath = qEnvironmentVariable("STANDIN_REQUEST_LOG");
    return s;
}

QString normalizeModelName(const QString &name)
{
    const QString trimmed = name.trimmed();
    const qsizetype slash = trimmed.lastIndexOf(u'/');
    if (trimmed.indexOf(u':', slash + 1) < 0 && !trimmed.isEmpty())
        return trimmed + QStringLiteral(":latest");
    return trimmed;
}

// ---- Server -----------------------------------------------------------------------------------

Server::Server(Settings settings, QObject *parent)
    : QObject(parent)
    , m_settings(std::move(settings))
{
    for (const QString &m : std::as_const(m_settings.models))
        addModel(m);
    if (!m_settings.requestLogPath.isEmpty()) {
        m_requestLog = std::make_unique<QFile>(m_settings.requestLogPath);
        if (!m_requestLog->open(QIODevice::WriteOnly | QIODevice::Append)) {
            qWarning("standin: cannot open request log %s: %s",
                     qPrintable(m_settings.requestLogPath), qPrintable(m_requestLog->errorString()));
            m_requestLog.reset();
        }
    }
    connect(&m_server, &QTcpServer::newConnection, this, [this] { onNewConnection(); });
}

Server::~Server() = default;

bool Server::listen(const QHostAddress &address, quint16 port)
{
    // 2000 clients connecting at once must not overflow the accept queue (SYN retries cost 1 s).
    m_server.setListenBacklogSize(4096);
    m_server.setMaxPendingConnections(100000);
    return m_server.listen(address, port);
}

void Server::onNewConnection()
{
    while (QTcpSocket *socket = m_server.nextPendingConnection()) {
        ++m_stats.connectionsOpen;
        ++m_stats.connectionsTotal;
        new Connection(this, socket);
    }
}

const ModelInfo *Server::findModel(const QString &name) const
{
    const QString n = normalizeModelName(name);
    for (const ModelInfo &m : m_models) {
        if (m.name == n)
            return &m;
    }
    return nullptr;
}

void Server::addModel(const QString &rawName)
{
    const QString name = normalizeModelName(rawName);
    if (name.isEmpty() || findModel(name))
        return;
    ModelInfo m;
    m.name = name;
    const QByteArray utf8 = name.toUtf8();
    m.digest = QCryptographicHash::hash(utf8, QCryptographicHash::Sha256).toHex();
    m.size = 100'000'000 + qint64(qHash(utf8, 7) % 1'000'000'000);
    // "llama3.2:1b" → family "llama", parameter size "1B".
    const QString base = name.section(u'/', -1).section(u':', 0, 0);
    qsizetype letters = 0;
    while (letters < base.size() && base.at(letters).isLetter())
        ++letters;
    m.family = base.left(letters).toLower().toUtf8();
    if (m.family.isEmpty())
        m.family = "llama";
    const QString tag = name.section(u':', 1);
    m.parameterSize = (!tag.isEmpty() && tag.back().toLower() == u'b' && tag.front().isDigit())
                          ? tag.toUpper().toUtf8()
                          : QByteArray("1B");
    m.embedding = name.contains(QLatin1String("embed")) || name.contains(QLatin1String("minilm"));
    m.modifiedAt = QDateTime::currentDateTimeUtc();
    m_models.append(m);
}

bool Server::removeModel(const QString &name)
{
    const QString n = normalizeModelName(name);
    m_loaded.removeIf([&](const auto &p) { return p.first == n; });
    return m_models.removeIf([&](const ModelInfo &m) { return m.name == n; }) > 0;
}

void Server::markLoaded(const QString &name)
{
    const QString n = normalizeModelName(name);
    const QDateTime expires = QDateTime::currentDateTimeUtc().addSecs(300);
    for (auto &p : m_loaded) {
        if (p.first == n) {
            p.second = expires;
            return;
        }
    }
    m_loaded.append({n, expires});
}

QByteArray Server::runningModelsJson()
{
    const QDateTime now = QDateTime::currentDateTimeUtc();
    m_loaded.removeIf([&](const auto &p) { return p.second < now; });
    QByteArray list = "[";
    for (const auto &[name, expires] : std::as_const(m_loaded)) {
        const ModelInfo *m = findModel(name);
        if (!m)
            continue;
        if (list.size() > 1)
            list += ',';
        const QByteArray details = JsonObject()
                                       .str("parent_model", "")
                                       .str("format", "gguf")
                                       .str("family", m->family)
                                       .raw("families", "[" + jsonString(m->family) + "]")
                                       .str("parameter_size", m->parameterSize)
                                       .str("quantization_level", "Q4_K_M")
                                       .done();
        list += JsonObject()
                    .str("name", m->name)
                    .str("model", m->name)
                    .num("size", m->size)
                    .str("digest", m->digest)
                    .raw("details", details)
                    .str("expires_at", expires.toString(Qt::ISODateWithMs))
                    .num("size_vram", m->size)
                    .num("context_length", 4096)
                    .done();
    }
    list += ']';
    return JsonObject().raw("models", list).done();
}

void Server::logRequest(const http::RequestHead &head)
{
    if (!m_requestLog)
        return;
    m_requestLog->write(http::serialize(head));
    m_requestLog->flush();  // tests read it while we run
}

const QByteArray &Server::httpDate()
{
    const qint64 now = QDateTime::currentSecsSinceEpoch();
    if (now != m_dateSecond) {
        m_dateSecond = now;
        m_date = QLocale::c()
                     .toString(QDateTime::fromSecsSinceEpoch(now, Qt::UTC),
                               QStringLiteral("ddd, dd MMM yyyy hh:mm:ss 'GMT'"))
                     .toLatin1();
    }
    return m_date;
}

// ---- Connection -------------------------------------------------------------------------------

Connection::Connection(Server *server, QTcpSocket *socket)
    : QObject(server)
    , m_server(server)
    , m_socket(socket)
{
    socket->setParent(this);
    // Each streamed piece must leave at once, not wait for Nagle to coalesce it.
    socket->setSocketOption(QAbstractSocket::LowDelayOption, 1);
    m_timer.setSingleShot(true);
    m_timer.setTimerType(Qt::PreciseTimer);
    connect(&m_timer, &QTimer::timeout, this, [this] {
        if (auto fn = std::exchange(m_onTimer, nullptr))
            fn();
    });
    connect(socket, &QTcpSocket::readyRead, this, [this] { onReadyRead(); });
    connect(socket, &QTcpSocket::bytesWritten, this, [this] {
        if (m_waitingForDrain && m_socket->bytesToWrite() <= kLowWater) {
            m_waitingForDrain = false;
            pump();
        }
    });
    connect(socket, &QTcpSocket::disconnected, this, [this] { onDisconnected(); });
    if (socket->state() != QAbstractSocket::ConnectedState)
        QTimer::singleShot(0, this, [this] { onDisconnected(); });
}

Connection::~Connection() = default;

void Connection::onDisconnected()
{
    if (m_closed)
        return;
    m_closed = true;
    m_timer.stop();
    m_onTimer = nullptr;
    if (m_active)
        endActive(false);  // the client went away: generation stops here
    --m_server->stats().connectionsOpen;
    deleteLater();
}

void Connection::onReadyRead()
{
    m_in += m_socket->readAll();
    process();
}

void Connection::process()
{
    if (m_processing)
        return;
    m_processing = true;
    while (!m_closed && !m_closing) {
        if (m_phase == Phase::Head) {
            if (m_in.isEmpty())
                break;
            auto r = http::parseRequestHead(m_in);
            if (r.state == http::ParseState::Incomplete)
                break;
            if (r.state == http::ParseState::Error) {
                failRequest(r.errorStatus, r.error);
                break;
            }
            m_head = std::move(r.head);
            m_in.remove(0, r.consumed);
            ++m_server->stats().requests;
            m_server->logRequest(m_head);
            m_keepAlive = m_head.keepAlive();
            m_framing = http::requestBodyFraming(m_head);
            m_body.clear();
            m_decoder = http::ChunkedDecoder();
            m_bodyRemaining = m_framing.kind == http::BodyFraming::Length ? m_framing.length : 0;
            if (m_bodyRemaining > kMaxBodyBytes) {
                failRequest(413, "request body too large");
                break;
            }
            m_phase = Phase::Body;
            const bool bodyComing = m_bodyRemaining > 0
                                    || m_framing.kind == http::BodyFraming::Chunked;
            if (bodyComing && m_in.isEmpty() && m_head.versionMinor >= 1
                && m_head.headers.hasToken("expect", "100-continue")) {
                write(QByteArrayLiteral("HTTP/1.1 100 Continue\r\n\r\n"));
            }
        }
        if (m_phase == Phase::Body) {
            if (m_framing.kind == http::BodyFraming::Chunked) {
                const auto step = m_decoder.feed(m_in, &m_body);
                m_in.remove(0, step.consumed);
                if (step.error) {
                    failRequest(400, "bad chunked body: " + step.errorText);
                    break;
                }
                if (m_body.size() > kMaxBodyBytes) {
                    failRequest(413, "request body too large");
                    break;
                }
                if (!step.done)
                    break;
            } else if (m_bodyRemaining > 0) {
                const qsizetype take = qsizetype(qMin<qint64>(m_bodyRemaining, m_in.size()));
                if (m_body.isEmpty() && take == m_in.size()) {
                    m_body = std::exchange(m_in, QByteArray());
                } else {
                    m_body.append(m_in.constData(), take);
                    m_in.remove(0, take);
                }
                m_bodyRemaining -= take;
                if (m_bodyRemaining > 0)
                    break;
            }
            m_phase = Phase::Busy;
            handleRequest(*this);  // may answer at once (back to Head) or later
            continue;
        }
        break;  // Busy: pipelined requests wait for the current answer
    }
    m_processing = false;
}

void Connection::failRequest(int status, const QByteArray &why)
{
    m_keepAlive = false;
    m_head = http::RequestHead();
    m_head.method = "GET";  // so the body is written
    respond(status, "text/plain; charset=utf-8",
            QByteArray::number(status) + ' ' + http::reasonPhrase(status) + ": " + why);
}

QByteArray Connection::responseHead(int status, QByteArrayView contentType, qint64 contentLength)
{
    QByteArray h;
    h.reserve(200);
    h += "HTTP/1.1 ";
    h += QByteArray::number(status);
    h += ' ';
    h += http::reasonPhrase(status);
    h += "\r\n";
    if (!contentType.isEmpty()) {
        h += "Content-Type: ";
        h += contentType;
        h += "\r\n";
    }
    h += "Date: ";
    h += m_server->httpDate();
    h += "\r\n";
    m_chunkedOut = false;
    if (contentLength >= 0) {
        h += "Content-Length: ";
        h += QByteArray::number(contentLength);
        h += "\r\n";
    } else if (m_head.versionMinor >= 1) {
        h += "Transfer-Encoding: chunked\r\n";
        m_chunkedOut = true;
    } else {
        m_keepAlive = false;  // an HTTP/1.0 client learns the end from the close
    }
    if (!m_keepAlive)
        h += "Connection: close\r\n";
    else if (m_head.versionMinor == 0)
        h += "Connection: keep-alive\r\n";
    h += "\r\n";
    return h;
}

void Connection::write(const QByteArray &data)
{
    if (m_closed || m_closing || data.isEmpty())
        return;
    m_socket->write(data);
    m_socket->flush();  // send now: the event loop would otherwise delay it by one turn
}

void Connection::writePiece(const QByteArray &piece)
{
    if (piece.isEmpty())
        return;
    write(m_chunkedOut ? http::encodeChunk(piece) : piece);
}

void Connection::respond(int status, QByteArrayView contentType, const QByteArray &body)
{
    QByteArray out = responseHead(status, contentType, body.size());
    if (m_head.method != "HEAD")
        out += body;
    write(out);
    finishResponse();
}

void Connection::startStream(Stream stream)
{
    m_stream = std::move(stream);
    m_streamNext = 0;
    m_streamStartUs = monotonicUs();
    write(responseHead(m_stream.status, m_stream.contentType, m_stream.contentLength));
    if (m_head.method == "HEAD") {
        m_stream = Stream();
        finishResponse();
        return;
    }
    m_active = true;
    m_streaming = true;
    ++m_server->stats().streamsActive;
    pump();
}

void Connection::respondLater(qint64 delayMs, std::function<void()> respond)
{
    if (delayMs <= 0) {
        respond();
        return;
    }
    m_active = true;
    ++m_server->stats().streamsActive;
    armTimer(delayMs, [this, respond = std::move(respond)] {
        endActive(true);
        respond();
    });
}

void Connection::pump()
{
    int burst = 0;
    while (m_streaming && !m_closed) {
        // Back-pressure: a slow reader must not make us buffer a whole 100 MB answer.
        if (m_socket->bytesToWrite() > kHighWater) {
            m_waitingForDrain = true;
            return;
        }
        if (m_streamNext < m_stream.count) {
            if (m_stream.intervalUs > 0 || m_stream.firstDelayUs > 0) {
                const qint64 due = m_streamStartUs + m_stream.firstDelayUs
                                   + qint64(m_streamNext) * m_stream.intervalUs;
                const qint64 now = monotonicUs();
                if (due > now) {
                    armTimer((due - now + 999) / 1000, [this] { pump(); });
                    return;
                }
            }
            if (burst++ >= kBurst) {
                // Yield so a thousand streams share the thread fairly.
                armTimer(0, [this] { pump(); });
                return;
            }
            writePiece(m_stream.piece(m_streamNext++));
            continue;
        }
        if (m_stream.finish)
            writePiece(m_stream.finish());
        if (m_chunkedOut)
            write(http::lastChunk());
        m_streaming = false;
        m_stream = Stream();
        endActive(true);
        finishResponse();
        return;
    }
}

void Connection::armTimer(qint64 ms, std::function<void()> fn)
{
    m_onTimer = std::move(fn);
    m_timer.start(std::chrono::milliseconds(ms));
}

void Connection::endActive(bool completed)
{
    if (!m_active)
        return;
    m_active = false;
    m_streaming = false;
    Stats &s = m_server->stats();
    --s.streamsActive;
    ++(completed ? s.streamsCompleted : s.streamsAborted);
}

void Connection::finishResponse()
{
    m_phase = Phase::Head;
    m_body.clear();
    if (m_closed || m_closing)
        return;
    if (!m_keepAlive) {
        m_closing = true;  // ignore whatever else the client sends
        m_socket->disconnectFromHost();  // after the pending bytes are written
        return;
    }
    if (!m_processing && !m_in.isEmpty())
        process();
}

} // namespace slullama::standin
