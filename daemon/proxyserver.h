#pragma once

// The daemon's HTTP endpoint: accepts connections on server.bind:server.port, enforces the
// connection limit, and owns one Connection per client. Stops accepting and drains on request.

#include "connection.h"
#include "result.h"

#include <QHash>
#include <QHostAddress>
#include <QObject>
#include <QSet>

QT_BEGIN_NAMESPACE
class QTcpServer;
QT_END_NAMESPACE

namespace slullama {

class ProxyServer final : public QObject
{
    Q_OBJECT

public:
    ProxyServer(const ProxySettings &settings, Backend *backend, QObject *parent = nullptr);
    ~ProxyServer() override;

    // Starts listening. The error says what to do, e.g. when the port is taken.
    Result<Ok> listen();
    bool isListening() const;
    quint16 serverPort() const;
    QHostAddress serverAddress() const;

    int connectionCount() const { return int(m_connections.size()); }
    int activeExchangeCount() const { return m_shared.activeExchanges; }
    const ProxySettings &settings() const { return m_shared.settings; }
    // Keys, usage, limits, metrics (docs/TEAM.md). Must outlive the server.
    void setGateway(Gateway *gateway) { m_shared.gateway = gateway; }

    // Stop accepting; close idle connections now and the others after their current exchange.
    // drained() is emitted when the last connection has gone.
    void stopAccepting();
    // Close everything at once (after the drain timeout).
    void abortAll();

signals:
    void drained();

private:
    class Listener;
    void accept(qintptr socketDescriptor);
    void onConnectionClosed(Connection *connection);
    bool evictIdleConnection();

    ProxyShared m_shared;
    Listener *m_listener = nullptr;
    QSet<Connection *> m_connections;
    QHash<Connection *, quint64> m_acceptOrder; // for evicting the longest-held idle connection
    quint64 m_accepted = 0;
    bool m_stopping = false;
};

} // namespace slullama
