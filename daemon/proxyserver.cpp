#include "proxyserver.h"

#include "logging.h"

#include <QTcpServer>

#include <unistd.h>

namespace slullama {

// QTcpServer hands over raw descriptors so the connection limit is checked before any
// QTcpSocket is made, and nothing waits in Qt's pending-connection queue.
class ProxyServer::Listener final : public QTcpServer
{
public:
    explicit Listener(ProxyServer *owner) : QTcpServer(owner), m_owner(owner) { }

protected:
    void incomingConnection(qintptr socketDescriptor) override
    {
        m_owner->accept(socketDescriptor);
    }

private:
    ProxyServer *m_owner;
};

namespace {

QHostAddress bindAddress(const QString &bind)
{
    if (bind.isEmpty() || bind == QLatin1String("0.0.0.0") || bind == QLatin1String("*"))
        return QHostAddress(QHostAddress::AnyIPv4);
    if (bind == QLatin1String("::"))
        return QHostAddress(QHostAddress::AnyIPv6);
    if (bind.compare(QLatin1String("localhost"), Qt::CaseInsensitive) == 0)
        return QHostAddress(QHostAddress::LocalHost);
    return QHostAddress(bind);
}

} // namespace

ProxyServer::ProxyServer(const ProxySettings &settings, Backend *backend, QObject *parent)
    : QObject(parent), m_listener(new Listener(this))
{
    m_shared.settings = settings;
    m_shared.auth = Auth(settings.token);
    m_shared.backend = backend;
    m_shared.pool = new UpstreamPool(this);
    // Bursts of clients (a cold-start storm) must not overflow the kernel's accept queue.
    m_listener->setListenBacklogSize(4096);
}

ProxyServer::~ProxyServer()
{
    const auto connections = m_connections;
    m_connections.clear();
    for (Connection *connection : connections) {
        connection->disconnect(this);
        delete connection;
    }
}

Result<Ok> ProxyServer::listen()
{
    const QHostAddress address = bindAddress(m_shared.settings.bind);
    if (address.isNull())
        return makeError(QStringLiteral("[server] bind = \"%1\" is not an IP address")
                             .arg(m_shared.settings.bind));
    if (!m_listener->listen(address, m_shared.settings.port)) {
        if (m_listener->serverError() == QAbstractSocket::AddressInUseError)
            return makeError(QStringLiteral("port %1 on %2 is in use — is another slullama "
                                            "running? set [server] port")
                                 .arg(m_shared.settings.port)
                                 .arg(m_shared.settings.bind));
        return makeError(QStringLiteral("cannot listen on %1 port %2: %3")
                             .arg(m_shared.settings.bind)
                             .arg(m_shared.settings.port)
                             .arg(m_listener->errorString()));
    }
    m_stopping = false;
    return Ok {};
}

bool ProxyServer::isListening() const
{
    return m_listener->isListening();
}

quint16 ProxyServer::serverPort() const
{
    return m_listener->serverPort();
}

QHostAddress ProxyServer::serverAddress() const
{
    return m_listener->serverAddress();
}

void ProxyServer::accept(qintptr socketDescriptor)
{
    if (m_stopping) {
        ::close(int(socketDescriptor));
        return;
    }
    if (m_connections.size() >= m_shared.settings.maxConnections && !evictIdleConnection()) {
        // Every slot has work. Answer without allocating anything; the socket is non-blocking and
        // the reply small.
        static const char reply[]
            = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
              "Content-Length: 33\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
              "{\"error\":\"too many connections\"}\n";
        [[maybe_unused]] const auto written
            = ::write(int(socketDescriptor), reply, sizeof reply - 1);
        ::close(int(socketDescriptor));
        qCDebug(lcProxy) << "connection refused: limit of" << m_shared.settings.maxConnections
                         << "reached";
        return;
    }
    auto *connection = new Connection(socketDescriptor, &m_shared, this);
    if (!connection->isValid()) {
        delete connection;
        return;
    }
    m_connections.insert(connection);
    m_acceptOrder.insert(connection, ++m_accepted);
    connect(connection, &Connection::closed, this, &ProxyServer::onConnectionClosed);
}

void ProxyServer::onConnectionClosed(Connection *connection)
{
    m_acceptOrder.remove(connection);
    if (!m_connections.remove(connection))
        return;
    connection->deleteLater();
    if (m_stopping && m_connections.isEmpty())
        emit drained();
}

bool ProxyServer::evictIdleConnection()
{
    // At the limit, a connection with nothing received (since accept, or since its last answer)
    // holds a slot without work: 10,000 idle sockets must not lock everyone else out. HTTP lets a
    // server close an idle connection at any time, so the longest-held one makes room; only when
    // every slot has work is the newcomer refused.
    Connection *victim = nullptr;
    quint64 victimOrder = 0;
    for (auto it = m_acceptOrder.cbegin(); it != m_acceptOrder.cend(); ++it) {
        if (it.key()->isIdle() && !it.key()->inExchange()
            && (!victim || it.value() < victimOrder)) {
            victim = it.key();
            victimOrder = it.value();
        }
    }
    if (!victim)
        return false;
    qCDebug(lcProxy) << "connection limit of" << m_shared.settings.maxConnections
                     << "reached: closing the longest-held idle connection";
    victim->abort(); // → closed() → onConnectionClosed() frees the slot now
    return m_connections.size() < m_shared.settings.maxConnections;
}

void ProxyServer::stopAccepting()
{
    m_stopping = true;
    m_shared.draining = true;
    m_listener->close();
    const auto connections = m_connections;
    for (Connection *connection : connections) {
        if (m_connections.contains(connection))
            connection->closeWhenIdle();
    }
    if (m_connections.isEmpty())
        emit drained();
}

void ProxyServer::abortAll()
{
    const auto connections = m_connections;
    for (Connection *connection : connections) {
        if (m_connections.contains(connection))
            connection->abort();
    }
}

} // namespace slullama
