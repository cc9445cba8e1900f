#pragma once

// A small asynchronous client for the daemon's own routes (/slullama/status, /slullama/wake),
// used by `slullama status|wake` and the tray. Failures come as one message a user can act on.

#include "statusmodel.h"

#include <QNetworkAccessManager>
#include <QObject>
#include <QString>
#include <QUrl>

class QNetworkReply;

namespace slullama {

class ApiClient final : public QObject
{
    Q_OBJECT
public:
    // `base` is the daemon's root, e.g. http://127.0.0.1:11435. An empty token sends no
    // Authorization header.
    explicit ApiClient(const QUrl &base, const QString &token, QObject *parent = nullptr);

    void setEndpoint(const QUrl &base, const QString &token);
    QUrl base() const { return m_base; }
    // Per request; a daemon that accepts the connection but never answers fails after it.
    void setTimeout(int milliseconds) { m_timeoutMs = milliseconds; }

    // GET /slullama/status — never wakes the node.
    void fetchStatus();
    // POST /slullama/wake — the daemon answers 202 with its status at once. With
    // keepAwakeMinutes > 0 the daemon keeps the node up at least that long (awake_until).
    void wake(double keepAwakeMinutes = 0);

signals:
    // `json` is the body as the daemon sent it (the CLI prints it; fields this version does not
    // know are kept there).
    void statusReceived(const slullama::Status &status, const QByteArray &json);
    // httpStatus is 0 when no HTTP answer came (refused, timeout, not slullama JSON).
    void statusFailed(const QString &message, int httpStatus);
    void wakeAccepted(const slullama::Status &status, const QByteArray &json);
    void wakeFailed(const QString &message, int httpStatus);

private:
    enum class Operation { Status, Wake };
    QNetworkRequest request(const QString &path) const;
    void handleReply(QNetworkReply *reply, Operation operation);
    QString describeFailure(QNetworkReply *reply, int httpStatus, const QByteArray &body) const;

    QNetworkAccessManager m_network;
    QUrl m_base;
    QString m_token;
    int m_timeoutMs = 15000;
};

} // namespace slullama
