#include "healthprobe.h"

#include "unixconnect.h"

#include <QPointer>
#include <QTcpSocket>
#include <QTimer>

#include <functional>
#include <memory>

#include <unistd.h>

namespace slullama {

namespace {

class HttpHealthProbe final : public HealthProbe
{
public:
    void check(const QString &host, quint16 port, int timeoutMs, QObject *context,
               Callback done) override
    {
        auto *socket = new QTcpSocket(context);
        auto *timer = new QTimer(socket);
        timer->setSingleShot(true);
        auto finished = std::make_shared<bool>(false);
        auto buffer = std::make_shared<QByteArray>();
        QPointer<QObject> guard(context);
        auto finish
            = [socket, finished, guard, done = std::move(done)](bool ok, const QString &detail) {
                  if (*finished)
                      return;
                  *finished = true;
                  socket->abort();
                  socket->deleteLater();
                  if (guard)
                      done(ok, detail);
              };
        QObject::connect(timer, &QTimer::timeout, socket,
                         [finish]() { finish(false, QStringLiteral("no answer in time")); });
        QObject::connect(socket, &QTcpSocket::connected, socket, [socket, host, port]() {
            socket->write(QByteArrayLiteral("GET /api/version HTTP/1.1\r\nHost: ") + host.toLatin1()
                          + ':' + QByteArray::number(port)
                          + QByteArrayLiteral("\r\nConnection: close\r\n\r\n"));
        });
        QObject::connect(socket, &QTcpSocket::readyRead, socket, [socket, buffer, finish]() {
            buffer->append(socket->readAll());
            const qsizetype eol = buffer->indexOf("\r\n");
            if (eol < 0) {
                if (buffer->size() > 1024)
                    finish(false, QStringLiteral("not an HTTP answer"));
                return;
            }
            const QList<QByteArray> parts = buffer->left(eol).split(' ');
            const bool ok
                = parts.size() >= 2 && parts.at(0).startsWith("HTTP/1.") && parts.at(1) == "200";
            finish(ok, QString::fromLatin1(buffer->left(eol)));
        });
        QObject::connect(socket, &QTcpSocket::errorOccurred, socket,
                         [socket, finish](QAbstractSocket::SocketError) {
                             finish(false, socket->errorString());
                         });
        timer->start(std::max(1, timeoutMs));
        if (!host.startsWith(QLatin1Char('/'))) {
            socket->connectToHost(host, port);
            return;
        }
        // A Unix socket path: connected at once or not at all (a missing path is the tunnel
        // not being up yet, reported like a refused TCP port).
        auto attempt = std::make_shared<std::function<void()>>();
        *attempt = [socket, host, port, finish, weak = std::weak_ptr(attempt)]() {
            QString error;
            bool busy = false;
            const int fd = connectUnixSocket(host, &error, &busy);
            if (busy) {
                // A full backlog under a burst of connects: try again until the timeout.
                if (auto again = weak.lock())
                    QTimer::singleShot(5, socket, [again]() { (*again)(); });
                return;
            }
            if (fd < 0 || !socket->setSocketDescriptor(fd, QAbstractSocket::ConnectedState)) {
                if (fd >= 0) {
                    ::close(fd);
                    error = socket->errorString();
                }
                finish(false, QStringLiteral("connection refused (%1)").arg(error));
                return;
            }
            socket->write(QByteArrayLiteral("GET /api/version HTTP/1.1\r\nHost: 127.0.0.1:")
                          + QByteArray::number(port)
                          + QByteArrayLiteral("\r\nConnection: close\r\n\r\n"));
        };
        // Kept alive by the socket (deleted with it); run from the event loop, never in check().
        QObject::connect(socket, &QObject::destroyed, socket,
                         [attempt]() mutable { attempt.reset(); });
        QTimer::singleShot(0, socket, [attempt]() { (*attempt)(); });
    }
};

} // namespace

std::unique_ptr<HealthProbe> makeHttpHealthProbe()
{
    return std::make_unique<HttpHealthProbe>();
}

} // namespace slullama
