#pragma once

// Asks the model server (through the tunnel) whether it answers: GET /api/version, HTTP 200.
// One check per call; the lifecycle decides how often, on its clock.

#include <QObject>
#include <QString>

#include <functional>
#include <memory>

namespace slullama {

class HealthProbe
{
public:
    using Callback = std::function<void(bool healthy, const QString &detail)>;

    virtual ~HealthProbe() = default;

    // `host` starting with '/' is a Unix socket path (`port` then only fills the Host header).
    // `done` is called exactly once from the event loop unless `context` is destroyed first.
    virtual void check(const QString &host, quint16 port, int timeoutMs, QObject *context,
                       Callback done)
        = 0;
};

// The real one: a plain QTcpSocket request (no QNetworkAccessManager connection pool).
std::unique_ptr<HealthProbe> makeHttpHealthProbe();

} // namespace slullama
